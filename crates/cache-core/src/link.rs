//! Placing a blob's file elsewhere: reflink, hardlink or copy.

use std::fs::{File, OpenOptions};
use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::{LinkMode, Linked};

pub(crate) fn link_file(src: &Path, dest: &Path, mode: LinkMode) -> Result<Linked> {
    match mode {
        LinkMode::Reflink => reflink(src, dest).map(|()| Linked::Reflink),
        LinkMode::Hardlink => std::fs::hard_link(src, dest)
            .at("hardlink to", dest)
            .map(|()| Linked::Hardlink),
        LinkMode::Copy => copy(src, dest).map(|()| Linked::Copy),
        LinkMode::Auto => {
            if reflink(src, dest).is_ok() {
                return Ok(Linked::Reflink);
            }
            match std::fs::hard_link(src, dest) {
                Ok(()) => Ok(Linked::Hardlink),
                // An existing destination is the caller's mistake, not a reason to copy.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Err(Error::io("hardlink to", dest, e))
                }
                Err(_) => copy(src, dest).map(|()| Linked::Copy),
            }
        }
    }
}

fn create_new(dest: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .at("create", dest)
}

fn copy(src: &Path, dest: &Path) -> Result<()> {
    let mut from = File::open(src).at("open", src)?;
    let mut to = create_new(dest)?;
    // std::io::copy uses copy_file_range/sendfile where the kernel offers them.
    let result = std::io::copy(&mut from, &mut to).at("copy to", dest);
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result.map(|_| ())
}

#[cfg(target_os = "linux")]
fn reflink(src: &Path, dest: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let from = File::open(src).at("open", src)?;
    let to = create_new(dest)?;
    // FICLONE = _IOW(0x94, 9, int)
    const FICLONE: libc::c_ulong = 0x4004_9409;
    // SAFETY: both descriptors are open for the duration of the call; FICLONE takes the
    // source fd as its integer argument and touches no memory of ours.
    let rc = unsafe { libc::ioctl(to.as_raw_fd(), FICLONE as _, from.as_raw_fd()) };
    if rc == 0 {
        Ok(())
    } else {
        let err = std::io::Error::last_os_error();
        drop(to);
        let _ = std::fs::remove_file(dest);
        Err(Error::io("reflink to", dest, err))
    }
}

#[cfg(not(target_os = "linux"))]
fn reflink(_src: &Path, dest: &Path) -> Result<()> {
    Err(Error::io(
        "reflink to",
        dest,
        std::io::Error::from(std::io::ErrorKind::Unsupported),
    ))
}

//! `DirVolume`: a host directory served read-only, for packages under development.
//!
//! The directory is opened once and every access walks down from that handle one component
//! at a time with `openat(O_NOFOLLOW | O_DIRECTORY)`; the last component is `lstat`ed,
//! `readlink`ed or opened with `O_NOFOLLOW`. The host never follows a symlink on our behalf:
//! a host symlink is reported as a symlink with its target verbatim, and the VFS's own
//! resolver ([`crate::resolve`]) interprets it inside the volume's `/`. So a link to `/etc`
//! means `<dir>/etc`, and `../../x` stops at `<dir>`: nothing outside the directory can be
//! reached through the volume, whatever the links say (mount points inside the directory
//! are crossed like any directory).
//!
//! Files are read into memory rather than mapped: a file under development can be truncated
//! while someone holds it, and a mapping of it would then fault (`SIGBUS`) on access.
//!
//! Host names that are not UTF-8 cannot be named by a [`VfsPath`]; listing a directory that
//! holds one is an [`VfsError::InvalidPath`] error rather than a silently shorter listing.

use std::ffi::CStr;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rustix::fs::{AtFlags, Dir, FileType as HostType, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::error::{Result, VfsError};
use crate::fs::{DirEntry, FileReader, FileSystem, FileType, Metadata, NodeId};
use crate::path::VfsPath;

/// Flags of the handles used only to walk through a directory: `O_PATH` where the OS has
/// it, so that a directory with search but no read permission can still be walked.
#[cfg(any(target_os = "linux", target_os = "android"))]
const WALK: OFlags = OFlags::PATH;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const WALK: OFlags = OFlags::RDONLY;

/// A read-only [`FileSystem`] over a directory of the host, confined to it.
pub struct DirVolume {
    root: OwnedFd,
    host: PathBuf,
}

impl fmt::Debug for DirVolume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirVolume")
            .field("host", &self.host)
            .finish()
    }
}

/// Maps a host error on `path` to the variant a VFS caller matches on.
fn host_err(path: &VfsPath, op: &'static str, e: Errno) -> VfsError {
    match e {
        Errno::NOENT => VfsError::NotFound(path.clone()),
        Errno::NOTDIR => VfsError::NotADirectory(path.clone()),
        Errno::ISDIR => VfsError::IsADirectory(path.clone()),
        // `O_NOFOLLOW` met a symlink where a resolved path promised none: the directory
        // changed under us. Refuse rather than follow it.
        Errno::LOOP => VfsError::InvalidOperation {
            path: path.clone(),
            reason: "a symlink appeared on the host where a directory or file was expected",
        },
        e => VfsError::Io {
            path: path.clone(),
            op,
            message: std::io::Error::from(e).to_string(),
        },
    }
}

fn kind_of(t: HostType) -> FileType {
    match t {
        HostType::RegularFile => FileType::File,
        HostType::Directory => FileType::Dir,
        HostType::Symlink => FileType::Symlink,
        _ => FileType::Other,
    }
}

// `st_nlink`, `st_dev` and `st_ino` are narrower than `u64` on some targets.
#[allow(clippy::useless_conversion)]
fn metadata_of(st: &Stat) -> Metadata {
    let kind = kind_of(HostType::from_raw_mode(st.st_mode));
    let secs = u64::try_from(st.st_mtime).unwrap_or(0);
    let nanos = u32::try_from(st.st_mtime_nsec).unwrap_or(0);
    Metadata {
        kind,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: SystemTime::UNIX_EPOCH
            .checked_add(Duration::new(secs, nanos.min(999_999_999)))
            .unwrap_or(SystemTime::UNIX_EPOCH),
        size: if kind == FileType::Dir {
            0
        } else {
            u64::try_from(st.st_size).unwrap_or(0)
        },
        nlink: st.st_nlink.into(),
    }
}

fn utf8_name(dir: &VfsPath, name: &CStr) -> Result<String> {
    name.to_str()
        .map(str::to_owned)
        .map_err(|_| VfsError::InvalidPath {
            path: format!(
                "{}/{}",
                dir.as_str().trim_end_matches('/'),
                name.to_string_lossy()
            ),
            reason: "a host file name is not UTF-8",
        })
}

impl DirVolume {
    /// Serves the directory `dir`. `dir` itself may be reached through symlinks (it is the
    /// caller's choice); nothing below it is.
    ///
    /// # Errors
    /// The host error, with `dir` in its message, if `dir` cannot be opened as a directory.
    pub fn open(dir: impl AsRef<Path>) -> std::io::Result<DirVolume> {
        let host = dir.as_ref().to_path_buf();
        let root = rustix::fs::open(
            &host,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            let e = std::io::Error::from(e);
            std::io::Error::new(e.kind(), format!("{}: {e}", host.display()))
        })?;
        Ok(DirVolume { root, host })
    }

    /// The host directory, as given to [`DirVolume::open`].
    pub fn host_path(&self) -> &Path {
        &self.host
    }

    /// A handle on the parent of `path` (walked without following anything) and the last
    /// name; `None` for `/`.
    fn parent_of<'p>(&self, path: &'p VfsPath) -> Result<Option<(OwnedFd, &'p str)>> {
        let Some(name) = path.file_name() else {
            return Ok(None);
        };
        let mut fd = rustix::io::dup(&self.root).map_err(|e| host_err(path, "open", e))?;
        let mut walked = VfsPath::root();
        let count = path.components().count();
        for comp in path.components().take(count.saturating_sub(1)) {
            walked = walked.child(comp);
            fd = rustix::fs::openat(
                &fd,
                comp,
                WALK | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| match e {
                // A symlink in the middle of a resolved path: not a directory to walk into.
                Errno::LOOP => VfsError::NotADirectory(walked.clone()),
                e => host_err(&walked, "open", e),
            })?;
        }
        Ok(Some((fd, name)))
    }

    /// Opens `path` itself without following a final symlink, with `flags` added.
    fn open_node(&self, path: &VfsPath, flags: OFlags) -> Result<OwnedFd> {
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match self.parent_of(path)? {
            None => rustix::fs::openat(&self.root, c".", flags, Mode::empty()),
            Some((dir, name)) => rustix::fs::openat(&dir, name, flags, Mode::empty()),
        }
        .map_err(|e| host_err(path, "open", e))
    }

    /// Opens the regular file `path` for reading. `O_NONBLOCK` so that a fifo in its place
    /// cannot block the open; the type is checked on the handle, so it cannot change
    /// between the check and the read.
    fn open_file(&self, path: &VfsPath) -> Result<File> {
        let fd = self.open_node(path, OFlags::RDONLY | OFlags::NONBLOCK)?;
        let st = rustix::fs::fstat(&fd).map_err(|e| host_err(path, "stat", e))?;
        match kind_of(HostType::from_raw_mode(st.st_mode)) {
            FileType::File => {}
            FileType::Dir => return Err(VfsError::IsADirectory(path.clone())),
            _ => {
                return Err(VfsError::InvalidOperation {
                    path: path.clone(),
                    reason: "not a regular file",
                });
            }
        }
        // Reads of a regular file never block; clearing the flag keeps that explicit.
        rustix::fs::fcntl_setfl(&fd, OFlags::empty()).map_err(|e| host_err(path, "open", e))?;
        Ok(File::from(fd))
    }
}

impl FileSystem for DirVolume {
    fn node_metadata(&self, path: &VfsPath) -> Result<Metadata> {
        let st = match self.parent_of(path)? {
            None => rustix::fs::fstat(&self.root),
            Some((dir, name)) => rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW),
        }
        .map_err(|e| host_err(path, "stat", e))?;
        Ok(metadata_of(&st))
    }

    fn node_read_dir(&self, path: &VfsPath) -> Result<Vec<DirEntry>> {
        let fd = self.open_node(path, OFlags::RDONLY | OFlags::DIRECTORY)?;
        let probe = rustix::io::dup(&fd).map_err(|e| host_err(path, "open", e))?;
        let dir = Dir::new(fd).map_err(|e| host_err(path, "read directory", e))?;
        let mut out = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|e| host_err(path, "read directory", e))?;
            let raw = entry.file_name();
            if raw == c"." || raw == c".." {
                continue;
            }
            let name = utf8_name(path, raw)?;
            let kind = match entry.file_type() {
                // Some filesystems do not fill in the type; ask for it.
                HostType::Unknown => {
                    let st = rustix::fs::statat(probe.as_fd(), raw, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| host_err(&path.child(&name), "stat", e))?;
                    kind_of(HostType::from_raw_mode(st.st_mode))
                }
                t => kind_of(t),
            };
            out.push(DirEntry { name, kind });
        }
        out.sort();
        Ok(out)
    }

    fn node_read_link(&self, path: &VfsPath) -> Result<String> {
        let Some((dir, name)) = self.parent_of(path)? else {
            return Err(VfsError::NotASymlink(path.clone()));
        };
        let target = rustix::fs::readlinkat(&dir, name, Vec::new()).map_err(|e| match e {
            Errno::INVAL => VfsError::NotASymlink(path.clone()),
            e => host_err(path, "readlink", e),
        })?;
        target.into_string().map_err(|_| VfsError::InvalidPath {
            path: path.to_string(),
            reason: "a host symlink target is not UTF-8",
        })
    }

    fn node_read_all(&self, path: &VfsPath) -> Result<Bytes> {
        let mut file = self.open_file(path)?;
        let io = |e: std::io::Error| VfsError::Io {
            path: path.clone(),
            op: "read",
            message: e.to_string(),
        };
        let len = file.metadata().map_err(io)?.len();
        let mut buf = Vec::new();
        // Fallible: a huge file is an error, not an abort. The size is a hint only; the
        // file may grow or shrink while it is read.
        buf.try_reserve_exact(usize::try_from(len).unwrap_or(usize::MAX))
            .map_err(|_| VfsError::InvalidOperation {
                path: path.clone(),
                reason: "file does not fit in memory",
            })?;
        file.read_to_end(&mut buf).map_err(io)?;
        Ok(Bytes::from(buf))
    }

    /// Streams from the host file rather than reading it whole first.
    fn node_open(&self, path: &VfsPath) -> Result<FileReader> {
        Ok(Box::new(self.open_file(path)?))
    }

    #[allow(clippy::useless_conversion)]
    fn node_id(&self, path: &VfsPath) -> Option<NodeId> {
        let (dir, name) = self.parent_of(path).ok()??;
        let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        (kind_of(HostType::from_raw_mode(st.st_mode)) == FileType::File)
            .then(|| NodeId::new(&[st.st_dev.into(), st.st_ino.into()]))
    }

    fn node_backing_file(&self, path: &VfsPath) -> Result<Option<File>> {
        self.open_file(path).map(Some)
    }
}

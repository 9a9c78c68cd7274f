//! Advisory file locks between processes (`flock` through `std::fs::File::lock`).
//!
//! Two locks exist. The store lock (`<root>/.lock`) is held shared by every open [`Store`]
//! and exclusively by gc and clean, so a sweep never races a reader in another process. The
//! per-digest lock makes one process the writer of a digest while the others wait and then
//! find the finished blob.
//!
//! The per-digest lock is taken on the partial download itself
//! (`ingest/<alg>-<hex>.partial`), not on a separate lock file. The writer renames the
//! partial into `blobs/` while still holding it; a waiter that then gets the lock finds the
//! path gone and starts over. One file per ingest instead of two matters: creating a file
//! is the most expensive thing a cold load does on some filesystems (ext4 without a journal
//! scans past every recently freed inode on each creation), and a lock file that is deleted
//! after use makes every later creation slower still.
//!
//! Waiting polls `try_lock` with a growing sleep instead of blocking a thread in `flock`, so
//! a wait can time out and can be cancelled by dropping its future.
//!
//! [`Store`]: crate::Store

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};

const FIRST_SLEEP: Duration = Duration::from_millis(5);
const MAX_SLEEP: Duration = Duration::from_millis(100);

/// An exclusive lock on a digest's partial download: the open, locked file. Dropping it
/// unlocks (the file stays, so a later ingest can resume it).
#[derive(Debug)]
pub(crate) struct DigestLock {
    file: File,
    path: PathBuf,
}

impl DigestLock {
    /// Wait (asynchronously) until this process holds the lock at `path`.
    pub(crate) async fn acquire(path: PathBuf, what: &str, timeout: Duration) -> Result<Self> {
        let start = Instant::now();
        let mut sleep = FIRST_SLEEP;
        loop {
            if let Some(lock) = Self::try_acquire(&path)? {
                return Ok(lock);
            }
            if start.elapsed() >= timeout {
                return Err(Error::LockTimeout {
                    what: what.to_owned(),
                    path,
                    waited: start.elapsed(),
                });
            }
            tokio::time::sleep(sleep).await;
            sleep = (sleep * 2).min(MAX_SLEEP);
        }
    }

    /// One attempt. The holder renames or deletes the file before unlocking, so after
    /// locking we check that the path still names the inode we locked; if not, we locked a
    /// file that is already gone (maybe already a blob) and another process may hold a
    /// fresh one: try again.
    pub(crate) fn try_acquire(path: &Path) -> Result<Option<Self>> {
        loop {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(path)
                .at("open lock file", path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Ok(None),
                Err(TryLockError::Error(e)) => return Err(Error::io("lock", path, e)),
            }
            if same_file(&file, path)? {
                return Ok(Some(DigestLock {
                    file,
                    path: path.to_owned(),
                }));
            }
        }
    }
}

impl DigestLock {
    /// The length of the locked file: a partial download's bytes so far.
    pub(crate) fn len(&self) -> std::io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// The locked file, to write the blob into. The lock lasts as long as the file is open.
    pub(crate) fn into_file(self) -> File {
        self.file
    }

    /// Delete the file, then unlock: nothing worth resuming is in it (the blob is already
    /// stored). A waiter that locks the old inode next sees the path gone and retries.
    pub(crate) fn remove(self) -> Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("remove", &self.path, e))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let held = file.metadata().at("stat lock file", path)?;
    match std::fs::metadata(path) {
        Ok(now) => Ok(now.dev() == held.dev() && now.ino() == held.ino()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("stat lock file", path, e)),
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, _path: &Path) -> Result<bool> {
    Ok(true)
}

/// The store-wide lock: shared while the store is open, exclusive during gc/clean.
#[derive(Debug)]
pub(crate) struct StoreLock {
    file: File,
    path: PathBuf,
}

impl StoreLock {
    /// Open the lock file and take it shared, waiting up to `timeout` for a running gc.
    pub(crate) fn shared(path: PathBuf, timeout: Duration) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .at("open store lock", &path)?;
        let lock = StoreLock { file, path };
        lock.wait(timeout, "the store lock (shared)", |f| f.try_lock_shared())?;
        Ok(lock)
    }

    /// [`Self::shared`] if the lock file exists and the lock can be had without waiting;
    /// `None` otherwise.
    pub(crate) fn try_shared(path: PathBuf) -> Result<Option<Self>> {
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open store lock", &path, e)),
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(Some(StoreLock { file, path })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
        }
    }

    /// Upgrade to exclusive (blocking the calling thread, polling up to `timeout`).
    pub(crate) fn upgrade(&self, timeout: Duration) -> Result<()> {
        self.wait(
            timeout,
            "exclusive use of the store (other pkgload processes have it open)",
            |f| f.try_lock(),
        )
    }

    /// Back to shared after gc/clean.
    pub(crate) fn downgrade(&self) -> Result<()> {
        self.file.lock_shared().at("lock", &self.path)
    }

    fn wait(
        &self,
        timeout: Duration,
        what: &str,
        attempt: impl Fn(&File) -> std::result::Result<(), TryLockError>,
    ) -> Result<()> {
        let start = Instant::now();
        let mut sleep = FIRST_SLEEP;
        loop {
            match attempt(&self.file) {
                Ok(()) => return Ok(()),
                Err(TryLockError::Error(e)) => return Err(Error::io("lock", &self.path, e)),
                Err(TryLockError::WouldBlock) => {}
            }
            if start.elapsed() >= timeout {
                return Err(Error::LockTimeout {
                    what: what.to_owned(),
                    path: self.path.clone(),
                    waited: start.elapsed(),
                });
            }
            std::thread::sleep(sleep);
            sleep = (sleep * 2).min(MAX_SLEEP);
        }
    }
}

//! The one error type of the store.
//!
//! Every variant names what failed and where (digest, path), and the message ends with what
//! the user can do about it. Errors are `Clone` (I/O causes are shared through `Arc`) so that
//! one failed in-flight ingest can hand the same error to every caller that waited on it.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::{Digest, ParseDigestError};

/// A boxed error from a caller-supplied data source.
pub type SourceError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in `cache-core`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A string that should have been a digest was not one.
    #[error(transparent)]
    InvalidDigest(#[from] ParseDigestError),

    /// A filesystem operation failed.
    #[error("could not {op} {}: {source}{}", path.display(), io_hint(source))]
    Io {
        /// What we tried to do ("create", "write", "rename", …).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: Arc<io::Error>,
    },

    /// The data had a different length than its descriptor promised.
    #[error(
        "size mismatch for {digest}: expected {expected} bytes, got {actual}{}; \
         the source sent different content than its descriptor describes",
        if *at_least { " or more" } else { "" }
    )]
    SizeMismatch {
        /// The digest being ingested.
        digest: Digest,
        /// The size the caller expected.
        expected: u64,
        /// The size received (a lower bound when `at_least`).
        actual: u64,
        /// True when the ingest was cut off as soon as it went past `expected`.
        at_least: bool,
    },

    /// The data hashed to a different digest than expected; nothing was stored.
    #[error(
        "digest mismatch: expected {expected}, the data hashes to {actual}; \
         the transfer was corrupt or the source serves different content"
    )]
    DigestMismatch {
        /// The digest the caller asked for.
        expected: Digest,
        /// The digest of the data that arrived.
        actual: Digest,
    },

    /// A blob that must exist is not in the store.
    #[error("blob {digest} is not in the store at {}; fetch it first", root.display())]
    NotFound {
        /// The missing digest.
        digest: Digest,
        /// The store root.
        root: PathBuf,
    },

    /// Waiting for a lock held by another process or task took too long.
    #[error(
        "timed out after {:.1?} waiting for {what} ({}); another pkgload process is \
         still holding it: wait for it to finish, or stop it",
        waited, path.display()
    )]
    LockTimeout {
        /// What the lock protects, e.g. "the ingest of sha256:…".
        what: String,
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },

    /// The caller's data source failed while filling an ingest.
    #[error("fetching {digest} failed: {source}")]
    Source {
        /// The digest being ingested.
        digest: Digest,
        /// The source's error.
        #[source]
        source: SourceError,
    },

    /// A value that becomes part of a store path was rejected.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        /// What kind of value ("registry", "repository", "tag", "derived kind").
        what: &'static str,
        /// The rejected value (truncated).
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A file inside the store is not in the format the store writes.
    #[error("corrupt store file {}: {reason}; delete it or run `pkgload cache verify --prune`", path.display())]
    CorruptFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A background task of the store died (a panic in a blocking task).
    #[error("internal store task failed during {op}: {message}")]
    Task {
        /// The operation.
        op: &'static str,
        /// The join error's text.
        message: String,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }

    /// The OS error kind, when this is an I/O error.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    /// True when retrying the same transfer may succeed (the data that arrived was wrong,
    /// not the store).
    pub fn is_corrupt_transfer(&self) -> bool {
        matches!(
            self,
            Error::DigestMismatch { .. } | Error::SizeMismatch { .. }
        )
    }

    pub(crate) fn task(op: &'static str, err: tokio::task::JoinError) -> Self {
        Error::Task {
            op,
            message: err.to_string(),
        }
    }
}

fn io_hint(err: &io::Error) -> &'static str {
    match err.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            " (the disk is full: free space, or run `pkgload cache gc --max-size …`)"
        }
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            " (check the cache directory's permissions, or point PKGLOAD_CACHE_DIR elsewhere)"
        }
        _ => "",
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach an operation and a path to an I/O result.
pub(crate) trait IoContext<T> {
    fn at(self, op: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}

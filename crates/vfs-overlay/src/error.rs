//! The one error type of the crate.

use crate::path::VfsPath;

/// What went wrong, and on which path. Each variant corresponds to the errno a real
/// filesystem would give, so callers (and `materialize` later) can map them back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VfsError {
    /// `ENOENT`.
    #[error("{0}: no such file or directory")]
    NotFound(VfsPath),
    /// `ENOTDIR`: a directory was required, or a non-final component is not a directory.
    #[error("{0}: not a directory")]
    NotADirectory(VfsPath),
    /// `EISDIR`.
    #[error("{0}: is a directory")]
    IsADirectory(VfsPath),
    /// `EINVAL` from `readlink`.
    #[error("{0}: not a symbolic link")]
    NotASymlink(VfsPath),
    /// `EEXIST`.
    #[error("{0}: already exists")]
    AlreadyExists(VfsPath),
    /// `ENOTEMPTY`.
    #[error("{0}: directory not empty")]
    DirectoryNotEmpty(VfsPath),
    /// `EROFS`: the filesystem (or the layer) holding this path cannot be written.
    #[error("{0}: read-only filesystem; write to a writable layer instead")]
    ReadOnly(VfsPath),
    /// `EXDEV`: a rename across mounts. Copy and remove instead.
    #[error("cannot rename {from} to {to}: they are on different mounts (copy instead)")]
    CrossDevice {
        /// Source of the rename.
        from: VfsPath,
        /// Destination of the rename.
        to: VfsPath,
    },
    /// `ELOOP`: more than [`crate::MAX_SYMLINK_HOPS`] symlinks while resolving this path.
    #[error("{0}: too many levels of symbolic links (a loop?)")]
    TooManyLinks(VfsPath),
    /// `EBUSY`: the path is a mount point or contains one.
    #[error("{0}: is a mount point or contains one; unmount first")]
    Busy(VfsPath),
    /// `EINVAL`: an operation that makes no sense for this path (moving a directory into
    /// itself, removing `/`).
    #[error("{path}: invalid operation: {reason}")]
    InvalidOperation {
        /// The path the operation was applied to.
        path: VfsPath,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The path itself cannot be represented (NUL byte, empty symlink target).
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The offending input (its `Debug` form, used in the message, shows NUL as `\0`).
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// Two mounts on one path under [`crate::MountPolicy::Fail`].
    #[error("{0}: something is already mounted here")]
    AlreadyMounted(VfsPath),
}

/// Shorthand used throughout the crate.
pub type Result<T, E = VfsError> = std::result::Result<T, E>;

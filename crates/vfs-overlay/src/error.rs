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
    /// A layer holds a whiteout that names nothing (`.wh.`) or `.`/`..` (`.wh..`,
    /// `.wh...`): the layer is malformed and is refused rather than guessed at.
    #[error("{0}: invalid whiteout entry; the layer is malformed")]
    BadWhiteout(VfsPath),

    /// A layer's hardlink into the layers below names nothing usable there.
    #[error("{path}: hardlink to {target}, which {reason} in the layers below")]
    BadLowerHardlink {
        /// The hardlink.
        path: VfsPath,
        /// What it names.
        target: VfsPath,
        /// "does not exist" or "is a directory".
        reason: &'static str,
    },
    /// `EIO`: the backing data does not hold what the index says (a volume's index that
    /// does not match its archive).
    #[error("{path}: corrupt volume: {reason}")]
    Corrupt {
        /// The entry being read.
        path: VfsPath,
        /// What did not match.
        reason: &'static str,
    },
    /// `EIO` and other host errors from a filesystem backed by a host directory
    /// ([`crate::DirVolume`]) that have no closer variant.
    #[error("{path}: {op} failed: {message}")]
    Io {
        /// The entry being accessed.
        path: VfsPath,
        /// What was being done (`"open"`, `"read"`, ...).
        op: &'static str,
        /// The host error.
        message: String,
    },
    /// Two mounts on one path under [`crate::MountPolicy::Fail`].
    #[error("{0}: something is already mounted here")]
    AlreadyMounted(VfsPath),
}

impl VfsError {
    /// Rewrites every path in the error with `f`. A union uses it so that an error from a
    /// mounted filesystem names the path the caller asked for, not the path inside the mount.
    pub(crate) fn map_paths(self, f: impl Fn(VfsPath) -> VfsPath) -> VfsError {
        use VfsError as E;
        match self {
            E::NotFound(p) => E::NotFound(f(p)),
            E::NotADirectory(p) => E::NotADirectory(f(p)),
            E::IsADirectory(p) => E::IsADirectory(f(p)),
            E::NotASymlink(p) => E::NotASymlink(f(p)),
            E::AlreadyExists(p) => E::AlreadyExists(f(p)),
            E::DirectoryNotEmpty(p) => E::DirectoryNotEmpty(f(p)),
            E::ReadOnly(p) => E::ReadOnly(f(p)),
            E::CrossDevice { from, to } => E::CrossDevice {
                from: f(from),
                to: f(to),
            },
            E::TooManyLinks(p) => E::TooManyLinks(f(p)),
            E::Busy(p) => E::Busy(f(p)),
            E::InvalidOperation { path, reason } => E::InvalidOperation {
                path: f(path),
                reason,
            },
            E::AlreadyMounted(p) => E::AlreadyMounted(f(p)),
            E::Io { path, op, message } => E::Io {
                path: f(path),
                op,
                message,
            },
            E::BadWhiteout(p) => E::BadWhiteout(f(p)),
            E::BadLowerHardlink {
                path,
                target,
                reason,
            } => E::BadLowerHardlink {
                path: f(path),
                target: f(target),
                reason,
            },
            E::Corrupt { path, reason } => E::Corrupt {
                path: f(path),
                reason,
            },
            e @ E::InvalidPath { .. } => e,
        }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = VfsError> = std::result::Result<T, E>;

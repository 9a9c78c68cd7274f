//! Symlink resolution inside a filesystem's own root.
//!
//! Written once here, on top of [`FileSystem::node_metadata`] and
//! [`FileSystem::node_read_link`], so every filesystem (and a union of them) gets the same
//! rules: an absolute target starts again from the VFS root, a relative one from the link's
//! directory, `..` stops at `/`, and more than [`MAX_SYMLINK_HOPS`] links is an error. The
//! walk is iterative with an explicit stack, so hostile link chains cannot overflow the
//! call stack.

use crate::error::{Result, VfsError};
use crate::fs::FileSystem;
use crate::path::VfsPath;

/// How many symlinks one resolution may follow, as Linux's `MAXSYMLINKS`.
pub const MAX_SYMLINK_HOPS: u32 = 40;

/// Whether the last component is followed when it is a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Follow symlinks everywhere (`stat`, `open`).
    All,
    /// Follow symlinks in the parent directories only (`lstat`, `unlink`, `rename`).
    Parents,
}

/// Resolves `path` to one whose parents are all real directories.
///
/// The last component need not exist (so that creating a file works); a missing
/// intermediate directory is [`VfsError::NotFound`], a non-directory in the middle is
/// [`VfsError::NotADirectory`]. A dangling final symlink resolves to its (missing) target
/// under [`Follow::All`], as `open(O_CREAT)` would create it.
///
/// # Errors
/// As above, plus [`VfsError::TooManyLinks`] naming the path asked for, and whatever the
/// filesystem reports.
pub fn resolve<F: FileSystem + ?Sized>(fs: &F, path: &VfsPath, follow: Follow) -> Result<VfsPath> {
    resolve_below(fs, VfsPath::root(), path.components(), follow, path)
}

/// Resolves `rest` starting from `start`, which the caller already resolved. This lets a
/// walk down a deep tree (`create_dir_all`) cost one step per level instead of resolving
/// every prefix from `/` again. `asked` is the path reported in `TooManyLinks`.
pub(crate) fn resolve_below<'a, F: FileSystem + ?Sized>(
    fs: &F,
    start: VfsPath,
    rest: impl DoubleEndedIterator<Item = &'a str>,
    follow: Follow,
    asked: &VfsPath,
) -> Result<VfsPath> {
    // Components still to walk, in reverse so that `pop` yields the next one. Link targets
    // are pushed here raw, so their `.` and `..` are applied against the resolved prefix.
    let mut todo: Vec<String> = rest.rev().map(str::to_owned).collect();
    let mut cur = start;
    let mut hops = 0u32;
    while let Some(name) = todo.pop() {
        match name.as_str() {
            "" | "." => continue,
            ".." => {
                cur = cur.parent().unwrap_or_else(VfsPath::root);
                continue;
            }
            // Only a link target can bring a NUL here (paths were checked when made), and
            // no filesystem can hold such a name.
            n if n.contains('\0') => {
                return Err(VfsError::InvalidPath {
                    path: n.to_owned(),
                    reason: "a symlink target contains a NUL byte",
                });
            }
            _ => {}
        }
        let next = cur.child(&name);
        if todo.is_empty() && follow == Follow::Parents {
            return Ok(next);
        }
        match fs.node_metadata(&next) {
            Ok(meta) if meta.is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(VfsError::TooManyLinks(asked.clone()));
                }
                let target = fs.node_read_link(&next)?;
                if target.is_empty() {
                    return Err(VfsError::NotFound(next));
                }
                if target.starts_with('/') {
                    cur = VfsPath::root();
                }
                todo.extend(target.split('/').rev().map(str::to_owned));
            }
            Ok(meta) if meta.is_dir() => cur = next,
            Ok(_) if todo.is_empty() => cur = next,
            Ok(_) => return Err(VfsError::NotADirectory(next)),
            // A missing final name is fine (the caller may be creating it); anything still
            // pending after it, even a `.` from a link target, needs it to exist.
            Err(VfsError::NotFound(_)) if todo.is_empty() => cur = next,
            Err(VfsError::NotFound(_)) => return Err(VfsError::NotFound(next)),
            Err(e) => return Err(e),
        }
    }
    Ok(cur)
}

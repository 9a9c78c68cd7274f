//! Symlink resolution inside a filesystem's own root.
//!
//! Written once here, on top of [`FileSystem::node_metadata`] and
//! [`FileSystem::node_read_link`], so every filesystem (and a union of them) gets the same
//! rules: an absolute target starts again from the VFS root, a relative one from the link's
//! directory, `..` stops at `/`, and more than [`MAX_SYMLINK_HOPS`] links is an error. The
//! walk is iterative with an explicit stack, so hostile link chains cannot overflow the
//! call stack.
//!
//! Most paths hold no symlink at all. A filesystem that can tell so in one probe
//! ([`FileSystem::node_lookup`]: a table of resolved paths, say) lets the whole path, or
//! what remains of it after a link, be looked up at once instead of one `node_metadata`
//! per component; only when it cannot tell does the walk go component by component.

use std::borrow::Cow;

use crate::error::{Result, VfsError};
use crate::fs::{FileSystem, FileType};
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
    resolve_cow(fs, path, follow).map(Cow::into_owned)
}

/// [`resolve`], borrowing `path` back when it is already resolved (the usual case), so the
/// provided [`FileSystem`] methods do not copy it.
pub(crate) fn resolve_cow<'p, F: FileSystem + ?Sized>(
    fs: &F,
    path: &'p VfsPath,
    follow: Follow,
) -> Result<Cow<'p, VfsPath>> {
    let Some(name) = path.file_name() else {
        return Ok(Cow::Borrowed(path));
    };
    // Fast path: the parents are known to be real directories.
    match fs.node_lookup(path) {
        Some(Some(FileType::Symlink)) if follow == Follow::All => {
            let parent = path.parent().unwrap_or_else(VfsPath::root);
            walk(fs, parent, vec![Cow::Borrowed(name)], follow, path, false).map(Cow::Owned)
        }
        Some(_) => Ok(Cow::Borrowed(path)),
        None => walk(
            fs,
            VfsPath::root(),
            path.components().rev().map(Cow::Borrowed).collect(),
            follow,
            path,
            false,
        )
        .map(Cow::Owned),
    }
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
    walk(
        fs,
        start,
        rest.rev().map(Cow::Borrowed).collect(),
        follow,
        asked,
        true,
    )
}

/// Whether `todo` (reversed) can be looked up in one probe from a resolved prefix: it names
/// at least two components (one is a single step anyway), none `..` (which depends on what
/// the prefix turns out to be), and it does not end in `.` or an empty component (which
/// make the last name a directory to follow).
fn fast_candidate(todo: &[Cow<'_, str>]) -> bool {
    let Some(last) = todo.first() else {
        return false;
    };
    if matches!(last.as_ref(), "" | ".") {
        return false;
    }
    let mut names = 0usize;
    for c in todo {
        match c.as_ref() {
            "" | "." => {}
            ".." => return false,
            _ => names += 1,
        }
    }
    names >= 2
}

/// The component walk. `todo` holds the components still to walk in reverse, so that `pop`
/// yields the next one; link targets are pushed raw, so their `.` and `..` are applied
/// against the resolved prefix. With `try_fast`, the remaining path is first tried in one
/// [`FileSystem::node_lookup`] probe; that is tried again after each symlink followed.
fn walk<F: FileSystem + ?Sized>(
    fs: &F,
    start: VfsPath,
    mut todo: Vec<Cow<'_, str>>,
    follow: Follow,
    asked: &VfsPath,
    mut try_fast: bool,
) -> Result<VfsPath> {
    let mut cur = start;
    let mut hops = 0u32;
    // Once a link target brought a NUL, no shortcut: the walk must reach it and refuse it.
    let mut nul = false;
    // How many `..` are pending in `todo` (they only come from link targets).
    let mut dotdots = todo.iter().filter(|c| *c == "..").count();
    loop {
        if try_fast && !nul && fast_candidate(&todo) {
            let candidate = cur.with_components(
                todo.iter()
                    .rev()
                    .map(AsRef::as_ref)
                    .filter(|c| !matches!(*c, "" | ".")),
            );
            match fs.node_lookup(&candidate) {
                Some(Some(FileType::Symlink)) if follow == Follow::All => {
                    // Every parent is a real directory: continue at the final link.
                    let name = candidate.file_name().unwrap_or_default().to_owned();
                    cur = candidate.parent().unwrap_or_else(VfsPath::root);
                    todo.clear();
                    todo.push(Cow::Owned(name));
                }
                Some(_) => return Ok(candidate),
                None => {}
            }
        }
        try_fast = false;
        let Some(name) = todo.pop() else { break };
        match name.as_ref() {
            "" | "." => continue,
            ".." => {
                cur = cur.parent().unwrap_or_else(VfsPath::root);
                // Past the last `..`, the rest may be looked up at once.
                dotdots = dotdots.saturating_sub(1);
                try_fast = dotdots == 0;
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
                nul |= target.contains('\0');
                dotdots += target.split('/').filter(|c| *c == "..").count();
                todo.extend(target.split('/').rev().map(|c| Cow::Owned(c.to_owned())));
                try_fast = true;
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

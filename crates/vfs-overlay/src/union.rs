//! `Union`: filesystems mounted at arbitrary, nested paths.
//!
//! The mount table is a trie keyed by path component. Looking a path up walks the trie as
//! far as the path goes, remembering the deepest node that has a filesystem: that mount
//! serves the path. If the walk consumed the whole path, the path is a mount point or an
//! ancestor of one, and it must look like a directory whatever the covering filesystem has
//! there, so that the mounts below stay reachable.
//!
//! The union implements only the `node_*` primitives; symlinks are then resolved by the
//! shared resolver against the union itself, so a link inside one mount can point into
//! another and `..` stops at the union's `/`, never at a mount's.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use bytes::Bytes;

use crate::error::{Result, VfsError};
use crate::fs::{DirEntry, FileReader, FileSystem, FileType, Metadata, NodeId};
use crate::path::VfsPath;

/// What [`Union::mount`] does when something is already mounted at the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountPolicy {
    /// Refuse with [`VfsError::AlreadyMounted`].
    Fail,
    /// Leave the existing mount in place and drop the new one.
    KeepExisting,
    /// Put the new filesystem in place of the old one.
    Replace,
}

/// What [`Union::mount`] did.
#[derive(Debug, Clone)]
pub enum MountOutcome {
    /// Nothing was mounted there before.
    Mounted,
    /// Something was, and [`MountPolicy::KeepExisting`] kept it.
    KeptExisting,
    /// Something was, and [`MountPolicy::Replace`] swapped it out; here it is.
    Replaced(Arc<dyn FileSystem>),
}

#[derive(Default)]
struct MountNode {
    fs: Option<Arc<dyn FileSystem>>,
    children: BTreeMap<String, MountNode>,
}

/// Where a union path lands.
struct Located {
    /// The deepest mount covering the path, and the path inside it.
    mount: Option<(VfsPath, Arc<dyn FileSystem>, VfsPath)>,
    /// The path is a mount point or an ancestor of one: it is shown as a directory.
    in_trie: bool,
    /// Names of the mount points directly below the path.
    child_mounts: Vec<String>,
}

impl Located {
    /// Whether the path is strictly above its mount's root yet has mounts below it: the
    /// covering filesystem may have anything there (or nothing), but it shows as a directory.
    fn is_shadowing(&self, path: &VfsPath) -> bool {
        self.in_trie && self.mount.as_ref().is_none_or(|(mp, _, _)| mp != path)
    }
}

/// Filesystems mounted at any depth; deepest mount wins.
///
/// Paths not covered by any mount and not on the way to one do not exist; paths on the way
/// to a mount (when nothing is mounted at `/`, say) are read-only, empty directories.
pub struct Union {
    table: RwLock<MountNode>,
}

impl Default for Union {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Union {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Union")
            .field("mounts", &self.mounts())
            .finish()
    }
}

/// Runs `op` on the mounted filesystem and names union paths in its errors.
fn delegate<T>(mount_path: &VfsPath, result: Result<T>) -> Result<T> {
    result.map_err(|e| e.map_paths(|p| mount_path.concat(&p)))
}

impl Union {
    /// An empty union: nothing mounted, `/` is an empty read-only directory.
    pub fn new() -> Self {
        Union {
            table: RwLock::new(MountNode::default()),
        }
    }

    fn table(&self) -> std::sync::RwLockReadGuard<'_, MountNode> {
        self.table
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Mounts `fs` at `at`, which need not exist in any other mount.
    ///
    /// # Errors
    /// [`VfsError::AlreadyMounted`] under [`MountPolicy::Fail`] if `at` has a mount.
    pub fn mount(
        &self,
        at: &VfsPath,
        fs: Arc<dyn FileSystem>,
        policy: MountPolicy,
    ) -> Result<MountOutcome> {
        let mut table = self
            .table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut node = &mut *table;
        for name in at.components() {
            node = node.children.entry(name.to_owned()).or_default();
        }
        match (node.fs.take(), policy) {
            (None, _) => {
                node.fs = Some(fs);
                Ok(MountOutcome::Mounted)
            }
            (Some(old), MountPolicy::Fail) => {
                node.fs = Some(old);
                Err(VfsError::AlreadyMounted(at.clone()))
            }
            (Some(old), MountPolicy::KeepExisting) => {
                node.fs = Some(old);
                Ok(MountOutcome::KeptExisting)
            }
            (Some(old), MountPolicy::Replace) => {
                node.fs = Some(fs);
                Ok(MountOutcome::Replaced(old))
            }
        }
    }

    /// Removes the mount at `at` (mounts below it stay) and returns it.
    pub fn unmount(&self, at: &VfsPath) -> Option<Arc<dyn FileSystem>> {
        let mut table = self
            .table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let names: Vec<&str> = at.components().collect();
        let mut node = &mut *table;
        for name in &names {
            node = node.children.get_mut(*name)?;
        }
        let fs = node.fs.take();
        // Prune trie nodes left with neither a mount nor children, deepest first, so they
        // stop showing up as directories.
        for depth in (0..names.len()).rev() {
            let mut parent = &mut *table;
            for name in names.iter().take(depth) {
                match parent.children.get_mut(*name) {
                    Some(n) => parent = n,
                    None => return fs,
                }
            }
            let Some(name) = names.get(depth) else { break };
            match parent.children.get(*name) {
                Some(n) if n.fs.is_none() && n.children.is_empty() => {
                    parent.children.remove(*name);
                }
                _ => break,
            }
        }
        fs
    }

    /// All mount points, sorted.
    pub fn mounts(&self) -> Vec<VfsPath> {
        let table = self.table();
        let mut out = Vec::new();
        // Explicit stack: the table is shallow in practice, but nothing bounds its depth.
        let mut stack = vec![(VfsPath::root(), &*table)];
        while let Some((path, node)) = stack.pop() {
            if node.fs.is_some() {
                out.push(path.clone());
            }
            for (name, child) in &node.children {
                stack.push((path.child(name), child));
            }
        }
        out.sort();
        out
    }

    /// The mount point serving `path` (the deepest mount at or above it), if any. Lexical:
    /// symlinks are not followed.
    pub fn mount_point_of(&self, path: &VfsPath) -> Option<VfsPath> {
        self.locate(path).mount.map(|(mp, _, _)| mp)
    }

    fn locate(&self, path: &VfsPath) -> Located {
        let table = self.table();
        let mut node = &*table;
        let mut cur = VfsPath::root();
        let mut deepest = node.fs.clone().map(|fs| (cur.clone(), fs));
        let mut in_trie = true;
        for name in path.components() {
            match node.children.get(name) {
                Some(child) => {
                    node = child;
                    cur = cur.child(name);
                    if let Some(fs) = &child.fs {
                        deepest = Some((cur.clone(), Arc::clone(fs)));
                    }
                }
                None => {
                    in_trie = false;
                    break;
                }
            }
        }
        let child_mounts = if in_trie {
            node.children.keys().cloned().collect()
        } else {
            Vec::new()
        };
        let mount = deepest.and_then(|(mp, fs)| {
            let rest = path.strip_prefix(&mp)?;
            Some((mp, fs, rest))
        });
        Located {
            mount,
            in_trie,
            child_mounts,
        }
    }

    /// The mount serving a path that is about to be changed. Paths on the way to a mount
    /// are not the covering filesystem's to change; `in_trie_err` says what to report.
    fn writable(
        &self,
        path: &VfsPath,
        in_trie_err: fn(VfsPath) -> VfsError,
    ) -> Result<(VfsPath, Arc<dyn FileSystem>, VfsPath)> {
        let loc = self.locate(path);
        if loc.in_trie {
            return Err(in_trie_err(path.clone()));
        }
        loc.mount.ok_or_else(|| VfsError::ReadOnly(path.clone()))
    }

    /// Attribute changes are allowed on a mount root and on a real directory of the covering
    /// filesystem that a mount point passes through, not on synthetic directories.
    fn attr_target(&self, path: &VfsPath) -> Result<(VfsPath, Arc<dyn FileSystem>, VfsPath)> {
        let loc = self.locate(path);
        let shadowing = loc.is_shadowing(path);
        let (mp, fs, rest) = loc.mount.ok_or_else(|| VfsError::ReadOnly(path.clone()))?;
        if shadowing && !fs.node_metadata(&rest).is_ok_and(|m| m.is_dir()) {
            return Err(VfsError::ReadOnly(path.clone()));
        }
        Ok((mp, fs, rest))
    }
}

impl FileSystem for Union {
    /// Finds the serving mount once and asks it for the rest of the path. Only the
    /// directories the mount table makes (mount points and the paths on the way to them)
    /// are checked here, one by one as the component walk would; a path that is itself in
    /// the table is left to that walk.
    fn node_lookup(&self, path: &VfsPath) -> Option<Option<FileType>> {
        // (end of the prefix in `path`, what is mounted there) for every mount on the way,
        // and the ends of the prefixes the table makes directories without a mount.
        let mut mounts: Vec<(usize, Arc<dyn FileSystem>)> = Vec::new();
        let mut on_the_way: Vec<usize> = Vec::new();
        {
            let table = self.table();
            let mut node = &*table;
            if let Some(fs) = &node.fs {
                mounts.push((0, Arc::clone(fs)));
            }
            let mut end = 0;
            let mut left = false;
            for name in path.components() {
                let Some(child) = node.children.get(name) else {
                    left = true;
                    break;
                };
                end += 1 + name.len();
                node = child;
                match &child.fs {
                    Some(fs) => mounts.push((end, Arc::clone(fs))),
                    None => on_the_way.push(end),
                }
            }
            if !left {
                return None;
            }
        }
        // A mount point is its filesystem's `/`: a directory, or the walk would stop there.
        for (end, fs) in &mounts {
            if *end > 0 && !fs.node_metadata(&VfsPath::root()).is_ok_and(|m| m.is_dir()) {
                return None;
            }
        }
        // A directory on the way to a mount shows as one whatever the covering mount has
        // there, unless the covering mount fails to say (an I/O error, say).
        for end in on_the_way {
            let Some((mp_end, fs)) = mounts.iter().rev().find(|(mp_end, _)| *mp_end < end) else {
                continue;
            };
            let inner = VfsPath::new(path.prefix_str(end)).ok()?.tail(*mp_end);
            match fs.node_metadata(&inner) {
                Ok(_) | Err(VfsError::NotFound(_) | VfsError::NotADirectory(_)) => {}
                Err(_) => return None,
            }
        }
        let (mp_end, fs) = mounts.last()?;
        if *mp_end == 0 {
            fs.node_lookup(path)
        } else {
            fs.node_lookup(&path.tail(*mp_end))
        }
    }

    fn node_metadata(&self, path: &VfsPath) -> Result<Metadata> {
        let loc = self.locate(path);
        let shadowing = loc.is_shadowing(path);
        let Some((mp, fs, rest)) = loc.mount else {
            return if loc.in_trie {
                Ok(Metadata::synthetic_dir())
            } else {
                Err(VfsError::NotFound(path.clone()))
            };
        };
        match fs.node_metadata(&rest) {
            Ok(m) if shadowing && !m.is_dir() => Ok(Metadata::synthetic_dir()),
            Err(VfsError::NotFound(_) | VfsError::NotADirectory(_)) if shadowing => {
                Ok(Metadata::synthetic_dir())
            }
            other => delegate(&mp, other),
        }
    }

    fn node_read_dir(&self, path: &VfsPath) -> Result<Vec<DirEntry>> {
        let loc = self.locate(path);
        let shadowing = loc.is_shadowing(path);
        let own = match &loc.mount {
            Some((mp, fs, rest)) => match fs.node_read_dir(rest) {
                Ok(entries) => entries,
                Err(VfsError::NotFound(_) | VfsError::NotADirectory(_)) if shadowing => Vec::new(),
                Err(e) => return delegate(mp, Err(e)),
            },
            None if loc.in_trie => Vec::new(),
            None => return Err(VfsError::NotFound(path.clone())),
        };
        // Mount points replace same-named entries of the covering filesystem.
        let mut merged: BTreeMap<String, FileType> =
            own.into_iter().map(|e| (e.name, e.kind)).collect();
        for name in loc.child_mounts {
            merged.insert(name, FileType::Dir);
        }
        Ok(merged
            .into_iter()
            .map(|(name, kind)| DirEntry { name, kind })
            .collect())
    }

    fn node_read_link(&self, path: &VfsPath) -> Result<String> {
        let loc = self.locate(path);
        match loc.mount {
            _ if loc.in_trie => Err(VfsError::NotASymlink(path.clone())),
            Some((mp, fs, rest)) => delegate(&mp, fs.node_read_link(&rest)),
            None => Err(VfsError::NotFound(path.clone())),
        }
    }

    fn node_read_all(&self, path: &VfsPath) -> Result<Bytes> {
        let loc = self.locate(path);
        match loc.mount {
            _ if loc.in_trie => Err(VfsError::IsADirectory(path.clone())),
            Some((mp, fs, rest)) => delegate(&mp, fs.node_read_all(&rest)),
            None => Err(VfsError::NotFound(path.clone())),
        }
    }

    fn node_open(&self, path: &VfsPath) -> Result<FileReader> {
        let loc = self.locate(path);
        match loc.mount {
            _ if loc.in_trie => Err(VfsError::IsADirectory(path.clone())),
            Some((mp, fs, rest)) => delegate(&mp, fs.node_open(&rest)),
            None => Err(VfsError::NotFound(path.clone())),
        }
    }

    fn node_id(&self, path: &VfsPath) -> Option<NodeId> {
        let loc = self.locate(path);
        match loc.mount {
            _ if loc.in_trie => None,
            // The same filesystem may be mounted twice; its ids are kept apart per mount.
            Some((mp, fs, rest)) => Some(fs.node_id(&rest)?.scoped(mp.as_str())),
            None => None,
        }
    }

    fn node_backing_file(&self, path: &VfsPath) -> Result<Option<std::fs::File>> {
        let loc = self.locate(path);
        match loc.mount {
            _ if loc.in_trie => Err(VfsError::IsADirectory(path.clone())),
            Some((mp, fs, rest)) => delegate(&mp, fs.node_backing_file(&rest)),
            None => Err(VfsError::NotFound(path.clone())),
        }
    }

    fn node_host_range(&self, path: &VfsPath) -> Result<Option<crate::HostRange>> {
        let loc = self.locate(path);
        match loc.mount {
            _ if loc.in_trie => Err(VfsError::IsADirectory(path.clone())),
            Some((mp, fs, rest)) => delegate(&mp, fs.node_host_range(&rest)),
            None => Err(VfsError::NotFound(path.clone())),
        }
    }

    fn node_read_at(&self, path: &VfsPath, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let loc = self.locate(path);
        match loc.mount {
            _ if loc.in_trie => Err(VfsError::IsADirectory(path.clone())),
            Some((mp, fs, rest)) => delegate(&mp, fs.node_read_at(&rest, offset, buf)),
            None => Err(VfsError::NotFound(path.clone())),
        }
    }

    fn node_write_file(&self, path: &VfsPath, data: Bytes) -> Result<()> {
        let (mp, fs, rest) = self.writable(path, VfsError::IsADirectory)?;
        delegate(&mp, fs.node_write_file(&rest, data))
    }

    fn node_set_len(&self, path: &VfsPath, len: u64) -> Result<()> {
        let (mp, fs, rest) = self.writable(path, VfsError::IsADirectory)?;
        delegate(&mp, fs.node_set_len(&rest, len))
    }

    fn node_create_dir(&self, path: &VfsPath) -> Result<()> {
        let (mp, fs, rest) = self.writable(path, VfsError::AlreadyExists)?;
        delegate(&mp, fs.node_create_dir(&rest))
    }

    fn node_remove(&self, path: &VfsPath) -> Result<()> {
        let (mp, fs, rest) = self.writable(path, VfsError::Busy)?;
        delegate(&mp, fs.node_remove(&rest))
    }

    fn node_remove_dir_all(&self, path: &VfsPath) -> Result<()> {
        let (mp, fs, rest) = self.writable(path, VfsError::Busy)?;
        delegate(&mp, fs.node_remove_dir_all(&rest))
    }

    fn node_rename(&self, from: &VfsPath, to: &VfsPath) -> Result<()> {
        let (from_mp, fs, from_rest) = self.writable(from, VfsError::Busy)?;
        let (to_mp, _, to_rest) = self.writable(to, VfsError::Busy)?;
        if from_mp != to_mp {
            return Err(VfsError::CrossDevice {
                from: from.clone(),
                to: to.clone(),
            });
        }
        delegate(&from_mp, fs.node_rename(&from_rest, &to_rest))
    }

    fn node_symlink(&self, target: &str, path: &VfsPath) -> Result<()> {
        let (mp, fs, rest) = self.writable(path, VfsError::AlreadyExists)?;
        delegate(&mp, fs.node_symlink(target, &rest))
    }

    fn node_hard_link(&self, existing: &VfsPath, new: &VfsPath) -> Result<()> {
        let (from_mp, fs, from_rest) = self.writable(existing, |p| VfsError::InvalidOperation {
            path: p,
            reason: "cannot hard-link a directory",
        })?;
        let (to_mp, _, to_rest) = self.writable(new, VfsError::AlreadyExists)?;
        if from_mp != to_mp {
            return Err(VfsError::CrossDevice {
                from: existing.clone(),
                to: new.clone(),
            });
        }
        delegate(&from_mp, fs.node_hard_link(&from_rest, &to_rest))
    }

    fn node_set_mode(&self, path: &VfsPath, mode: u32) -> Result<()> {
        let (mp, fs, rest) = self.attr_target(path)?;
        delegate(&mp, fs.node_set_mode(&rest, mode))
    }

    fn node_set_owner(&self, path: &VfsPath, uid: u32, gid: u32) -> Result<()> {
        let (mp, fs, rest) = self.attr_target(path)?;
        delegate(&mp, fs.node_set_owner(&rest, uid, gid))
    }

    fn node_set_mtime(&self, path: &VfsPath, mtime: SystemTime) -> Result<()> {
        let (mp, fs, rest) = self.attr_target(path)?;
        delegate(&mp, fs.node_set_mtime(&rest, mtime))
    }
}

//! `MemFs`: a writable in-memory filesystem.
//!
//! A tree of nodes behind one `RwLock`: lookups are a walk down `BTreeMap`s (so listings
//! come out sorted for free), and structural changes are simple because one lock covers
//! the whole tree. File contents are `Bytes`, so reads are reference-count bumps. A regular
//! file's inode (content and attributes) sits behind an `Arc`, which is what lets several
//! names share it as hardlinks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::SystemTime;

use bytes::Bytes;

use crate::error::{Result, VfsError};
use crate::fs::{DirEntry, FileSystem, FileType, Metadata, NodeId};
use crate::path::VfsPath;

const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;
const SYMLINK_MODE: u32 = 0o777;

#[derive(Debug, Clone, Copy)]
struct Attrs {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: SystemTime,
}

impl Attrs {
    fn new(mode: u32) -> Self {
        Attrs {
            mode,
            uid: 0,
            gid: 0,
            mtime: SystemTime::now(),
        }
    }
}

#[derive(Debug)]
struct FileInode {
    attrs: Attrs,
    data: Bytes,
}

enum Node {
    File(Arc<Mutex<FileInode>>),
    Dir {
        attrs: Attrs,
        entries: BTreeMap<String, Node>,
    },
    Symlink {
        attrs: Attrs,
        target: String,
    },
}

/// A poisoned lock only means another thread panicked mid-operation; every operation
/// here leaves the tree consistent before it can panic, so the data is still usable.
fn lock(inode: &Mutex<FileInode>) -> MutexGuard<'_, FileInode> {
    inode
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The derived drop would recurse once per directory level, and a hostile archive can nest
/// thousands of them; this drains the tree with an explicit stack instead.
impl Drop for Node {
    fn drop(&mut self) {
        let Node::Dir { entries, .. } = self else {
            return;
        };
        let mut stack = vec![std::mem::take(entries)];
        while let Some(map) = stack.pop() {
            for (_, mut child) in map {
                if let Node::Dir { entries, .. } = &mut child
                    && !entries.is_empty()
                {
                    stack.push(std::mem::take(entries));
                }
            }
        }
    }
}

impl Node {
    fn new_dir() -> Node {
        Node::Dir {
            attrs: Attrs::new(DIR_MODE),
            entries: BTreeMap::new(),
        }
    }

    fn kind(&self) -> FileType {
        match self {
            Node::File(_) => FileType::File,
            Node::Dir { .. } => FileType::Dir,
            Node::Symlink { .. } => FileType::Symlink,
        }
    }

    fn metadata(&self) -> Metadata {
        let (attrs, size, nlink) = match self {
            Node::File(inode) => {
                let inode_ref = lock(inode);
                // Every `Arc` clone is one name in the tree: the tree never keeps others.
                (
                    inode_ref.attrs,
                    inode_ref.data.len() as u64,
                    Arc::strong_count(inode) as u64,
                )
            }
            Node::Dir { attrs, entries } => {
                let subdirs = entries
                    .values()
                    .filter(|n| matches!(n, Node::Dir { .. }))
                    .count();
                (*attrs, 0, 2 + subdirs as u64)
            }
            Node::Symlink { attrs, target } => (*attrs, target.len() as u64, 1),
        };
        Metadata {
            kind: self.kind(),
            mode: attrs.mode,
            uid: attrs.uid,
            gid: attrs.gid,
            mtime: attrs.mtime,
            size,
            nlink,
        }
    }

    fn update_attrs(&mut self, f: impl FnOnce(&mut Attrs)) {
        match self {
            Node::File(inode) => f(&mut lock(inode).attrs),
            Node::Dir { attrs, .. } | Node::Symlink { attrs, .. } => f(attrs),
        }
    }
}

/// A writable in-memory filesystem with symlinks and hardlinks.
///
/// New files get mode 0o644, directories 0o755, owner 0:0 and the current time; change them
/// with [`FileSystem::set_mode`], [`FileSystem::set_owner`] and [`FileSystem::set_mtime`].
pub struct MemFs {
    root: RwLock<Node>,
}

impl std::fmt::Debug for MemFs {
    // The tree can be arbitrarily deep and large; printing it is neither safe nor useful.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemFs").finish_non_exhaustive()
    }
}

impl Default for MemFs {
    fn default() -> Self {
        Self::new()
    }
}

impl MemFs {
    /// An empty filesystem: just `/`.
    pub fn new() -> Self {
        MemFs {
            root: RwLock::new(Node::new_dir()),
        }
    }

    fn read<T>(&self, f: impl FnOnce(&Node) -> Result<T>) -> Result<T> {
        let root = self
            .root
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&root)
    }

    fn write<T>(&self, f: impl FnOnce(&mut Node) -> Result<T>) -> Result<T> {
        let mut root = self
            .root
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut root)
    }
}

/// Walks to `path` without following anything: node paths are already resolved.
fn lookup<'a>(root: &'a Node, path: &VfsPath) -> Result<&'a Node> {
    let mut node = root;
    for name in path.components() {
        node = match node {
            Node::Dir { entries, .. } => entries
                .get(name)
                .ok_or_else(|| VfsError::NotFound(path.clone()))?,
            _ => return Err(VfsError::NotADirectory(path.clone())),
        };
    }
    Ok(node)
}

fn lookup_mut<'a>(root: &'a mut Node, path: &VfsPath) -> Result<&'a mut Node> {
    let mut node = root;
    for name in path.components() {
        node = match node {
            Node::Dir { entries, .. } => entries
                .get_mut(name)
                .ok_or_else(|| VfsError::NotFound(path.clone()))?,
            _ => return Err(VfsError::NotADirectory(path.clone())),
        };
    }
    Ok(node)
}

/// The entries of `path`'s parent directory and `path`'s own name. `/` has no parent,
/// which every caller reports as `reason`.
fn parent_entries<'a, 'p>(
    root: &'a mut Node,
    path: &'p VfsPath,
    reason: &'static str,
) -> Result<(&'a mut BTreeMap<String, Node>, &'p str)> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(VfsError::InvalidOperation {
            path: path.clone(),
            reason,
        });
    };
    match lookup_mut(root, &parent) {
        Ok(Node::Dir { entries, .. }) => Ok((entries, name)),
        Ok(_) => Err(VfsError::NotADirectory(parent)),
        Err(VfsError::NotFound(_)) => Err(VfsError::NotFound(parent)),
        Err(e) => Err(e),
    }
}

/// The read-only half of [`parent_entries`]: whether `path`'s parent is a directory.
fn check_parent_dir(root: &Node, path: &VfsPath) -> Result<()> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    match lookup(root, &parent) {
        Ok(Node::Dir { .. }) => Ok(()),
        Ok(_) => Err(VfsError::NotADirectory(parent)),
        Err(VfsError::NotFound(_)) => Err(VfsError::NotFound(parent)),
        Err(e) => Err(e),
    }
}

/// Inserts a new entry, refusing to replace anything.
fn create(root: &mut Node, path: &VfsPath, node: Node) -> Result<()> {
    let (entries, name) = parent_entries(root, path, "/ already exists")?;
    if entries.contains_key(name) {
        return Err(VfsError::AlreadyExists(path.clone()));
    }
    entries.insert(name.to_owned(), node);
    Ok(())
}

impl FileSystem for MemFs {
    fn node_metadata(&self, path: &VfsPath) -> Result<Metadata> {
        self.read(|root| Ok(lookup(root, path)?.metadata()))
    }

    fn node_read_dir(&self, path: &VfsPath) -> Result<Vec<DirEntry>> {
        self.read(|root| match lookup(root, path)? {
            Node::Dir { entries, .. } => Ok(entries
                .iter()
                .map(|(name, n)| DirEntry {
                    name: name.clone(),
                    kind: n.kind(),
                })
                .collect()),
            _ => Err(VfsError::NotADirectory(path.clone())),
        })
    }

    fn node_read_link(&self, path: &VfsPath) -> Result<String> {
        self.read(|root| match lookup(root, path)? {
            Node::Symlink { target, .. } => Ok(target.clone()),
            _ => Err(VfsError::NotASymlink(path.clone())),
        })
    }

    fn node_read_all(&self, path: &VfsPath) -> Result<Bytes> {
        self.read(|root| match lookup(root, path)? {
            Node::File(inode) => Ok(lock(inode).data.clone()),
            Node::Dir { .. } => Err(VfsError::IsADirectory(path.clone())),
            Node::Symlink { .. } => Err(VfsError::InvalidOperation {
                path: path.clone(),
                reason: "is a symlink; read it through a resolving call",
            }),
        })
    }

    fn node_id(&self, path: &VfsPath) -> Option<NodeId> {
        // Every name of a file holds a clone of one `Arc`, so its address is the inode; it
        // stays unique for as long as any name keeps the inode alive.
        self.read(|root| match lookup(root, path)? {
            Node::File(inode) => Ok(Some(NodeId::new(&[Arc::as_ptr(inode) as usize as u64]))),
            _ => Ok(None),
        })
        .ok()
        .flatten()
    }

    fn node_write_file(&self, path: &VfsPath, data: Bytes) -> Result<()> {
        self.write(|root| {
            let (entries, name) = parent_entries(root, path, "/ is a directory")?;
            match entries.get_mut(name) {
                // Writing an existing file changes its inode, so every hardlink sees it.
                Some(Node::File(inode)) => {
                    let mut inode = lock(inode);
                    inode.data = data;
                    inode.attrs.mtime = SystemTime::now();
                    Ok(())
                }
                Some(Node::Dir { .. }) => Err(VfsError::IsADirectory(path.clone())),
                Some(Node::Symlink { .. }) => Err(VfsError::InvalidOperation {
                    path: path.clone(),
                    reason: "is a symlink; write through a resolving call",
                }),
                None => {
                    let inode = FileInode {
                        attrs: Attrs::new(FILE_MODE),
                        data,
                    };
                    entries.insert(name.to_owned(), Node::File(Arc::new(Mutex::new(inode))));
                    Ok(())
                }
            }
        })
    }

    fn node_set_len(&self, path: &VfsPath, len: u64) -> Result<()> {
        let too_big = || VfsError::InvalidOperation {
            path: path.clone(),
            reason: "length does not fit in memory",
        };
        let len = usize::try_from(len).map_err(|_| too_big())?;
        self.write(|root| match lookup_mut(root, path)? {
            Node::File(inode) => {
                let mut inode = lock(inode);
                let cur = inode.data.len();
                if len <= cur {
                    // Shrinking is a slice of the same buffer.
                    inode.data = inode.data.slice(..len);
                } else {
                    // Fallible reservation: a huge length is an error, not an abort.
                    let mut grown = Vec::new();
                    grown.try_reserve_exact(len).map_err(|_| too_big())?;
                    grown.extend_from_slice(&inode.data);
                    grown.resize(len, 0);
                    inode.data = Bytes::from(grown);
                }
                inode.attrs.mtime = SystemTime::now();
                Ok(())
            }
            Node::Dir { .. } => Err(VfsError::IsADirectory(path.clone())),
            Node::Symlink { .. } => Err(VfsError::InvalidOperation {
                path: path.clone(),
                reason: "is a symlink",
            }),
        })
    }

    fn node_create_dir(&self, path: &VfsPath) -> Result<()> {
        self.write(|root| create(root, path, Node::new_dir()))
    }

    fn node_remove(&self, path: &VfsPath) -> Result<()> {
        self.write(|root| {
            let (entries, name) = parent_entries(root, path, "cannot remove /")?;
            match entries.get(name) {
                None => Err(VfsError::NotFound(path.clone())),
                Some(Node::Dir {
                    entries: children, ..
                }) if !children.is_empty() => Err(VfsError::DirectoryNotEmpty(path.clone())),
                Some(_) => {
                    entries.remove(name);
                    Ok(())
                }
            }
        })
    }

    fn node_remove_dir_all(&self, path: &VfsPath) -> Result<()> {
        self.write(|root| {
            let (entries, name) = parent_entries(root, path, "cannot remove /")?;
            entries
                .remove(name)
                .map(drop)
                .ok_or_else(|| VfsError::NotFound(path.clone()))
        })
    }

    fn node_rename(&self, from: &VfsPath, to: &VfsPath) -> Result<()> {
        self.write(|root| {
            let src = lookup(root, from)?;
            if from.is_root() || to.is_root() {
                return Err(VfsError::InvalidOperation {
                    path: from.clone(),
                    reason: "cannot rename to or from /",
                });
            }
            if from == to {
                return Ok(());
            }
            let src_is_dir = matches!(src, Node::Dir { .. });
            // Same order of checks as Linux: the destination's directory must exist, then
            // neither path may contain the other, and only then do the kinds matter.
            check_parent_dir(root, to)?;
            if to.starts_with(from) {
                return Err(VfsError::InvalidOperation {
                    path: from.clone(),
                    reason: "cannot move a directory into itself",
                });
            }
            if from.starts_with(to) {
                return Err(VfsError::DirectoryNotEmpty(to.clone()));
            }
            match lookup(root, to) {
                Ok(Node::Dir { entries, .. }) if src_is_dir => {
                    if !entries.is_empty() {
                        return Err(VfsError::DirectoryNotEmpty(to.clone()));
                    }
                }
                Ok(Node::Dir { .. }) => return Err(VfsError::IsADirectory(to.clone())),
                Ok(_) if src_is_dir => return Err(VfsError::NotADirectory(to.clone())),
                // Two names of one inode: rename(2) does nothing.
                Ok(Node::File(dst)) if matches!(src, Node::File(s) if Arc::ptr_eq(s, dst)) => {
                    return Ok(());
                }
                Ok(_) | Err(VfsError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
            // The destination's directory was checked above, so nothing can fail between
            // taking the node out and putting it back in.
            let (entries, name) = parent_entries(root, from, "cannot rename /")?;
            let node = entries
                .remove(name)
                .ok_or_else(|| VfsError::NotFound(from.clone()))?;
            let (entries, name) = parent_entries(root, to, "cannot rename to /")?;
            entries.insert(name.to_owned(), node);
            Ok(())
        })
    }

    fn node_symlink(&self, target: &str, path: &VfsPath) -> Result<()> {
        let node = Node::Symlink {
            attrs: Attrs::new(SYMLINK_MODE),
            target: target.to_owned(),
        };
        self.write(|root| create(root, path, node))
    }

    fn node_hard_link(&self, existing: &VfsPath, new: &VfsPath) -> Result<()> {
        self.write(|root| {
            let src = lookup(root, existing)?;
            // As Linux: problems with the new name come before refusing a directory.
            check_parent_dir(root, new)?;
            if lookup(root, new).is_ok() {
                return Err(VfsError::AlreadyExists(new.clone()));
            }
            let node = match src {
                Node::File(inode) => Node::File(Arc::clone(inode)),
                // A symlink has no content to share and is never modified in place, so a
                // copy of it behaves exactly like a second name.
                Node::Symlink { attrs, target } => Node::Symlink {
                    attrs: *attrs,
                    target: target.clone(),
                },
                Node::Dir { .. } => {
                    return Err(VfsError::InvalidOperation {
                        path: existing.clone(),
                        reason: "cannot hard-link a directory",
                    });
                }
            };
            create(root, new, node)
        })
    }

    fn node_set_mode(&self, path: &VfsPath, mode: u32) -> Result<()> {
        self.write(|root| {
            lookup_mut(root, path)?.update_attrs(|a| a.mode = mode & 0o7777);
            Ok(())
        })
    }

    fn node_set_owner(&self, path: &VfsPath, uid: u32, gid: u32) -> Result<()> {
        self.write(|root| {
            lookup_mut(root, path)?.update_attrs(|a| {
                a.uid = uid;
                a.gid = gid;
            });
            Ok(())
        })
    }

    fn node_set_mtime(&self, path: &VfsPath, mtime: SystemTime) -> Result<()> {
        self.write(|root| {
            lookup_mut(root, path)?.update_attrs(|a| a.mtime = mtime);
            Ok(())
        })
    }
}

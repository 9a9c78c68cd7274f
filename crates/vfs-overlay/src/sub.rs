//! `SubFs`: one directory of a filesystem, shown as a filesystem of its own.
//!
//! This is the `path` of an fs mapping: mount `/share/data` of a volume at `/data` by
//! mounting `SubFs::new(volume, "/share/data")` there. Paths are simply prefixed with the
//! directory; symlinks are resolved by whoever uses the `SubFs` (a union, say), so an
//! absolute link inside it means the root of that user's tree and nothing can lead out of
//! the directory into the rest of the volume.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::error::{Result, VfsError};
use crate::fs::{DirEntry, FileReader, FileSystem, FileType, Metadata, NodeId};
use crate::path::VfsPath;

/// A directory of another filesystem, rooted at `/`.
#[derive(Debug)]
pub struct SubFs {
    inner: Arc<dyn FileSystem>,
    base: VfsPath,
}

impl SubFs {
    /// Shows `dir` of `inner` as `/`. Symlinks on the way to `dir` are resolved once, here.
    ///
    /// # Errors
    /// [`VfsError::NotFound`] or [`VfsError::NotADirectory`] if `dir` is not a directory.
    pub fn new(inner: Arc<dyn FileSystem>, dir: &VfsPath) -> Result<Self> {
        let base = inner.canonicalize(dir)?;
        if !inner.node_metadata(&base)?.is_dir() {
            return Err(VfsError::NotADirectory(dir.clone()));
        }
        Ok(SubFs { inner, base })
    }

    /// The directory of the inner filesystem that is shown as `/`.
    pub fn base(&self) -> &VfsPath {
        &self.base
    }

    fn inner_path(&self, path: &VfsPath) -> VfsPath {
        self.base.concat(path)
    }

    /// Errors from the inner filesystem name its paths; give back ours.
    fn outer<T>(&self, result: Result<T>) -> Result<T> {
        result.map_err(|e| e.map_paths(|p| p.strip_prefix(&self.base).unwrap_or(p)))
    }
}

impl FileSystem for SubFs {
    fn node_metadata(&self, path: &VfsPath) -> Result<Metadata> {
        self.outer(self.inner.node_metadata(&self.inner_path(path)))
    }
    fn node_read_dir(&self, path: &VfsPath) -> Result<Vec<DirEntry>> {
        self.outer(self.inner.node_read_dir(&self.inner_path(path)))
    }
    fn node_lookup(&self, path: &VfsPath) -> Option<Option<FileType>> {
        // The base's own components were resolved to real directories when it was made,
        // and the component walk does not check them again either.
        self.inner.node_lookup(&self.inner_path(path))
    }
    fn node_read_link(&self, path: &VfsPath) -> Result<String> {
        self.outer(self.inner.node_read_link(&self.inner_path(path)))
    }
    fn node_is_implied_dir(&self, path: &VfsPath) -> bool {
        self.inner.node_is_implied_dir(&self.inner_path(path))
    }
    fn node_read_all(&self, path: &VfsPath) -> Result<Bytes> {
        self.outer(self.inner.node_read_all(&self.inner_path(path)))
    }
    fn node_open(&self, path: &VfsPath) -> Result<FileReader> {
        self.outer(self.inner.node_open(&self.inner_path(path)))
    }
    fn node_id(&self, path: &VfsPath) -> Option<NodeId> {
        self.inner.node_id(&self.inner_path(path))
    }
    fn node_backing_file(&self, path: &VfsPath) -> Result<Option<std::fs::File>> {
        self.outer(self.inner.node_backing_file(&self.inner_path(path)))
    }
    fn node_host_range(&self, path: &VfsPath) -> Result<Option<crate::HostRange>> {
        self.outer(self.inner.node_host_range(&self.inner_path(path)))
    }
    fn node_read_at(&self, path: &VfsPath, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.outer(self.inner.node_read_at(&self.inner_path(path), offset, buf))
    }
    fn node_write_file(&self, path: &VfsPath, data: Bytes) -> Result<()> {
        self.outer(self.inner.node_write_file(&self.inner_path(path), data))
    }
    fn node_set_len(&self, path: &VfsPath, len: u64) -> Result<()> {
        self.outer(self.inner.node_set_len(&self.inner_path(path), len))
    }
    fn node_create_dir(&self, path: &VfsPath) -> Result<()> {
        self.outer(self.inner.node_create_dir(&self.inner_path(path)))
    }
    fn node_remove(&self, path: &VfsPath) -> Result<()> {
        if path.is_root() {
            return Err(VfsError::Busy(path.clone()));
        }
        self.outer(self.inner.node_remove(&self.inner_path(path)))
    }
    fn node_remove_dir_all(&self, path: &VfsPath) -> Result<()> {
        if path.is_root() {
            return Err(VfsError::Busy(path.clone()));
        }
        self.outer(self.inner.node_remove_dir_all(&self.inner_path(path)))
    }
    fn node_rename(&self, from: &VfsPath, to: &VfsPath) -> Result<()> {
        if from.is_root() || to.is_root() {
            return Err(VfsError::Busy(VfsPath::root()));
        }
        let (f, t) = (self.inner_path(from), self.inner_path(to));
        self.outer(self.inner.node_rename(&f, &t))
    }
    fn node_symlink(&self, target: &str, path: &VfsPath) -> Result<()> {
        self.outer(self.inner.node_symlink(target, &self.inner_path(path)))
    }
    fn node_hard_link(&self, existing: &VfsPath, new: &VfsPath) -> Result<()> {
        let (e, n) = (self.inner_path(existing), self.inner_path(new));
        self.outer(self.inner.node_hard_link(&e, &n))
    }
    fn node_set_mode(&self, path: &VfsPath, mode: u32) -> Result<()> {
        self.outer(self.inner.node_set_mode(&self.inner_path(path), mode))
    }
    fn node_set_owner(&self, path: &VfsPath, uid: u32, gid: u32) -> Result<()> {
        self.outer(self.inner.node_set_owner(&self.inner_path(path), uid, gid))
    }
    fn node_set_mtime(&self, path: &VfsPath, mtime: SystemTime) -> Result<()> {
        self.outer(self.inner.node_set_mtime(&self.inner_path(path), mtime))
    }
}

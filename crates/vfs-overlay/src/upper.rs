//! `WritableOverlay`: an [`Overlay`] of read-only layers under a writable in-memory upper
//! layer, with copy-up.
//!
//! Reads prefer the upper layer. A change to something that only the lower layers have
//! first copies it up (with its parent directories and attributes; file content is a
//! `Bytes` clone, not a copy). Deletes of lower entries are remembered in a set of removed
//! paths, which hides the whole lower subtree, and a directory created by `create_dir` is
//! opaque, so a directory deleted and made again does not show its old lower contents.
//!
//! Departures from Linux overlayfs, chosen for simplicity: renaming a directory that has
//! lower contents is [`VfsError::CrossDevice`] (as overlayfs without `redirect_dir`), and
//! copy-up of a lower hardlink breaks the link.

use std::collections::{BTreeMap, HashSet};
use std::sync::{PoisonError, RwLock};
use std::time::SystemTime;

use bytes::Bytes;

use crate::error::{Result, VfsError};
use crate::fs::{DirEntry, FileReader, FileSystem, FileType, Metadata, NodeId};
use crate::mem::MemFs;
use crate::overlay::Overlay;
use crate::path::VfsPath;

#[derive(Debug, Default)]
struct State {
    /// Lower entries deleted through the overlay: each hides its lower subtree.
    removed: HashSet<VfsPath>,
    /// Upper directories that must not show lower children.
    opaque: HashSet<VfsPath>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Upper,
    Lower,
}

/// Read-only layers with a writable upper layer on top.
#[derive(Debug)]
pub struct WritableOverlay {
    lower: Overlay,
    upper: MemFs,
    state: RwLock<State>,
}

impl WritableOverlay {
    /// `lower` with an empty writable layer on top.
    pub fn new(lower: Overlay) -> Self {
        WritableOverlay {
            lower,
            upper: MemFs::new(),
            state: RwLock::new(State::default()),
        }
    }

    /// The upper layer: everything written so far (without the record of deletions).
    pub fn upper(&self) -> &MemFs {
        &self.upper
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the lower layers' entry at `path` (if any) still shows.
    fn lower_visible(&self, state: &State, path: &VfsPath) -> bool {
        let mut cur = VfsPath::root();
        for name in path.components() {
            if state.opaque.contains(&cur) {
                return false;
            }
            cur = cur.child(name);
            if state.removed.contains(&cur) {
                return false;
            }
        }
        self.lower.node_metadata(path).is_ok()
    }

    fn source(&self, state: &State, path: &VfsPath) -> Option<Source> {
        if self.upper.node_metadata(path).is_ok() {
            Some(Source::Upper)
        } else if self.lower_visible(state, path) {
            Some(Source::Lower)
        } else {
            None
        }
    }

    fn merged_metadata(&self, state: &State, path: &VfsPath) -> Result<Metadata> {
        match self.source(state, path) {
            Some(Source::Upper) => self.upper.node_metadata(path),
            Some(Source::Lower) => self.lower.node_metadata(path),
            None => Err(VfsError::NotFound(path.clone())),
        }
    }

    fn merged_read_dir(&self, state: &State, path: &VfsPath) -> Result<Vec<DirEntry>> {
        let mut merged = BTreeMap::new();
        let from_upper = match self.source(state, path) {
            None => return Err(VfsError::NotFound(path.clone())),
            Some(Source::Upper) => {
                for e in self.upper.node_read_dir(path)? {
                    merged.insert(e.name, e.kind);
                }
                true
            }
            Some(Source::Lower) => false,
        };
        let lower_shows = !(from_upper && state.opaque.contains(path))
            && self.lower_visible(state, path)
            && self.lower.node_metadata(path).is_ok_and(|m| m.is_dir());
        if lower_shows {
            for e in self.lower.node_read_dir(path)? {
                if !state.removed.contains(&path.child(&e.name)) {
                    merged.entry(e.name).or_insert(e.kind);
                }
            }
        }
        Ok(merged
            .into_iter()
            .map(|(name, kind)| DirEntry { name, kind })
            .collect())
    }

    fn copy_attrs(&self, path: &VfsPath, meta: &Metadata) -> Result<()> {
        self.upper.node_set_mode(path, meta.mode)?;
        self.upper.node_set_owner(path, meta.uid, meta.gid)?;
        self.upper.node_set_mtime(path, meta.mtime)
    }

    /// Makes every parent of `path` exist in the upper layer.
    fn copy_up_parents(&self, state: &State, path: &VfsPath) -> Result<()> {
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        let mut cur = VfsPath::root();
        for name in parent.components() {
            cur = cur.child(name);
            self.copy_up(state, &cur)?;
        }
        Ok(())
    }

    /// Makes `path` (which must be visible) exist in the upper layer, parents included.
    fn copy_up(&self, state: &State, path: &VfsPath) -> Result<()> {
        match self.source(state, path) {
            Some(Source::Upper) => return Ok(()),
            None => return Err(VfsError::NotFound(path.clone())),
            Some(Source::Lower) => {}
        }
        self.copy_up_parents(state, path)?;
        let meta = self.lower.node_metadata(path)?;
        match meta.kind {
            FileType::File => self
                .upper
                .node_write_file(path, self.lower.node_read_all(path)?)?,
            FileType::Dir => self.upper.node_create_dir(path)?,
            FileType::Symlink => self
                .upper
                .node_symlink(&self.lower.node_read_link(path)?, path)?,
            FileType::Other => {
                return Err(VfsError::InvalidOperation {
                    path: path.clone(),
                    reason: "special files cannot be copied up",
                });
            }
        }
        self.copy_attrs(path, &meta)
    }

    /// Hides whatever the lower layers have at `path`.
    fn hide_lower(&self, state: &mut State, path: &VfsPath) {
        if self.lower_visible(state, path) {
            state.removed.insert(path.clone());
        }
    }
}

impl FileSystem for WritableOverlay {
    fn node_metadata(&self, path: &VfsPath) -> Result<Metadata> {
        self.merged_metadata(&self.read_state(), path)
    }

    fn node_read_dir(&self, path: &VfsPath) -> Result<Vec<DirEntry>> {
        self.merged_read_dir(&self.read_state(), path)
    }

    fn node_read_link(&self, path: &VfsPath) -> Result<String> {
        match self.source(&self.read_state(), path) {
            Some(Source::Upper) => self.upper.node_read_link(path),
            Some(Source::Lower) => self.lower.node_read_link(path),
            None => Err(VfsError::NotFound(path.clone())),
        }
    }

    fn node_read_all(&self, path: &VfsPath) -> Result<Bytes> {
        match self.source(&self.read_state(), path) {
            Some(Source::Upper) => self.upper.node_read_all(path),
            Some(Source::Lower) => self.lower.node_read_all(path),
            None => Err(VfsError::NotFound(path.clone())),
        }
    }

    fn node_open(&self, path: &VfsPath) -> Result<FileReader> {
        match self.source(&self.read_state(), path) {
            Some(Source::Upper) => self.upper.node_open(path),
            Some(Source::Lower) => self.lower.node_open(path),
            None => Err(VfsError::NotFound(path.clone())),
        }
    }

    fn node_id(&self, path: &VfsPath) -> Option<NodeId> {
        match self.source(&self.read_state(), path)? {
            Source::Upper => Some(self.upper.node_id(path)?.scoped("upper")),
            Source::Lower => Some(self.lower.node_id(path)?.scoped("lower")),
        }
    }

    fn node_backing_file(&self, path: &VfsPath) -> Result<Option<std::fs::File>> {
        match self.source(&self.read_state(), path) {
            Some(Source::Upper) => self.upper.node_backing_file(path),
            Some(Source::Lower) => self.lower.node_backing_file(path),
            None => Err(VfsError::NotFound(path.clone())),
        }
    }

    fn node_host_range(&self, path: &VfsPath) -> Result<Option<crate::HostRange>> {
        match self.source(&self.read_state(), path) {
            Some(Source::Upper) => self.upper.node_host_range(path),
            Some(Source::Lower) => self.lower.node_host_range(path),
            None => Err(VfsError::NotFound(path.clone())),
        }
    }

    fn node_read_at(&self, path: &VfsPath, offset: u64, buf: &mut [u8]) -> Result<usize> {
        match self.source(&self.read_state(), path) {
            Some(Source::Upper) => self.upper.node_read_at(path, offset, buf),
            Some(Source::Lower) => self.lower.node_read_at(path, offset, buf),
            None => Err(VfsError::NotFound(path.clone())),
        }
    }

    fn node_write_file(&self, path: &VfsPath, data: Bytes) -> Result<()> {
        let state = self.write_state();
        match self.source(&state, path) {
            Some(_) if self.merged_metadata(&state, path)?.is_dir() => {
                Err(VfsError::IsADirectory(path.clone()))
            }
            Some(_) => {
                // Copy-up first so that mode and owner survive the rewrite.
                self.copy_up(&state, path)?;
                self.upper.node_write_file(path, data)
            }
            None => {
                self.copy_up_parents(&state, path)?;
                self.upper.node_write_file(path, data)
            }
        }
    }

    fn node_set_len(&self, path: &VfsPath, len: u64) -> Result<()> {
        let state = self.write_state();
        self.copy_up(&state, path)?;
        self.upper.node_set_len(path, len)
    }

    fn node_create_dir(&self, path: &VfsPath) -> Result<()> {
        let mut state = self.write_state();
        if self.source(&state, path).is_some() {
            return Err(VfsError::AlreadyExists(path.clone()));
        }
        self.copy_up_parents(&state, path)?;
        self.upper.node_create_dir(path)?;
        state.opaque.insert(path.clone());
        Ok(())
    }

    fn node_remove(&self, path: &VfsPath) -> Result<()> {
        let mut state = self.write_state();
        let meta = self.merged_metadata(&state, path)?;
        if path.is_root() {
            return Err(VfsError::InvalidOperation {
                path: path.clone(),
                reason: "cannot remove /",
            });
        }
        if meta.is_dir() && !self.merged_read_dir(&state, path)?.is_empty() {
            return Err(VfsError::DirectoryNotEmpty(path.clone()));
        }
        if self.source(&state, path) == Some(Source::Upper) {
            self.upper.node_remove(path)?;
        }
        self.hide_lower(&mut state, path);
        Ok(())
    }

    fn node_remove_dir_all(&self, path: &VfsPath) -> Result<()> {
        let mut state = self.write_state();
        if path.is_root() {
            return Err(VfsError::InvalidOperation {
                path: path.clone(),
                reason: "cannot remove /",
            });
        }
        match self.source(&state, path) {
            None => return Err(VfsError::NotFound(path.clone())),
            Some(Source::Upper) => self.upper.node_remove_dir_all(path)?,
            Some(Source::Lower) => {}
        }
        self.hide_lower(&mut state, path);
        Ok(())
    }

    fn node_rename(&self, from: &VfsPath, to: &VfsPath) -> Result<()> {
        let mut state = self.write_state();
        let src = self.merged_metadata(&state, from)?;
        if from == to {
            return Ok(());
        }
        if from.is_root() || to.is_root() {
            return Err(VfsError::InvalidOperation {
                path: from.clone(),
                reason: "cannot rename to or from /",
            });
        }
        // Checks in the order Linux makes them: destination directory, paths containing
        // each other, kinds; the overlay's own refusal comes last, as overlayfs's does.
        if let Some(parent) = to.parent() {
            match self.merged_metadata(&state, &parent) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(VfsError::NotADirectory(parent)),
                Err(e) => return Err(e),
            }
        }
        if to.starts_with(from) {
            return Err(VfsError::InvalidOperation {
                path: from.clone(),
                reason: "cannot move a directory into itself",
            });
        }
        if from.starts_with(to) {
            return Err(VfsError::DirectoryNotEmpty(to.clone()));
        }
        match self.merged_metadata(&state, to) {
            Ok(dst) if src.is_dir() && !dst.is_dir() => {
                return Err(VfsError::NotADirectory(to.clone()));
            }
            Ok(dst) if !src.is_dir() && dst.is_dir() => {
                return Err(VfsError::IsADirectory(to.clone()));
            }
            Ok(dst) if dst.is_dir() && !self.merged_read_dir(&state, to)?.is_empty() => {
                return Err(VfsError::DirectoryNotEmpty(to.clone()));
            }
            Ok(_) | Err(VfsError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        if src.is_dir() && self.lower_visible(&state, from) {
            return Err(VfsError::CrossDevice {
                from: from.clone(),
                to: to.clone(),
            });
        }
        self.copy_up(&state, from)?;
        self.copy_up_parents(&state, to)?;
        self.upper.node_rename(from, to)?;
        self.hide_lower(&mut state, from);
        self.hide_lower(&mut state, to);
        Ok(())
    }

    fn node_symlink(&self, target: &str, path: &VfsPath) -> Result<()> {
        let state = self.write_state();
        if self.source(&state, path).is_some() {
            return Err(VfsError::AlreadyExists(path.clone()));
        }
        self.copy_up_parents(&state, path)?;
        self.upper.node_symlink(target, path)
    }

    fn node_hard_link(&self, existing: &VfsPath, new: &VfsPath) -> Result<()> {
        let state = self.write_state();
        if self.source(&state, new).is_some() {
            return Err(VfsError::AlreadyExists(new.clone()));
        }
        self.copy_up(&state, existing)?;
        self.copy_up_parents(&state, new)?;
        self.upper.node_hard_link(existing, new)
    }

    fn node_set_mode(&self, path: &VfsPath, mode: u32) -> Result<()> {
        let state = self.write_state();
        self.copy_up(&state, path)?;
        self.upper.node_set_mode(path, mode)
    }

    fn node_set_owner(&self, path: &VfsPath, uid: u32, gid: u32) -> Result<()> {
        let state = self.write_state();
        self.copy_up(&state, path)?;
        self.upper.node_set_owner(path, uid, gid)
    }

    fn node_set_mtime(&self, path: &VfsPath, mtime: SystemTime) -> Result<()> {
        let state = self.write_state();
        self.copy_up(&state, path)?;
        self.upper.node_set_mtime(path, mtime)
    }
}

//! `Overlay`: read-only layers stacked with OCI image semantics.
//!
//! The layers are applied once, in manifest order (lowest first), into a flattened table:
//! path → the layer that provides that entry, plus each directory's merged child names.
//! Lookups afterwards are one hash probe, however many layers there are, and reads go
//! straight to the providing layer (so a file's bytes are still that layer's zero-copy
//! `Bytes`, and a hardlink reads its target's content as of its own layer).
//!
//! Rules, per directory of each layer, in this order so that the order of entries inside
//! the layer (the tar order) does not matter:
//! 1. `.wh..wh..opq` hides every child the lower layers gave this directory;
//! 2. `.wh.<name>` hides `<name>` (and its subtree) from the lower layers only;
//! 3. the layer's own entries: a directory over a directory merges and takes the new
//!    attributes (unless the layer only implies it, see
//!    [`FileSystem::node_is_implied_dir`]); anything else replaces what was there, subtree
//!    included.
//!
//! A bare `.wh.`, `.wh..` and `.wh...` are errors. Whiteout entries never show.
//!
//! A layer's hardlink to a file of the layers below ([`FileSystem::lower_hardlinks`]) is
//! another name of that file as the layers below provide it, taken before the layer's own
//! changes apply: it reads the lower layer's bytes at the target's path and shares its
//! [`NodeId`], so [`crate::materialize`] links the two names as `umoci unpack` does. A
//! target that is missing below, or a directory, is [`VfsError::BadLowerHardlink`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Result, VfsError};
use crate::fs::{DirEntry, FileReader, FileSystem, FileType, Footprint, Metadata, NodeId};
use crate::path::VfsPath;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

#[derive(Debug)]
struct FlatNode {
    /// Index of the layer that provides this entry; `None` only for `/` with no layers.
    layer: Option<usize>,
    kind: FileType,
    /// Visible child names with their kinds, so a listing needs no lookup per child.
    children: BTreeMap<String, FileType>,
    /// Where the entry lives in its layer, when that is another path: a hardlink into a
    /// lower layer reads that layer's file at the target's path.
    source: Option<VfsPath>,
}

/// Read-only layers merged with OCI whiteout rules. Writes fail with
/// [`VfsError::ReadOnly`]; put a [`crate::WritableOverlay`] on top to write.
pub struct Overlay {
    layers: Vec<Arc<dyn FileSystem>>,
    table: HashMap<VfsPath, FlatNode>,
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("layers", &self.layers.len())
            .field("entries", &self.table.len())
            .finish()
    }
}

/// A name as a directory listing gave it must be a single, real component; anything else
/// from a layer would let it address some other path.
fn checked_child(dir: &VfsPath, name: &str) -> Result<VfsPath> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(VfsError::InvalidPath {
            path: format!("{}/{name}", dir.as_str().trim_end_matches('/')),
            reason: "a layer listed an entry whose name is not a single path component",
        });
    }
    Ok(dir.child(name))
}

/// Removes `path` and everything below it, iteratively (layers can be deep).
fn remove_subtree(table: &mut HashMap<VfsPath, FlatNode>, path: &VfsPath) {
    if let (Some(parent), Some(name)) = (path.parent(), path.file_name())
        && let Some(p) = table.get_mut(&parent)
    {
        p.children.remove(name);
    }
    let mut stack = vec![path.clone()];
    while let Some(p) = stack.pop() {
        if let Some(node) = table.remove(&p) {
            stack.extend(node.children.keys().map(|c| p.child(c)));
        }
    }
}

impl Overlay {
    /// Stacks `layers`, lowest (first in the manifest) first.
    ///
    /// # Errors
    /// [`VfsError::BadWhiteout`] for a malformed whiteout, [`VfsError::InvalidPath`] for an
    /// entry name that is not a single component, or whatever a layer reports while it is
    /// listed.
    pub fn new(layers: Vec<Arc<dyn FileSystem>>) -> Result<Self> {
        let mut table = HashMap::new();
        table.insert(
            VfsPath::root(),
            FlatNode {
                layer: None,
                kind: FileType::Dir,
                children: BTreeMap::new(),
                source: None,
            },
        );
        for (index, layer) in layers.iter().enumerate() {
            apply_layer(&mut table, index, layer.as_ref())?;
        }
        Ok(Overlay { layers, table })
    }

    /// Number of visible entries, `/` included.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether only `/` is visible.
    pub fn is_empty(&self) -> bool {
        self.table.len() <= 1
    }

    fn provider(&self, path: &VfsPath) -> Result<(&FlatNode, Option<&Arc<dyn FileSystem>>)> {
        let node = self
            .table
            .get(path)
            .ok_or_else(|| VfsError::NotFound(path.clone()))?;
        Ok((node, node.layer.and_then(|i| self.layers.get(i))))
    }

    /// The layer that provides the file `path`, and its path there.
    fn file_layer<'a>(
        &'a self,
        path: &'a VfsPath,
    ) -> Result<(&'a Arc<dyn FileSystem>, &'a VfsPath)> {
        match self.provider(path)? {
            (node, _) if node.kind == FileType::Dir => Err(VfsError::IsADirectory(path.clone())),
            (node, Some(layer)) => Ok((layer, node.source.as_ref().unwrap_or(path))),
            (_, None) => Err(VfsError::NotFound(path.clone())),
        }
    }
}

fn apply_layer(
    table: &mut HashMap<VfsPath, FlatNode>,
    index: usize,
    layer: &dyn FileSystem,
) -> Result<()> {
    // Links into the layers below name what those layers hold before this one applies.
    let mut links = Vec::new();
    // A link named like a whiteout is a whiteout, whatever its tar type: it joins its
    // directory's listing below instead.
    let mut whiteout_links: HashMap<VfsPath, Vec<String>> = HashMap::new();
    for (path, target) in layer.lower_hardlinks() {
        if let (Some(dir), Some(name)) = (path.parent(), path.file_name())
            && name.starts_with(WHITEOUT_PREFIX)
        {
            whiteout_links.entry(dir).or_default().push(name.to_owned());
            continue;
        }
        let bad = |reason| VfsError::BadLowerHardlink {
            path: path.clone(),
            target: target.clone(),
            reason,
        };
        let node = table.get(&target).ok_or_else(|| bad("does not exist"))?;
        if node.kind == FileType::Dir {
            return Err(bad("is a directory"));
        }
        let node = FlatNode {
            layer: node.layer,
            kind: node.kind,
            children: BTreeMap::new(),
            source: Some(node.source.clone().unwrap_or_else(|| target.clone())),
        };
        links.push((path, node));
    }
    if let Some(root) = table.get_mut(&VfsPath::root())
        && (root.layer.is_none() || !layer.node_is_implied_dir(&VfsPath::root()))
    {
        root.layer = Some(index);
    }
    let mut dirs = vec![VfsPath::root()];
    while let Some(dir) = dirs.pop() {
        let mut opaque = false;
        let mut hidden = Vec::new();
        let mut own = Vec::new();
        let listed = layer.node_read_dir(&dir)?;
        let linked = whiteout_links.remove(&dir).unwrap_or_default();
        let linked = linked.into_iter().map(|name| DirEntry {
            name,
            kind: FileType::File,
        });
        for entry in listed.into_iter().chain(linked) {
            if entry.name == OPAQUE_MARKER {
                opaque = true;
            } else if let Some(name) = entry.name.strip_prefix(WHITEOUT_PREFIX) {
                if matches!(name, "" | "." | "..") {
                    return Err(VfsError::BadWhiteout(checked_child(&dir, &entry.name)?));
                }
                hidden.push(checked_child(&dir, name)?);
            } else {
                own.push((checked_child(&dir, &entry.name)?, entry.kind));
            }
        }
        if opaque {
            let lower: Vec<VfsPath> = table
                .get(&dir)
                .map(|n| n.children.keys().map(|c| dir.child(c)).collect())
                .unwrap_or_default();
            for child in &lower {
                remove_subtree(table, child);
            }
        }
        for path in &hidden {
            remove_subtree(table, path);
        }
        for (path, kind) in own {
            let merge =
                kind == FileType::Dir && table.get(&path).is_some_and(|n| n.kind == FileType::Dir);
            if merge {
                // A directory the layer only implies leaves the lower one's attributes.
                if !layer.node_is_implied_dir(&path)
                    && let Some(node) = table.get_mut(&path)
                {
                    node.layer = Some(index);
                }
            } else {
                remove_subtree(table, &path);
                if let Some(name) = path.file_name()
                    && let Some(parent) = table.get_mut(&dir)
                {
                    parent.children.insert(name.to_owned(), kind);
                }
                table.insert(
                    path.clone(),
                    FlatNode {
                        layer: Some(index),
                        kind,
                        children: BTreeMap::new(),
                        source: None,
                    },
                );
            }
            if kind == FileType::Dir {
                dirs.push(path);
            }
        }
    }
    for (path, node) in links {
        // The layer made the link's parents directories of its own, applied above.
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(VfsError::InvalidPath {
                path: path.as_str().to_owned(),
                reason: "a hardlink cannot stand for `/`",
            });
        };
        remove_subtree(table, &path);
        match table.get_mut(&parent) {
            Some(p) if p.kind == FileType::Dir => {
                p.children.insert(name.to_owned(), node.kind);
            }
            _ => return Err(VfsError::NotADirectory(parent)),
        }
        table.insert(path, node);
    }
    Ok(())
}

impl FileSystem for Overlay {
    fn node_metadata(&self, path: &VfsPath) -> Result<Metadata> {
        match self.provider(path)? {
            (node, Some(layer)) => layer.node_metadata(node.source.as_ref().unwrap_or(path)),
            (_, None) => Ok(Metadata::synthetic_dir()),
        }
    }

    fn node_read_dir(&self, path: &VfsPath) -> Result<Vec<DirEntry>> {
        let (node, _) = self.provider(path)?;
        if node.kind != FileType::Dir {
            return Err(VfsError::NotADirectory(path.clone()));
        }
        Ok(node
            .children
            .iter()
            .map(|(name, &kind)| DirEntry {
                name: name.clone(),
                kind,
            })
            .collect())
    }

    fn node_lookup(&self, path: &VfsPath) -> Option<Option<FileType>> {
        // Every entry of the flattened table hangs from directories of the table (a layer's
        // entries are applied below directories only, and replacing an entry drops its
        // subtree), so an entry found is reached through real directories only.
        if let Some(node) = self.table.get(path) {
            return Some(Some(node.kind));
        }
        let parent = self.table.get(path.parent_str())?;
        (parent.kind == FileType::Dir).then_some(None)
    }

    fn node_read_link(&self, path: &VfsPath) -> Result<String> {
        match self.provider(path)? {
            (node, Some(layer)) if node.kind == FileType::Symlink => {
                layer.node_read_link(node.source.as_ref().unwrap_or(path))
            }
            _ => Err(VfsError::NotASymlink(path.clone())),
        }
    }

    fn node_read_all(&self, path: &VfsPath) -> Result<Bytes> {
        let (layer, at) = self.file_layer(path)?;
        layer.node_read_all(at)
    }

    fn node_open(&self, path: &VfsPath) -> Result<FileReader> {
        let (layer, at) = self.file_layer(path)?;
        layer.node_open(at)
    }

    fn node_id(&self, path: &VfsPath) -> Option<NodeId> {
        // The providing layer's id, kept apart per layer. A link into a lower layer reads
        // that layer at the target's path, so it gets the target's id: one file, two names.
        let node = self.table.get(path)?;
        let layer = node.layer?;
        let at = node.source.as_ref().unwrap_or(path);
        let id = self.layers.get(layer)?.node_id(at)?;
        Some(id.scoped(&layer.to_string()))
    }

    fn node_backing_file(&self, path: &VfsPath) -> Result<Option<std::fs::File>> {
        let (layer, at) = self.file_layer(path)?;
        layer.node_backing_file(at)
    }

    fn node_host_range(&self, path: &VfsPath) -> Result<Option<crate::HostRange>> {
        let (layer, at) = self.file_layer(path)?;
        layer.node_host_range(at)
    }

    fn node_read_at(&self, path: &VfsPath, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let (layer, at) = self.file_layer(path)?;
        layer.node_read_at(at, offset, buf)
    }

    /// From the flattened table: kinds without any listing, sizes from the providing
    /// layers' metadata.
    fn footprint(&self) -> Result<Footprint> {
        let mut out = Footprint::default();
        let mut seen = std::collections::HashSet::new();
        for (path, node) in &self.table {
            out.add(node.kind);
            if node.kind != FileType::File {
                continue;
            }
            let (layer, at) = self.file_layer(path)?;
            if self.node_id(path).is_none_or(|id| seen.insert(id)) {
                out.bytes = out.bytes.saturating_add(layer.node_metadata(at)?.size);
            }
        }
        Ok(out)
    }
}

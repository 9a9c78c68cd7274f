//! A volume of a tree snapshot (`tree_snapshot.rs`), indexed when it is first read.
//!
//! A warm load mounts every volume of the tree, but a runtime reads few of them: the index
//! of each is kept serialized and read (with [`TarIndex::from_bytes`], which checks it as
//! outside data) on the first call that needs it. Until then, mounting costs nothing.
//! The snapshot's checksum was verified when it was read, so an index that fails to read
//! here is a bug or a cache changed underneath, and every call reports it.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use vfs_overlay::{
    DirEntry, FileSystem, FileType, Footprint, HostRange, Metadata, NodeId, TarIndex, TarVolume,
    VfsError, VfsPath,
};

/// A webc volume whose index is read on first use.
pub(crate) struct KeptVolume {
    /// The webc file the index's ranges point into.
    data: Bytes,
    /// The serialized index.
    index: Bytes,
    /// The package and volume, for errors.
    shown: String,
    opened: OnceLock<Result<TarVolume, String>>,
}

impl std::fmt::Debug for KeptVolume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptVolume")
            .field("shown", &self.shown)
            .field("indexed", &self.opened.get().is_some())
            .finish()
    }
}

impl KeptVolume {
    pub(crate) fn new(data: Bytes, index: Bytes, shown: String) -> KeptVolume {
        KeptVolume {
            data,
            index,
            shown,
            opened: OnceLock::new(),
        }
    }

    fn volume(&self, path: &VfsPath) -> vfs_overlay::Result<&TarVolume> {
        let opened = self.opened.get_or_init(|| {
            let index = TarIndex::from_bytes(&self.index).map_err(|e| e.to_string())?;
            TarVolume::with_index(self.data.clone(), Arc::new(index)).map_err(|e| e.to_string())
        });
        opened.as_ref().map_err(|reason| VfsError::Io {
            path: path.clone(),
            op: "index",
            message: format!(
                "the tree snapshot's index of {} cannot be read ({reason}); run `pkgload \
                 cache gc` and load again",
                self.shown
            ),
        })
    }
}

impl FileSystem for KeptVolume {
    fn node_metadata(&self, path: &VfsPath) -> vfs_overlay::Result<Metadata> {
        self.volume(path)?.node_metadata(path)
    }

    fn node_read_dir(&self, path: &VfsPath) -> vfs_overlay::Result<Vec<DirEntry>> {
        self.volume(path)?.node_read_dir(path)
    }

    fn node_read_link(&self, path: &VfsPath) -> vfs_overlay::Result<String> {
        self.volume(path)?.node_read_link(path)
    }

    fn node_read_all(&self, path: &VfsPath) -> vfs_overlay::Result<Bytes> {
        self.volume(path)?.node_read_all(path)
    }

    fn node_lookup(&self, path: &VfsPath) -> Option<Option<FileType>> {
        self.volume(path).ok()?.node_lookup(path)
    }

    fn node_is_implied_dir(&self, path: &VfsPath) -> bool {
        self.volume(path)
            .is_ok_and(|volume| volume.node_is_implied_dir(path))
    }

    fn lower_hardlinks(&self) -> Vec<(VfsPath, VfsPath)> {
        self.volume(&VfsPath::root())
            .map(FileSystem::lower_hardlinks)
            .unwrap_or_default()
    }

    fn node_host_range(&self, path: &VfsPath) -> vfs_overlay::Result<Option<HostRange>> {
        self.volume(path)?.node_host_range(path)
    }

    fn node_id(&self, path: &VfsPath) -> Option<NodeId> {
        self.volume(path).ok()?.node_id(path)
    }

    fn node_backing_file(&self, path: &VfsPath) -> vfs_overlay::Result<Option<std::fs::File>> {
        self.volume(path)?.node_backing_file(path)
    }

    fn node_open(&self, path: &VfsPath) -> vfs_overlay::Result<vfs_overlay::FileReader> {
        self.volume(path)?.node_open(path)
    }

    fn node_read_at(
        &self,
        path: &VfsPath,
        offset: u64,
        buf: &mut [u8],
    ) -> vfs_overlay::Result<usize> {
        self.volume(path)?.node_read_at(path, offset, buf)
    }

    fn footprint(&self) -> vfs_overlay::Result<Footprint> {
        self.volume(&VfsPath::root())?.footprint()
    }
}

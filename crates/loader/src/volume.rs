//! Opening a package volume: a stored layer blob becomes a [`TarVolume`].
//!
//! The load and the prefetch both open volumes, and both must open them the same way, so
//! this is the one place that does. They also share what they opened ([`OpenedVolumes`]):
//! a small volume is decompressed into memory on every open, so a second open of the same
//! digest would redo that work.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use cache_core::{Digest, Store};
use tokio::sync::OnceCell;
use vfs_overlay::{LayerError, LayerLimits, LayerSpec, TarVolume};

use crate::artifact::BlobRef;

/// A package volume, decompressed and indexed on first use (a package config carries no
/// diff_ids, so the volume's own digest is all there is to check).
pub(crate) async fn open_volume(
    store: &Store,
    blob: &BlobRef,
    limits: &LayerLimits,
) -> Result<TarVolume, LayerError> {
    let spec = LayerSpec {
        digest: blob.digest,
        media_type: blob.media_type.clone(),
        diff_id: None,
    };
    vfs_overlay::open_volume(store, &spec, limits).await
}

/// The volumes one resolution's prefetch and load opened, by digest: each is opened once,
/// and a caller arriving while another opens it waits for that open. Lives as long as the
/// resolution, so nothing outlives the tree that uses it.
#[derive(Debug, Clone, Default)]
pub(crate) struct OpenedVolumes {
    opened: Arc<Mutex<HashMap<Digest, Arc<Opening>>>>,
}

/// One volume: empty while it is being opened (or after its open failed).
type Opening = OnceCell<Arc<TarVolume>>;

impl OpenedVolumes {
    /// [`open_volume`], once per digest; a failed open is not remembered (the next caller
    /// tries again and gets its own error).
    pub(crate) async fn open(
        &self,
        store: &Store,
        blob: &BlobRef,
        limits: &LayerLimits,
    ) -> Result<Arc<TarVolume>, LayerError> {
        let cell = self
            .opened
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(blob.digest)
            .or_default()
            .clone();
        cell.get_or_try_init(|| async { open_volume(store, blob, limits).await.map(Arc::new) })
            .await
            .cloned()
    }
}

//! Opening a package volume: a stored layer blob becomes a [`TarVolume`].
//!
//! The load and the prefetch both open volumes, and both must open them the same way, so
//! this is the one place that does.

use cache_core::Store;
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

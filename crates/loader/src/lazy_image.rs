//! An image whose seekable layers are read lazily: the layers the store lacks and a table
//! of contents allows are opened from their tables (see [`crate::lazy`]), the others as
//! usual, and all are stacked into one overlay. With [`Lazy::Auto`] the lazy layers (and
//! a package's lazy volumes, which `load.rs` opens) then keep downloading whole in the
//! background ([`LazyFill`]): each is verified against its digest and, for an image layer,
//! its config's diff_id, and once stored, later reads of it come from the stored blob
//! instead of the network.

use std::collections::HashSet;
use std::sync::Arc;

use cache_core::Digest;
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::{StreamExt, TryStreamExt};
use layer_toc::LazyFiles;
use vfs_overlay::{FileSystem, LayerError, LayerLimits, LayerSpec, MountPolicy, Union, VfsPath};

use crate::artifact::BlobRef;
use crate::config::Validation;
use crate::error::{LoadError, Result};
use crate::lazy::{Lazy, LazyContext, LazyOpened, reads_lazily};
use crate::lazy_prefetch::{LayerPrefetch, LazyPrefetch};
use crate::remote::{Found, Located, Remote};

/// The background download of the layers a tree reads lazily. Cheap to clone; every clone
/// waits for the same download.
#[derive(Clone)]
pub struct LazyFill {
    done: Shared<BoxFuture<'static, std::result::Result<(), Arc<LoadError>>>>,
}

impl std::fmt::Debug for LazyFill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyFill").finish_non_exhaustive()
    }
}

impl LazyFill {
    /// Waits until every lazily read layer is stored whole and verified.
    ///
    /// # Errors
    /// The first failure: a download that failed for good, or
    /// [`LoadError::LazyUntrusted`] when a layer is not what its image config declares.
    pub async fn wait(&self) -> std::result::Result<(), Arc<LoadError>> {
        self.done.clone().await
    }
}

/// A layer or volume opened from its table: what the background fill needs to check it.
pub(crate) struct LazyLayer {
    pub(crate) at: Located,
    pub(crate) blob: BlobRef,
    /// The image config's diff_id (none for a package volume).
    pub(crate) diff_id: Option<Digest>,
    pub(crate) files: Arc<LazyFiles>,
    pub(crate) prefetch: LayerPrefetch,
    /// The runtime its fetches run on.
    pub(crate) runtime: tokio::runtime::Handle,
}

impl LazyLayer {
    pub(crate) fn new(
        at: Located,
        blob: BlobRef,
        diff_id: Option<Digest>,
        opened: LazyOpened,
    ) -> Self {
        LazyLayer {
            at,
            blob,
            diff_id,
            files: opened.files,
            prefetch: opened.prefetch,
            runtime: opened.runtime,
        }
    }
}

/// What opening an image lazily needs of its loader.
pub(crate) struct LazyImage<'a> {
    pub(crate) remote: &'a Arc<Remote>,
    pub(crate) context: &'a LazyContext,
    pub(crate) lazy: Lazy,
    pub(crate) jobs: usize,
    pub(crate) validation: Validation,
    pub(crate) layer_limits: LayerLimits,
    pub(crate) toc_limit: u64,
}

impl LazyImage<'_> {
    /// The layers of the image `found` to read lazily: see [`crate::lazy`] for which.
    pub(crate) fn lazy_layers(&self, found: &Found) -> HashSet<Digest> {
        found
            .artifact
            .layers
            .iter()
            .filter(|l| reads_lazily(self.lazy, self.remote, &found.at, l))
            .map(|l| l.digest)
            .collect()
    }

    /// The image's filesystem with the layers in `lazy` read from their tables, and those
    /// layers (for the prefetch and the background fill).
    pub(crate) async fn image_fs(
        &self,
        found: &Found,
        lazy: &HashSet<Digest>,
    ) -> Result<(Arc<dyn FileSystem>, Vec<LazyLayer>)> {
        let diff_ids = self.remote.layer_diff_ids(found, self.validation).await?;
        let toc_limit = self.toc_limit.min(self.layer_limits.max_uncompressed);
        let opened: Vec<(Arc<dyn FileSystem>, Option<LazyLayer>)> =
            futures::stream::iter(found.artifact.layers.iter().enumerate())
                .map(|(i, layer)| {
                    let diff_id = diff_ids.get(i).copied();
                    async move {
                        if lazy.contains(&layer.digest)
                            && let Some(Ok(position)) = &layer.toc
                        {
                            let request = self.remote.blob_request(&found.at, layer)?;
                            let opened = self
                                .context
                                .open(self.remote, request, layer, position, toc_limit)
                                .await?;
                            if let Some(opened) = opened {
                                let volume = opened.volume.clone();
                                let lazy = LazyLayer::new(
                                    found.at.clone(),
                                    layer.clone(),
                                    diff_id,
                                    opened,
                                );
                                return Ok((Arc::new(volume) as Arc<dyn FileSystem>, Some(lazy)));
                            }
                        }
                        // Not lazy (or the registry sent it whole): as `open_image_layers`.
                        self.remote.blob(&found.at, layer).await?;
                        let volume = open_checked(
                            &self.remote.store,
                            layer,
                            diff_id,
                            self.validation,
                            &self.layer_limits,
                        )
                        .await?;
                        Ok::<_, LoadError>((Arc::new(volume) as Arc<dyn FileSystem>, None))
                    }
                })
                .buffered(self.jobs.max(1))
                .try_collect()
                .await?;
        let (layers, lazy_layers): (Vec<_>, Vec<_>) = opened.into_iter().unzip();
        let lazy_layers: Vec<LazyLayer> = lazy_layers.into_iter().flatten().collect();
        let overlay = tokio::task::spawn_blocking(move || vfs_overlay::Overlay::new(layers))
            .await
            .map_err(|e| LoadError::Io {
                action: "stack the layers of",
                path: found.artifact.reference.clone(),
                source: std::io::Error::other(e.to_string()),
            })??;
        let union = Union::new();
        union.mount(&VfsPath::root(), Arc::new(overlay), MountPolicy::Fail)?;
        Ok((Arc::new(union), lazy_layers))
    }

    /// Downloads the lazy layers whole in the background, `jobs` at a time, once `after`
    /// (the prefetch) is over, and checks each against its diff_id (if it has one) by
    /// opening it as a non-lazy load would.
    pub(crate) fn start_fill(
        &self,
        layers: Vec<LazyLayer>,
        after: Option<LazyPrefetch>,
    ) -> LazyFill {
        let (remote, jobs, validation, limits) = (
            self.remote.clone(),
            self.jobs.max(1),
            self.validation,
            self.layer_limits,
        );
        let task = tokio::spawn(async move {
            if let Some(prefetch) = after {
                prefetch.wait().await;
            }
            futures::stream::iter(layers)
                .map(|layer| fill_one(&remote, layer, validation, limits))
                .buffer_unordered(jobs)
                .try_collect::<Vec<()>>()
                .await
                .map(drop)
        });
        let done = async move {
            match task.await {
                Ok(result) => result.map_err(Arc::new),
                Err(e) => Err(Arc::new(LoadError::Io {
                    action: "download in the background",
                    path: "the lazily read layers".into(),
                    source: std::io::Error::other(e.to_string()),
                })),
            }
        };
        LazyFill {
            done: done.boxed().shared(),
        }
    }
}

async fn fill_one(
    remote: &Remote,
    layer: LazyLayer,
    validation: Validation,
    limits: vfs_overlay::LayerLimits,
) -> Result<()> {
    remote.blob(&layer.at, &layer.blob).await?;
    let spec = LayerSpec {
        digest: layer.blob.digest,
        media_type: layer.blob.media_type.clone(),
        diff_id: layer.diff_id,
    };
    match vfs_overlay::open_layer(&remote.store, &spec, &limits).await {
        Ok(_) => Ok(()),
        Err(e @ LayerError::DiffIdMismatch { .. }) if validation == Validation::Warn => {
            tracing::warn!(layer = %spec.digest, error = %e, "diff_id mismatch; using the layer anyway (validation: warn)");
            Ok(())
        }
        Err(source @ LayerError::DiffIdMismatch { .. }) => {
            layer.files.distrust(format!(
                "layer {}: untrusted, its whole content is not what the image config declares",
                spec.digest
            ));
            Err(LoadError::LazyUntrusted {
                digest: spec.digest,
                read: layer
                    .files
                    .read_paths()
                    .iter()
                    .map(|p| p.as_str().to_owned())
                    .collect(),
                source,
            })
        }
        Err(source) => Err(LoadError::Layer {
            digest: spec.digest,
            source,
        }),
    }
}

/// A stored layer opened with its diff_id checked (or, under [`Validation::Warn`], used
/// anyway with a warning).
async fn open_checked(
    store: &cache_core::Store,
    layer: &BlobRef,
    diff_id: Option<Digest>,
    validation: Validation,
    limits: &LayerLimits,
) -> Result<vfs_overlay::TarVolume> {
    let spec = LayerSpec {
        digest: layer.digest,
        media_type: layer.media_type.clone(),
        diff_id,
    };
    let layer_error = |source| LoadError::Layer {
        digest: layer.digest,
        source,
    };
    match vfs_overlay::open_layer(store, &spec, limits).await {
        Ok(v) => Ok(v),
        Err(e @ LayerError::DiffIdMismatch { .. }) if validation == Validation::Warn => {
            tracing::warn!(layer = %spec.digest, error = %e, "diff_id mismatch; using the layer anyway (validation: warn)");
            let spec = LayerSpec {
                diff_id: None,
                ..spec
            };
            vfs_overlay::open_layer(store, &spec, limits)
                .await
                .map_err(layer_error)
        }
        Err(source) => Err(layer_error(source)),
    }
}

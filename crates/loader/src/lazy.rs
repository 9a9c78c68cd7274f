//! Seekable layers (zstd:chunked) read before they are downloaded: the layer's table of
//! contents is fetched with one range request and becomes the volume's index; each file is
//! fetched by range when first read and verified before it is served (`layer-toc`).
//!
//! Range fetches run on a runtime and an HTTP client of their own ([`LazyContext`]),
//! never the caller's: the `FileSystem` API is synchronous, so a read blocks its thread,
//! and if that thread were one the fetch (or a pooled connection's task) needed, the read
//! would wait for itself until its deadline.
//!
//! Which layers (of images) and volumes (of packages) are read lazily ([`Lazy`]): one the
//! store does not hold, compressed with zstd, annotated with a table position, at least
//! [`WHOLE_BELOW`] bytes (below that, a range request for the table costs about what the
//! whole layer does), from a registry (a layout on disk is as fast to read whole). Offline,
//! a layer is read lazily only when its table is stored (an earlier lazy load fetched it):
//! the files stored then are served, and reading any other is an error naming the layer
//! and the file.

use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use cache_core::Store;
use fetch_http::{BlobRequest, ClientConfig, Credentials, HttpClient};
use futures::future::BoxFuture;
use layer_toc::{LazyFiles, RangeFetch, Seekable};
use vfs_overlay::TarVolume;

use crate::artifact::BlobRef;
use crate::error::{LoadError, Result};
use crate::lazy_prefetch::{LayerPrefetch, ReadRecord};
use crate::remote::{Located, Remote};

/// Whether seekable layers are read lazily.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Lazy {
    /// Every layer is downloaded whole before the tree is assembled.
    Off,
    /// Lazily where a table of contents and `Range` allow it, and the whole layers keep
    /// downloading in the background ([`crate::LoadedPackage::lazy_fill`]), verified against
    /// their digests and diff_ids when complete.
    #[default]
    Auto,
    /// Lazily where possible, with no background download: only the files read are
    /// fetched (what `pkgload ls` and `cat` do).
    Only,
}

/// Layers smaller than this are fetched whole even when they are seekable.
pub const WHOLE_BELOW: u64 = 1 << 20;

/// Whether `blob` (an image layer or a package volume found at `at`) is read lazily under
/// `lazy`: see the module docs.
pub(crate) fn reads_lazily(lazy: Lazy, remote: &Remote, at: &Located, blob: &BlobRef) -> bool {
    let Some(Ok(seekable)) = &blob.toc else {
        return false;
    };
    lazy != Lazy::Off
        && matches!(at, Located::Registry { .. })
        && blob.size >= WHOLE_BELOW
        && vfs_overlay::Compression::of_media_type(&blob.media_type) == Some(seekable.compression())
        && !remote.store.contains(&blob.digest)
        && (!remote.offline || crate::lazy_table::table_stored(&remote.store, seekable))
}

/// How long a read waits for its file before failing with `EIO`, unless the loader's
/// builder says otherwise.
pub(crate) const READ_DEADLINE: Duration = Duration::from_secs(300);

/// The runtime and HTTP client lazy reads fetch on, made on first use.
pub(crate) struct LazyContext {
    config: ClientConfig,
    deadline: Duration,
    credentials: Credentials,
    runtime: OnceLock<std::result::Result<Arc<Runtime>, String>>,
    client: OnceLock<std::result::Result<HttpClient, String>>,
}

impl std::fmt::Debug for LazyContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyContext").finish_non_exhaustive()
    }
}

/// A tokio runtime that may be dropped anywhere (a plain one panics when dropped inside
/// another runtime, where a loader usually is).
struct Runtime(Option<tokio::runtime::Runtime>);

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Runtime")
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl LazyContext {
    pub(crate) fn new(config: ClientConfig, credentials: Credentials, deadline: Duration) -> Self {
        LazyContext {
            config,
            deadline,
            credentials,
            runtime: OnceLock::new(),
            client: OnceLock::new(),
        }
    }

    /// The runtime, which lives as long as anything that fetches on it (the loader, or a
    /// volume it opened: a tree outlives its loader).
    fn runtime(&self) -> Result<(Arc<Runtime>, tokio::runtime::Handle)> {
        let rt = self.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("pkgload-lazy")
                .enable_all()
                .build()
                .map(|rt| Arc::new(Runtime(Some(rt))))
                .map_err(|e| e.to_string())
        });
        match rt {
            Ok(rt) => match &rt.0 {
                Some(inner) => Ok((rt.clone(), inner.handle().clone())),
                None => Err(unavailable("the lazy-read runtime is gone".into())),
            },
            Err(e) => Err(unavailable(format!("starting the lazy-read runtime: {e}"))),
        }
    }

    fn client(&self) -> Result<HttpClient> {
        self.client
            .get_or_init(|| {
                HttpClient::new(self.config.clone(), self.credentials.clone())
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|e| unavailable(format!("starting the lazy-read HTTP client: {e}")))
    }

    /// The volume of the seekable layer `blob` (`request` says where it is), served from
    /// its table of contents; `None` when the layer is to be read whole instead: fetching
    /// the table brought the whole layer (a server that ignores `Range`), or the table is
    /// valid but of a kind this reader does not serve.
    pub(crate) async fn open(
        &self,
        remote: &Remote,
        request: BlobRequest,
        blob: &BlobRef,
        seekable: &Seekable,
        toc_limit: u64,
    ) -> Result<Option<LazyOpened>> {
        let store = &remote.store;
        let (keep, runtime) = self.runtime()?;
        let ranges = Arc::new(LayerRanges {
            client: self.client()?,
            store: store.clone(),
            offline: remote.offline,
            request,
            blob: blob.clone(),
            held: Arc::default(),
            _runtime: keep,
        });
        let Some(toc) =
            crate::lazy_table::table(remote, &ranges, &runtime, blob, seekable, toc_limit).await?
        else {
            return Ok(None);
        };
        tracing::info!(layer = %blob.digest, files = toc.files().len(), "reading the layer lazily");
        let toc = Arc::new(toc);
        let files = Arc::new(LazyFiles::new(
            toc.clone(),
            store.clone(),
            ranges.clone(),
            runtime.clone(),
            self.deadline,
        ));
        let record = ReadRecord::load(store, blob.digest, runtime.clone());
        let noted = record.clone();
        files.on_first_read(Arc::new(move |path| noted.note(path)));
        Ok(Some(LazyOpened {
            volume: files.volume()?,
            prefetch: LayerPrefetch {
                toc,
                files: files.clone(),
                ranges,
                record,
            },
            files,
            runtime,
        }))
    }
}

/// A layer opened from its table of contents.
pub(crate) struct LazyOpened {
    pub(crate) volume: TarVolume,
    pub(crate) files: Arc<LazyFiles>,
    pub(crate) prefetch: LayerPrefetch,
    /// The runtime its fetches run on.
    pub(crate) runtime: tokio::runtime::Handle,
}

pub(crate) fn unavailable(reason: String) -> LoadError {
    LoadError::Io {
        action: "read lazily from",
        path: "the registry".into(),
        source: std::io::Error::other(reason),
    }
}

/// Byte ranges of one layer: from the store once the layer is there whole, else from its
/// hosts; a server that ignores `Range` gets the whole layer fetched into the store.
#[derive(Debug)]
pub(crate) struct LayerRanges {
    client: HttpClient,
    store: Store,
    /// Offline: what the store lacks is an error, not a request.
    offline: bool,
    request: BlobRequest,
    blob: BlobRef,
    /// Ranges a prefetch brought in one request, served from memory while it decodes them.
    held: Arc<Mutex<Vec<(u64, Bytes)>>>,
    /// Keeps the runtime the fetches run on alive as long as the volume.
    _runtime: Arc<Runtime>,
}

impl LayerRanges {
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Fetches `range` in one request and serves reads inside it from memory until the
    /// returned guard is dropped.
    pub(crate) async fn hold(&self, range: Range<u64>) -> std::result::Result<Held, String> {
        let start = range.start;
        let bytes = self.fetch(range).await?;
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((start, bytes));
        Ok(Held {
            held: self.held.clone(),
            start,
        })
    }
}

/// See [`LayerRanges::hold`].
pub(crate) struct Held {
    held: Arc<Mutex<Vec<(u64, Bytes)>>>,
    start: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = held.iter().position(|(s, _)| *s == self.start) {
            held.swap_remove(i);
        }
    }
}

/// The bytes `range` if one held range covers it.
fn from_held(held: &Mutex<Vec<(u64, Bytes)>>, range: &Range<u64>) -> Option<Bytes> {
    let held = held.lock().unwrap_or_else(PoisonError::into_inner);
    held.iter().find_map(|(start, bytes)| {
        let from = usize::try_from(range.start.checked_sub(*start)?).ok()?;
        let to = usize::try_from(range.end.checked_sub(*start)?).ok()?;
        (from <= to && to <= bytes.len()).then(|| bytes.slice(from..to))
    })
}

impl RangeFetch for LayerRanges {
    fn fetch(&self, range: Range<u64>) -> BoxFuture<'static, std::result::Result<Bytes, String>> {
        if let Some(bytes) = from_held(&self.held, &range) {
            return Box::pin(std::future::ready(Ok(bytes)));
        }
        let (client, store, request, digest, offline) = (
            self.client.clone(),
            self.store.clone(),
            self.request.clone(),
            self.blob.digest,
            self.offline,
        );
        Box::pin(async move {
            let slice = |blob: cache_core::Blob| {
                let bytes = blob.into_bytes();
                usize::try_from(range.start)
                    .ok()
                    .zip(usize::try_from(range.end).ok())
                    .filter(|&(s, e)| s <= e && e <= bytes.len())
                    .map(|(s, e)| bytes.slice(s..e))
                    .ok_or_else(|| format!("bytes {range:?} are outside the layer"))
            };
            if let Some(blob) = store.get(&digest).map_err(|e| e.to_string())? {
                return slice(blob);
            }
            if offline {
                return Err(format!(
                    "offline, and the file is not in the cache at {}; read it once without \
                     --offline while the registry is reachable",
                    store.root().display()
                ));
            }
            match client
                .fetch_blob_range(&request.source, range.clone())
                .await
            {
                Ok(bytes) => Ok(bytes),
                Err(fetch_http::Error::RangeIgnored { url }) => {
                    tracing::info!(%url, layer = %digest, "the registry ignores Range; fetching the whole layer");
                    let blob = client
                        .fetch_blob(request, &store)
                        .await
                        .map_err(|e| e.to_string())?;
                    slice(blob)
                }
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

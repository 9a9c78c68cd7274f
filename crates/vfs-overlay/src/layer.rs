//! OCI image layers from the [`Store`], opened as [`TarVolume`]s and stacked into an
//! [`Overlay`].
//!
//! A compressed layer is decompressed once, as a stream, into a store blob of its own (the
//! uncompressed tar, named by its sha256: the layer's diff_id), which is then memory-mapped
//! like any other blob. Two derived entries make every later open cheap:
//!
//! - `diffid` on the compressed digest: the digest of the uncompressed tar, so a warm open
//!   does not decompress (nor even need the compressed blob any more);
//! - `tarindex` on the uncompressed digest: the serialized [`TarIndex`], so a warm open does
//!   not scan the tar either.
//!
//! Derived entries are not verified by the store, so both are checked before use and
//! rebuilt when they do not hold up: a `diffid` that does not parse, names a blob that is
//! gone, or contradicts the caller's diff_id is ignored; a `tarindex` that
//! [`TarIndex::from_bytes`] refuses, that was made for a tar of another length, or where
//! some file's data does not start right after a valid tar header block, is ignored. (An
//! index with every offset on a real header but pointing at the wrong one would still be
//! believed; nothing short of a rescan rules that out.) A `diffid` record is believed when
//! the blob it names is stored: it was written by this code after that blob was verified.
//!
//! A small layer (a package's volume, most often) is the exception: when its tar is at
//! most [`SMALL_TAR`] bytes it is decompressed into memory on every open and indexed
//! there, with no blob and no derived entry written. A new file costs far more than
//! decompressing a few hundred KiB (an inode, a write, an fsync, a rename: 0.2–1 ms of
//! system time each), and a package tree has hundreds of such volumes.
//!
//! Decompression memory is bounded by a few chunks whatever the layer's size, and output
//! stops at [`LayerLimits`] (a gzip bomb is an error, not a full disk). When the caller
//! knows the diff_id, the store verifies the output against it; without one the tar is
//! stored under whatever it hashes to.

// `LayerError` names up to three digests (a sha512 one is 65 bytes), which makes it "large".
// It is returned once per layer open, next to decompression and disk I/O that dwarf moving
// 200 bytes; boxing would only make matching on it clumsier.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use bytes::Bytes;
use cache_core::{Algorithm, Begin, Blob, DerivedKind, Digest, Ingest, Store};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;

use crate::error::VfsError;
use crate::fs::FileSystem;
use crate::overlay::Overlay;
use crate::tar::{TarEntryKind, TarError, TarIndex, TarVolume};

/// Derived kind (on the compressed digest) holding the uncompressed tar's digest.
const DIFFID_KIND: &str = "diffid";
/// Derived kind (on the uncompressed digest) holding the serialized [`TarIndex`].
const INDEX_KIND: &str = "tarindex";
/// Decompressed bytes per chunk handed to the store.
const CHUNK: usize = 1 << 20;
/// Chunks in flight between the decompressing thread and the store's writer.
const QUEUE: usize = 4;
/// The largest uncompressed tar kept in memory instead of in the store (see the module
/// docs). Decompressing 1 MiB takes about a millisecond; the four files it would otherwise
/// cost take longer to create, and more to keep.
pub const SMALL_TAR: u64 = 1 << 20;

/// One layer of an image, as its manifest and config describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSpec {
    /// Digest of the layer blob as stored (compressed or not).
    pub digest: Digest,
    /// The descriptor's media type; it decides how the blob is decompressed.
    pub media_type: String,
    /// The uncompressed tar's digest from the image config (`rootfs.diff_ids`), when known:
    /// the decompressed output must then hash to it.
    pub diff_id: Option<Digest>,
}

impl LayerSpec {
    /// A layer without a known diff_id.
    pub fn new(digest: Digest, media_type: impl Into<String>) -> Self {
        LayerSpec {
            digest,
            media_type: media_type.into(),
            diff_id: None,
        }
    }

    /// The same layer, its decompressed output checked against `diff_id`.
    #[must_use]
    pub fn with_diff_id(mut self, diff_id: Digest) -> Self {
        self.diff_id = Some(diff_id);
        self
    }
}

/// Bounds on what decompressing one layer may produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerLimits {
    /// Most bytes one layer may decompress to.
    pub max_uncompressed: u64,
    /// If set, a layer may also decompress to at most this many times its compressed size.
    pub max_ratio: Option<u64>,
}

impl Default for LayerLimits {
    /// 64 GiB per layer, no ratio limit.
    fn default() -> Self {
        LayerLimits {
            max_uncompressed: 64 << 30,
            max_ratio: None,
        }
    }
}

impl LayerLimits {
    /// The byte limit for a layer whose compressed blob has `compressed` bytes.
    pub fn limit_for(&self, compressed: u64) -> u64 {
        match self.max_ratio {
            Some(ratio) => self.max_uncompressed.min(compressed.saturating_mul(ratio)),
            None => self.max_uncompressed,
        }
    }
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (possibly several concatenated members).
    Gzip,
    /// zstd (possibly several frames).
    Zstd,
}

impl Compression {
    /// The compression of a tar layer media type, or `None` if the media type is not a tar
    /// layer (a config, an `application/wasm` atom, an unknown compression).
    pub fn of_media_type(media_type: &str) -> Option<Compression> {
        const OCI: &str = "application/vnd.oci.image.layer.v1.tar";
        const OCI_FOREIGN: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
        const DOCKER: &str = "application/vnd.docker.image.rootfs.diff.tar";
        match media_type {
            OCI | OCI_FOREIGN | DOCKER => Some(Compression::None),
            DOCKER_GZIP | DOCKER_FOREIGN_GZIP => Some(Compression::Gzip),
            _ => {
                let (base, suffix) = media_type.rsplit_once('+')?;
                if base != OCI && base != OCI_FOREIGN {
                    return None;
                }
                match suffix {
                    "gzip" => Some(Compression::Gzip),
                    "zstd" => Some(Compression::Zstd),
                    _ => None,
                }
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_FOREIGN_GZIP: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// Why a layer could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// The media type is not a (known) tar layer, so it cannot become a volume.
    #[error(
        "layer {digest} has media type {media_type:?}, which is not a tar layer \
         (plain, +gzip or +zstd); it cannot be mounted as a filesystem"
    )]
    NotATar {
        /// The layer.
        digest: Digest,
        /// Its media type.
        media_type: String,
    },
    /// The layer blob is not in the store (and nothing derived from it is either).
    #[error("layer {digest} is not in the store; fetch it first")]
    Missing {
        /// The missing blob.
        digest: Digest,
    },
    /// The layer decompresses to more than the limit allows (a decompression bomb, or a
    /// limit set too low). Nothing was stored.
    #[error(
        "layer {digest} decompresses to more than {limit} bytes ({compressed} bytes \
         compressed); refusing it (raise LayerLimits if the image is genuine)"
    )]
    TooLarge {
        /// The compressed layer.
        digest: Digest,
        /// The limit that was exceeded.
        limit: u64,
        /// Size of the compressed blob.
        compressed: u64,
    },
    /// The compressed stream is corrupt or truncated.
    #[error(
        "layer {digest}: {compression} stream is corrupt or truncated after {at} \
         decompressed bytes: {message}; fetch the blob again"
    )]
    Decompress {
        /// The compressed layer.
        digest: Digest,
        /// "gzip" or "zstd".
        compression: &'static str,
        /// Decompressed bytes produced before the failure.
        at: u64,
        /// What the decoder reported.
        message: String,
    },
    /// The uncompressed tar does not hash to the diff_id the image config declares.
    #[error(
        "layer {digest}: its uncompressed content is {actual}, but the image config \
         declares diff_id {expected}; the image is inconsistent"
    )]
    DiffIdMismatch {
        /// The compressed layer.
        digest: Digest,
        /// The diff_id from the config.
        expected: Digest,
        /// What the content hashes to.
        actual: Digest,
    },
    /// The uncompressed tar could not be indexed.
    #[error("layer {digest} (tar {tar}): {source}")]
    Tar {
        /// The layer as stored.
        digest: Digest,
        /// The uncompressed tar.
        tar: Digest,
        /// What is wrong with the tar.
        #[source]
        source: TarError,
    },
    /// The store failed (I/O, lock timeout, …).
    #[error("layer {digest}: {source}")]
    Store {
        /// The layer.
        digest: Digest,
        /// The store's error.
        #[source]
        source: cache_core::Error,
    },
    /// The layers could not be stacked (a malformed whiteout, a bad entry name).
    #[error("stacking the image's layers failed: {0}")]
    Overlay(#[source] VfsError),
    /// A background task died (a panic while decompressing, indexing or stacking).
    #[error("internal task failed while {what}: {message}")]
    Task {
        /// What it was doing, naming the layer where there is one.
        what: String,
        /// The join error's text.
        message: String,
    },
}

fn store_err(digest: Digest) -> impl FnOnce(cache_core::Error) -> LayerError {
    move |source| LayerError::Store { digest, source }
}

fn task_err(digest: Digest) -> impl FnOnce(tokio::task::JoinError) -> LayerError {
    move |e| LayerError::Task {
        what: format!("opening layer {digest}"),
        message: e.to_string(),
    }
}

fn kind(name: &str, digest: Digest) -> Result<DerivedKind, LayerError> {
    DerivedKind::new(name).map_err(store_err(digest))
}

/// Opens one layer as a read-only volume; see the [module docs](self).
///
/// # Errors
/// [`LayerError::NotATar`] for a media type that is no tar layer, [`LayerError::Missing`]
/// if the blob is not stored, [`LayerError::TooLarge`], [`LayerError::Decompress`] or
/// [`LayerError::DiffIdMismatch`] for bad compressed data, [`LayerError::Tar`] for a bad
/// tar, [`LayerError::Store`] when the store fails.
#[tracing::instrument(level = "debug", skip_all, fields(digest = %layer.digest, media_type = %layer.media_type))]
pub async fn open_layer(
    store: &Store,
    layer: &LayerSpec,
    limits: &LayerLimits,
) -> Result<TarVolume, LayerError> {
    let digest = layer.digest;
    let compression =
        Compression::of_media_type(&layer.media_type).ok_or_else(|| LayerError::NotATar {
            digest,
            media_type: layer.media_type.clone(),
        })?;
    let tar = match compression {
        Compression::None => {
            let blob = store
                .get(&digest)
                .map_err(store_err(digest))?
                .ok_or(LayerError::Missing { digest })?;
            // A plain layer is its own diff: a config that says otherwise is wrong.
            if let Some(expected) = layer.diff_id
                && expected != digest
            {
                return Err(LayerError::DiffIdMismatch {
                    digest,
                    expected,
                    actual: digest,
                });
            }
            blob
        }
        Compression::Gzip | Compression::Zstd => {
            // A tar stored by an earlier open (this layer was large) is the cheapest.
            if let Some(tar) = cached_tar(store, layer)? {
                return volume(store, digest, tar).await;
            }
            if let Some(volume) = open_small(store, layer, compression, limits).await? {
                return Ok(volume);
            }
            // Two opens of one layer in this process take turns, so the second finds the
            // first one's output instead of decompressing again.
            let turn = layer_turn(store, digest);
            let _guard = turn.lock().await;
            match cached_tar(store, layer)? {
                Some(tar) => tar,
                None => {
                    let (tar, decompressed) = decompress(store, layer, compression, limits).await?;
                    // Only a mapping this code verified is recorded: a diff_id is a claim of
                    // one image's config, and recording it for a blob that was never
                    // decompressed would let that image decide what the blob means to others.
                    if decompressed {
                        store
                            .put_derived(
                                &digest,
                                &kind(DIFFID_KIND, digest)?,
                                tar.digest().to_string(),
                            )
                            .await
                            .map_err(store_err(digest))?;
                    }
                    tar
                }
            }
        }
    };
    volume(store, digest, tar).await
}

/// A compressed layer whose tar is at most [`SMALL_TAR`] bytes, decompressed and indexed in
/// memory (checked against the diff_id when there is one); `None` for a larger one.
async fn open_small(
    store: &Store,
    layer: &LayerSpec,
    compression: Compression,
    limits: &LayerLimits,
) -> Result<Option<TarVolume>, LayerError> {
    let digest = layer.digest;
    let source = store
        .get(&digest)
        .map_err(store_err(digest))?
        .ok_or(LayerError::Missing { digest })?;
    if source.len() > SMALL_TAR {
        return Ok(None);
    }
    let limit = limits.limit_for(source.len());
    let expected = layer.diff_id;
    tokio::task::spawn_blocking(move || {
        let compressed = source.len();
        let mut reader = decoder(source.bytes(), compression, digest)?;
        // Package volumes are mostly already-compressed data: sized like the blob plus
        // room for tar headers, the buffer is usually filled without a reallocation (each
        // would copy and touch fresh pages) and without the copy of a shrink.
        let mut tar = Vec::with_capacity(
            usize::try_from(compressed.saturating_add(compressed / 16 + 16 * 1024))
                .unwrap_or(usize::MAX)
                .min(SMALL_TAR as usize + 1),
        );
        let read = (&mut reader)
            .take(SMALL_TAR.min(limit) + 1)
            .read_to_end(&mut tar);
        read.map_err(|e| LayerError::Decompress {
            digest,
            compression: compression.name(),
            at: tar.len() as u64,
            message: e.to_string(),
        })?;
        let len = tar.len() as u64;
        if len > limit {
            return Err(LayerError::TooLarge {
                digest,
                limit,
                compressed,
            });
        }
        if len > SMALL_TAR {
            return Ok(None);
        }
        if let Some(expected) = expected {
            let actual = expected.algorithm().digest(&tar);
            if actual != expected {
                return Err(LayerError::DiffIdMismatch {
                    digest,
                    expected,
                    actual,
                });
            }
        }
        // The tree holds this for as long as it is loaded: no more than 1/8 spare.
        if tar.capacity() - tar.len() > tar.len() / 8 {
            tar.shrink_to_fit();
        }
        let tar = Bytes::from(tar);
        // The tar's own digest only names it in an error: hashed then, not on every open.
        TarVolume::new_layer(tar.clone())
            .map(Some)
            .map_err(|source| LayerError::Tar {
                digest,
                tar: expected.unwrap_or_else(|| Algorithm::Sha256.digest(&tar)),
                source,
            })
    })
    .await
    .map_err(task_err(digest))?
}

/// Opens a layer that must stand on its own (a package volume): [`open_layer`], with a
/// hardlink to anything not earlier in the archive refused instead of left for the layers
/// below (see [`TarVolume::new_layer`]).
///
/// # Errors
/// Those of [`open_layer`]; [`LayerError::Tar`] with [`TarError::BadHardlink`] for a link
/// out of the archive.
pub async fn open_volume(
    store: &Store,
    layer: &LayerSpec,
    limits: &LayerLimits,
) -> Result<TarVolume, LayerError> {
    let volume = open_layer(store, layer, limits).await?;
    match volume.lower_links().iter().next() {
        Some((path, target)) => Err(LayerError::Tar {
            digest: layer.digest,
            tar: recorded_uncompressed(store, &layer.digest).unwrap_or(layer.digest),
            source: TarError::BadHardlink {
                path: path.clone(),
                target: target.clone(),
                reason: "does not exist (earlier in the archive)",
            },
        }),
        None => Ok(volume),
    }
}

/// Opens `layers` concurrently (about one per core at a time) and stacks them in order (the
/// first is the lowest).
///
/// # Errors
/// The first error of [`open_layer`] for any layer, or [`LayerError::Overlay`] if the
/// layers cannot be stacked.
#[tracing::instrument(level = "debug", skip_all, fields(layers = layers.len()))]
pub async fn open_image_layers(
    store: &Store,
    layers: &[LayerSpec],
    limits: &LayerLimits,
) -> Result<Overlay, LayerError> {
    let layers_len = layers.len();
    // A cold layer holds a decoder thread, a writer, a hasher and a few MiB of chunks in
    // flight: one per core at a time keeps a 100-layer image from starting 300 threads.
    let parallel = std::thread::available_parallelism().map_or(4, |n| n.get().max(2));
    let volumes: Vec<TarVolume> = futures::stream::iter(layers)
        .map(|l| open_layer(store, l, limits))
        .buffered(parallel)
        .try_collect()
        .await?;
    let layers: Vec<Arc<dyn FileSystem>> = volumes
        .into_iter()
        .map(|v| Arc::new(v) as Arc<dyn FileSystem>)
        .collect();
    // Flattening walks every layer's index: CPU work, so off the async threads.
    tokio::task::spawn_blocking(move || Overlay::new(layers))
        .await
        .map_err(|e| LayerError::Task {
            what: format!("stacking {} layers", layers_len),
            message: e.to_string(),
        })?
        .map_err(LayerError::Overlay)
}

type Turns = Mutex<HashMap<(PathBuf, Digest), Weak<tokio::sync::Mutex<()>>>>;

/// The per-(store, layer) async mutex. Entries are weak so finished layers cost nothing;
/// dead ones are swept whenever a new one is added.
fn layer_turn(store: &Store, digest: Digest) -> Arc<tokio::sync::Mutex<()>> {
    static TURNS: OnceLock<Turns> = OnceLock::new();
    let mut map = TURNS
        .get_or_init(Turns::default)
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    let key = (store.root().to_path_buf(), digest);
    if let Some(turn) = map.get(&key).and_then(Weak::upgrade) {
        return turn;
    }
    map.retain(|_, weak| weak.strong_count() > 0);
    let turn = Arc::new(tokio::sync::Mutex::new(()));
    map.insert(key, Arc::downgrade(&turn));
    turn
}

/// The digest of the uncompressed tar an earlier [`open_layer`] derived from the compressed
/// layer `digest`, if it recorded one: what a garbage collector must keep alongside it.
pub fn recorded_uncompressed(store: &Store, digest: &Digest) -> Option<Digest> {
    let kind = DerivedKind::new(DIFFID_KIND).ok()?;
    let bytes = store.get_derived(digest, &kind).ok()??;
    Digest::parse(std::str::from_utf8(&bytes).ok()?.trim()).ok()
}

/// The uncompressed tar of a compressed layer, if an earlier open left it usable.
fn cached_tar(store: &Store, layer: &LayerSpec) -> Result<Option<Blob>, LayerError> {
    let digest = layer.digest;
    let recorded = store
        .get_derived(&digest, &kind(DIFFID_KIND, digest)?)
        .map_err(store_err(digest))?
        .and_then(|bytes| {
            let text = std::str::from_utf8(&bytes).ok()?;
            Digest::parse(text.trim()).ok()
        });
    // Without a record, a known diff_id may still name a tar already stored (the same layer
    // compressed differently elsewhere): the config's diff_ids define the image's content,
    // so that tar is this image's layer. It is not recorded for the blob (see the caller).
    let Some(tar) = recorded.or(layer.diff_id) else {
        return Ok(None);
    };
    if layer.diff_id.is_some_and(|expected| expected != tar) {
        tracing::warn!(%digest, recorded = %tar, "diffid entry contradicts the config; redoing");
        return Ok(None);
    }
    store.get(&tar).map_err(store_err(digest))
}

/// Decompresses `layer` into a new store blob; see the [module docs](self). The flag is
/// false when the diff_id turned out to be stored already and nothing was decompressed.
async fn decompress(
    store: &Store,
    layer: &LayerSpec,
    compression: Compression,
    limits: &LayerLimits,
) -> Result<(Blob, bool), LayerError> {
    let digest = layer.digest;
    let source = store
        .get(&digest)
        .map_err(store_err(digest))?
        .ok_or(LayerError::Missing { digest })?;
    let limit = limits.limit_for(source.len());
    match decompress_once(store, layer, compression, &source, limit).await {
        // The resumed prefix was not this layer's (an interrupted attempt of an image that
        // claimed the same diff_id for other content): the failed commit discarded it, so
        // a second attempt starts from byte 0 and its verdict is the real one.
        Err((LayerError::DiffIdMismatch { .. }, true)) => {
            tracing::warn!(%digest, "resumed decompression did not verify; starting over");
            decompress_once(store, layer, compression, &source, limit)
                .await
                .map_err(|(e, _)| e)
        }
        result => result.map_err(|(e, _)| e),
    }
}

/// One attempt of [`decompress`]; an error says whether the attempt resumed a prefix.
async fn decompress_once(
    store: &Store,
    layer: &LayerSpec,
    compression: Compression,
    source: &Blob,
    limit: u64,
) -> Result<(Blob, bool), (LayerError, bool)> {
    let digest = layer.digest;
    let fresh = |e: LayerError| (e, false);
    let mut ingest = match layer.diff_id {
        Some(expected) => match store
            .begin(expected, None)
            .await
            .map_err(|e| fresh(store_err(digest)(e)))?
        {
            Begin::Present(blob) => return Ok((blob, false)),
            Begin::Write(ingest) => ingest,
        },
        None => store
            .begin_anonymous(Algorithm::Sha256)
            .await
            .map_err(|e| fresh(store_err(digest)(e)))?,
    };
    // An interrupted earlier attempt left this much verified-by-rehash prefix: keep it and
    // only hand over what follows.
    let skip = ingest.offset();
    let resumed = skip > 0;
    let started = std::time::Instant::now();
    let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
    let data = source.bytes().clone();
    let compressed = source.len();
    let decoder = tokio::task::spawn_blocking(move || {
        decode(data, compression, digest, limit, compressed, skip, &tx)
    });
    let mut write_err = None;
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = ingest.write(chunk).await {
            write_err = Some(e);
            break;
        }
    }
    // Closing our end makes a decoder still sending give up at its next chunk.
    drop(rx);
    let decoded = decoder.await.map_err(task_err(digest));
    let failure = match (write_err, decoded) {
        (Some(e), _) => Some(store_err(digest)(e)),
        (None, Err(e) | Ok(Err(e))) => Some(e),
        (None, Ok(Ok(()))) => None,
    };
    if let Some(e) = failure {
        ingest.abort().await;
        return Err((e, resumed));
    }
    let written = ingest.written();
    let tar = commit(ingest, digest).await.map_err(|e| (e, resumed))?;
    tracing::debug!(%digest, tar = %tar.digest(), compressed, bytes = written,
        elapsed = ?started.elapsed(), "layer decompressed");
    Ok((tar, true))
}

async fn commit(ingest: Ingest, digest: Digest) -> Result<Blob, LayerError> {
    ingest.commit().await.map_err(|e| match e {
        cache_core::Error::DigestMismatch { expected, actual } => LayerError::DiffIdMismatch {
            digest,
            expected,
            actual,
        },
        e => LayerError::Store { digest, source: e },
    })
}

/// The blocking half of [`decompress`]: streams the decoded tar to `tx` in chunks.
fn decode(
    data: Bytes,
    compression: Compression,
    digest: Digest,
    limit: u64,
    compressed: u64,
    mut skip: u64,
    tx: &mpsc::Sender<Bytes>,
) -> Result<(), LayerError> {
    let mut reader = decoder(&data, compression, digest)?;
    let mut total = 0u64;
    // A fresh zeroed chunk per read cost more than decompressing a small volume (a 1 MiB
    // memset plus page faults for a 200 KiB layer): buffers start near the compressed size
    // and `read_to_end` fills them without zeroing them first.
    let mut want = usize::try_from(compressed)
        .unwrap_or(CHUNK)
        .clamp(64 * 1024, CHUNK);
    loop {
        let mut buf = Vec::with_capacity(want);
        want = CHUNK;
        let n = (&mut reader)
            .take(CHUNK as u64)
            .read_to_end(&mut buf)
            .map_err(|e| LayerError::Decompress {
                digest,
                compression: compression.name(),
                at: total,
                message: e.to_string(),
            })?;
        if n == 0 {
            return Ok(());
        }
        total += n as u64;
        if total > limit {
            return Err(LayerError::TooLarge {
                digest,
                limit,
                compressed,
            });
        }
        let mut chunk = Bytes::from(buf);
        if skip > 0 {
            let drop_now = usize::try_from(skip).unwrap_or(usize::MAX).min(chunk.len());
            let _ = chunk.split_to(drop_now);
            skip -= drop_now as u64;
            if chunk.is_empty() {
                continue;
            }
        }
        if tx.blocking_send(chunk).is_err() {
            // The writer failed and stopped listening; it reports its own error.
            return Ok(());
        }
    }
}

/// Serves `tar` with its cached index if that holds up, else indexes it (and caches that);
/// a mapped tar is also read by range from its store file (see
/// [`TarVolume::with_host_file`]).
async fn volume(store: &Store, digest: Digest, tar: Blob) -> Result<TarVolume, LayerError> {
    let host = tar
        .is_mapped()
        .then(|| std::fs::File::open(store.blob_path(tar.digest())).ok())
        .flatten();
    let volume = indexed_volume(store, digest, tar).await?;
    Ok(match host {
        Some(file) => match volume.clone().with_host_file(file) {
            Ok(backed) => backed,
            // Not the file that was mapped (replaced meanwhile): the map still serves.
            Err(e) => {
                tracing::debug!(%digest, error = %e, "tar served from its map only");
                volume
            }
        },
        None => volume,
    })
}

async fn indexed_volume(store: &Store, digest: Digest, tar: Blob) -> Result<TarVolume, LayerError> {
    let tar_digest = *tar.digest();
    let index_kind = kind(INDEX_KIND, digest)?;
    if let Some(bytes) = store
        .get_derived(&tar_digest, &index_kind)
        .map_err(store_err(digest))?
    {
        let data = tar.bytes().clone();
        let cached = tokio::task::spawn_blocking(move || {
            let index = TarIndex::from_bytes(&bytes)?;
            if !offsets_follow_headers(&index, &data) {
                return Err(TarError::BadIndex(
                    "a file's data does not follow a tar header block".to_owned(),
                ));
            }
            TarVolume::with_index(data, Arc::new(index))
        })
        .await
        .map_err(task_err(digest))?;
        match cached {
            Ok(volume) => return Ok(volume),
            Err(e) => tracing::warn!(%digest, tar = %tar_digest, error = %e,
                "cached tar index unusable; re-indexing"),
        }
    }
    let data = tar.bytes().clone();
    let (volume, serialized) = tokio::task::spawn_blocking(move || {
        let volume = TarVolume::new_layer(data)?;
        let serialized = volume.index().to_bytes()?;
        Ok::<_, TarError>((volume, serialized))
    })
    .await
    .map_err(task_err(digest))?
    .map_err(|source| LayerError::Tar {
        digest,
        tar: tar_digest,
        source,
    })?;
    store
        .put_derived(&tar_digest, &index_kind, serialized)
        .await
        .map_err(store_err(digest))?;
    Ok(volume)
}

/// Whether every file's data range in `index` starts right after a tar header block of
/// `data` (a 512-byte block with a correct checksum), which any index scanned from `data`
/// satisfies: the header always immediately precedes the data, whatever extension headers
/// (PAX, GNU long names) come before it. Costs one block read per file.
fn offsets_follow_headers(index: &TarIndex, data: &[u8]) -> bool {
    index
        .entries()
        .iter()
        .filter(|e| matches!(e.kind, TarEntryKind::File | TarEntryKind::Hardlink))
        .all(|e| header_before(data, e.offset))
}

fn header_before(data: &[u8], offset: u64) -> bool {
    const CKSUM: std::ops::Range<usize> = 148..156;
    let Ok(end) = usize::try_from(offset) else {
        return false;
    };
    if end % 512 != 0 {
        return false;
    }
    let Some(block) = end.checked_sub(512).and_then(|start| data.get(start..end)) else {
        return false;
    };
    let stored = block
        .get(CKSUM)
        .and_then(|field| std::str::from_utf8(field).ok())
        .map(|field| field.trim_matches(|c| c == '\0' || c == ' '))
        .and_then(|field| u32::from_str_radix(field, 8).ok());
    // The checksum is taken with its own field read as spaces.
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| if CKSUM.contains(&i) { 32 } else { u32::from(b) })
        .sum();
    stored == Some(sum)
}

/// A reader of the decompressed bytes of `data`.
fn decoder(
    data: &[u8],
    compression: Compression,
    digest: Digest,
) -> Result<Box<dyn Read + '_>, LayerError> {
    Ok(match compression {
        // Layers are often several concatenated gzip members (parallel compressors): they
        // all belong to the stream, as Go's reader (and so every container runtime) reads it.
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(data)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(data).map_err(|e| {
                LayerError::Decompress {
                    digest,
                    compression: compression.name(),
                    at: 0,
                    message: e.to_string(),
                }
            })?)
        }
        Compression::None => Box::new(data),
    })
}

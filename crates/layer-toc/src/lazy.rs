//! [`LazyFiles`]: the [`FileSource`] of a volume known from its table of contents. A file's
//! frames (zstd) or members (gzip) are fetched by range when it is first read, decoded
//! (with memory bounded by one window and one output buffer), and committed to the store
//! under the file's own sha256, which the store checks before the file appears: no byte is
//! returned before the whole file is verified, and another layer or process holding the
//! same content finds it there.
//!
//! The `FileSystem` API is synchronous, the fetch is not: a read hands the fetch to the
//! runtime the loader keeps for this (never the caller's) and waits for it with a
//! deadline. A read from inside a tokio task therefore blocks that task's thread but cannot
//! deadlock its runtime; async callers should read from `spawn_blocking`.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use cache_core::{Blob, Digest, Store};
use futures::future::BoxFuture;
use vfs_overlay::{FileSource, TarEntry, TarVolume, VfsError, VfsPath};

use crate::error::TocError;
use crate::gunzip::Gunzip;
use crate::toc::{Codec, Toc, TocFile};

/// Bytes fetched per range request while a file is decoded: memory stays bounded by this
/// (plus the decoder's window) however large the file.
const WINDOW: u64 = 8 << 20;
/// Decoded bytes handed to the store at a time.
const OUT_CHUNK: usize = 256 << 10;
/// Files kept open for repeated reads (the set starts over when full).
const OPEN_FILES: usize = 256;

/// Fetches byte ranges of one blob, from wherever the loader gets it (registry, mirrors).
pub trait RangeFetch: Send + Sync + fmt::Debug {
    /// Exactly the bytes `range` of the blob, or why not (naming the host).
    fn fetch(&self, range: Range<u64>) -> BoxFuture<'static, Result<Bytes, String>>;
}

/// Files of one layer fetched on first read; see the module docs.
pub struct LazyFiles {
    toc: Arc<Toc>,
    store: Store,
    fetch: Arc<dyn RangeFetch>,
    runtime: tokio::runtime::Handle,
    deadline: Duration,
    /// Files served so far, so a caller can say which reads a later failure taints.
    read: std::sync::Mutex<std::collections::BTreeSet<VfsPath>>,
    /// Set when the layer as a whole turned out not to be what it should: every read fails.
    distrusted: OnceLock<String>,
    /// Told of each path when it is first read (the loader keeps a record for prefetch).
    on_first_read: OnceLock<ReadHook>,
    /// Files read before, open, so that reading a file piece by piece (`read_at`) costs a
    /// `dup` per read instead of a store lookup and an `open`.
    open: std::sync::Mutex<std::collections::HashMap<Digest, Arc<std::fs::File>>>,
}

/// See [`LazyFiles::on_first_read`].
pub type ReadHook = Arc<dyn Fn(&VfsPath) + Send + Sync>;

impl fmt::Debug for LazyFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyFiles")
            .field("blob", &self.toc.blob())
            .field("files", &self.toc.files().len())
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl LazyFiles {
    /// Files of the layer `toc` describes, verified into `store`, fetched through `fetch`
    /// on `runtime` (which must not be the runtime of a thread that reads: see the module
    /// docs); a read waits at most `deadline` for its file.
    pub fn new(
        toc: Arc<Toc>,
        store: Store,
        fetch: Arc<dyn RangeFetch>,
        runtime: tokio::runtime::Handle,
        deadline: Duration,
    ) -> Self {
        LazyFiles {
            toc,
            store,
            fetch,
            runtime,
            deadline,
            read: std::sync::Mutex::default(),
            distrusted: OnceLock::new(),
            on_first_read: OnceLock::new(),
            open: std::sync::Mutex::default(),
        }
    }

    /// Calls `hook` with each path the first time it is read, on the reading thread, before
    /// the file is fetched (so a read that fails is still told). Set once; later calls are
    /// ignored.
    pub fn on_first_read(&self, hook: ReadHook) {
        let _ = self.on_first_read.set(hook);
    }

    /// Refuse every later read, with `reason` (the layer's whole content, once downloaded,
    /// is not what its image config declares: a table and files that agree with each other
    /// prove nothing then).
    pub fn distrust(&self, reason: String) {
        let _ = self.distrusted.set(reason);
    }

    /// The volume: listing and `stat` from the table, file reads through `self`.
    ///
    /// # Errors
    /// What [`Toc::index`] refuses.
    pub fn volume(self: &Arc<Self>) -> Result<TarVolume, TocError> {
        let index = self.toc.index()?;
        Ok(TarVolume::with_file_source(index, self.clone()))
    }

    /// The layer these files are of.
    pub fn blob(&self) -> Digest {
        self.toc.blob()
    }

    /// The files served so far (by the path they were read under), in order.
    pub fn read_paths(&self) -> Vec<VfsPath> {
        self.read
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// The verified file, fetched now if the store lacks it.
    ///
    /// # Errors
    /// [`TocError::File`] naming the blob and the file.
    pub async fn file(&self, file: &TocFile) -> Result<Blob, TocError> {
        fetch_file(
            self.store.clone(),
            self.fetch.clone(),
            self.toc.blob(),
            file.clone(),
        )
        .await
    }

    fn toc_file(&self, path: &VfsPath, entry: &TarEntry) -> Result<&TocFile, VfsError> {
        self.toc
            .file_at(entry.offset)
            .ok_or_else(|| VfsError::Corrupt {
                path: path.clone(),
                reason: "the table of contents has no content for this file",
            })
    }

    /// Refuses reads of a distrusted layer; records the read.
    fn admit(&self, path: &VfsPath) -> Result<(), VfsError> {
        if let Some(reason) = self.distrusted.get() {
            return Err(VfsError::Io {
                path: path.clone(),
                op: "fetch",
                message: reason.clone(),
            });
        }
        let first = self
            .read
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(path.clone());
        if first && let Some(hook) = self.on_first_read.get() {
            hook(path);
        }
        Ok(())
    }

    /// The stored file, open: from `open` when a read had it before, else fetched if need
    /// be and opened.
    fn open_file(&self, path: &VfsPath, file: &TocFile) -> Result<std::fs::File, VfsError> {
        let io = |op, e: std::io::Error| VfsError::Io {
            path: path.clone(),
            op,
            message: e.to_string(),
        };
        let known = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&file.digest)
            .cloned();
        let opened = match known {
            Some(opened) => opened,
            None => {
                self.present(path, file)?;
                let opened = Arc::new(
                    std::fs::File::open(self.store.blob_path(&file.digest))
                        .map_err(|e| io("open", e))?,
                );
                let mut open = self
                    .open
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if open.len() >= OPEN_FILES {
                    open.clear();
                }
                open.insert(file.digest, opened.clone());
                opened
            }
        };
        opened.try_clone().map_err(|e| io("dup", e))
    }

    /// Blocks until the file is in the store (or the deadline passes).
    fn present(&self, path: &VfsPath, file: &TocFile) -> Result<Blob, VfsError> {
        let io = |message: String| VfsError::Io {
            path: path.clone(),
            op: "fetch",
            message,
        };
        if let Some(blob) = self
            .store
            .get(&file.digest)
            .map_err(|e| io(e.to_string()))?
        {
            return Ok(blob);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let task = fetch_file(
            self.store.clone(),
            self.fetch.clone(),
            self.toc.blob(),
            file.clone(),
        );
        let handle = self.runtime.spawn(async move {
            let _ = tx.send(task.await);
        });
        match rx.recv_timeout(self.deadline) {
            Ok(result) => result.map_err(|e| io(e.to_string())),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                handle.abort();
                Err(io(format!(
                    "layer {}: the file was not fetched within {:?}",
                    self.toc.blob(),
                    self.deadline
                )))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(io(format!(
                "layer {}: the fetch was dropped (the loader is shutting down)",
                self.toc.blob()
            ))),
        }
    }
}

impl FileSource for LazyFiles {
    fn read(&self, path: &VfsPath, entry: &TarEntry) -> vfs_overlay::Result<Bytes> {
        if entry.size == 0 {
            return Ok(Bytes::new());
        }
        let file = self.toc_file(path, entry)?;
        self.admit(path)?;
        Ok(self.present(path, file)?.into_bytes())
    }

    fn backing_file(
        &self,
        path: &VfsPath,
        entry: &TarEntry,
    ) -> vfs_overlay::Result<Option<std::fs::File>> {
        if entry.size == 0 {
            return Ok(None);
        }
        let file = self.toc_file(path, entry)?;
        self.admit(path)?;
        self.open_file(path, file).map(Some)
    }
}

/// Fetches `file`'s frames window by window, decodes them into an ingest of the file's
/// digest, and commits it (the store checks size and sha256). Concurrent readers of one
/// file, in this process or others, share one fetch through the store.
async fn fetch_file(
    store: Store,
    fetch: Arc<dyn RangeFetch>,
    blob: Digest,
    file: TocFile,
) -> Result<Blob, TocError> {
    let path = file.path.clone();
    let (digest, size) = (file.digest, file.size);
    store
        .get_or_ingest(digest, Some(size), move |ingest| async move {
            decode_into(ingest, &*fetch, &file).await
        })
        .await
        .map_err(|e| TocError::File {
            blob,
            path,
            reason: error_chain(&e),
        })
}

async fn decode_into(
    mut ingest: cache_core::Ingest,
    fetch: &dyn RangeFetch,
    file: &TocFile,
) -> Result<cache_core::Ingest, String> {
    // A partial left by a crash cannot be resumed mid-frame: start over.
    if ingest.offset() > 0 {
        ingest = ingest.restart().await.map_err(|e| e.to_string())?;
    }
    match file.codec {
        Codec::Zstd => decode_zstd(ingest, fetch, file).await,
        Codec::Gzip => decode_gzip(ingest, fetch, file).await,
    }
}

/// zstd frames hold exactly the file: more or fewer bytes is a lie.
async fn decode_zstd(
    mut ingest: cache_core::Ingest,
    fetch: &dyn RangeFetch,
    file: &TocFile,
) -> Result<cache_core::Ingest, String> {
    use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};
    let mut decoder = Decoder::new().map_err(|e| format!("zstd: {e}"))?;
    let mut out = vec![0u8; OUT_CHUNK];
    let mut produced = 0u64;
    let mut at = file.frames.start;
    'frames: while at < file.frames.end {
        let end = file.frames.end.min(at.saturating_add(WINDOW));
        let data = fetch.fetch(at..end).await?;
        if data.len() as u64 != end - at {
            return Err(format!(
                "bytes {at}..{end} of the layer came back as {} bytes",
                data.len()
            ));
        }
        let mut input = InBuffer::around(&data);
        loop {
            let n = {
                let mut output = OutBuffer::around(&mut out[..]);
                decoder
                    .run(&mut input, &mut output)
                    .map_err(|e| format!("its frames do not decode: {e}"))?;
                output.pos()
            };
            // The legacy layout's last frame also holds the tar bytes after the file.
            let keep = file.size.saturating_sub(produced).min(n as u64);
            produced = produced.saturating_add(keep);
            ingest
                .write_all(out.get(..keep as usize).unwrap_or_default())
                .await
                .map_err(|e| e.to_string())?;
            if produced == file.size {
                break 'frames;
            }
            if input.pos() >= data.len() && n < out.len() {
                break;
            }
        }
        at = end;
    }
    if produced != file.size {
        return Err(format!(
            "its frames decode to {produced} bytes, the table says {}",
            file.size
        ));
    }
    Ok(ingest)
}

/// gzip members hold the file after `skip` bytes, and whatever the tar has next after it
/// (padding, headers, other files); decoding stops once the file's bytes are out, so the
/// rest of its last member is neither fetched nor decoded when a window boundary allows.
async fn decode_gzip(
    mut ingest: cache_core::Ingest,
    fetch: &dyn RangeFetch,
    file: &TocFile,
) -> Result<cache_core::Ingest, String> {
    let want_end = file
        .skip
        .checked_add(file.size)
        .ok_or("innerOffset and size add up past 2^64")?;
    let mut gz = Gunzip::new();
    let mut out = vec![0u8; OUT_CHUNK];
    let mut decoded = 0u64;
    let mut at = file.frames.start;
    // What must be decoded (the skipped bytes, then the file) takes about as many
    // compressed bytes, rarely more (a stored block adds 5 bytes per 64 KiB): the first
    // window asks for that much, so a small file sharing a member with a large one does
    // not bring the large one.
    let mut window = want_end
        .saturating_add(want_end / 64)
        .saturating_add(4096)
        .min(WINDOW);
    'windows: while at < file.frames.end {
        let end = file.frames.end.min(at.saturating_add(window));
        window = WINDOW;
        let data = fetch.fetch(at..end).await?;
        if data.len() as u64 != end - at {
            return Err(format!(
                "bytes {at}..{end} of the layer came back as {} bytes",
                data.len()
            ));
        }
        let mut input: &[u8] = &data;
        loop {
            let (used, n) = gz
                .step(input, &mut out)
                .map_err(|e| format!("its gzip data does not decode: {e}"))?;
            if used == 0 && n == 0 {
                break;
            }
            input = input.get(used..).unwrap_or_default();
            let n = n as u64;
            let from = file.skip.saturating_sub(decoded).min(n);
            let to = want_end.saturating_sub(decoded).min(n);
            decoded = decoded.saturating_add(n);
            let part = usize::try_from(from)
                .ok()
                .zip(usize::try_from(to).ok())
                .and_then(|(from, to)| out.get(from..to))
                .unwrap_or_default();
            ingest.write_all(part).await.map_err(|e| e.to_string())?;
            if decoded >= want_end {
                break 'windows;
            }
        }
        at = end;
    }
    if decoded < want_end {
        return Err(format!(
            "its gzip data ends after {} of its {} bytes",
            decoded.saturating_sub(file.skip),
            file.size
        ));
    }
    Ok(ingest)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

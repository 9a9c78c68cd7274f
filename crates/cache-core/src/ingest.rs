//! Writing a blob: hash while writing, verify, then publish atomically.
//!
//! An [`Ingest`] is the write side of one blob. The caller hands it chunks (as [`Bytes`] or
//! through [`AsyncWrite`]); a blocking worker writes them to a file in `ingest/` while a
//! second thread hashes the same chunks, so hashing and disk writes overlap and neither
//! blocks the async runtime. Chunks travel through bounded channels: memory stays at a few
//! chunks per ingest whatever the blob's size.
//!
//! A blob of known size whose missing part is under 512 KiB (configs, small layers, most of
//! a package tree) skips the worker: its bytes wait in memory, bounded by that size, and
//! [`Ingest::commit`] writes, hashes and publishes them in one trip to a blocking thread.
//! A worker costs a thread hand-off per chunk and one to start; on a tree of small packages
//! those hand-offs were a large part of each package's CPU time. Such an ingest still holds
//! its partial and its lock: dropped before commit, it writes what it holds to the partial,
//! so a later ingest resumes from there exactly as from a worker's.
//!
//! [`Ingest::commit`] checks size, then digest, fsyncs the file, makes it read-only, renames
//! it into `blobs/` and fsyncs the directory. Until that rename nothing is visible; if any
//! check fails the data is discarded.
//!
//! Blobs under 64 KiB (manifests, configs, small atoms) skip both fsyncs: two fsyncs cost
//! more than a cold package's every other file operation together, while hashing 64 KiB
//! takes ~40 µs. [`crate::Store::get`] hashes such a blob on every read, so one that a power
//! cut left empty or torn is never served: it is deleted and reads as absent, and the next
//! load fetches it again.
//!
//! An ingest of a *known* digest writes to `ingest/<alg>-<hex>.partial` and holds that
//! file locked for its whole life (the lock is the digest's lock, see `lock.rs`). If it is
//! interrupted (error, drop, crash), the next ingest of that digest re-hashes the partial
//! prefix and continues at [`Ingest::offset`].

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWrite;
use tokio::sync::{OwnedRwLockReadGuard, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::PollSender;

use crate::error::{Error, IoContext, Result};
use crate::layout::Layout;
use crate::lock::DigestLock;
use crate::{Algorithm, Blob, Digest, Hasher, Store};

/// Chunks buffered from small writes are handed to the worker at this size.
const CHUNK: usize = 256 * 1024;
/// Chunks queued between the caller and the writer, and between writer and hasher.
const QUEUE: usize = 4;
/// Blobs smaller than this are not fsynced when committed; [`crate::Store::get`] hashes
/// them on every read instead (see the module docs).
pub(crate) const VERIFIED_ON_READ_BELOW: u64 = 64 * 1024;
/// Written bytes handed to the kernel's writeback at a time (see `start_writeback`).
const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;
/// Below this many expected bytes, hashing inline is cheaper than a hashing thread.
const INLINE_HASH_BELOW: u64 = 4 * 1024 * 1024;
/// Below this many missing bytes (size known), an ingest buffers in memory instead of
/// starting a worker (see the module docs).
const BUFFER_BELOW: u64 = 512 * 1024;

/// What the caller expects to ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// A known digest (and maybe size): locked, resumable, verified at commit.
    Known { digest: Digest, size: Option<u64> },
    /// Digest unknown until the end (imports): a temp file, never resumed.
    Anonymous { algorithm: Algorithm },
}

/// The file being written, owned by the worker.
#[derive(Debug)]
pub(crate) struct Sink {
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    pub(crate) written: u64,
    /// Remove the file when the sink is dropped without being committed.
    pub(crate) discard: Arc<AtomicBool>,
    pub(crate) committed: bool,
    pub(crate) _gate: Option<OwnedRwLockReadGuard<()>>,
    /// Bytes before this offset have been handed to the kernel's writeback.
    pub(crate) writeback_from: u64,
}

impl Sink {
    pub(crate) fn write(&mut self, data: &[u8]) -> Result<()> {
        if let Err(e) = self.file.write_all(data) {
            // A failed write (full disk, I/O error) leaves an unknown tail: do not keep it
            // for resuming, and give the space back.
            self.discard.store(true, Ordering::Release);
            return Err(Error::io("write", &self.path, e));
        }
        self.written += data.len() as u64;
        if self.written - self.writeback_from >= WRITEBACK_EVERY {
            start_writeback(&self.file, self.writeback_from, self.written);
            self.writeback_from = self.written;
        }
        Ok(())
    }
}

/// Start writing `from..to` of `file` to the disk without waiting for it, so that the
/// disk works while the download goes on and the fsync at commit only waits for the tail.
/// A hint: failure (another OS, a filesystem without it) changes nothing but speed.
fn start_writeback(file: &File, from: u64, to: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(from), i64::try_from(to - from)) else {
            return;
        };
        // SAFETY: plain system call on a descriptor this sink owns; no memory is passed.
        let _ = unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
        };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, from, to);
}

impl Drop for Sink {
    // For a known digest `file` is the locked partial: removing the path before the file
    // closes (after this body) keeps the lock protocol of `DigestLock::remove`.
    fn drop(&mut self) {
        if !self.committed && self.discard.load(Ordering::Acquire) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A fresh temp file for an ingest whose digest is not known in advance.
pub(crate) fn open_temp(
    layout: &Layout,
    algorithm: Algorithm,
    gate: Option<OwnedRwLockReadGuard<()>>,
) -> Result<(Sink, Hasher)> {
    std::fs::create_dir_all(layout.ingest_dir()).at("create", &layout.ingest_dir())?;
    let path = layout.temp();
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .at("create", &path)?;
    let sink = Sink {
        file,
        path,
        written: 0,
        discard: Arc::new(AtomicBool::new(true)),
        committed: false,
        _gate: gate,
        writeback_from: 0,
    };
    Ok((sink, Hasher::new(algorithm)))
}

/// The partial download of `digest` that `lock` holds, with what it already holds re-hashed
/// (the resume point).
pub(crate) fn open_partial(
    layout: &Layout,
    lock: DigestLock,
    digest: Digest,
    size: Option<u64>,
    gate: Option<OwnedRwLockReadGuard<()>>,
) -> Result<(Sink, Hasher)> {
    let path = layout.partial(&digest);
    let mut file = lock.into_file();
    let mut hasher = Hasher::new(digest.algorithm());
    let mut len = file.metadata().at("stat", &path)?.len();
    if size.is_some_and(|s| len > s) {
        // Longer than the blob can be: the prefix is garbage, start over.
        file.set_len(0).at("truncate", &path)?;
        len = 0;
    }
    if len > 0 {
        let mut buf = vec![0u8; CHUNK];
        let mut reader = (&file).take(len);
        loop {
            let n = reader.read(&mut buf).at("read partial", &path)?;
            let Some(data) = buf.get(..n) else { break };
            if n == 0 {
                break;
            }
            hasher.update(data);
        }
        if hasher.bytes_hashed() != len {
            // The file shrank under us; nothing sane to resume from.
            file.set_len(0).at("truncate", &path)?;
            hasher = Hasher::new(digest.algorithm());
        }
    }
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(hasher.bytes_hashed()))
        .at("seek", &path)?;
    let sink = Sink {
        file,
        written: hasher.bytes_hashed(),
        path,
        discard: Arc::new(AtomicBool::new(false)),
        committed: false,
        _gate: gate,
        writeback_from: hasher.bytes_hashed(),
    };
    tracing::debug!(%digest, offset = sink.written, "opened ingest");
    Ok((sink, hasher))
}

/// Verify and publish. Blocking.
pub(crate) fn finish(
    layout: &Layout,
    mut sink: Sink,
    hasher: Hasher,
    target: Target,
) -> Result<(Digest, PathBuf)> {
    let actual = hasher.finalize();
    if let Target::Known { digest, size } = target {
        if let Some(expected) = size
            && sink.written != expected
        {
            sink.discard.store(true, Ordering::Release);
            return Err(Error::SizeMismatch {
                digest,
                expected,
                actual: sink.written,
                at_least: false,
            });
        }
        if actual != digest {
            sink.discard.store(true, Ordering::Release);
            return Err(Error::DigestMismatch {
                expected: digest,
                actual,
            });
        }
    }
    // Errors from here on are the disk's, not the data's: drop the file, it will be re-fetched.
    sink.discard.store(true, Ordering::Release);
    let (file, path, written) = (&sink.file, sink.path.clone(), sink.written);
    let committed = &mut sink.committed;
    let dest = publish(layout, file, &path, written, &actual, || *committed = true)?;
    tracing::debug!(digest = %actual, bytes = written, "blob committed");
    Ok((actual, dest))
}

/// Makes the complete and verified file `file` at `path` (`len` bytes) the blob `digest`:
/// fsync, read-only, rename into `blobs/`, fsync of the directory. `renamed` runs as soon
/// as the rename is done: from then on `path` may be someone else's new file.
pub(crate) fn publish(
    layout: &Layout,
    file: &File,
    path: &Path,
    len: u64,
    digest: &Digest,
    renamed: impl FnOnce(),
) -> Result<PathBuf> {
    // A small blob is hashed again on every read instead (`Store::get`), which costs less
    // than two fsyncs: one torn by a power cut is found there and fetched again.
    let durable = len >= VERIFIED_ON_READ_BELOW;
    if durable {
        file.sync_data().at("fsync", path)?;
    }
    set_read_only(file, path)?;
    let dest = layout.blob(digest);
    let parent = dest.parent().unwrap_or(layout.root());
    let created = ensure_dir(parent)?;
    std::fs::rename(path, &dest).at("rename into", &dest)?;
    renamed();
    if durable {
        sync_dir(parent)?;
        if created && let Some(grand) = parent.parent() {
            sync_dir(grand)?;
        }
    }
    Ok(dest)
}

/// Writes `bytes`, whole and already verified as `digest`, to a fresh temp file and
/// publishes it (see [`publish`]). No digest lock: nothing is visible before the rename,
/// and a concurrent writer of the same digest can only rename the same bytes over it.
pub(crate) fn publish_bytes(layout: &Layout, digest: &Digest, bytes: &[u8]) -> Result<PathBuf> {
    std::fs::create_dir_all(layout.ingest_dir()).at("create", &layout.ingest_dir())?;
    let path = layout.temp();
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .at("create", &path)?;
    let mut renamed = false;
    let result = file.write_all(bytes).at("write", &path).and_then(|()| {
        publish(layout, &file, &path, bytes.len() as u64, digest, || {
            renamed = true
        })
    });
    if !renamed {
        let _ = std::fs::remove_file(&path);
    }
    result
}

fn set_read_only(file: &File, path: &Path) -> Result<()> {
    let mut perms = file.metadata().at("stat", path)?.permissions();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        perms.set_mode(0o444);
    }
    #[cfg(not(unix))]
    perms.set_readonly(true);
    file.set_permissions(perms).at("chmod", path)
}

/// `create_dir_all`, telling whether the last component was new.
pub(crate) fn ensure_dir(dir: &Path) -> Result<bool> {
    if dir.is_dir() {
        return Ok(false);
    }
    std::fs::create_dir_all(dir).at("create directory", dir)?;
    Ok(true)
}

/// fsync a directory so a rename into it survives a power cut.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .at("fsync directory", dir)?;
    }
    Ok(())
}

/// The blocking worker: write every chunk, hash it on a second thread when that pays off.
fn run_worker(
    mut sink: Sink,
    mut hasher: Hasher,
    mut rx: mpsc::Receiver<Bytes>,
    expected_size: Option<u64>,
) -> (Result<()>, Sink, Hasher) {
    let inline = expected_size.is_some_and(|s| s < INLINE_HASH_BELOW);
    if inline {
        while let Some(chunk) = rx.blocking_recv() {
            hasher.update(&chunk);
            if let Err(e) = sink.write(&chunk) {
                return (Err(e), sink, hasher);
            }
        }
        return (Ok(()), sink, hasher);
    }
    let (hash_tx, hash_rx) = std::sync::mpsc::sync_channel::<Bytes>(QUEUE);
    std::thread::scope(|scope| {
        let hashing = scope.spawn(move || {
            for chunk in hash_rx {
                hasher.update(&chunk);
            }
            hasher
        });
        let mut result = Ok(());
        while let Some(chunk) = rx.blocking_recv() {
            // The hasher only stops when hash_tx is dropped, so this send cannot fail.
            let _ = hash_tx.send(chunk.clone());
            if let Err(e) = sink.write(&chunk) {
                result = Err(e);
                break;
            }
        }
        drop(hash_tx);
        match hashing.join() {
            Ok(hasher) => (result, sink, hasher),
            Err(_) => (
                Err(Error::Task {
                    op: "hashing",
                    message: "the hashing thread panicked".into(),
                }),
                sink,
                Hasher::new(Algorithm::Sha256),
            ),
        }
    })
}

type WorkerHandle = JoinHandle<(Result<()>, Sink, Hasher)>;

/// Where an ingest's bytes go until commit.
#[derive(Debug)]
enum Writer {
    /// A blocking worker writes (and hashes) each chunk as it comes.
    Worker {
        tx: PollSender<Bytes>,
        handle: Option<WorkerHandle>,
    },
    /// Everything stays in memory until commit: `chunks` as they came (not copied), then
    /// `Ingest::buf` for small writes. The partial waits in `held`, `None` once handed to
    /// commit or dropped.
    Buffered {
        held: Option<(Sink, Hasher)>,
        chunks: Vec<Bytes>,
    },
}

/// Writes `chunks` to the end of `sink` and hashes them. Blocking.
fn append(sink: &mut Sink, hasher: &mut Hasher, chunks: &[Bytes]) -> Result<()> {
    for chunk in chunks {
        hasher.update(chunk);
        sink.write(chunk)?;
    }
    Ok(())
}

/// The write side of one blob. See the [module docs](self).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use cache_core::{Algorithm, Begin, Store};
///
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path()).await?;
/// let body = b"hello blob".repeat(1000);
/// let digest = Algorithm::Sha256.digest(&body);
///
/// let Begin::Write(mut ingest) = store.begin(digest, Some(body.len() as u64)).await? else {
///     unreachable!("a new store holds nothing");
/// };
/// assert_eq!(ingest.offset(), 0);
/// ingest.write_all(&body).await?;
/// let blob = ingest.commit().await?;
/// assert_eq!(&blob[..], &body[..]);
/// assert_eq!(store.get(&digest)?.map(|b| b.len()), Some(body.len() as u64));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Ingest {
    store: Store,
    target: Target,
    offset: u64,
    written: u64,
    buf: BytesMut,
    writer: Writer,
    discard: Arc<AtomicBool>,
    failed: Option<Error>,
}

impl Ingest {
    pub(crate) fn start(store: Store, target: Target, sink: Sink, hasher: Hasher) -> Self {
        let offset = sink.written;
        let discard = sink.discard.clone();
        let expected = match target {
            Target::Known { size, .. } => size,
            Target::Anonymous { .. } => None,
        };
        let missing = expected.map(|size| size.saturating_sub(offset));
        if missing.is_some_and(|m| m < BUFFER_BELOW) {
            return Ingest {
                store,
                target,
                offset,
                written: offset,
                // `check_room` keeps what is held within the declared size, `missing`.
                buf: BytesMut::new(),
                writer: Writer::Buffered {
                    held: Some((sink, hasher)),
                    chunks: Vec::new(),
                },
                discard,
                failed: None,
            };
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let worker = tokio::task::spawn_blocking(move || run_worker(sink, hasher, rx, expected));
        Ingest {
            store,
            target,
            offset,
            written: offset,
            buf: BytesMut::new(),
            writer: Writer::Worker {
                tx: PollSender::new(tx),
                handle: Some(worker),
            },
            discard,
            failed: None,
        }
    }

    fn buffered(&self) -> bool {
        matches!(self.writer, Writer::Buffered { .. })
    }

    /// Everything a buffered ingest holds, in order.
    fn take_held_chunks(&mut self) -> Vec<Bytes> {
        let mut all = match &mut self.writer {
            Writer::Buffered { chunks, .. } => std::mem::take(chunks),
            Writer::Worker { .. } => Vec::new(),
        };
        if !self.buf.is_empty() {
            all.push(self.buf.split().freeze());
        }
        all
    }

    /// How many bytes were already present when this ingest was opened: the caller should
    /// continue its source from here (e.g. an HTTP `Range: bytes=<offset>-`).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes held so far, including [`offset`](Self::offset).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The digest this ingest must produce, if known.
    pub fn expected_digest(&self) -> Option<Digest> {
        match self.target {
            Target::Known { digest, .. } => Some(digest),
            Target::Anonymous { .. } => None,
        }
    }

    /// Throw away what was written so far (e.g. because the source restarted from byte 0
    /// and cannot serve a range). The ingest continues, empty, at offset 0.
    pub async fn restart(self) -> Result<Ingest> {
        let store = self.store.clone();
        let target = self.target;
        let Target::Known { digest, size } = target else {
            drop(self);
            return Err(Error::Task {
                op: "restart",
                message: "an anonymous ingest cannot be restarted; start a new one".into(),
            });
        };
        self.discard.store(true, Ordering::Release);
        // Dropping waits for nothing; the worker deletes the partial and releases the lock
        // when it drains, so begin() below will wait for that lock.
        drop(self);
        match store.begin(digest, size).await? {
            crate::Begin::Write(ingest) => Ok(ingest),
            crate::Begin::Present(_) => Err(Error::Task {
                op: "restart",
                message: format!("{digest} was stored by another writer meanwhile"),
            }),
        }
    }

    fn check_room(&mut self, more: usize) -> Result<()> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if let Target::Known {
            digest,
            size: Some(expected),
        } = self.target
            && self.written + more as u64 > expected
        {
            // A body longer than its descriptor: stop now, keep memory and disk bounded.
            let err = Error::SizeMismatch {
                digest,
                expected,
                actual: self.written + more as u64,
                at_least: true,
            };
            self.discard.store(true, Ordering::Release);
            self.failed = Some(err.clone());
            return Err(err);
        }
        Ok(())
    }

    /// Append a chunk. Large chunks are passed on without copying.
    pub async fn write(&mut self, chunk: Bytes) -> Result<()> {
        if self.buffered() {
            self.check_room(chunk.len())?;
            self.written += chunk.len() as u64;
            let pending = (!self.buf.is_empty()).then(|| self.buf.split().freeze());
            if let Writer::Buffered { chunks, .. } = &mut self.writer {
                chunks.extend(pending);
                chunks.push(chunk);
            }
            return Ok(());
        }
        if chunk.len() < CHUNK / 4 {
            return self.write_all(&chunk).await;
        }
        self.check_room(chunk.len())?;
        self.flush_buf().await?;
        self.written += chunk.len() as u64;
        self.send(chunk).await
    }

    /// Append a slice (copied into the ingest's chunk buffer).
    pub async fn write_all(&mut self, mut data: &[u8]) -> Result<()> {
        self.check_room(data.len())?;
        if self.buffered() {
            self.buf.extend_from_slice(data);
            self.written += data.len() as u64;
            return Ok(());
        }
        while !data.is_empty() {
            if self.buf.len() >= CHUNK {
                self.flush_buf().await?;
            }
            let room = CHUNK - self.buf.len();
            let (now, rest) = data.split_at(room.min(data.len()));
            if self.buf.capacity() == 0 {
                self.buf.reserve(CHUNK);
            }
            self.buf.extend_from_slice(now);
            self.written += now.len() as u64;
            data = rest;
        }
        Ok(())
    }

    async fn flush_buf(&mut self) -> Result<()> {
        if self.buf.is_empty() || self.buffered() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.send(chunk).await
    }

    async fn send(&mut self, chunk: Bytes) -> Result<()> {
        let sent = match &self.writer {
            Writer::Worker { tx, .. } => match tx.get_ref() {
                Some(tx) => tx.send(chunk).await.is_ok(),
                None => false,
            },
            Writer::Buffered { .. } => false,
        };
        if sent {
            Ok(())
        } else {
            Err(self.worker_failure().await)
        }
    }

    /// The worker stopped taking chunks: find out why.
    async fn worker_failure(&mut self) -> Error {
        if let Some(e) = &self.failed {
            return e.clone();
        }
        let handle = match &mut self.writer {
            Writer::Worker { handle, .. } => handle.take(),
            Writer::Buffered { .. } => None,
        };
        let err = match handle {
            Some(handle) => match handle.await {
                Ok((Err(e), _, _)) => e,
                Ok((Ok(()), _, _)) => Error::Task {
                    op: "ingest",
                    message: "the writer stopped early".into(),
                },
                Err(e) => Error::task("ingest", e),
            },
            None => Error::Task {
                op: "ingest",
                message: "the writer is gone".into(),
            },
        };
        self.failed = Some(err.clone());
        err
    }

    /// Verify and publish the blob. See the [module docs](self).
    #[tracing::instrument(level = "debug", skip(self), fields(expected = ?self.expected_digest(), bytes = self.written))]
    pub async fn commit(mut self) -> Result<Blob> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let layout = self.store.layout().clone();
        let target = self.target;
        let (digest, _path) = match &mut self.writer {
            Writer::Buffered { held, .. } => {
                let Some((mut sink, mut hasher)) = held.take() else {
                    return Err(self.worker_failure().await);
                };
                let data = self.take_held_chunks();
                tokio::task::spawn_blocking(move || {
                    append(&mut sink, &mut hasher, &data)?;
                    finish(&layout, sink, hasher, target)
                })
                .await
                .map_err(|e| Error::task("commit", e))??
            }
            Writer::Worker { .. } => {
                self.flush_buf().await?;
                let Writer::Worker { tx, handle } = &mut self.writer else {
                    return Err(self.worker_failure().await);
                };
                tx.close();
                let Some(worker) = handle.take() else {
                    return Err(self.worker_failure().await);
                };
                let (result, sink, hasher) = worker.await.map_err(|e| Error::task("ingest", e))?;
                result?;
                tokio::task::spawn_blocking(move || finish(&layout, sink, hasher, target))
                    .await
                    .map_err(|e| Error::task("commit", e))??
            }
        };
        self.store.get(&digest)?.ok_or_else(|| Error::NotFound {
            digest,
            root: self.store.root().to_owned(),
        })
    }

    /// Give up and delete what was written (instead of leaving it to be resumed).
    pub async fn abort(mut self) {
        self.discard.store(true, Ordering::Release);
        match &mut self.writer {
            Writer::Worker { tx, handle } => {
                tx.close();
                if let Some(worker) = handle.take() {
                    let _ = worker.await;
                }
            }
            // Dropping the sink deletes the partial (one unlink) and releases the lock.
            Writer::Buffered { held, .. } => drop(held.take()),
        }
    }

    fn poll_flush_buf(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let Writer::Worker { tx, .. } = &mut self.writer else {
            return Poll::Ready(Ok(()));
        };
        if self.buf.is_empty() {
            return Poll::Ready(Ok(()));
        }
        if ready!(tx.poll_reserve(cx)).is_err() {
            return Poll::Ready(Err(std::io::Error::other(
                "the ingest writer stopped; commit() reports why",
            )));
        }
        let chunk = self.buf.split().freeze();
        if tx.send_item(chunk).is_err() {
            return Poll::Ready(Err(std::io::Error::other(
                "the ingest writer stopped; commit() reports why",
            )));
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Ingest {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.buf.len() >= CHUNK {
            ready!(this.poll_flush_buf(cx))?;
        }
        let n = if this.buffered() {
            data.len()
        } else {
            data.len().min(CHUNK.saturating_sub(this.buf.len()))
        };
        if let Err(e) = this.check_room(n) {
            return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)));
        }
        if this.buf.capacity() == 0 && !this.buffered() {
            this.buf.reserve(CHUNK);
        }
        this.buf
            .extend_from_slice(data.get(..n).unwrap_or_default());
        this.written += n as u64;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().poll_flush_buf(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().poll_flush_buf(cx)
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        // Hand over what is still buffered, so a resumed ingest loses as little as possible.
        // Best effort: if the queue is full the tail is simply re-fetched later.
        let keep = self.failed.is_none() && !self.discard.load(Ordering::Acquire);
        let data = self.take_held_chunks();
        match &mut self.writer {
            Writer::Worker { tx, .. } => {
                if keep
                    && let [chunk] = &data[..]
                    && let Some(tx) = tx.get_ref()
                {
                    let _ = tx.try_send(chunk.clone());
                }
            }
            Writer::Buffered { held, .. } => {
                let Some((mut sink, mut hasher)) = held.take() else {
                    return;
                };
                if !keep || data.is_empty() {
                    // Deletes the partial if discarded, and releases the lock.
                    drop(sink);
                    return;
                }
                // The partial keeps what arrived; the lock is released once it is written.
                let write = move || {
                    let _ = append(&mut sink, &mut hasher, &data);
                    drop(sink);
                };
                match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => drop(runtime.spawn_blocking(write)),
                    Err(_) => write(),
                }
            }
        }
    }
}

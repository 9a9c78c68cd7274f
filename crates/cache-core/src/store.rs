//! [`Store`]: open, read, write and share blobs.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use futures::future::{BoxFuture, WeakShared};
use tokio::sync::RwLock;

use crate::error::{Error, IoContext, Result};
use crate::ingest::{self, Ingest, Target};
use crate::layout::Layout;
use crate::lock::{DigestLock, StoreLock};
use crate::memory::MemoryTier;
use crate::refs::{self, RepoRefs};
use crate::{Algorithm, Blob, Digest, Hasher};

/// Tuning knobs for a [`Store`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Blobs of at least this many bytes are memory-mapped; smaller ones are read into memory.
    pub mmap_threshold: u64,
    /// Byte budget of the in-memory tier (0 disables it).
    pub memory_budget: u64,
    /// How long to wait for another process's lock (an ingest of the same digest, or gc).
    pub lock_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            mmap_threshold: 64 * 1024,
            memory_budget: 256 * 1024 * 1024,
            lock_timeout: Duration::from_secs(600),
        }
    }
}

/// Facts about a stored blob, answered from metadata alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// The digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Where the blob lives.
    pub path: PathBuf,
    /// When it was last used (see [`Store::get`]), for LRU trimming.
    pub last_used: SystemTime,
}

impl BlobInfo {
    pub(crate) fn new(digest: Digest, path: PathBuf, meta: &std::fs::Metadata) -> Self {
        BlobInfo {
            digest,
            size: meta.len(),
            // The access time is what `get` refreshes for LRU; mtime where atime is missing.
            last_used: meta
                .accessed()
                .or_else(|_| meta.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH),
            path,
        }
    }
}

/// The outcome of [`Store::begin`].
// Returned once and matched at once, never stored in bulk: boxing the writer would only
// cost an allocation per ingest.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Begin {
    /// The blob is already stored (perhaps another process just finished it).
    Present(Blob),
    /// The caller is now the only writer of this digest.
    Write(Ingest),
}

/// How [`Store::link_to`] should place a blob's file at another path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// Reflink, else hardlink, else copy.
    Auto,
    /// Copy-on-write clone only (btrfs, xfs, …).
    Reflink,
    /// Hardlink only: shares the inode, so the file stays read-only.
    Hardlink,
    /// A plain copy.
    Copy,
}

/// What [`Store::link_to`] actually did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linked {
    /// A copy-on-write clone.
    Reflink,
    /// A hardlink to the store's file.
    Hardlink,
    /// A byte copy.
    Copy,
}

/// A tag pointer: which digest a tag named, and when we learned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefEntry {
    /// The digest the tag pointed to.
    pub digest: Digest,
    /// When it was fetched from its registry.
    pub fetched_at: SystemTime,
}

impl RefEntry {
    /// How long ago it was fetched (zero if the clock went backwards).
    pub fn age(&self) -> Duration {
        SystemTime::now()
            .duration_since(self.fetched_at)
            .unwrap_or_default()
    }

    /// True when it was fetched less than `ttl` ago: use it without asking the registry.
    /// (Offline loads use a ref whatever its age.)
    pub fn is_fresh(&self, ttl: Duration) -> bool {
        self.age() < ttl
    }
}

/// A repository's tags as last fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagList {
    /// The tags.
    pub tags: Vec<String>,
    /// When they were fetched.
    pub fetched_at: SystemTime,
}

impl TagList {
    /// True when fetched less than `ttl` ago.
    pub fn is_fresh(&self, ttl: Duration) -> bool {
        SystemTime::now()
            .duration_since(self.fetched_at)
            .unwrap_or_default()
            < ttl
    }
}

/// The tags that can be remembered (a refs file holds only valid tags).
fn valid_tags(mut tags: Vec<String>) -> Vec<String> {
    tags.retain(|t| crate::layout::Layout::check_tag(t));
    tags
}

fn now_millis() -> u64 {
    let millis = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    u64::try_from(millis).unwrap_or(u64::MAX)
}

type InFlight = WeakShared<BoxFuture<'static, Result<Blob>>>;

pub(crate) struct Inner {
    pub(crate) layout: Layout,
    pub(crate) options: StoreOptions,
    pub(crate) memory: MemoryTier,
    inflight: Mutex<HashMap<Digest, InFlight>>,
    pub(crate) store_lock: StoreLock,
    /// Ingests hold it shared; gc and clean take it exclusively (in-process counterpart of
    /// the `.lock` file, which only excludes other processes).
    pub(crate) gate: Arc<RwLock<()>>,
    /// Held while a refs file is read, changed and replaced.
    refs_turn: Mutex<()>,
}

/// A content-addressed blob store on disk, shared by threads (clone it) and processes (open
/// the same root).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use bytes::Bytes;
/// use cache_core::{Algorithm, Store};
///
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path()).await?;
/// let body = Bytes::from_static(b"layer bytes");
/// let digest = Algorithm::Sha256.digest(&body);
///
/// // Every caller of the same digest shares one fill; later callers get the stored blob.
/// let blob = store
///     .get_or_ingest(digest, Some(body.len() as u64), move |mut ingest| async move {
///         ingest.write(body).await?;
///         Ok::<_, cache_core::Error>(ingest)
///     })
///     .await?;
/// assert_eq!(&blob[..], b"layer bytes");
/// assert!(store.contains(&digest));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.inner.layout.root())
            .field("memory", &self.inner.memory)
            .finish()
    }
}

impl Store {
    /// Open (creating if needed) the store at `root` with default options.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Store> {
        Self::open_with(root, StoreOptions::default()).await
    }

    /// Open with explicit options.
    #[tracing::instrument(level = "debug", skip_all, fields(root))]
    pub async fn open_with(root: impl Into<PathBuf>, options: StoreOptions) -> Result<Store> {
        let root = root.into();
        tracing::Span::current().record("root", tracing::field::display(root.display()));
        let layout = Layout::new(root);
        let timeout = options.lock_timeout;
        let l = layout.clone();
        // A store set up before and not held exclusively (by a gc) opens in a few metadata
        // syscalls, done here: a blocking thread would cost more than the work (it was a
        // tenth of a warm load). Anything else may create files or wait for the lock.
        let store_lock = match open_in_place(&layout)? {
            Some(lock) => lock,
            None => tokio::task::spawn_blocking(move || {
                for dir in [l.blobs_dir(), l.ingest_dir(), l.refs_dir(), l.derived_dir()] {
                    std::fs::create_dir_all(&dir).at("create directory", &dir)?;
                }
                tag_cache_dir(&l);
                StoreLock::shared(l.lock_file(), timeout)
            })
            .await
            .map_err(|e| Error::task("open", e))??,
        };
        Ok(Store {
            inner: Arc::new(Inner {
                memory: MemoryTier::new(options.memory_budget),
                layout,
                options,
                inflight: Mutex::new(HashMap::new()),
                store_lock,
                gate: Arc::new(RwLock::new(())),
                refs_turn: Mutex::new(()),
            }),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        self.inner.layout.root()
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    /// The in-memory tier.
    pub fn memory(&self) -> &MemoryTier {
        &self.inner.memory
    }

    /// Where a blob is (or would be) stored. The file must be treated as read-only.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.inner.layout.blob(digest)
    }

    /// True when the blob is stored (one `stat`).
    pub fn contains(&self, digest: &Digest) -> bool {
        self.inner.memory.get(digest).is_some() || self.blob_path(digest).is_file()
    }

    /// Size and last use of a stored blob, from metadata only.
    pub fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>> {
        let path = self.blob_path(digest);
        match std::fs::metadata(&path) {
            Ok(meta) => Ok(Some(BlobInfo::new(*digest, path, &meta))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("stat", path, e)),
        }
    }

    /// The blob, if stored. Never reads a mapped blob's data: a few metadata syscalls and an
    /// `mmap` (or nothing at all on a memory-tier hit). Blobs below the mmap threshold are read.
    ///
    /// This is synchronous on purpose: it costs microseconds, less than a trip through
    /// `spawn_blocking` would.
    pub fn get(&self, digest: &Digest) -> Result<Option<Blob>> {
        if let Some(blob) = self.inner.memory.get(digest) {
            return Ok(Some(blob));
        }
        let path = self.blob_path(digest);
        let Some((blob, file, meta)) =
            Blob::open(*digest, &path, self.inner.options.mmap_threshold)?
        else {
            return Ok(None);
        };
        if blob.len() < ingest::VERIFIED_ON_READ_BELOW
            && digest.algorithm().digest(&blob) != *digest
        {
            // Committed without fsync (ingest.rs) and torn by a power cut since: absent.
            tracing::warn!(%digest, path = %path.display(), "a small blob does not hash to its name; removing it");
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Ok(None);
        }
        touch(&file, &meta);
        self.inner.memory.insert(blob.clone());
        Ok(Some(blob))
    }

    /// Become the writer of `digest`, or learn that it is already stored.
    ///
    /// Waits (up to the lock timeout) while another task or process writes the same digest,
    /// then returns [`Begin::Present`] if that writer succeeded. A partial download left by an
    /// interrupted writer is re-hashed and continued: see [`Ingest::offset`].
    #[tracing::instrument(level = "debug", skip(self), fields(%digest))]
    pub async fn begin(&self, digest: Digest, size: Option<u64>) -> Result<Begin> {
        if let Some(blob) = self.get(&digest)? {
            return Ok(Begin::Present(blob));
        }
        let gate = self.inner.gate.clone().read_owned().await;
        let lock = DigestLock::acquire(
            self.inner.layout.partial(&digest),
            &format!("the ingest of {digest}"),
            self.inner.options.lock_timeout,
        )
        .await?;
        // Whoever held the lock before us may have finished the blob; the partial we hold
        // is then an empty file of our own making, or an orphan.
        if let Some(blob) = self.get(&digest)? {
            lock.remove()?;
            return Ok(Begin::Present(blob));
        }
        let target = Target::Known { digest, size };
        let layout = self.inner.layout.clone();
        // An empty partial (the usual case) opens in two cheap syscalls; only a prefix left
        // by an interrupted writer needs re-hashing, which may take a while.
        let resuming = lock.len().map_or(true, |len| len > 0);
        let (sink, hasher) = if resuming {
            tokio::task::spawn_blocking(move || {
                ingest::open_partial(&layout, lock, digest, size, Some(gate))
            })
            .await
            .map_err(|e| Error::task("begin", e))??
        } else {
            ingest::open_partial(&layout, lock, digest, size, Some(gate))?
        };
        Ok(Begin::Write(Ingest::start(
            self.clone(),
            target,
            sink,
            hasher,
        )))
    }

    /// Store `bytes`, a whole body already in memory (a manifest, a config), as the blob
    /// `digest`, checked first: one trip to a blocking thread, where an [`Ingest`] takes
    /// three (open, write, commit). Published like an ingest (`ingest::publish`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use cache_core::{Algorithm, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path()).await?;
    /// let body = bytes::Bytes::from_static(b"{\"schemaVersion\":2}");
    /// let digest = Algorithm::Sha256.digest(&body);
    /// let blob = store.put_bytes(digest, body.clone()).await?;
    /// assert_eq!(&blob[..], &body[..]);
    ///
    /// let other = Algorithm::Sha256.digest(b"something else");
    /// assert!(store.put_bytes(other, body).await.is_err());
    /// assert!(store.get(&other)?.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn put_bytes(&self, digest: Digest, bytes: bytes::Bytes) -> Result<Blob> {
        if let Some(blob) = self.get(&digest)? {
            return Ok(blob);
        }
        let actual = digest.algorithm().digest(&bytes);
        if actual != digest {
            return Err(Error::DigestMismatch {
                expected: digest,
                actual,
            });
        }
        let gate = self.inner.gate.clone().read_owned().await;
        let layout = self.inner.layout.clone();
        tokio::task::spawn_blocking(move || {
            let _gate = gate;
            ingest::publish_bytes(&layout, &digest, &bytes)
        })
        .await
        .map_err(|e| Error::task("put", e))??;
        tracing::debug!(%digest, "blob stored from memory");
        self.get(&digest)?.ok_or_else(|| Error::NotFound {
            digest,
            root: self.root().to_owned(),
        })
    }

    /// Start writing a blob whose digest is not known in advance; [`Ingest::commit`] stores it
    /// under the digest of whatever was written.
    pub async fn begin_anonymous(&self, algorithm: Algorithm) -> Result<Ingest> {
        let gate = self.inner.gate.clone().read_owned().await;
        let target = Target::Anonymous { algorithm };
        let layout = self.inner.layout.clone();
        let (sink, hasher) =
            tokio::task::spawn_blocking(move || ingest::open_temp(&layout, algorithm, Some(gate)))
                .await
                .map_err(|e| Error::task("begin", e))??;
        Ok(Ingest::start(self.clone(), target, sink, hasher))
    }

    /// The blob for `digest`, running `fill` to produce it only if no one has it yet.
    ///
    /// Every concurrent caller in this process shares one in-flight fill (and its result or
    /// error); callers in other processes wait on the digest's lock and then find the blob.
    /// `fill` receives the [`Ingest`] positioned at its resume [`offset`](Ingest::offset),
    /// writes the rest of the data and returns it for commit.
    pub async fn get_or_ingest<F, Fut, E>(
        &self,
        digest: Digest,
        size: Option<u64>,
        fill: F,
    ) -> Result<Blob>
    where
        F: FnOnce(Ingest) -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Ingest, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let store = self.clone();
        self.get_or_fetch(digest, move || async move {
            match store.begin(digest, size).await? {
                Begin::Present(blob) => Ok(blob),
                Begin::Write(ingest) => {
                    let ingest = fill(ingest).await.map_err(|e| source_error(digest, e))?;
                    ingest.commit().await
                }
            }
        })
        .await
    }

    /// The blob for `digest`, running `fetch` to produce it only if no one has it yet.
    ///
    /// The general form of [`get_or_ingest`](Self::get_or_ingest): `fetch` drives
    /// [`begin`](Self::begin) and [`Ingest::commit`] itself, as often as it needs to (a
    /// downloader retries a corrupt transfer with a fresh ingest), and every concurrent
    /// caller in this process shares that one operation. Errors of `fetch` that are not
    /// this crate's become [`Error::Source`].
    pub async fn get_or_fetch<F, Fut, E>(&self, digest: Digest, fetch: F) -> Result<Blob>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Blob, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Some(blob) = self.get(&digest)? {
            return Ok(blob);
        }
        let fut = {
            let mut map = self
                .inner
                .inflight
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            // The map holds the fill weakly: when every caller has given up (dropped its
            // future), the fill is dropped too, which releases the digest lock and leaves
            // the partial for the next attempt instead of pinning both for the store's life.
            match map.get(&digest).and_then(WeakShared::upgrade) {
                Some(fut) => fut,
                None => {
                    let store = self.clone();
                    let fut = async move {
                        let result = fetch().await.map_err(|e| source_error(digest, e));
                        store
                            .inner
                            .inflight
                            .lock()
                            .unwrap_or_else(|poison| poison.into_inner())
                            .remove(&digest);
                        result
                    }
                    .boxed()
                    .shared();
                    if let Some(weak) = fut.downgrade() {
                        map.insert(digest, weak);
                    }
                    fut
                }
            }
        };
        fut.await
    }

    /// Copy a local file into the store, hashing with `algorithm`.
    #[tracing::instrument(level = "debug", skip(self), fields(path = %path.as_ref().display()))]
    pub async fn import_file(&self, path: impl AsRef<Path>, algorithm: Algorithm) -> Result<Blob> {
        let src = path.as_ref().to_owned();
        let gate = self.inner.gate.clone().read_owned().await;
        let layout = self.inner.layout.clone();
        let (digest, _) = tokio::task::spawn_blocking(move || -> Result<_> {
            use std::io::Read;
            let target = Target::Anonymous { algorithm };
            let (mut sink, mut hasher) = ingest::open_temp(&layout, algorithm, Some(gate))?;
            let mut file = std::fs::File::open(&src).at("open", &src)?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf).at("read", &src)?;
                let Some(data) = buf.get(..n) else { break };
                if n == 0 {
                    break;
                }
                hasher.update(data);
                sink.write(data)?;
            }
            ingest::finish(&layout, sink, hasher, target)
        })
        .await
        .map_err(|e| Error::task("import", e))??;
        self.get(&digest)?.ok_or_else(|| Error::NotFound {
            digest,
            root: self.root().to_owned(),
        })
    }

    /// Place the blob's content at `dest` (which must not exist): reflink, hardlink or copy.
    ///
    /// A hardlink shares the store's read-only inode: never make it writable. The other two
    /// give an independent file.
    pub async fn link_to(
        &self,
        digest: &Digest,
        dest: impl AsRef<Path>,
        mode: LinkMode,
    ) -> Result<Linked> {
        let src = self.blob_path(digest);
        if !src.is_file() {
            return Err(Error::NotFound {
                digest: *digest,
                root: self.root().to_owned(),
            });
        }
        let dest = dest.as_ref().to_owned();
        tokio::task::spawn_blocking(move || crate::link::link_file(&src, &dest, mode))
            .await
            .map_err(|e| Error::task("link", e))?
    }

    // ----- refs -----

    /// Remember that `key` pointed to `digest` now.
    pub async fn set_ref(&self, key: &crate::RefKey, digest: &Digest) -> Result<()> {
        self.set_tags_and_ref(key, None, digest).await
    }

    /// Remember a repository's tag list (when given) and that `key` pointed to `digest`,
    /// in one write: a cold load learns both about each repository, and each write of the
    /// refs file is a new inode.
    pub async fn set_tags_and_ref(
        &self,
        key: &crate::RefKey,
        tags: Option<Vec<String>>,
        digest: &Digest,
    ) -> Result<()> {
        let (tag, digest) = (key.tag().to_owned(), *digest);
        let tags = tags.map(valid_tags);
        self.update_refs(key.registry(), key.repository(), move |refs| {
            let now = now_millis();
            if let Some(tags) = tags {
                refs.tags = Some((now, tags));
            }
            refs.refs.insert(tag, (digest, now));
        })
        .await
    }

    /// What `key` pointed to when last fetched.
    pub fn get_ref(&self, key: &crate::RefKey) -> Result<Option<RefEntry>> {
        let path = self
            .inner
            .layout
            .repo_refs(key.registry(), key.repository())?;
        Ok(RepoRefs::read(&path)?
            .refs
            .remove(key.tag())
            .map(|(digest, millis)| RefEntry {
                digest,
                fetched_at: refs::time_of(millis),
            }))
    }

    /// Forget a ref.
    pub async fn remove_ref(&self, key: &crate::RefKey) -> Result<()> {
        let tag = key.tag().to_owned();
        self.update_refs(key.registry(), key.repository(), move |refs| {
            refs.refs.remove(&tag);
        })
        .await
    }

    /// Remember a repository's tag list (for offline loads and fresh-enough reuse).
    pub async fn set_tag_list(
        &self,
        registry: &str,
        repository: &str,
        tags: &[String],
    ) -> Result<()> {
        let tags = valid_tags(tags.to_vec());
        self.update_refs(registry, repository, move |refs| {
            refs.tags = Some((now_millis(), tags));
        })
        .await
    }

    /// A repository's tag list as last fetched, if any.
    pub fn get_tag_list(&self, registry: &str, repository: &str) -> Result<Option<TagList>> {
        let path = self.inner.layout.repo_refs(registry, repository)?;
        Ok(RepoRefs::read(&path)?.tags.map(|(millis, tags)| TagList {
            tags,
            fetched_at: refs::time_of(millis),
        }))
    }

    /// Read, change and replace a repository's refs file; writers in this process take
    /// turns (see [`crate::refs`] for other processes).
    async fn update_refs(
        &self,
        registry: &str,
        repository: &str,
        change: impl FnOnce(&mut RepoRefs) + Send + 'static,
    ) -> Result<()> {
        let path = self.inner.layout.repo_refs(registry, repository)?;
        let temp = self.inner.layout.temp();
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let _turn = inner
                .refs_turn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut refs = RepoRefs::read(&path)?;
            change(&mut refs);
            refs.write(&temp, &path)
        })
        .await
        .map_err(|e| Error::task("write refs", e))?
    }

    // ----- derived entries -----

    /// Store data derived from `digest` (e.g. a volume index) under `kind`, atomically.
    pub async fn put_derived(
        &self,
        digest: &Digest,
        kind: &crate::DerivedKind,
        data: impl Into<bytes::Bytes>,
    ) -> Result<()> {
        let path = self.inner.layout.derived(digest, kind);
        self.write_atomic(path, data.into()).await
    }

    /// [`put_derived`](Self::put_derived) without the fsync, for a record whose loss costs
    /// only work done again (a memo of a check, of which file was which blob). After a
    /// power cut it may be missing, empty or cut short but never half of another record:
    /// it is still renamed into place whole. Its reader must reject what it cannot parse,
    /// as every reader of derived data must.
    pub async fn put_memo(
        &self,
        digest: &Digest,
        kind: &crate::DerivedKind,
        data: impl Into<bytes::Bytes>,
    ) -> Result<()> {
        let path = self.inner.layout.derived(digest, kind);
        let temp = self.inner.layout.temp();
        let data: bytes::Bytes = data.into();
        tokio::task::spawn_blocking(move || write_renamed_blocking(&temp, &path, &data, false))
            .await
            .map_err(|e| Error::task("write", e))?
    }

    /// A derived entry, if present (memory-mapped when large). Derived data is not verified
    /// by digest: its reader must validate what it parses.
    pub fn get_derived(
        &self,
        digest: &Digest,
        kind: &crate::DerivedKind,
    ) -> Result<Option<bytes::Bytes>> {
        let path = self.inner.layout.derived(digest, kind);
        Ok(Blob::load(*digest, &path, self.inner.options.mmap_threshold)?.map(Blob::into_bytes))
    }

    /// Write `data` to `path` by temp file + fsync + rename.
    ///
    /// The directory is not fsynced: everything written this way (derived entries) is a
    /// cache of something that can be computed again, so losing
    /// the rename to a power cut costs one request. The file itself is fsynced before the
    /// rename, so what is visible is never torn. Blobs, which the design promises are
    /// durable once visible, go through ingest, which does fsync the directory.
    async fn write_atomic(
        &self,
        path: PathBuf,
        data: impl AsRef<[u8]> + Send + 'static,
    ) -> Result<()> {
        let temp = self.inner.layout.temp();
        tokio::task::spawn_blocking(move || write_atomic_blocking(&temp, &path, data.as_ref()))
            .await
            .map_err(|e| Error::task("write", e))?
    }
}

/// Keep this crate's errors as they are; wrap everything else as the source's failure.
fn source_error(digest: Digest, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
    let boxed: Box<dyn std::error::Error + Send + Sync> = e.into();
    match boxed.downcast::<Error>() {
        Ok(store_err) => *store_err,
        Err(other) => Error::Source {
            digest,
            source: Arc::from(other),
        },
    }
}

pub(crate) fn write_atomic_blocking(temp: &Path, path: &Path, data: &[u8]) -> Result<()> {
    write_renamed_blocking(temp, path, data, true)
}

/// Write `data` to `temp` (fsynced when `sync`), then rename it to `path`.
fn write_renamed_blocking(temp: &Path, path: &Path, data: &[u8], sync: bool) -> Result<()> {
    use std::io::Write;
    let parent = path.parent().unwrap_or(Path::new("."));
    ingest::ensure_dir(parent)?;
    let result = (|| {
        let mut file = std::fs::File::create(temp).at("create", temp)?;
        file.write_all(data).at("write", temp)?;
        if sync {
            file.sync_data().at("fsync", temp)?;
        }
        std::fs::rename(temp, path).at("rename into", path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(temp);
    }
    result
}

/// Record a use for LRU trimming. Explicit, because `noatime`/`relatime` mounts do not keep
/// access times; rate-limited to one write per hour per blob.
fn touch(file: &std::fs::File, meta: &std::fs::Metadata) {
    const EVERY: Duration = Duration::from_secs(3600);
    let stale = meta
        .accessed()
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_none_or(|age| age > EVERY);
    if stale {
        let _ = file.set_times(std::fs::FileTimes::new().set_accessed(SystemTime::now()));
    }
}

/// Hash a file on disk through a memory map (or a read for small files).
pub(crate) fn hash_path(path: &Path, algorithm: Algorithm) -> Result<(Digest, u64)> {
    let file = std::fs::File::open(path).at("open", path)?;
    let len = file.metadata().at("stat", path)?.len();
    let mut hasher = Hasher::new(algorithm);
    if len > 0 {
        // SAFETY: read-only map of a store file; see `Blob::load`. A concurrent writer could
        // only make the hash wrong, which is exactly what verification reports.
        let map = unsafe { memmap2::MmapOptions::new().map(&file) }.at("mmap", path)?;
        hasher.update(&map);
    }
    Ok((hasher.finalize(), len))
}

/// The signature the Cache Directory Tagging Specification requires on the first line.
const CACHEDIR_TAG_SIGNATURE: &str = "Signature: 8a477f597d28d172789f06886806bc55";

/// Write `CACHEDIR.TAG` at the root unless it is there (one `stat` per open). Written to a
/// temporary file and renamed, so a reader never sees a torn tag. Failing to write it only
/// costs backups some space, so it is a warning, not an error (a read-only cache still opens).
/// The shared store lock, when the store's directories and tag exist and the lock is free
/// to share now; `None` when opening needs more (creating, waiting).
fn open_in_place(layout: &Layout) -> Result<Option<StoreLock>> {
    let dirs = [
        layout.blobs_dir(),
        layout.ingest_dir(),
        layout.refs_dir(),
        layout.derived_dir(),
    ];
    if !dirs.iter().all(|dir| dir.is_dir()) || !layout.cachedir_tag().is_file() {
        return Ok(None);
    }
    StoreLock::try_shared(layout.lock_file())
}

fn tag_cache_dir(layout: &Layout) {
    let tag = layout.cachedir_tag();
    if tag.exists() {
        return;
    }
    let temp = layout.temp();
    let contents = format!(
        "{CACHEDIR_TAG_SIGNATURE}\n\
         # This file is a cache directory tag created by pkgload.\n\
         # Everything here can be downloaded again. For information about cache directory\n\
         # tags see https://bford.info/cachedir/\n"
    );
    let written = std::fs::write(&temp, contents).and_then(|()| std::fs::rename(&temp, &tag));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        tracing::warn!(path = %tag.display(), error = %e, "could not write the cache directory tag");
    }
}

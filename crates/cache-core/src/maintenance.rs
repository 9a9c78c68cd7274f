//! Keeping the store healthy: scan, verify, retain, gc, clean.
//!
//! `verify` only reads (and, with [`VerifyMode::Prune`], unlinks the exact files it found
//! bad), so it runs beside other users of the store. `retain`, `gc` and `clean` delete
//! blobs other processes may be about to use, so they take the store lock exclusively: they
//! wait (up to the lock timeout) until no other process has the store open.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::error::{Error, IoContext, Result};
use crate::layout::Layout;
use crate::refs::RepoRefs;
use crate::store::BlobInfo;
use crate::{Digest, RefEntry, RefKey, Store};

/// What [`Store::verify`] does with a bad blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMode {
    /// Report it only.
    Warn,
    /// Report it and delete it, so the next load fetches it again.
    Prune,
}

/// One thing [`Store::verify`] found wrong.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The blob's digest, when the file name is one.
    pub digest: Option<Digest>,
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub kind: ProblemKind,
}

/// The kinds of [`Problem`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ProblemKind {
    /// The content hashes to another digest (truncated, altered, bit rot).
    Mismatch {
        /// What the content hashes to.
        actual: Digest,
    },
    /// The file could not be read.
    Unreadable {
        /// Why.
        error: Error,
    },
    /// A file in `blobs/` whose name or place is not a digest's.
    Stray,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.path.display();
        match (&self.kind, &self.digest) {
            (ProblemKind::Mismatch { actual }, Some(d)) => {
                write!(f, "{path}: should be {d} but hashes to {actual}")
            }
            (ProblemKind::Unreadable { error }, _) => write!(f, "{path}: {error}"),
            _ => write!(f, "{path}: not a blob of this store"),
        }
    }
}

/// The result of [`Store::verify`].
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Blobs hashed.
    pub checked: usize,
    /// Bytes hashed.
    pub bytes: u64,
    /// Everything found wrong.
    pub problems: Vec<Problem>,
    /// Files deleted (with [`VerifyMode::Prune`]).
    pub pruned: usize,
}

/// Lists the digests a blob refers to; see [`GcOptions::children`].
pub type ChildrenFn = Arc<dyn Fn(&Digest, &[u8]) -> Vec<Digest> + Send + Sync>;

/// Options for [`Store::gc`].
#[derive(Clone)]
pub struct GcOptions {
    /// Digests to keep no matter what (lockfile entries, pinned packages).
    pub roots: Vec<Digest>,
    /// Also keep everything a tag ref points to.
    pub keep_refs: bool,
    /// After sweeping, delete least-recently-used blobs (never `roots`) until the store is at
    /// most this many bytes.
    pub max_size: Option<u64>,
    /// Partial downloads untouched for this long are deleted.
    pub ingest_max_age: Duration,
    /// The digests a blob refers to (e.g. an OCI manifest's config and layers), so that
    /// marking follows them. Called only on blobs that are marked and present.
    pub children: Option<ChildrenFn>,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            roots: Vec::new(),
            keep_refs: true,
            max_size: None,
            ingest_max_age: Duration::from_secs(24 * 3600),
            children: None,
        }
    }
}

impl std::fmt::Debug for GcOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcOptions")
            .field("roots", &self.roots.len())
            .field("keep_refs", &self.keep_refs)
            .field("max_size", &self.max_size)
            .field("ingest_max_age", &self.ingest_max_age)
            .field("children", &self.children.is_some())
            .finish()
    }
}

/// The result of [`Store::gc`].
#[derive(Debug, Clone, Default)]
pub struct GcReport {
    /// Blobs left.
    pub kept: usize,
    /// Their total size.
    pub kept_bytes: u64,
    /// Blobs deleted (unreachable, then trimmed).
    pub removed: Vec<Digest>,
    /// Bytes freed by deleting blobs.
    pub freed_bytes: u64,
    /// Files deleted from `ingest/` and orphaned derived entries.
    pub removed_other: usize,
    /// True when `max_size` could not be met without deleting roots.
    pub over_budget: bool,
}

impl Store {
    /// Every blob in the store, from directory metadata only.
    pub async fn scan(&self) -> Result<Vec<BlobInfo>> {
        let layout = self.layout().clone();
        blocking("scan", move || scan_blobs(&layout).map(|(blobs, _)| blobs)).await
    }

    /// Every tag ref (corrupt ref files are skipped with a warning).
    pub async fn refs(&self) -> Result<Vec<(RefKey, RefEntry)>> {
        let layout = self.layout().clone();
        blocking("list refs", move || list_refs(&layout)).await
    }

    /// Re-hash every blob in parallel (through mmap) and report those whose content no
    /// longer matches its name.
    #[tracing::instrument(level = "info", skip(self))]
    pub async fn verify(&self, mode: VerifyMode) -> Result<VerifyReport> {
        let store = self.clone();
        blocking("verify", move || {
            let (blobs, strays) = scan_blobs(store.layout())?;
            let mut report = verify_all(&blobs);
            report
                .problems
                .extend(strays.into_iter().map(|path| Problem {
                    digest: None,
                    path,
                    kind: ProblemKind::Stray,
                }));
            if mode == VerifyMode::Prune {
                for p in &report.problems {
                    if matches!(p.kind, ProblemKind::Unreadable { .. }) {
                        continue;
                    }
                    if std::fs::remove_file(&p.path).is_ok() {
                        report.pruned += 1;
                    }
                    if let Some(d) = &p.digest {
                        store.memory().evict(d);
                        remove_derived(store.layout(), d);
                    }
                }
            }
            for p in &report.problems {
                tracing::warn!(problem = %p, "store verification");
            }
            Ok(report)
        })
        .await
    }

    /// Delete every blob for which `keep` returns false. Takes the store lock exclusively.
    pub async fn retain<F>(&self, keep: F) -> Result<Vec<Digest>>
    where
        F: Fn(&BlobInfo) -> bool + Send + 'static,
    {
        self.exclusive("retain", move |store| {
            let (blobs, _) = scan_blobs(store.layout())?;
            let mut removed = Vec::new();
            for b in blobs.iter().filter(|b| !keep(b)) {
                if remove_blob(store, b)? {
                    removed.push(b.digest);
                }
            }
            Ok(removed)
        })
        .await
    }

    /// Mark from roots (and refs), sweep the rest, then trim least-recently-used blobs to
    /// `max_size`. Also clears stale partial downloads and orphaned derived entries.
    /// Takes the store lock exclusively.
    #[tracing::instrument(level = "info", skip_all)]
    pub async fn gc(&self, options: GcOptions) -> Result<GcReport> {
        self.exclusive("gc", move |store| gc_blocking(store, &options))
            .await
    }

    /// Delete everything in the store. Takes the store lock exclusively.
    pub async fn clean(&self) -> Result<()> {
        self.exclusive("clean", |store| {
            let layout = store.layout();
            store.memory().clear();
            for dir in [
                layout.blobs_dir(),
                layout.ingest_dir(),
                layout.refs_dir(),
                layout.derived_dir(),
            ] {
                make_writable(&dir);
                match std::fs::remove_dir_all(&dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::io("remove", dir, e));
                    }
                    _ => {}
                }
                std::fs::create_dir_all(&dir).at("create directory", &dir)?;
            }
            Ok(())
        })
        .await
    }

    /// Run `f` with this process's ingests paused and other processes locked out.
    async fn exclusive<T, F>(&self, op: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
    {
        let _gate = self.inner.gate.clone().write_owned().await;
        let store = self.clone();
        blocking(op, move || {
            let lock = &store.inner.store_lock;
            if let Err(e) = lock.upgrade(store.inner.options.lock_timeout) {
                // A failed flock upgrade may have dropped our shared lock: take it back.
                lock.downgrade()?;
                return Err(e);
            }
            let result = f(&store);
            lock.downgrade()?;
            result
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(
    op: &'static str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::task(op, e))?
}

/// All blobs, and the stray files found among them.
fn scan_blobs(layout: &Layout) -> Result<(Vec<BlobInfo>, Vec<PathBuf>)> {
    let mut blobs = Vec::new();
    let mut strays = Vec::new();
    let root = layout.blobs_dir();
    for alg_entry in read_dir(&root)? {
        let alg_dir = alg_entry.path();
        let alg_name = alg_entry.file_name().to_string_lossy().into_owned();
        if !alg_dir.is_dir() {
            strays.push(alg_dir);
            continue;
        }
        for fan_entry in read_dir(&alg_dir)? {
            let fan_dir = fan_entry.path();
            let fan = fan_entry.file_name().to_string_lossy().into_owned();
            if !fan_dir.is_dir() {
                strays.push(fan_dir);
                continue;
            }
            for entry in read_dir(&fan_dir)? {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let digest = Digest::parse(&format!("{alg_name}:{name}"))
                    .ok()
                    .filter(|d| d.hex().starts_with(&fan));
                let meta = match entry.metadata() {
                    Ok(m) if m.is_file() => m,
                    _ => {
                        strays.push(path);
                        continue;
                    }
                };
                match digest {
                    Some(digest) => blobs.push(BlobInfo::new(digest, path, &meta)),
                    None => strays.push(path),
                }
            }
        }
    }
    Ok((blobs, strays))
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.collect::<std::io::Result<Vec<_>>>().at("list", dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io("list", dir, e)),
    }
}

fn verify_all(blobs: &[BlobInfo]) -> VerifyReport {
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let results: Vec<(u64, Option<Problem>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    while let Some(b) = blobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let problem = match crate::store::hash_path(&b.path, b.digest.algorithm()) {
                            Ok((actual, _)) if actual == b.digest => None,
                            Ok((actual, _)) => Some(ProblemKind::Mismatch { actual }),
                            Err(error) => Some(ProblemKind::Unreadable { error }),
                        };
                        out.push((
                            b.size,
                            problem.map(|kind| Problem {
                                digest: Some(b.digest),
                                path: b.path.clone(),
                                kind,
                            }),
                        ));
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    let mut report = VerifyReport::default();
    for (size, problem) in results {
        report.checked += 1;
        report.bytes += size;
        report.problems.extend(problem);
    }
    report
}

/// Remove one blob file (and what depends on it). False if it was already gone.
fn remove_blob(store: &Store, blob: &BlobInfo) -> Result<bool> {
    store.memory().evict(&blob.digest);
    remove_derived(store.layout(), &blob.digest);
    match std::fs::remove_file(&blob.path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("remove", &blob.path, e)),
    }
}

fn remove_derived(layout: &Layout, digest: &Digest) {
    let dir = layout.derived_dir().join(digest.algorithm().name());
    let prefix = format!("{}.", digest.hex());
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Every ref: the tags of every repository's refs file (see `Layout::repo_refs`).
fn list_refs(layout: &Layout) -> Result<Vec<(RefKey, RefEntry)>> {
    let mut out = Vec::new();
    for registry_dir in read_dir(&layout.refs_dir())? {
        let registry = registry_dir.file_name().to_string_lossy().into_owned();
        if !registry_dir.path().is_dir() {
            continue;
        }
        for entry in read_dir(&registry_dir.path())? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(repository) = Layout::repository_of(&registry, &name) else {
                continue;
            };
            let refs = match RepoRefs::read(&entry.path()) {
                Ok(refs) => refs,
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring an unreadable refs file");
                    continue;
                }
            };
            for (tag, (digest, millis)) in refs.refs {
                if let Ok(key) = RefKey::new(&registry, &repository, &tag) {
                    let fetched_at = crate::refs::time_of(millis);
                    out.push((key, RefEntry { digest, fetched_at }));
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn gc_blocking(store: &Store, options: &GcOptions) -> Result<GcReport> {
    let layout = store.layout();
    let (blobs, _) = scan_blobs(layout)?;
    let by_digest: HashMap<Digest, &BlobInfo> = blobs.iter().map(|b| (b.digest, b)).collect();

    let pinned: HashSet<Digest> = options.roots.iter().copied().collect();
    let mut queue: Vec<Digest> = options.roots.clone();
    if options.keep_refs {
        queue.extend(list_refs(layout)?.into_iter().map(|(_, e)| e.digest));
    }
    let mut marked: HashSet<Digest> = HashSet::new();
    while let Some(d) = queue.pop() {
        if !marked.insert(d) {
            continue;
        }
        if let (Some(children), Some(info)) = (&options.children, by_digest.get(&d)) {
            // Bounded: we only parse what the caller's function reads; a huge layer is
            // mapped, not read.
            if let Ok(Some(blob)) =
                crate::Blob::load(d, &info.path, store.inner.options.mmap_threshold)
            {
                queue.extend(children(&d, &blob));
            }
        }
    }

    let mut report = GcReport::default();
    let mut kept: Vec<&BlobInfo> = Vec::new();
    for b in &blobs {
        if marked.contains(&b.digest) {
            kept.push(b);
        } else if remove_blob(store, b)? {
            report.removed.push(b.digest);
            report.freed_bytes += b.size;
        }
    }

    if let Some(max) = options.max_size {
        let mut total: u64 = kept.iter().map(|b| b.size).sum();
        // Oldest use first; ties by digest for a deterministic result.
        kept.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(a.digest.cmp(&b.digest)));
        let mut survivors = Vec::new();
        for b in kept {
            if total > max && !pinned.contains(&b.digest) {
                if remove_blob(store, b)? {
                    report.removed.push(b.digest);
                    report.freed_bytes += b.size;
                }
                total -= b.size;
            } else {
                survivors.push(b);
            }
        }
        report.over_budget = total > max;
        kept = survivors;
    }
    report.kept = kept.len();
    report.kept_bytes = kept.iter().map(|b| b.size).sum();

    report.removed_other += clean_ingest(layout, options.ingest_max_age);
    report.removed_other += clean_orphaned_derived(layout, &kept);
    tracing::info!(
        kept = report.kept,
        removed = report.removed.len(),
        freed_bytes = report.freed_bytes,
        "gc finished"
    );
    Ok(report)
}

fn clean_ingest(layout: &Layout, max_age: Duration) -> usize {
    let mut removed = 0;
    for entry in read_dir(&layout.ingest_dir()).unwrap_or_default() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= max_age);
        if old && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

fn clean_orphaned_derived(layout: &Layout, kept: &[&BlobInfo]) -> usize {
    let live: HashSet<String> = kept
        .iter()
        .map(|b| format!("{}/{}", b.digest.algorithm(), b.digest.hex()))
        .collect();
    let mut removed = 0;
    for alg_entry in read_dir(&layout.derived_dir()).unwrap_or_default() {
        let alg = alg_entry.file_name().to_string_lossy().into_owned();
        for entry in read_dir(&alg_entry.path()).unwrap_or_default() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let hex = name.split('.').next().unwrap_or_default();
            if !live.contains(&format!("{alg}/{hex}")) && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

/// Blobs are read-only; directories must be writable for `remove_dir_all` to work as a
/// non-root user.
fn make_writable(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            if let Ok(meta) = std::fs::symlink_metadata(&d)
                && meta.is_dir()
            {
                let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755));
                if let Ok(entries) = std::fs::read_dir(&d) {
                    stack.extend(entries.flatten().map(|e| e.path()));
                }
            }
        }
    }
}

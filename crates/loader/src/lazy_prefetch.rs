//! Prefetch for lazily read layers: the files a tree is about to need are fetched before
//! anyone reads them, in few range requests, and before the background fill.
//!
//! Which files:
//! - the program an image starts (its config's `Entrypoint`, else `Cmd`, looked up on its
//!   `PATH` like a shell would, and the interpreter a `#!` line names), and the absolute
//!   paths a package's commands pass as `main_args`: read through the assembled tree, so
//!   symlinks, whiteouts and mounts resolve exactly as for the runtime;
//! - the files earlier loads of the same layer read, which [`ReadRecord`] keeps in the
//!   cache under the layer's digest. They are sorted by where their frames are, and
//!   neighbours (gaps under [`MERGE_GAP`]) share one range request of at most
//!   [`GROUP_LIMIT`] bytes; each file is then decoded and verified from that one response
//!   exactly as a read would.
//!
//! A prefetch that fails costs nothing but time: the read that needs the file fetches it
//! again and reports what goes wrong then.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use cache_core::{DerivedKind, Digest, Store};
use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt, Shared};
use layer_toc::{LazyFiles, Toc, TocFile};
use vfs_overlay::{FileSystem, TarEntryKind, VfsPath};

use crate::artifact::RunConfig;
use crate::lazy::LayerRanges;

/// Files whose frames are at most this far apart are fetched in one request: below it, the
/// bytes in between cost less than another round trip (at 100 MB/s, 256 KiB is 2.6 ms).
pub(crate) const MERGE_GAP: u64 = 256 << 10;
/// One prefetch request brings at most this much (it is held in memory until decoded).
pub(crate) const GROUP_LIMIT: u64 = 16 << 20;
/// The most paths a record keeps (a tree read whole is what the fill is for).
const RECORD_LIMIT: usize = 4096;
/// The derived entry holding a layer's record.
const READS_KIND: &str = "lazy-reads";
const RECORD_HEADER: &str = "pkgload lazy-reads 1";

/// What a lazily opened layer needs to be prefetched.
#[derive(Clone)]
pub(crate) struct LayerPrefetch {
    pub(crate) toc: Arc<Toc>,
    pub(crate) files: Arc<LazyFiles>,
    pub(crate) ranges: Arc<LayerRanges>,
    pub(crate) record: Arc<ReadRecord>,
}

/// What a prefetch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefetchReport {
    /// Program files read through the tree (fetched, or found in the cache).
    pub program: usize,
    /// Recorded files fetched into the cache (those it held already are not counted).
    pub files: usize,
    /// Range requests made for recorded files (the program's files are read one by one).
    pub requests: usize,
    /// Bytes those requests asked for.
    pub bytes: u64,
    /// Files that could not be prefetched (a later read retries, and says why).
    pub failed: usize,
}

/// A prefetch running in the background. Cheap to clone; every clone waits for the same.
#[derive(Clone)]
pub struct LazyPrefetch {
    done: Shared<BoxFuture<'static, PrefetchReport>>,
}

impl std::fmt::Debug for LazyPrefetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyPrefetch").finish_non_exhaustive()
    }
}

impl LazyPrefetch {
    /// Waits until the prefetch is over.
    pub async fn wait(&self) -> PrefetchReport {
        self.done.clone().await
    }

    /// Starts prefetching, on the lazy-read runtime: first `program` (paths read through
    /// `fs`), alongside the recorded files of each layer in `layers`.
    pub(crate) fn start(
        runtime: &tokio::runtime::Handle,
        layers: Vec<LayerPrefetch>,
        fs: Arc<dyn FileSystem>,
        program: Vec<Vec<VfsPath>>,
        jobs: usize,
    ) -> LazyPrefetch {
        // What earlier loads read is taken now, before this load's own reads (the program's
        // first) add to the records: those are no earlier load's, and counting them would
        // race with the program's fetch.
        let layers: Vec<_> = layers
            .into_iter()
            .map(|layer| {
                let wanted = layer.record.paths();
                (layer, wanted)
            })
            .collect();
        let task = runtime.spawn(async move {
            let program = tokio::task::spawn_blocking(move || read_program(fs.as_ref(), program));
            let mut report = futures::stream::iter(layers)
                .map(|(layer, wanted)| prefetch_recorded(layer, wanted))
                .buffer_unordered(jobs.max(1))
                .fold(PrefetchReport::default(), |mut total, one| async move {
                    total.files += one.files;
                    total.requests += one.requests;
                    total.bytes += one.bytes;
                    total.failed += one.failed;
                    total
                })
                .await;
            if let Ok((read, failed)) = program.await {
                report.program += read;
                report.failed += failed;
            }
            tracing::info!(?report, "prefetched lazily read files");
            report
        });
        let done = async move { task.await.unwrap_or_default() };
        LazyPrefetch {
            done: done.boxed().shared(),
        }
    }
}

/// The places an image's program may be, in the order a shell tries them (see
/// [`read_program`]).
pub(crate) fn program_paths(config: &RunConfig) -> Vec<Vec<VfsPath>> {
    const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    let argv = config
        .entrypoint
        .as_ref()
        .filter(|e| !e.is_empty())
        .or(config.cmd.as_ref());
    let Some(program) = argv.and_then(|a| a.first()).filter(|p| !p.is_empty()) else {
        return Vec::new();
    };
    let candidates: Vec<String> = if program.contains('/') {
        let dir = config.working_dir.as_deref().unwrap_or("/");
        vec![match program.starts_with('/') {
            true => program.clone(),
            false => format!("{dir}/{program}"),
        }]
    } else {
        let path = config
            .env
            .iter()
            .flatten()
            .find_map(|v| v.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        path.split(':')
            .filter(|d| d.starts_with('/'))
            .map(|d| format!("{d}/{program}"))
            .collect()
    };
    let found: Vec<VfsPath> = candidates
        .iter()
        .filter_map(|c| VfsPath::new(c).ok())
        .collect();
    if found.is_empty() {
        Vec::new()
    } else {
        vec![found]
    }
}

/// The absolute paths package commands pass as `main_args` (in Wasmer's `wasi` annotation
/// or at the top of a command's annotations): scripts and data a runner opens first.
pub(crate) fn command_files(commands: &[crate::LoadedCommand]) -> Vec<Vec<VfsPath>> {
    let mut out = Vec::new();
    for command in commands {
        let nested = command
            .annotations
            .values()
            .filter_map(|v| v.get("main_args"));
        let top = command.annotations.get("main_args");
        for args in top.into_iter().chain(nested) {
            for arg in args.as_array().into_iter().flatten() {
                if let Some(path) = arg
                    .as_str()
                    .filter(|a| a.starts_with('/'))
                    .and_then(|a| VfsPath::new(a).ok())
                {
                    out.push(vec![path]);
                }
            }
        }
    }
    out
}

/// Reads, through the tree, the first of each list of `places` that is a file (and the
/// interpreter its `#!` line names): the layer that serves it fetches and verifies it.
/// Returns (read, failed).
fn read_program(fs: &dyn FileSystem, places: Vec<Vec<VfsPath>>) -> (usize, usize) {
    let (mut read, mut failed) = (0, 0);
    let mut queue = places;
    let mut seen = HashSet::new();
    while let Some(alternatives) = queue.pop() {
        let Some(path) = alternatives
            .into_iter()
            .find(|p| fs.metadata(p).is_ok_and(|m| m.is_file()))
        else {
            continue;
        };
        if !seen.insert(path.clone()) {
            continue;
        }
        let mut head = [0u8; 256];
        match fs.read_at(&path, 0, &mut head) {
            Ok(n) => {
                read += 1;
                if let Some(interpreter) = head.get(..n).and_then(shebang) {
                    queue.push(vec![interpreter]);
                }
            }
            Err(e) => {
                tracing::debug!(%path, error = %e, "prefetch of a program file failed");
                failed += 1;
            }
        }
    }
    (read, failed)
}

/// The interpreter a `#!` line names, if it is an absolute path.
fn shebang(head: &[u8]) -> Option<VfsPath> {
    let line = head.strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let program = line.split_whitespace().next()?;
    program
        .starts_with('/')
        .then(|| VfsPath::new(program).ok())
        .flatten()
}

/// The files of one layer its record names, fetched in merged range requests.
async fn prefetch_recorded(layer: LayerPrefetch, wanted: Vec<VfsPath>) -> PrefetchReport {
    let mut report = PrefetchReport::default();
    if wanted.is_empty() {
        return report;
    }
    let store = layer.ranges.store();
    let files: Vec<TocFile> = files_named(&layer.toc, &wanted)
        .into_iter()
        .filter(|f| !store.contains(&f.digest))
        .collect();
    for (range, group) in groups(files) {
        // A file too large for one group is fetched window by window, as a read would.
        let segment = if range.end - range.start <= GROUP_LIMIT {
            report.requests += 1;
            report.bytes += range.end - range.start;
            match layer.ranges.hold(range.clone()).await {
                Ok(held) => Some(held),
                Err(e) => {
                    tracing::debug!(layer = %layer.toc.blob(), error = %e, "prefetch request failed");
                    report.failed += group.len();
                    continue;
                }
            }
        } else {
            None
        };
        for file in &group {
            match layer.files.file(file).await {
                Ok(_) => report.files += 1,
                Err(e) => {
                    tracing::debug!(error = %e, "prefetch of a recorded file failed");
                    report.failed += 1;
                }
            }
        }
        drop(segment);
    }
    report
}

/// The table's files for `paths` (hardlinks to their target's content), each once.
fn files_named(toc: &Toc, paths: &[VfsPath]) -> Vec<TocFile> {
    let wanted: HashSet<&VfsPath> = paths.iter().collect();
    let by_path: HashMap<&VfsPath, &vfs_overlay::TarEntry> =
        toc.entries().iter().map(|e| (&e.path, e)).collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for path in wanted {
        let mut entry = by_path.get(path).copied();
        if let Some(e) = entry
            && e.kind == TarEntryKind::Hardlink
        {
            entry = e
                .link
                .as_deref()
                .and_then(|l| VfsPath::new(l).ok())
                .and_then(|target| by_path.get(&target).copied());
        }
        let Some(e) = entry.filter(|e| e.kind == TarEntryKind::File && e.size > 0) else {
            continue;
        };
        if let Some(file) = toc.file_at(e.offset)
            && seen.insert(file.digest)
        {
            out.push(file.clone());
        }
    }
    out
}

/// `files` in the order of their frames, cut into runs one request each can bring.
fn groups(mut files: Vec<TocFile>) -> Vec<(Range<u64>, Vec<TocFile>)> {
    files.sort_by_key(|f| f.frames.start);
    let mut out: Vec<(Range<u64>, Vec<TocFile>)> = Vec::new();
    for file in files {
        match out.last_mut() {
            Some((range, group))
                if file.frames.start <= range.end.saturating_add(MERGE_GAP)
                    && file.frames.end.saturating_sub(range.start) <= GROUP_LIMIT =>
            {
                range.end = range.end.max(file.frames.end);
                group.push(file);
            }
            _ => out.push((file.frames.clone(), vec![file])),
        }
    }
    out
}

/// The paths loads of one layer read, kept in the cache (a memo: losing it costs only a
/// prefetch). Written behind the reads, one write at a time, the latest set winning.
pub(crate) struct ReadRecord {
    store: Store,
    blob: Digest,
    runtime: tokio::runtime::Handle,
    paths: Mutex<BTreeSet<VfsPath>>,
    dirty: AtomicBool,
    writing: AtomicBool,
}

impl ReadRecord {
    /// The record of `blob` as earlier loads left it (empty when there is none, or it does
    /// not parse).
    pub(crate) fn load(store: &Store, blob: Digest, runtime: tokio::runtime::Handle) -> Arc<Self> {
        let paths = DerivedKind::new(READS_KIND)
            .ok()
            .and_then(|kind| store.get_derived(&blob, &kind).ok().flatten())
            .map(|bytes| parse_record(&bytes))
            .unwrap_or_default();
        Arc::new(ReadRecord {
            store: store.clone(),
            blob,
            runtime,
            paths: Mutex::new(paths),
            dirty: AtomicBool::new(false),
            writing: AtomicBool::new(false),
        })
    }

    /// What the record holds now.
    pub(crate) fn paths(&self) -> Vec<VfsPath> {
        self.paths
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Adds `path`; the record is rewritten in the background if that changed it.
    pub(crate) fn note(self: &Arc<Self>, path: &VfsPath) {
        {
            let mut paths = self.paths.lock().unwrap_or_else(PoisonError::into_inner);
            if paths.len() >= RECORD_LIMIT || !paths.insert(path.clone()) {
                return;
            }
        }
        self.dirty.store(true, Ordering::SeqCst);
        if self.writing.swap(true, Ordering::SeqCst) {
            return; // the running writer sees `dirty` and writes again
        }
        let record = self.clone();
        self.runtime.spawn(async move {
            loop {
                record.dirty.store(false, Ordering::SeqCst);
                let text = {
                    let paths = record.paths.lock().unwrap_or_else(PoisonError::into_inner);
                    let mut text = String::from(RECORD_HEADER);
                    for p in paths.iter() {
                        text.push('\n');
                        text.push_str(p.as_str());
                    }
                    text
                };
                if let Ok(kind) = DerivedKind::new(READS_KIND)
                    && let Err(e) = record.store.put_memo(&record.blob, &kind, text).await
                {
                    tracing::debug!(layer = %record.blob, error = %e, "could not record lazy reads");
                }
                record.writing.store(false, Ordering::SeqCst);
                // A path noted while writing found `writing` set and left it to us.
                if !record.dirty.load(Ordering::SeqCst)
                    || record.writing.swap(true, Ordering::SeqCst)
                {
                    break;
                }
            }
        });
    }
}

fn parse_record(bytes: &[u8]) -> BTreeSet<VfsPath> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return BTreeSet::new();
    };
    let mut lines = text.lines();
    if lines.next() != Some(RECORD_HEADER) {
        return BTreeSet::new();
    }
    lines
        .filter(|l| l.starts_with('/'))
        .filter_map(|l| VfsPath::new(l).ok())
        .take(RECORD_LIMIT)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, frames: Range<u64>) -> TocFile {
        TocFile {
            path: VfsPath::new(name).unwrap(),
            size: 1,
            digest: cache_core::Algorithm::Sha256.digest(name.as_bytes()),
            frames,
            codec: layer_toc::Codec::Zstd,
            skip: 0,
        }
    }

    #[test]
    fn neighbours_share_a_request_and_far_or_large_runs_do_not() {
        let far = 10 * MERGE_GAP;
        let cut = groups(vec![
            file("/c", far..far + 10),
            file("/a", 0..100),
            file("/b", 100 + MERGE_GAP..200 + MERGE_GAP),
            file("/big", 2 * far..2 * far + GROUP_LIMIT + 1),
        ]);
        let shape: Vec<(Range<u64>, usize)> =
            cut.iter().map(|(r, g)| (r.clone(), g.len())).collect();
        assert_eq!(
            shape,
            vec![
                (0..200 + MERGE_GAP, 2),
                (far..far + 10, 1),
                (2 * far..2 * far + GROUP_LIMIT + 1, 1)
            ]
        );
    }

    #[test]
    fn a_shebang_names_its_interpreter() {
        assert_eq!(
            shebang(b"#!/bin/sh -e\necho"),
            Some(VfsPath::new("/bin/sh").unwrap())
        );
        assert_eq!(
            shebang(b"#! /usr/bin/env python3\n"),
            Some(VfsPath::new("/usr/bin/env").unwrap())
        );
        assert_eq!(shebang(b"\x7fELF"), None);
        assert_eq!(shebang(b"#!relative\n"), None);
    }

    #[test]
    fn a_record_that_does_not_parse_is_empty() {
        assert!(parse_record(b"something else\n/a").is_empty());
        assert!(parse_record(&[0xff, 0xfe]).is_empty());
        let parsed = parse_record(b"pkgload lazy-reads 1\n/a\nnot a path\n/b/c");
        assert_eq!(parsed.len(), 2);
    }
}

//! What the in-memory tests of both formats share: tar headers, noise, a blob served by
//! range from memory, and a store with a runtime to fetch on.
#![allow(dead_code, clippy::unwrap_used)]

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cache_core::Store;
use futures::future::BoxFuture;
use layer_toc::{LazyFiles, RangeFetch, Toc};
use vfs_overlay::{TarVolume, VfsPath};

pub fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    h.set_uid(1000);
    h.set_gid(100);
    h
}

/// Incompressible bytes from a fixed xorshift.
pub fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Serves ranges of an in-memory blob and records them; with `hang`, never answers.
#[derive(Debug, Default)]
pub struct MemRanges {
    pub blob: Bytes,
    pub asked: Mutex<Vec<Range<u64>>>,
    pub hang: AtomicBool,
}

impl MemRanges {
    pub fn new(blob: Bytes) -> Arc<Self> {
        Arc::new(MemRanges {
            blob,
            ..MemRanges::default()
        })
    }

    /// The bytes `range`, recorded as asked.
    pub fn get(&self, range: Range<u64>) -> Bytes {
        self.asked.lock().unwrap().push(range.clone());
        self.blob.slice(range.start as usize..range.end as usize)
    }
}

impl RangeFetch for MemRanges {
    fn fetch(&self, range: Range<u64>) -> BoxFuture<'static, Result<Bytes, String>> {
        let data = self.get(range);
        let hang = self.hang.load(Ordering::SeqCst);
        Box::pin(async move {
            if hang {
                futures::future::pending::<()>().await;
            }
            Ok(data)
        })
    }
}

pub struct Fixture {
    pub rt: tokio::runtime::Runtime,
    pub store: Store,
    _dir: tempfile::TempDir,
}

pub fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(Store::open(dir.path())).unwrap();
    Fixture {
        rt,
        store,
        _dir: dir,
    }
}

/// The lazy volume of `toc`, its files fetched from `ranges` into the fixture's store.
pub fn volume_of(f: &Fixture, toc: Toc, ranges: Arc<MemRanges>) -> TarVolume {
    Arc::new(LazyFiles::new(
        Arc::new(toc),
        f.store.clone(),
        ranges,
        f.rt.handle().clone(),
        Duration::from_secs(10),
    ))
    .volume()
    .unwrap()
}

pub fn p(s: &str) -> VfsPath {
    VfsPath::new(s).unwrap()
}

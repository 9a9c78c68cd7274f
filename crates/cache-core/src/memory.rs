//! The memory tier: recently used blobs, bounded by bytes.
//!
//! A hit returns a clone of the same [`Blob`] (no syscall at all). Weight is the blob's
//! length, so the budget bounds both heap copies and how much mapped address space the tier
//! keeps alive. The store evicts a digest whenever it deletes the file, so the tier never
//! pins a deleted file.

use quick_cache::sync::Cache;
use quick_cache::{OptionsBuilder, Weighter};

use crate::{Blob, Digest};

#[derive(Clone)]
struct ByLength;

impl Weighter<Digest, Blob> for ByLength {
    fn weight(&self, _key: &Digest, blob: &Blob) -> u64 {
        // Zero-weight entries would be free to keep forever; count every entry.
        blob.len().max(1)
    }
}

const SHARDS: usize = 2;

/// A byte-bounded cache of blobs.
///
/// A blob heavier than about `budget / 2` is never kept (it would evict everything else);
/// such blobs are simply re-mapped on each [`Store::get`](crate::Store::get), which costs
/// microseconds.
pub struct MemoryTier {
    cache: Cache<Digest, Blob, ByLength>,
    budget: u64,
}

impl MemoryTier {
    /// A tier holding at most `budget` bytes (0 disables it).
    pub fn new(budget: u64) -> Self {
        // quick_cache sizes its tables from an item estimate; assume ~64 KiB per blob.
        let estimate = usize::try_from((budget / (64 * 1024)).clamp(16, 1 << 20)).unwrap_or(16);
        // Each shard owns an equal slice of the budget and refuses entries heavier than its
        // slice, so few shards keep large (mapped) blobs admissible; contention is not a
        // concern at the rate a package loader looks blobs up.
        let options = OptionsBuilder::new()
            .shards(SHARDS)
            .estimated_items_capacity(estimate)
            .weight_capacity(budget.max(1))
            .build();
        let cache = match options {
            Ok(options) => {
                Cache::with_options(options, ByLength, Default::default(), Default::default())
            }
            // Only reachable with nonsensical options; fall back to the library defaults.
            Err(_) => Cache::with_weighter(estimate, budget.max(1), ByLength),
        };
        MemoryTier { cache, budget }
    }

    /// Look a blob up.
    pub fn get(&self, digest: &Digest) -> Option<Blob> {
        if self.budget == 0 {
            return None;
        }
        self.cache.get(digest)
    }

    /// Remember a blob (ignored when it alone exceeds the budget).
    pub fn insert(&self, blob: Blob) {
        if self.budget == 0 || blob.len() > self.budget {
            return;
        }
        self.cache.insert(*blob.digest(), blob);
    }

    /// Forget a blob.
    pub fn evict(&self, digest: &Digest) {
        self.cache.remove(digest);
    }

    /// Forget everything.
    pub fn clear(&self) {
        self.cache.clear();
    }

    /// Bytes currently held.
    pub fn weight(&self) -> u64 {
        self.cache.weight()
    }

    /// The byte budget.
    pub fn budget(&self) -> u64 {
        self.budget
    }
}

impl std::fmt::Debug for MemoryTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTier")
            .field("budget", &self.budget)
            .field("weight", &self.cache.weight())
            .field("entries", &self.cache.len())
            .finish()
    }
}

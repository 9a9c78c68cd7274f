//! Downloads started during resolution, before the solver has finished.
//!
//! Resolving a tree walks it level by level, a few round trips per level, and leaves the
//! connection idle in between. When a package's config arrives and it is the newest version
//! of its name (the one the solver tries first, and nearly always keeps), its own volumes
//! and atoms start downloading, and each volume is unpacked as soon as it is stored. The
//! fetch that follows resolution asks the store for the same digests and joins these
//! downloads in flight (the store shares one in-flight fill per digest), so nothing is
//! fetched twice, and a volume unpacked here is a lookup there.
//!
//! What this costs when the guess is wrong (the solver backtracks to an older version): the
//! blobs of one version that the load does not use, left in the cache for gc.
//!
//! Requests go through the same HTTP client, so `--jobs` still bounds them. At most three
//! quarters of the `jobs` slots go to prefetching, so the solver's own requests (the next
//! level's tag lists and configs, which everything else waits for) always find a free one.
//! Unpacking takes a permit of its own (`jobs` of them), so a wide tree cannot start
//! hundreds of decompressions at once. Everything still running is aborted when the last handle to the
//! [`Prefetch`] is dropped, so a failed resolution leaves no download behind.

use std::sync::{Arc, Mutex};

use resolve_graph::Manifest;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::artifact::Artifact;
use crate::lazy::{Lazy, reads_lazily};
use crate::remote::{Located, Remote};
use crate::volume::OpenedVolumes;

/// The downloads in flight, shared between the resolution that starts them and the
/// [`Resolved`](crate::Resolved) whose fetch finishes them.
pub(crate) struct Prefetch {
    remote: Arc<Remote>,
    limits: vfs_overlay::LayerLimits,
    lazy: Lazy,
    downloading: Arc<Semaphore>,
    unpacking: Arc<Semaphore>,
    tasks: Mutex<JoinSet<()>>,
    opened: OpenedVolumes,
}

impl std::fmt::Debug for Prefetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let running = self.tasks.lock().map_or(0, |t| t.len());
        f.debug_struct("Prefetch")
            .field("running", &running)
            .finish_non_exhaustive()
    }
}

impl Prefetch {
    /// Volumes it opens go into `opened`, where the load finds them.
    pub(crate) fn new(
        remote: Arc<Remote>,
        limits: vfs_overlay::LayerLimits,
        jobs: usize,
        lazy: Lazy,
        opened: OpenedVolumes,
    ) -> Self {
        Prefetch {
            remote,
            limits,
            lazy,
            downloading: Arc::new(Semaphore::new((jobs - jobs / 4).max(1))),
            unpacking: Arc::new(Semaphore::new(jobs.max(1))),
            tasks: Mutex::new(JoinSet::new()),
            opened,
        }
    }

    /// Start fetching what `manifest`'s own mappings and commands use from `artifact`
    /// (found at `at`). Failures are left for the real fetch to meet and report.
    pub(crate) fn package(&self, at: &Located, artifact: &Artifact, manifest: &Manifest) {
        if self.remote.offline {
            return;
        }
        let volumes = manifest
            .fs
            .iter()
            .filter(|m| m.dependency.is_none())
            .filter_map(|m| artifact.volume(&m.volume))
            .map(|b| (b.clone(), true));
        let atoms = manifest
            .commands
            .iter()
            .filter(|c| c.dependency.is_none())
            .filter_map(|c| artifact.atom(&c.atom))
            .map(|b| (b.clone(), false));
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        // Finished tasks are reaped here, so the set holds only what is running.
        while tasks.try_join_next().is_some() {}
        for (blob, is_volume) in volumes.chain(atoms) {
            // A stored blob is the real fetch's business: it opens it without a request.
            if self.remote.store.contains(&blob.digest) {
                continue;
            }
            // A volume read lazily is opened by the load from its table, not downloaded.
            if is_volume && reads_lazily(self.lazy, &self.remote, at, &blob) {
                continue;
            }
            let remote = self.remote.clone();
            let at = at.clone();
            let limits = self.limits;
            let downloading = self.downloading.clone();
            let unpacking = self.unpacking.clone();
            let opened = self.opened.clone();
            tasks.spawn(async move {
                let Ok(slot) = downloading.acquire().await else {
                    return;
                };
                if let Err(e) = remote.blob(&at, &blob).await {
                    tracing::debug!(digest = %blob.digest, error = %e, "prefetch failed");
                    return;
                }
                drop(slot);
                if !is_volume {
                    return;
                }
                let Ok(_permit) = unpacking.acquire().await else {
                    return;
                };
                if let Err(e) = opened.open(&remote.store, &blob, &limits).await {
                    tracing::debug!(digest = %blob.digest, error = %e, "prefetch unpack failed");
                }
            });
        }
    }
}

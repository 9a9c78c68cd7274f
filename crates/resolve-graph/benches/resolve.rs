//! Synthetic registry benchmark (issue 6): `cargo bench -p resolve-graph --bench resolve`.
//!
//! A registry of N packages × 20 versions in 8 layers (depth 8). Each version depends on
//! three packages of the next layer; the newest version of every fifth package needs a
//! package that does not exist, and the newest version of its dependents insists on that
//! newest version, so the solver must back off one version along many paths.
//!
//! Prints wall time per size from memory, then with 2 ms simulated latency per query next
//! to the goal (3 × latency × chain length) and a sequential one-query-at-a-time estimate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use resolve_graph::{
    InMemorySource, Manifest, PackageId, PackageName, ResolveOptions, Source, SourceError, Summary,
    resolve,
};
use semver::{Version, VersionReq};

const LAYERS: usize = 8;
const VERSIONS: u64 = 20;

fn name(layer: usize, i: usize) -> PackageName {
    format!("bench/l{layer}-p{i}").parse().unwrap()
}

fn registry(packages: usize) -> (InMemorySource, Manifest) {
    let width = packages / LAYERS;
    let mut source = InMemorySource::new("bench");
    let req = |s: &str| VersionReq::parse(s).unwrap();
    for layer in 0..LAYERS {
        for i in 0..width {
            for v in 0..VERSIONS {
                let mut m = Manifest::new(name(layer, i), Version::new(1, v, 0));
                let newest = v == VERSIONS - 1;
                if layer + 1 < LAYERS {
                    for k in 0..3 {
                        let target = (i * 3 + k) % width;
                        let r = if k == 2 && newest {
                            req(">=1.19")
                        } else {
                            req("^1")
                        };
                        m = m.with_dependency(&format!("d{k}"), name(layer + 1, target), r);
                    }
                }
                if layer > 0 && i % 5 == 0 && newest {
                    m = m.with_dependency("poison", "bench/missing".parse().unwrap(), req("^1"));
                }
                source.add(m);
            }
        }
    }
    let mut root = Manifest::new("bench/root".parse().unwrap(), Version::new(1, 0, 0));
    for i in 0..width {
        root = root.with_dependency(&format!("r{i}"), name(0, i), req("^1"));
    }
    (source, root)
}

struct Latency {
    inner: InMemorySource,
    delay: Duration,
    queries: AtomicUsize,
}

impl Source for Latency {
    fn versions<'a>(
        &'a self,
        name: &'a PackageName,
    ) -> BoxFuture<'a, Result<Vec<Version>, SourceError>> {
        Box::pin(async move {
            self.queries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(self.delay).await;
            self.inner.versions(name).await
        })
    }
    fn summary<'a>(&'a self, id: &'a PackageId) -> BoxFuture<'a, Result<Summary, SourceError>> {
        Box::pin(async move {
            self.queries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(self.delay).await;
            self.inner.summary(id).await
        })
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000]
    } else {
        sizes
    };
    for &n in &sizes {
        let (source, root) = registry(n);
        let start = Instant::now();
        let r = futures::executor::block_on(resolve(&source, &root, &ResolveOptions::default()))
            .expect("the synthetic registry is satisfiable");
        let took = start.elapsed();
        println!(
            "in-memory  {n:>6} packages: {:>9.1} ms, {} resolved, {} rounds",
            took.as_secs_f64() * 1e3,
            r.packages.len(),
            r.rounds
        );

        let delay = Duration::from_millis(2);
        let slow = Latency {
            inner: source,
            delay,
            queries: AtomicUsize::new(0),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let start = Instant::now();
        rt.block_on(resolve(&slow, &root, &ResolveOptions::default()))
            .unwrap();
        let took = start.elapsed();
        let queries = slow.queries.load(Ordering::Relaxed);
        println!(
            "2ms/query  {n:>6} packages: {:>9.1} ms (goal < {} ms = 3 x 2 ms x {LAYERS} levels; \
             sequential would be {} queries x 2 ms = {} ms)",
            took.as_secs_f64() * 1e3,
            3 * 2 * LAYERS,
            queries,
            queries * 2
        );
    }
}

//! Synthetic registry benchmark: `cargo bench -p resolve-graph --bench resolve`.
//!
//! A registry of N packages × 20 versions in 8 layers (depth 8). Each version depends on
//! three packages of the next layer. Three kinds of conflict force the solver off the
//! newest versions:
//!
//! - the newest version of every fifth package (below the first layer) needs a package
//!   that does not exist;
//! - the newest version of every package insists (`>=1.19`) on the newest version of its
//!   third dependency, so every dependent of a poisoned package must step back too, and so
//!   on up the layers;
//! - the newest version of every tenth package (from the fourth on) wants its left
//!   neighbour's third dependency older than the neighbour's newest version wants it: two
//!   live versions that cannot both be chosen, which only the search itself can settle.
//!
//! Settings (environment):
//! - `RESOLVE_BENCH_SIZES`: comma-separated package counts, default `1000,10000`;
//! - `RESOLVE_BENCH_RUNS`: runs per size, the fastest is reported, default 3;
//! - `RESOLVE_BENCH_LATENCY`: package count for the run with 2 ms simulated latency per
//!   query, default 1000; `0` skips it.
//!
//! Quick run: `RESOLVE_BENCH_SIZES=500,1000 RESOLVE_BENCH_RUNS=1 cargo bench -p resolve-graph`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use resolve_graph::{
    InMemorySource, Manifest, PackageId, PackageName, Resolution, ResolveOptions, Source,
    SourceError, Summary, resolve,
};
use semver::{Version, VersionReq};

const LAYERS: usize = 8;
const VERSIONS: u64 = 20;
const LATENCY: Duration = Duration::from_millis(2);

fn name(layer: usize, i: usize) -> PackageName {
    format!("bench/l{layer}-p{i}").parse().unwrap()
}

fn req(s: &str) -> VersionReq {
    VersionReq::parse(s).unwrap()
}

fn registry(packages: usize) -> (InMemorySource, Manifest) {
    let width = (packages / LAYERS).max(1);
    let mut source = InMemorySource::new("bench");
    for layer in 0..LAYERS {
        for i in 0..width {
            for v in 0..VERSIONS {
                let mut m = Manifest::new(name(layer, i), Version::new(1, v, 0));
                let newest = v == VERSIONS - 1;
                if layer + 1 < LAYERS {
                    for k in 0..3 {
                        let target = (i * 3 + k) % width;
                        let r = if k == 2 && newest { ">=1.19" } else { "^1" };
                        m = m.with_dependency(&format!("d{k}"), name(layer + 1, target), req(r));
                    }
                    if newest && i % 10 == 3 {
                        let neighbours = (i * 3 - 1) % width;
                        m = m.with_dependency("older", name(layer + 1, neighbours), req("<1.19"));
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

/// Every query sleeps first, like a registry round trip.
struct Latency {
    inner: InMemorySource,
    queries: AtomicUsize,
}

impl Source for Latency {
    fn versions<'a>(
        &'a self,
        name: &'a PackageName,
    ) -> BoxFuture<'a, Result<Vec<Version>, SourceError>> {
        Box::pin(async move {
            self.queries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(LATENCY).await;
            self.inner.versions(name).await
        })
    }
    fn summary<'a>(&'a self, id: &'a PackageId) -> BoxFuture<'a, Result<Summary, SourceError>> {
        Box::pin(async move {
            self.queries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(LATENCY).await;
            self.inner.summary(id).await
        })
    }
}

fn env(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

/// Every requirement of every chosen package holds, and the search had to step back.
fn check(r: &Resolution, packages: usize) {
    assert_eq!(r.packages.len(), (packages / LAYERS).max(1) * LAYERS);
    let mut manifests = vec![&r.root];
    manifests.extend(r.packages.values().map(|s| &s.manifest));
    for m in manifests {
        for d in &m.dependencies {
            assert!(d.req.matches(r.version(&d.package).unwrap()), "{}", m.name);
        }
    }
    let older = r
        .packages
        .values()
        .filter(|s| s.manifest.version.minor < VERSIONS - 1)
        .count();
    assert!(older > 0, "the conflicts forced nothing older");
}

fn main() {
    let sizes: Vec<usize> = env("RESOLVE_BENCH_SIZES", "1000,10000")
        .split(',')
        .map(|s| s.trim().parse().expect("RESOLVE_BENCH_SIZES: numbers"))
        .collect();
    let runs: usize = env("RESOLVE_BENCH_RUNS", "3").parse().unwrap();
    let latency_size: usize = env("RESOLVE_BENCH_LATENCY", "1000").parse().unwrap();

    // Runs alternate between sizes so that a busy machine slows them alike and the ratio
    // stays meaningful; the fastest run of each size is reported.
    let registries: Vec<(usize, InMemorySource, Manifest)> = sizes
        .iter()
        .map(|&n| {
            let (source, root) = registry(n);
            (n, source, root)
        })
        .collect();
    let mut best = vec![Duration::MAX; registries.len()];
    let mut last: Vec<Option<Resolution>> = registries.iter().map(|_| None).collect();
    for _ in 0..runs.max(1) {
        for (k, (_, source, root)) in registries.iter().enumerate() {
            let start = Instant::now();
            let r = futures::executor::block_on(resolve(source, root, &ResolveOptions::default()))
                .expect("the synthetic registry is satisfiable");
            best[k] = best[k].min(start.elapsed());
            last[k] = Some(r);
        }
    }
    let mut timings = Vec::new();
    for (k, (n, _, _)) in registries.iter().enumerate() {
        let r = last[k].take().unwrap();
        check(&r, *n);
        let older = r
            .packages
            .values()
            .filter(|s| s.manifest.version.minor < VERSIONS - 1)
            .count();
        println!(
            "in-memory {n:>6} packages: {:>9.1} ms ({} resolved, {older} below their newest \
             version, {} levels)",
            best[k].as_secs_f64() * 1e3,
            r.packages.len(),
            r.rounds
        );
        timings.push((*n, best[k]));
    }
    if let (Some((n0, t0)), Some((n1, t1))) = (timings.first(), timings.last())
        && n1 > n0
    {
        println!(
            "scaling: t{n1}/t{n0} = {:.1} (linear = {:.1})",
            t1.as_secs_f64() / t0.as_secs_f64(),
            *n1 as f64 / *n0 as f64
        );
    }

    if latency_size > 0 {
        let (inner, root) = registry(latency_size);
        let slow = Latency {
            inner,
            queries: AtomicUsize::new(0),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let start = Instant::now();
        let r = rt
            .block_on(resolve(&slow, &root, &ResolveOptions::default()))
            .unwrap();
        let took = start.elapsed();
        check(&r, latency_size);
        let queries = slow.queries.load(Ordering::Relaxed);
        println!(
            "2 ms/query {latency_size:>5} packages: {:>9.1} ms for {queries} queries over {} \
             levels (the latency floor is 2 round trips x {} levels x 2 ms = {} ms; one query \
             at a time would take {} ms)",
            took.as_secs_f64() * 1e3,
            r.rounds,
            r.rounds,
            4 * r.rounds,
            queries * 2
        );
    }
}

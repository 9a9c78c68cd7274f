//! Queries of one level are in flight together, not one after another.

#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures::executor::block_on;
use futures::future::BoxFuture;
use resolve_graph::{
    InMemorySource, Manifest, PackageId, PackageName, ResolveOptions, Source, SourceError, Summary,
    resolve,
};
use semver::{Version, VersionReq};

/// Completes on its second poll, like a network reply; counts how many are pending at once.
struct Slow<'a, T> {
    value: Option<T>,
    polled: bool,
    gauge: &'a Gauge,
}

#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl<T: Unpin> Future for Slow<'_, T> {
    type Output = T;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if !self.polled {
            self.polled = true;
            let now = self.gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.gauge.max.fetch_max(now, Ordering::SeqCst);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.gauge.now.fetch_sub(1, Ordering::SeqCst);
        Poll::Ready(self.value.take().unwrap())
    }
}

struct SlowSource {
    inner: InMemorySource,
    listings: Gauge,
    summaries: Gauge,
}

impl Source for SlowSource {
    fn versions<'a>(
        &'a self,
        name: &'a PackageName,
    ) -> BoxFuture<'a, Result<Vec<Version>, SourceError>> {
        Box::pin(async move {
            let v = self.inner.versions(name).await;
            Slow {
                value: Some(v),
                polled: false,
                gauge: &self.listings,
            }
            .await
        })
    }
    fn summary<'a>(&'a self, id: &'a PackageId) -> BoxFuture<'a, Result<Summary, SourceError>> {
        Box::pin(async move {
            let s = self.inner.summary(id).await;
            Slow {
                value: Some(s),
                polled: false,
                gauge: &self.summaries,
            }
            .await
        })
    }
}

#[test]
fn a_wide_level_is_fetched_at_once() {
    let mut inner = InMemorySource::new("slow");
    let mut app = Manifest::new("acme/app".parse().unwrap(), Version::new(1, 0, 0));
    for i in 0..10 {
        let n: PackageName = format!("acme/p{i}").parse().unwrap();
        app = app.with_dependency(
            &format!("p{i}"),
            n.clone(),
            VersionReq::parse("^1").unwrap(),
        );
        for minor in 0..3 {
            inner.add(
                Manifest::new(n.clone(), Version::new(1, minor, 0)).with_dependency(
                    "leaf",
                    "acme/leaf".parse().unwrap(),
                    VersionReq::parse("^1").unwrap(),
                ),
            );
        }
    }
    inner.add(Manifest::new(
        "acme/leaf".parse().unwrap(),
        Version::new(1, 0, 0),
    ));
    let source = SlowSource {
        inner,
        listings: Gauge::default(),
        summaries: Gauge::default(),
    };
    let r = block_on(resolve(&source, &app, &ResolveOptions::default())).unwrap();
    assert_eq!(r.packages.len(), 11);
    assert_eq!(r.rounds, 2);
    // All ten listings of level one together, then all thirty of their manifests.
    assert_eq!(source.listings.max.load(Ordering::SeqCst), 10);
    assert_eq!(source.summaries.max.load(Ordering::SeqCst), 30);
}

/// Every query takes `DELAY` of (paused, virtual) tokio time; counts queries.
struct Sleepy {
    inner: InMemorySource,
    queries: AtomicUsize,
}

const DELAY: std::time::Duration = std::time::Duration::from_millis(100);

impl Source for Sleepy {
    fn versions<'a>(
        &'a self,
        name: &'a PackageName,
    ) -> BoxFuture<'a, Result<Vec<Version>, SourceError>> {
        Box::pin(async move {
            self.queries.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(DELAY).await;
            self.inner.versions(name).await
        })
    }
    fn summary<'a>(&'a self, id: &'a PackageId) -> BoxFuture<'a, Result<Summary, SourceError>> {
        Box::pin(async move {
            self.queries.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(DELAY).await;
            self.inner.summary(id).await
        })
    }
}

#[test]
fn a_slow_registry_costs_round_trips_per_level_not_per_edge() {
    // Depth 8, four packages per level, five versions each, every version depending on every
    // package of the next level (80 edges per level), and the newest version of each package
    // below the top needing a package that does not exist, so the solver must step back.
    const LEVELS: usize = 8;
    const WIDTH: usize = 4;
    let pkg =
        |level: usize, i: usize| -> PackageName { format!("deep/l{level}-{i}").parse().unwrap() };
    let mut inner = InMemorySource::new("sleepy");
    for level in 0..LEVELS {
        for i in 0..WIDTH {
            for minor in 0..5 {
                let mut m = Manifest::new(pkg(level, i), Version::new(1, minor, 0));
                if level + 1 < LEVELS {
                    for j in 0..WIDTH {
                        m = m.with_dependency(
                            &format!("d{j}"),
                            pkg(level + 1, j),
                            VersionReq::parse("^1").unwrap(),
                        );
                    }
                }
                if level > 0 && minor == 4 {
                    m = m.with_dependency(
                        "gone",
                        "deep/missing".parse().unwrap(),
                        VersionReq::parse("^1").unwrap(),
                    );
                }
                inner.add(m);
            }
        }
    }
    let mut app = Manifest::new("deep/app".parse().unwrap(), Version::new(1, 0, 0));
    for i in 0..WIDTH {
        app = app.with_dependency(
            &format!("top{i}"),
            pkg(0, i),
            VersionReq::parse("^1").unwrap(),
        );
    }
    let source = Sleepy {
        inner,
        queries: AtomicUsize::new(0),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let (r, elapsed) = rt.block_on(async {
        let start = tokio::time::Instant::now();
        let r = resolve(&source, &app, &ResolveOptions::default())
            .await
            .unwrap();
        (r, start.elapsed())
    });
    assert_eq!(r.packages.len(), LEVELS * WIDTH);
    for (name, summary) in &r.packages {
        let want = if name.name().starts_with("l0-") { 4 } else { 3 };
        assert_eq!(summary.manifest.version.minor, want, "{name}");
    }
    // `deep/missing` is met at level 2, so it adds no level.
    assert_eq!(r.rounds, LEVELS);
    let queries = source.queries.load(Ordering::SeqCst);
    assert_eq!(queries, LEVELS * WIDTH * (1 + 5) + 1);
    // A listing then the level's summaries: two round trips per level, all in parallel.
    let trips = elapsed.as_millis() / DELAY.as_millis();
    assert_eq!(
        trips,
        2 * LEVELS as u128,
        "{elapsed:?} for {queries} queries"
    );
}

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

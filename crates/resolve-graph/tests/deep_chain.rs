//! Very deep graphs: nothing in the resolver may recurse once per level.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use futures::executor::block_on;
use resolve_graph::{
    InMemorySource, Manifest, PackageName, ResolveError, ResolveOptions, ResolvedGraph,
    ResolvedPackage, resolve,
};
use semver::{Version, VersionReq};

const DEPTH: usize = 1_000;

/// `deep/p0` → `deep/p1` → … → `deep/p{depth-1}`, two versions each; with `broken_end`
/// the last package needs one that does not exist, so nothing works.
fn chain(depth: usize, broken_end: bool) -> (InMemorySource, Manifest) {
    let name = |i: usize| -> PackageName { format!("deep/p{i}").parse().unwrap() };
    let req = VersionReq::parse("^1").unwrap();
    let mut source = InMemorySource::new("deep");
    for i in 0..depth {
        for minor in 0..2 {
            let mut m = Manifest::new(name(i), Version::new(1, minor, 0));
            if i + 1 < depth {
                m = m.with_dependency("next", name(i + 1), req.clone());
            } else if broken_end {
                m = m.with_dependency("gone", "deep/gone".parse().unwrap(), req.clone());
            }
            source.add(m);
        }
    }
    let root = Manifest::new("deep/root".parse().unwrap(), Version::new(1, 0, 0)).with_dependency(
        "first",
        name(0),
        req,
    );
    (source, root)
}

/// Runs `f` on a thread with a small stack, so that recursion once per level shows up as
/// an overflow at a depth a test can afford.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn a_chain_a_thousand_deep_resolves() {
    on_small_stack(|| {
        let (source, root) = chain(DEPTH, false);
        let r = block_on(resolve(&source, &root, &ResolveOptions::default())).unwrap();
        assert_eq!(r.packages.len(), DEPTH);
        assert_eq!(r.rounds, DEPTH);
        // What callers do next must not recurse per level either.
        let graph = ResolvedGraph::new(&r).unwrap();
        let order = graph.topological_order().unwrap();
        assert_eq!(order.len(), DEPTH + 1);
        assert_eq!(order[0].name.as_str(), format!("deep/p{}", DEPTH - 1));
        ResolvedPackage::new(&r).unwrap();
    });
}

#[test]
fn a_chain_a_thousand_deep_that_cannot_work_is_explained() {
    on_small_stack(|| {
        let (source, root) = chain(DEPTH, true);
        match block_on(resolve(&source, &root, &ResolveOptions::default())) {
            Err(ResolveError::NoSolution(e)) => {
                let gone = "deep/gone has no versions at all";
                assert!(e.lines.iter().any(|l| l.contains(gone)), "{e}");
                // Every link of the chain is part of the reason.
                assert!(e.lines.len() > DEPTH, "{} lines", e.lines.len());
            }
            other => panic!("expected no solution, got {other:?}"),
        }
    });
}

//! Random registries: with a planted solution the solver must find *a* solution, and any
//! solution it returns must satisfy every constraint; a failure must come with sentences.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use futures::executor::block_on;
use proptest::prelude::*;
use resolve_graph::{InMemorySource, Manifest, PackageName, ResolveError, ResolveOptions, resolve};
use semver::{Version, VersionReq};

const PACKAGES: usize = 6;
const VERSIONS: u64 = 4;

fn name(i: usize) -> PackageName {
    format!("acme/p{i}").parse().unwrap()
}

/// A requirement on minor versions `lo..=hi` of major 1.
fn req(lo: u64, hi: u64) -> VersionReq {
    VersionReq::parse(&format!(">=1.{lo}.0, <1.{}.0", hi + 1)).unwrap()
}

/// Per package, per version: dependencies on later packages as (target, lo, hi).
type Spec = Vec<Vec<Vec<(usize, u64, u64)>>>;

fn spec() -> impl Strategy<Value = Spec> {
    let dep = (0usize..PACKAGES, 0..VERSIONS, 0..VERSIONS);
    let version = prop::collection::vec(dep, 0..3);
    let package = prop::collection::vec(version, VERSIONS as usize);
    prop::collection::vec(package, PACKAGES)
}

/// Builds the registry. Only edges to later packages are kept (no cycles); when `plant` is
/// given, each planted version's edges are widened to include the target's planted version.
fn build(spec: &Spec, plant: Option<&[u64]>) -> InMemorySource {
    build_with_dead(spec, plant, &[])
}

/// Like [`build`], and version `v` of package `p` also needs a package that does not exist
/// when `dead[p * VERSIONS + v]` holds and it is not the planted one.
fn build_with_dead(spec: &Spec, plant: Option<&[u64]>, dead: &[bool]) -> InMemorySource {
    let mut source = InMemorySource::new("random");
    for (p, versions) in spec.iter().enumerate() {
        for (v, deps) in versions.iter().enumerate() {
            let v = v as u64;
            let mut m = Manifest::new(name(p), Version::new(1, v, 0));
            let mut seen = Vec::new();
            for &(q, lo, hi) in deps {
                if q <= p || seen.contains(&q) {
                    continue;
                }
                seen.push(q);
                let (mut lo, mut hi) = (lo.min(hi), lo.max(hi));
                if let Some(plant) = plant
                    && plant[p] == v
                {
                    lo = lo.min(plant[q]);
                    hi = hi.max(plant[q]);
                }
                m = m.with_dependency(&format!("d{q}"), name(q), req(lo, hi));
            }
            let planted = plant.is_some_and(|plant| plant[p] == v);
            if !planted && dead.get(p * VERSIONS as usize + v as usize) == Some(&true) {
                m = m.with_dependency("gone", "acme/gone".parse().unwrap(), req(0, 0));
            }
            source.add(m);
        }
    }
    source
}

fn root(plant: &[u64]) -> Manifest {
    Manifest::new("acme/root".parse().unwrap(), Version::new(1, 0, 0)).with_dependency(
        "first",
        name(0),
        req(plant[0], plant[0]),
    )
}

/// Every dependency of every chosen package (root included) is chosen and satisfied.
fn check(result: &resolve_graph::Resolution) {
    let mut manifests = vec![&result.root];
    manifests.extend(result.packages.values().map(|s| &s.manifest));
    for m in manifests {
        for d in &m.dependencies {
            let chosen = result
                .version(&d.package)
                .unwrap_or_else(|| panic!("{} missing", d.package));
            assert!(
                d.req.matches(chosen),
                "{} {} wants {} {}, got {chosen}",
                m.name,
                m.version,
                d.package,
                d.req
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn planted_solution_is_found(spec in spec(), plant in prop::collection::vec(0..VERSIONS, PACKAGES)) {
        let source = build(&spec, Some(&plant));
        let result = block_on(resolve(&source, &root(&plant), &ResolveOptions::default()));
        match result {
            Ok(r) => check(&r),
            Err(e) => prop_assert!(false, "no solution found:\n{e}"),
        }
    }

    // Dead versions (and everything that only works with them) must be stepped over, not
    // make the solver give up.
    #[test]
    fn planted_solution_survives_dead_versions(
        spec in spec(),
        plant in prop::collection::vec(0..VERSIONS, PACKAGES),
        dead in prop::collection::vec(any::<bool>(), PACKAGES * VERSIONS as usize),
    ) {
        let source = build_with_dead(&spec, Some(&plant), &dead);
        let result = block_on(resolve(&source, &root(&plant), &ResolveOptions::default()));
        match result {
            Ok(r) => {
                check(&r);
                prop_assert!(r.version(&"acme/gone".parse().unwrap()).is_none());
            }
            Err(e) => prop_assert!(false, "no solution found:\n{e}"),
        }
    }

    #[test]
    fn any_answer_is_valid_or_explained(
        spec in spec(),
        first in 0..VERSIONS,
        dead in prop::collection::vec(any::<bool>(), PACKAGES * VERSIONS as usize),
    ) {
        let source = build_with_dead(&spec, None, &dead);
        let plant = vec![first; PACKAGES];
        match block_on(resolve(&source, &root(&plant), &ResolveOptions::default())) {
            Ok(r) => check(&r),
            Err(ResolveError::NoSolution(e)) => {
                prop_assert!(!e.lines.is_empty());
                prop_assert!(e.lines.iter().all(|l| l.ends_with('.') && !l.contains("Derived")));
            }
            Err(e) => prop_assert!(false, "unexpected error: {e}"),
        }
    }
}

#[test]
fn forced_conflict_is_explained() {
    // p0 1.x needs p1 1.0, the root needs p1 1.3: unsatisfiable by construction.
    let mut source = InMemorySource::new("random");
    for v in 0..VERSIONS {
        source.add(
            Manifest::new(name(0), Version::new(1, v, 0)).with_dependency("d1", name(1), req(0, 0)),
        );
        source.add(Manifest::new(name(1), Version::new(1, v, 0)));
    }
    let app = root(&[0]).with_dependency("second", name(1), req(3, 3));
    match block_on(resolve(&source, &app, &ResolveOptions::default())) {
        Err(ResolveError::NoSolution(e)) => assert_eq!(
            e.lines,
            [
                "acme/root 1.0.0 depends on acme/p1 >=1.3.0, <1.4.0.",
                "acme/root 1.0.0 depends on acme/p0 >=1.0.0, <1.1.0.",
                "acme/p0 1.0.0 depends on acme/p1 >=1.0.0, <1.1.0.",
                "These requirements cannot all be met.",
            ]
        ),
        other => panic!("expected no solution, got {other:?}"),
    }
}

//! Solver behaviour through the public API.

// Helpers outside `#[test]` functions panic on purpose: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Mutex;

use futures::executor::block_on;
use futures::future::BoxFuture;
use resolve_graph::{
    InMemorySource, Manifest, MultiSource, PackageId, PackageName, Resolution, ResolveError,
    ResolveOptions, Source, SourceError, Summary, resolve,
};
use semver::{Version, VersionReq};

fn name(s: &str) -> PackageName {
    s.parse().unwrap()
}

/// `pkg("acme/a", "1.0.0", &[("acme/c", "^1")])`, aliases are the package's short name.
fn pkg(n: &str, v: &str, deps: &[(&str, &str)]) -> Manifest {
    let mut m = Manifest::new(name(n), Version::parse(v).unwrap());
    for (d, req) in deps {
        let dn = name(d);
        let alias = dn.name().to_owned();
        m = m.with_dependency(&alias, dn, VersionReq::parse(req).unwrap());
    }
    m
}

fn registry(pkgs: &[Manifest]) -> InMemorySource {
    let mut s = InMemorySource::new("memory");
    for p in pkgs {
        s.add(p.clone());
    }
    s
}

fn run(source: &impl Source, root: &Manifest) -> Result<Resolution, ResolveError> {
    block_on(resolve(source, root, &ResolveOptions::default()))
}

fn chosen(r: &Resolution, n: &str) -> String {
    r.version(&name(n)).unwrap().to_string()
}

fn explanation(source: &impl Source, root: &Manifest) -> Vec<String> {
    match run(source, root) {
        Err(ResolveError::NoSolution(e)) => e.lines,
        other => panic!("expected no solution, got {other:?}"),
    }
}

#[test]
fn backtracks_to_an_older_python() {
    let reg = registry(&[
        pkg("acme/python", "3.11.0", &[("acme/libc", "^1")]),
        pkg("acme/python", "3.12.0", &[("acme/libc", "^1")]),
        pkg("acme/python", "3.13.0", &[("acme/libc", "^2")]),
        pkg("acme/tools", "1.0.0", &[("acme/libc", "^1.2")]),
        pkg("acme/libc", "1.1.0", &[]),
        pkg("acme/libc", "1.2.0", &[]),
        pkg("acme/libc", "2.0.0", &[]),
    ]);
    let app = pkg(
        "acme/app",
        "1.0.0",
        &[("acme/python", ">=3.11, <3.14"), ("acme/tools", "^1")],
    );
    let r = run(&reg, &app).unwrap();
    assert_eq!(chosen(&r, "acme/python"), "3.12.0");
    assert_eq!(chosen(&r, "acme/libc"), "1.2.0");
    assert_eq!(chosen(&r, "acme/tools"), "1.0.0");
    assert_eq!(r.packages.len(), 3);
}

#[test]
fn greedy_resolvers_fail_here() {
    // `^1.0.0` together with `>1.1, <1.3`: 1.2.0 satisfies both even though 1.4.0 is newest.
    let reg = registry(&[
        pkg("acme/a", "1.0.0", &[("acme/c", ">1.1, <1.3")]),
        pkg("acme/c", "1.0.0", &[]),
        pkg("acme/c", "1.2.0", &[]),
        pkg("acme/c", "1.4.0", &[]),
    ]);
    let app = pkg(
        "acme/app",
        "1.0.0",
        &[("acme/c", "^1.0.0"), ("acme/a", "1")],
    );
    assert_eq!(chosen(&run(&reg, &app).unwrap(), "acme/c"), "1.2.0");
}

#[test]
fn diamond_shares_one_version() {
    let reg = registry(&[
        pkg("acme/a", "1.0.0", &[("acme/c", "^1.1")]),
        pkg("acme/b", "1.0.0", &[("acme/c", ">=1.0, <1.3")]),
        pkg("acme/c", "1.0.0", &[]),
        pkg("acme/c", "1.1.0", &[]),
        pkg("acme/c", "1.2.0", &[]),
        pkg("acme/c", "1.3.0", &[]),
    ]);
    let app = pkg("acme/app", "1.0.0", &[("acme/a", "^1"), ("acme/b", "^1")]);
    let r = run(&reg, &app).unwrap();
    assert_eq!(chosen(&r, "acme/c"), "1.2.0");
    // Two levels below the root: two fetch rounds, not one per edge.
    assert_eq!(r.rounds, 2);
}

#[test]
fn explains_no_matching_version() {
    let reg = registry(&[
        pkg("acme/python", "3.11.0", &[]),
        pkg("acme/python", "3.12.0", &[]),
        pkg("acme/python", "3.13.0", &[]),
    ]);
    let app = pkg("acme/app", "1.0.0", &[("acme/python", "^3.14")]);
    assert_eq!(
        explanation(&reg, &app),
        [
            "acme/app 1.0.0 depends on acme/python ^3.14, but the available versions are 3.11.0, 3.12.0, 3.13.0."
        ]
    );
}

#[test]
fn explains_no_versions_at_all() {
    let reg = registry(&[]);
    let app = pkg("acme/app", "1.0.0", &[("acme/ghost", "^1")]);
    assert_eq!(
        explanation(&reg, &app),
        ["acme/app 1.0.0 depends on acme/ghost ^1, but acme/ghost has no versions at all."]
    );
}

#[test]
fn explains_conflicting_requirements() {
    let reg = registry(&[
        pkg("acme/a", "1.0.0", &[("acme/c", "^1")]),
        pkg("acme/b", "1.0.0", &[("acme/c", "^2")]),
        pkg("acme/c", "1.0.0", &[]),
        pkg("acme/c", "2.0.0", &[]),
    ]);
    let app = pkg("acme/app", "1.0.0", &[("acme/a", "^1"), ("acme/b", "^1")]);
    let lines = explanation(&reg, &app);
    for want in [
        "acme/app 1.0.0 depends on acme/a ^1.",
        "acme/app 1.0.0 depends on acme/b ^1.",
        "acme/a 1.0.0 depends on acme/c ^1.",
        "acme/b 1.0.0 depends on acme/c ^2.",
        "These requirements cannot all be met.",
    ] {
        assert!(
            lines.iter().any(|l| l == want),
            "missing {want:?} in {lines:#?}"
        );
    }
    assert!(
        lines
            .iter()
            .all(|l| !l.contains("Derived") && !l.contains('{'))
    );
}

#[test]
fn explains_a_conflict_across_several_versions() {
    let reg = registry(&[
        pkg("acme/a", "1.0.0", &[("acme/c", "^1")]),
        pkg("acme/a", "1.1.0", &[("acme/c", "^1")]),
        pkg("acme/b", "1.0.0", &[("acme/c", "^2")]),
        pkg("acme/b", "1.1.0", &[("acme/c", "^3")]),
        pkg("acme/c", "1.0.0", &[]),
        pkg("acme/c", "2.0.0", &[]),
    ]);
    let app = pkg("acme/app", "1.0.0", &[("acme/a", "^1"), ("acme/b", "^1")]);
    let mut lines = explanation(&reg, &app);
    lines.sort();
    assert_eq!(
        lines,
        [
            "All versions of acme/a (1.0.0 and 1.1.0) depend on acme/c ^1.",
            "These requirements cannot all be met.",
            "acme/app 1.0.0 depends on acme/a ^1.",
            "acme/app 1.0.0 depends on acme/b ^1.",
            "acme/b 1.0.0 depends on acme/c ^2.",
            "acme/b 1.1.0 depends on acme/c ^3.",
        ]
    );
}

#[test]
fn explains_a_transitive_dead_end() {
    let reg = registry(&[
        pkg("acme/tools", "1.0.0", &[("acme/libc", "^1.5")]),
        pkg("acme/libc", "1.2.0", &[]),
        pkg("acme/libc", "2.0.0", &[]),
    ]);
    let app = pkg("acme/app", "1.0.0", &[("acme/tools", "^1")]);
    assert_eq!(
        explanation(&reg, &app),
        [
            "acme/app 1.0.0 depends on acme/tools ^1.",
            "acme/tools 1.0.0 depends on acme/libc ^1.5, but the available versions are 1.2.0, 2.0.0.",
            "These requirements cannot all be met.",
        ]
    );
}

#[test]
fn prefers_locked_versions_that_still_fit() {
    let reg = registry(&[
        pkg("acme/c", "1.0.0", &[]),
        pkg("acme/c", "1.1.0", &[]),
        pkg("acme/c", "1.2.0", &[]),
    ]);
    let app = pkg("acme/app", "1.0.0", &[("acme/c", "^1")]);
    let mut options = ResolveOptions::default();
    options
        .preferred
        .insert(name("acme/c"), Version::new(1, 1, 0));
    let r = block_on(resolve(&reg, &app, &options)).unwrap();
    assert_eq!(chosen(&r, "acme/c"), "1.1.0");
    // A lock that no longer fits is ignored, not an error.
    options
        .preferred
        .insert(name("acme/c"), Version::new(0, 9, 0));
    let r = block_on(resolve(&reg, &app, &options)).unwrap();
    assert_eq!(chosen(&r, "acme/c"), "1.2.0");
}

#[test]
fn pre_releases_only_when_asked_for() {
    let reg = registry(&[
        pkg("acme/c", "1.0.0", &[]),
        pkg("acme/c", "1.1.0-beta.1", &[]),
    ]);
    let app = pkg("acme/app", "1.0.0", &[("acme/c", "^1")]);
    assert_eq!(chosen(&run(&reg, &app).unwrap(), "acme/c"), "1.0.0");
    let app = pkg("acme/app", "1.0.0", &[("acme/c", ">=1.1.0-beta.0")]);
    assert_eq!(chosen(&run(&reg, &app).unwrap(), "acme/c"), "1.1.0-beta.1");
}

/// Wraps a source, counts queries and can break one package's summaries.
struct Counting {
    inner: InMemorySource,
    queries: Mutex<HashMap<String, usize>>,
    broken: Option<PackageId>,
}

impl Counting {
    fn new(inner: InMemorySource) -> Self {
        Self {
            inner,
            queries: Mutex::new(HashMap::new()),
            broken: None,
        }
    }
    fn count(&self, key: String) {
        *self.queries.lock().unwrap().entry(key).or_default() += 1;
    }
}

impl Source for Counting {
    fn versions<'a>(
        &'a self,
        name: &'a PackageName,
    ) -> BoxFuture<'a, Result<Vec<Version>, SourceError>> {
        self.count(format!("versions {name}"));
        self.inner.versions(name)
    }
    fn summary<'a>(&'a self, id: &'a PackageId) -> BoxFuture<'a, Result<Summary, SourceError>> {
        self.count(format!("summary {id}"));
        if self.broken.as_ref() == Some(id) {
            return Box::pin(async move {
                Err(SourceError::Failed {
                    origin: "memory".to_owned(),
                    package: id.to_string(),
                    message: "corrupt manifest".to_owned(),
                })
            });
        }
        self.inner.summary(id)
    }
}

#[test]
fn each_query_is_made_once() {
    let reg = Counting::new(registry(&[
        pkg("acme/python", "3.11.0", &[("acme/libc", "^1")]),
        pkg("acme/python", "3.12.0", &[("acme/libc", "^1")]),
        pkg("acme/python", "3.13.0", &[("acme/libc", "^2")]),
        pkg("acme/tools", "1.0.0", &[("acme/libc", "^1.2")]),
        pkg("acme/libc", "1.2.0", &[]),
        pkg("acme/libc", "2.0.0", &[]),
    ]));
    let app = pkg(
        "acme/app",
        "1.0.0",
        &[("acme/python", ">=3.11, <3.14"), ("acme/tools", "^1")],
    );
    run(&reg, &app).unwrap();
    let queries = reg.queries.lock().unwrap();
    assert!(queries.values().all(|&n| n == 1), "{queries:?}");
    assert_eq!(queries.get("versions acme/libc"), Some(&1));
}

#[test]
fn a_broken_version_is_skipped_and_explained() {
    let mut reg = Counting::new(registry(&[
        pkg("acme/c", "1.0.0", &[]),
        pkg("acme/c", "1.1.0", &[]),
    ]));
    reg.broken = Some(PackageId::new(name("acme/c"), Version::new(1, 1, 0)));
    let app = pkg("acme/app", "1.0.0", &[("acme/c", "^1")]);
    let r = run(&reg, &app).unwrap();
    assert_eq!(chosen(&r, "acme/c"), "1.0.0");
    // The older version was chosen because of a failure: the caller hears of it.
    let warnings: Vec<String> = r.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        ["memory failed for acme/c 1.1.0: corrupt manifest"]
    );
    let app = pkg("acme/app", "1.0.0", &[("acme/c", "^1.1")]);
    let lines = explanation(&reg, &app);
    assert!(
        lines.contains(
            &"acme/c 1.1.0 cannot be used: memory failed for acme/c 1.1.0: corrupt manifest."
                .to_owned()
        ),
        "{lines:#?}"
    );
}

#[test]
fn listing_failure_is_an_error() {
    struct Down;
    impl Source for Down {
        fn versions<'a>(
            &'a self,
            name: &'a PackageName,
        ) -> BoxFuture<'a, Result<Vec<Version>, SourceError>> {
            Box::pin(async move {
                Err(SourceError::Failed {
                    origin: "registry".to_owned(),
                    package: name.to_string(),
                    message: "timed out".to_owned(),
                })
            })
        }
        fn summary<'a>(&'a self, _: &'a PackageId) -> BoxFuture<'a, Result<Summary, SourceError>> {
            unreachable!()
        }
    }
    let app = pkg("acme/app", "1.0.0", &[("acme/c", "^1")]);
    let e = run(&Down, &app).unwrap_err();
    assert_eq!(
        e.to_string(),
        "could not list versions: registry failed for acme/c: timed out"
    );
}

#[test]
fn invalid_root_is_rejected() {
    let mut app = pkg("acme/app", "1.0.0", &[("acme/c", "^1")]);
    app.entrypoint = Some("run".to_owned());
    let e = run(&registry(&[]), &app).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid root manifest: acme/app: field `entrypoint`: `run` is not one of the package's commands"
    );
}

#[test]
fn only_versions_some_requirement_accepts_are_fetched() {
    let reg = Counting::new(registry(&[
        pkg("acme/a", "1.0.0", &[("acme/c", "^2")]),
        pkg("acme/a", "2.0.0", &[("acme/c", "^3")]),
        pkg("acme/c", "1.0.0", &[]),
        pkg("acme/c", "2.0.0", &[]),
        pkg("acme/c", "2.1.0", &[]),
        pkg("acme/c", "3.0.0", &[]),
    ]));
    let app = pkg("acme/app", "1.0.0", &[("acme/a", "^1")]);
    let r = run(&reg, &app).unwrap();
    assert_eq!(chosen(&r, "acme/c"), "2.1.0");
    let queries = reg.queries.lock().unwrap();
    let mut asked: Vec<&str> = queries.keys().map(String::as_str).collect();
    asked.sort_unstable();
    // Neither acme/a 2.0.0 nor the acme/c versions outside ^2 can matter.
    assert_eq!(
        asked,
        [
            "summary acme/a 1.0.0",
            "summary acme/c 2.0.0",
            "summary acme/c 2.1.0",
            "versions acme/a",
            "versions acme/c",
        ]
    );
}

#[test]
fn dead_newest_versions_are_stepped_over() {
    // Every newest version needs something absent; the chain must settle on the older ones.
    let reg = registry(&[
        pkg("acme/a", "1.0.0", &[("acme/b", "^1")]),
        pkg("acme/a", "1.1.0", &[("acme/b", ">=1.1")]),
        pkg("acme/b", "1.0.0", &[("acme/c", "^1")]),
        pkg("acme/b", "1.1.0", &[("acme/c", "^1"), ("acme/gone", "^1")]),
        pkg("acme/c", "1.0.0", &[]),
    ]);
    let app = pkg("acme/app", "1.0.0", &[("acme/a", "^1")]);
    let r = run(&reg, &app).unwrap();
    assert_eq!(chosen(&r, "acme/a"), "1.0.0");
    assert_eq!(chosen(&r, "acme/b"), "1.0.0");
    // A locked version that cannot work is not preferred either.
    let mut options = ResolveOptions::default();
    options
        .preferred
        .insert(name("acme/b"), Version::new(1, 1, 0));
    let r = block_on(resolve(&reg, &app, &options)).unwrap();
    assert_eq!(chosen(&r, "acme/b"), "1.0.0");
}

#[test]
fn when_every_version_is_dead_the_cause_is_explained() {
    let reg = registry(&[
        pkg("acme/a", "1.0.0", &[("acme/gone", "^1")]),
        pkg("acme/a", "1.1.0", &[("acme/gone", "^1")]),
    ]);
    let app = pkg("acme/app", "1.0.0", &[("acme/a", "^1")]);
    assert_eq!(
        explanation(&reg, &app),
        [
            "acme/app 1.0.0 depends on acme/a ^1.",
            "All versions of acme/a (1.0.0 and 1.1.0) depend on acme/gone ^1, but acme/gone has no versions at all.",
            "These requirements cannot all be met.",
        ]
    );
}

/// Fails every query, like a registry that is down.
struct Down;

impl Source for Down {
    fn versions<'a>(
        &'a self,
        name: &'a PackageName,
    ) -> BoxFuture<'a, Result<Vec<Version>, SourceError>> {
        Box::pin(async move {
            Err(SourceError::Failed {
                origin: "mirror".to_owned(),
                package: name.to_string(),
                message: "timed out".to_owned(),
            })
        })
    }
    fn summary<'a>(&'a self, id: &'a PackageId) -> BoxFuture<'a, Result<Summary, SourceError>> {
        Box::pin(async move {
            Err(SourceError::Failed {
                origin: "mirror".to_owned(),
                package: id.to_string(),
                message: "timed out".to_owned(),
            })
        })
    }
}

#[test]
fn outvoted_source_failures_reach_the_resolution() {
    let multi = MultiSource::new()
        .with(Down)
        .with(registry(&[pkg("acme/c", "1.0.0", &[])]));
    let app = pkg("acme/app", "1.0.0", &[("acme/c", "^1")]);
    let r = run(&multi, &app).unwrap();
    assert_eq!(chosen(&r, "acme/c"), "1.0.0");
    let warnings: Vec<String> = r.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "mirror failed for acme/c: timed out",
            "mirror failed for acme/c 1.0.0: timed out",
        ]
    );
    // Handed over, not kept: the next resolution reports only its own failures.
    assert!(multi.warnings().is_empty());
    let r = run(&multi, &pkg("acme/app", "1.0.0", &[])).unwrap();
    assert!(r.warnings.is_empty());
    // A source that answered alone has nothing to report.
    let r = run(&registry(&[pkg("acme/c", "1.0.0", &[])]), &app).unwrap();
    assert!(r.warnings.is_empty());
}

#[test]
fn a_requirement_met_late_fetches_the_versions_it_accepts() {
    // acme/c is listed (for a 1.1's `^1`) long before e, three levels down, asks for `^2`:
    // only then does c 2.0.0 become worth fetching, and the solution needs it.
    let reg = Counting::new(registry(&[
        pkg("acme/a", "1.0.0", &[]),
        pkg("acme/a", "1.1.0", &[("acme/c", "^1")]),
        pkg("acme/b", "1.0.0", &[("acme/d", "^1")]),
        pkg("acme/d", "1.0.0", &[("acme/e", "^1")]),
        pkg("acme/e", "1.0.0", &[("acme/c", "^2")]),
        pkg("acme/c", "1.0.0", &[]),
        pkg("acme/c", "2.0.0", &[]),
    ]));
    let app = pkg("acme/app", "1.0.0", &[("acme/a", "^1"), ("acme/b", "^1")]);
    let r = run(&reg, &app).unwrap();
    assert_eq!(chosen(&r, "acme/a"), "1.0.0");
    assert_eq!(chosen(&r, "acme/c"), "2.0.0");
    assert_eq!(r.rounds, 3);
    let queries = reg.queries.lock().unwrap();
    assert!(queries.values().all(|&n| n == 1), "{queries:?}");
    assert_eq!(queries.get("summary acme/c 2.0.0"), Some(&1));
}

/// Lists everything from `inner` except `broken`, whose listing fails.
struct Unlistable {
    inner: InMemorySource,
    broken: PackageName,
}

impl Source for Unlistable {
    fn versions<'a>(
        &'a self,
        name: &'a PackageName,
    ) -> BoxFuture<'a, Result<Vec<Version>, SourceError>> {
        if name == &self.broken {
            return Box::pin(async move {
                Err(SourceError::Failed {
                    origin: "registry".to_owned(),
                    package: name.to_string(),
                    message: "403 forbidden".to_owned(),
                })
            });
        }
        self.inner.versions(name)
    }
    fn summary<'a>(&'a self, id: &'a PackageId) -> BoxFuture<'a, Result<Summary, SourceError>> {
        self.inner.summary(id)
    }
}

#[test]
fn a_listing_failure_matters_only_when_the_package_is_needed() {
    let reg = Unlistable {
        inner: registry(&[
            pkg("acme/lib", "1.0.0", &[("acme/legacy", "^1")]),
            pkg("acme/lib", "1.1.0", &[]),
        ]),
        broken: name("acme/legacy"),
    };
    // Only the old lib needs the package that cannot be listed: no harm, but reported.
    let app = pkg("acme/app", "1.0.0", &[("acme/lib", "^1")]);
    let r = run(&reg, &app).unwrap();
    assert_eq!(chosen(&r, "acme/lib"), "1.1.0");
    let warnings: Vec<String> = r.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings, ["registry failed for acme/legacy: 403 forbidden"]);
    // Pinned to the old lib, the failure is the answer, not a made-up "no versions".
    let app = pkg("acme/app", "1.0.0", &[("acme/lib", "=1.0.0")]);
    assert_eq!(
        run(&reg, &app).unwrap_err().to_string(),
        "could not list versions: registry failed for acme/legacy: 403 forbidden"
    );
}

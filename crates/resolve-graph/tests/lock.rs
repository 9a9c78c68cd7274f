//! Lockfile round trip and resolving from a lock.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Mutex;

use futures::executor::block_on;
use futures::future::BoxFuture;
use resolve_graph::{
    InMemorySource, LockError, Lockfile, Manifest, PackageId, PackageName, ResolveOptions, Source,
    SourceError, Summary, resolve, resolve_locked,
};
use semver::{Version, VersionReq};

fn pkg(n: &str, v: &str, deps: &[(&str, &str)]) -> Manifest {
    let mut m = Manifest::new(n.parse().unwrap(), Version::parse(v).unwrap());
    for (d, req) in deps {
        let dn: PackageName = d.parse().unwrap();
        let alias = dn.name().to_owned();
        m = m.with_dependency(&alias, dn, VersionReq::parse(req).unwrap());
    }
    m
}

struct Counting {
    inner: InMemorySource,
    queries: Mutex<HashMap<&'static str, usize>>,
}

impl Source for Counting {
    fn versions<'a>(
        &'a self,
        name: &'a PackageName,
    ) -> BoxFuture<'a, Result<Vec<Version>, SourceError>> {
        *self.queries.lock().unwrap().entry("versions").or_default() += 1;
        self.inner.versions(name)
    }
    fn summary<'a>(&'a self, id: &'a PackageId) -> BoxFuture<'a, Result<Summary, SourceError>> {
        *self.queries.lock().unwrap().entry("summary").or_default() += 1;
        self.inner.summary(id)
    }
}

fn registry() -> Counting {
    let mut inner = InMemorySource::new("memory");
    for m in [
        pkg("acme/python", "3.12.0", &[("acme/libc", "^1")]),
        pkg("acme/python", "3.13.0", &[("acme/libc", "^1")]),
        pkg("acme/libc", "1.2.0", &[]),
        pkg("acme/unused", "1.0.0", &[]),
    ] {
        inner.add(m);
    }
    Counting {
        inner,
        queries: Mutex::new(HashMap::new()),
    }
}

fn app(req: &str) -> Manifest {
    pkg("acme/app", "1.0.0", &[("acme/python", req)])
}

#[test]
fn round_trip_and_resolve_without_version_queries() {
    let source = registry();
    let r = block_on(resolve(&source, &app("^3"), &ResolveOptions::default())).unwrap();
    let text = Lockfile::from_resolution(&r).to_toml().unwrap();
    assert_eq!(
        text,
        "version = 1\n\n[root]\nname = \"acme/app\"\nversion = \"1.0.0\"\n\n\
         [[package]]\nname = \"acme/libc\"\nversion = \"1.2.0\"\ndigest = \"memory:acme/libc@1.2.0\"\nsource = \"memory\"\n\n\
         [[package]]\nname = \"acme/python\"\nversion = \"3.13.0\"\ndigest = \"memory:acme/python@3.13.0\"\nsource = \"memory\"\n"
    );
    let lock = Lockfile::from_toml(&text).unwrap();
    let fresh = registry();
    let again = block_on(resolve_locked(&fresh, &app("^3"), &lock)).unwrap();
    assert_eq!(again.packages, r.packages);
    let queries = fresh.queries.lock().unwrap();
    assert_eq!(queries.get("versions"), None);
    assert_eq!(queries.get("summary"), Some(&2));
}

#[test]
fn stale_lock_fails_clearly() {
    let source = registry();
    let r = block_on(resolve(
        &source,
        &app("=3.12.0"),
        &ResolveOptions::default(),
    ))
    .unwrap();
    let lock = Lockfile::from_resolution(&r);
    let e = block_on(resolve_locked(&source, &app("^3.13"), &lock)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "pkgload.lock no longer matches: acme/app 1.0.0 requires acme/python ^3.13, but the lock pins 3.12.0"
    );
    let other = pkg("acme/app", "1.0.0", &[("acme/unused", "^1")]);
    let e = block_on(resolve_locked(&source, &other, &lock)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "pkgload.lock no longer matches: acme/app 1.0.0 requires acme/unused ^1, but the lock has no such package"
    );
    // Re-resolving with the lock as preference keeps 3.12.0 instead of upgrading.
    let options = ResolveOptions {
        preferred: lock.preferred(),
    };
    let r = block_on(resolve(&source, &app("^3"), &options)).unwrap();
    assert_eq!(
        r.version(&"acme/python".parse().unwrap()).unwrap(),
        &Version::new(3, 12, 0)
    );
}

#[test]
fn digest_mismatch_and_bad_files() {
    let source = registry();
    let r = block_on(resolve(&source, &app("^3"), &ResolveOptions::default())).unwrap();
    let mut lock = Lockfile::from_resolution(&r);
    lock.packages[0].digest = "sha256:00".to_owned();
    let e = block_on(resolve_locked(&source, &app("^3"), &lock)).unwrap_err();
    assert!(matches!(e, LockError::DigestMismatch { .. }), "{e}");
    assert_eq!(
        Lockfile::from_toml("version = 2\n[root]\nname = \"acme/app\"\nversion = \"1.0.0\"\n")
            .unwrap_err()
            .to_string(),
        "pkgload.lock has version 2; this build reads version 1"
    );
    assert!(matches!(
        Lockfile::from_toml("version = 1\n[root]\nname = \"ACME\"\nversion = \"1.0.0\"\n"),
        Err(LockError::Parse(_))
    ));
}

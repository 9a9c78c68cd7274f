//! Merging commands and filesystem mappings.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use futures::executor::block_on;
use resolve_graph::{
    AbsPath, Command, FsMapping, InMemorySource, Manifest, MergeError, PackageName, Resolution,
    ResolveOptions, ResolvedPackage, resolve,
};
use semver::{Version, VersionReq};

fn name(s: &str) -> PackageName {
    s.parse().unwrap()
}

fn pkg(n: &str, deps: &[(&str, &str)]) -> Manifest {
    let mut m = Manifest::new(name(n), Version::new(1, 0, 0));
    for (alias, d) in deps {
        m = m.with_dependency(alias, name(d), VersionReq::parse("^1").unwrap());
    }
    m
}

fn cmd(m: &mut Manifest, command: &str, dependency: Option<&str>) {
    m.commands.push(Command {
        name: command.to_owned(),
        runner: "wasi".to_owned(),
        atom: format!("{}-{command}", m.name.name()),
        dependency: dependency.map(str::to_owned),
        annotations: BTreeMap::new(),
    });
}

fn mount(m: &mut Manifest, volume: &str, at: &str, dependency: Option<&str>) {
    m.fs.push(FsMapping {
        volume: volume.to_owned(),
        mount: AbsPath::parse(at).unwrap(),
        dependency: dependency.map(str::to_owned),
        path: AbsPath::root(),
    });
}

fn resolution(root: &Manifest, pkgs: &[Manifest]) -> Resolution {
    let mut source = InMemorySource::new("memory");
    for p in pkgs {
        source.add(p.clone());
    }
    block_on(resolve(&source, root, &ResolveOptions::default())).unwrap()
}

fn declared_by(p: &ResolvedPackage, command: &str) -> String {
    p.commands[command].declared_by.name.to_string()
}

#[test]
fn commands_shadow_by_distance_then_alias_order() {
    let mut root = pkg("acme/app", &[("first", "acme/b"), ("second", "acme/a")]);
    cmd(&mut root, "run", None);
    let mut a = pkg("acme/a", &[("deep", "acme/deep")]);
    cmd(&mut a, "run", None);
    cmd(&mut a, "tool", None);
    cmd(&mut a, "only-a", None);
    let mut b = pkg("acme/b", &[]);
    cmd(&mut b, "tool", None);
    let mut deep = pkg("acme/deep", &[]);
    cmd(&mut deep, "only-a", None);
    cmd(&mut deep, "deep", None);
    let merged = ResolvedPackage::new(&resolution(&root, &[a, b, deep])).unwrap();
    assert_eq!(declared_by(&merged, "run"), "acme/app"); // root shadows
    assert_eq!(declared_by(&merged, "tool"), "acme/b"); // tie: alias `first` comes first
    assert_eq!(declared_by(&merged, "only-a"), "acme/a"); // nearer shadows farther
    assert_eq!(declared_by(&merged, "deep"), "acme/deep"); // everything is exposed
    assert_eq!(merged.commands.len(), 4);
    // Only command of the root becomes the entrypoint.
    assert_eq!(merged.entrypoint.as_deref(), Some("run"));
}

#[test]
fn command_atom_from_a_dependency() {
    let mut root = pkg("acme/app", &[("py", "acme/python")]);
    cmd(&mut root, "python", Some("py"));
    cmd(&mut root, "app", None);
    root.entrypoint = Some("app".to_owned());
    let merged = ResolvedPackage::new(&resolution(&root, &[pkg("acme/python", &[])])).unwrap();
    let python = &merged.commands["python"];
    assert_eq!(python.atom_package.to_string(), "acme/python 1.0.0");
    assert_eq!(python.declared_by.to_string(), "acme/app 1.0.0");
    assert_eq!(merged.entrypoint.as_deref(), Some("app"));
}

#[test]
fn entrypoint_none_with_several_commands() {
    let mut root = pkg("acme/app", &[]);
    cmd(&mut root, "a", None);
    cmd(&mut root, "b", None);
    assert_eq!(
        ResolvedPackage::new(&resolution(&root, &[]))
            .unwrap()
            .entrypoint,
        None
    );
}

#[test]
fn mappings_are_transitive_and_nearer_wins() {
    let mut root = pkg("acme/app", &[("py", "acme/python")]);
    mount(&mut root, "stdlib", "/opt/python", Some("py"));
    mount(&mut root, "app", "/app", None);
    let mut python = pkg("acme/python", &[]);
    mount(&mut python, "stdlib", "/opt/python", None);
    mount(&mut python, "bin", "/usr/bin", None);
    let merged = ResolvedPackage::new(&resolution(&root, &[python])).unwrap();
    let mounts: Vec<(String, String, String)> = merged
        .fs
        .values()
        .map(|m| {
            (
                m.mount.to_string(),
                m.package.name.to_string(),
                m.declared_by.name.to_string(),
            )
        })
        .collect();
    assert_eq!(
        mounts,
        [
            ("/app".into(), "acme/app".into(), "acme/app".into()),
            (
                "/opt/python".into(),
                "acme/python".into(),
                "acme/app".into()
            ),
            (
                "/usr/bin".into(),
                "acme/python".into(),
                "acme/python".into()
            ),
        ]
    );
}

#[test]
fn same_distance_mount_conflict_names_both() {
    let root = pkg("acme/app", &[("a", "acme/a"), ("b", "acme/b")]);
    let mut a = pkg("acme/a", &[]);
    mount(&mut a, "data", "/data", None);
    let mut b = pkg("acme/b", &[]);
    mount(&mut b, "data", "/data/", None);
    let e = ResolvedPackage::new(&resolution(&root, &[a, b])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "mount /data is claimed by both acme/a 1.0.0 and acme/b 1.0.0, at the same distance from the root"
    );
}

#[test]
fn unknown_alias_is_an_error_not_a_panic() {
    // A manifest that skipped validation: the merge must still not panic.
    let mut r = resolution(&pkg("acme/app", &[]), &[]);
    cmd(&mut r.root, "run", Some("ghost"));
    assert_eq!(
        ResolvedPackage::new(&r).unwrap_err(),
        MergeError::UnknownAlias {
            package: "acme/app 1.0.0".to_owned(),
            field: "commands.run.dependency".to_owned(),
            alias: "ghost".to_owned(),
        }
    );
    let mut r = resolution(&pkg("acme/app", &[]), &[]);
    mount(&mut r.root, "v", "/x", Some("ghost"));
    assert_eq!(
        ResolvedPackage::new(&r).unwrap_err().to_string(),
        "acme/app 1.0.0: field `fs[0].dependency`: no dependency has the alias `ghost`"
    );
}

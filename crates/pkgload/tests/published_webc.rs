//! Packages Wasmer published, loaded as a new user would.
//!
//! The repository holds no webc file made elsewhere, but the `webc` crate pkgload builds on
//! ships two in its own source (for its compatibility tests): `cowsay.webc`, a webc v2
//! package from the Wasmer registry (`wiqar/cowsay` 0.3.0, a real WASI program), and
//! `bindings-package-test-3.webc`, a webc v1 package published without a namespace. Cargo
//! unpacks that source to build pkgload, so the files are always there; a missing one fails
//! the test rather than skipping it. What pkgload reports is checked against what the
//! `webc` crate reads from the same bytes, and cowsay runs under Node's WASI.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{pkgload, run, sha256};
use serde_json::Value;
use test_servers::webc::Package;
use webc::Container;

/// The unpacked source of the `webc` crate this workspace builds with.
fn webc_crate_source() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = run(Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--manifest-path",
        ])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml")));
    let metadata: Value = serde_json::from_slice(&out.stdout).unwrap();
    let webc = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "webc")
        .expect("the workspace depends on the webc crate");
    Path::new(webc["manifest_path"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_owned()
}

fn published(file: &str) -> PathBuf {
    let path = webc_crate_source().join("tests").join(file);
    assert!(
        path.is_file(),
        "{} is missing: the webc crate's published source ships it",
        path.display()
    );
    path
}

/// The container as the `webc` crate reads it on its own.
fn open(file: &Path) -> Container {
    let bytes = std::fs::read(file).unwrap();
    let version = webc::detect(&bytes[..]).unwrap();
    Container::from_bytes_and_version(bytes.into(), version).unwrap()
}

/// `pkgload [ARGS…] load --json ROOT`, parsed.
fn load_json(cache: &Path, args: &[&str], root: &str) -> Value {
    let out = run(pkgload(cache).args(args).args(["load", "--json", root]));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn wasmers_cowsay_v2_loads_and_runs_under_node_wasi() {
    let work = tempfile::tempdir().unwrap();
    let file = published("cowsay.webc");
    let cache = work.path().join("cache");
    let json = load_json(&cache, &[], file.to_str().unwrap());
    assert_eq!(common::package_names(&json), ["wiqar/cowsay@0.3.0"]);

    // Both commands run the package's one atom, named by the sha256 of its bytes.
    let container = open(&file);
    let atom = container.get_atom("cowsay").expect("cowsay's atom");
    let mut commands: Vec<(String, String)> = json["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["atom"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    commands.sort();
    let digest = sha256(&atom);
    assert_eq!(
        commands,
        [
            ("cowsay".to_owned(), digest.clone()),
            ("cowthink".to_owned(), digest)
        ]
    );

    // A v2 package without `fs` mounts its (empty) `atom` volume at `/`, as Wasmer does;
    // the `metadata` volume (README, LICENSE) is not mounted.
    let tree = work.path().join("tree");
    run(pkgload(&cache).args(["unpack", file.to_str().unwrap(), tree.to_str().unwrap()]));
    assert_eq!(std::fs::read_dir(&tree).unwrap().count(), 0);

    let stdout = common::run_wasi(
        work.path(),
        "cowsay",
        &atom,
        &tree,
        &["cowsay", "hello from pkgload"],
    );
    assert!(stdout.contains("< hello from pkgload >"), "{stdout}");
    assert!(stdout.contains("(oo)"), "no cow: {stdout}");
}

#[test]
fn a_v1_package_without_a_namespace_loads_in_the_global_namespace() {
    let work = tempfile::tempdir().unwrap();
    let file = published("bindings-package-test-3.webc");
    let cache = work.path().join("cache");
    let json = load_json(&cache, &[], file.to_str().unwrap());
    assert_eq!(
        common::package_names(&json),
        ["_/bindings-package-test-3@1.0.0"]
    );

    // Its files are the `atom` volume's, byte for byte as the webc crate reads them.
    let tree = work.path().join("tree");
    run(pkgload(&cache).args(["unpack", file.to_str().unwrap(), tree.to_str().unwrap()]));
    let container = open(&file);
    let volume = container.get_volume("atom").expect("the atom volume");
    let mut names: Vec<String> = std::fs::read_dir(&tree)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["bindings.wit", "entry.wat"]);
    for name in &names {
        let (expected, _) = volume.read_file(format!("/{name}").as_str()).unwrap();
        assert_eq!(
            std::fs::read(tree.join(name)).unwrap(),
            &expected[..],
            "{name}"
        );
    }

    // No OCI repository can be named after it, so `push` refuses it (before sending
    // anything) and says where it can be loaded from.
    let pushed = pkgload(&cache)
        .args([
            "push",
            file.to_str().unwrap(),
            "127.0.0.1:9/webc/bindings-package-test-3",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&pushed.stderr);
    assert_eq!(pushed.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bindings-package-test-3.webc") && err.contains("global namespace"),
        "{err}"
    );

    // A directory holding both, each found by its name, and a package of ours that
    // `use`s the v1 one by its bare name, as wapm packages wrote it.
    let dir = work.path().join("pkgs");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(&file, dir.join("bindings-package-test-3.webc")).unwrap();
    std::fs::copy(published("cowsay.webc"), dir.join("cowsay.webc")).unwrap();
    let registry = format!("dir:{}", dir.display());
    let from_dir = ["--registry", registry.as_str()];
    let json = load_json(&cache, &from_dir, "_/bindings-package-test-3@^1");
    assert_eq!(
        common::package_names(&json),
        ["_/bindings-package-test-3@1.0.0"]
    );
    let json = load_json(&cache, &from_dir, "wiqar/cowsay@^0.3");
    assert_eq!(common::package_names(&json), ["wiqar/cowsay@0.3.0"]);

    let mut app = Package::hello();
    app.name = Some(("acme/app".into(), "1.0.0".into()));
    app.uses = vec![("bindings".into(), "bindings-package-test-3@^1".into())];
    let app_file = work.path().join("app.webc");
    app.write(3, &app_file);
    let json = load_json(&cache, &from_dir, app_file.to_str().unwrap());
    assert_eq!(
        common::package_names(&json),
        ["acme/app@1.0.0", "_/bindings-package-test-3@1.0.0"]
    );
}

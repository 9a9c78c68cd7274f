//! A real runtime runs what pkgload loads: `examples/hello`, packed as an OCI package,
//! written as a webc file by the `webc` crate and by `pkgload pack --output FILE.webc`, is loaded, its tree unpacked, and its entrypoint atom run under
//! Node's WASI (`node:wasi`) with the tree preopened as `/`. The program reads a file
//! through the package's nested mount and prints it. pkgload itself embeds no runtime.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::{Path, PathBuf};

use common::{pkgload, run};
use test_servers::webc::{Node, Package};
use webc::metadata::annotations::FileSystemMapping;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello")
}

/// Loads `reference`, unpacks its tree, fetches its entrypoint's atom from the cache and
/// runs it under Node; returns the program's stdout.
fn load_and_run(work: &Path, cache: &Path, reference: &str, tag: &str) -> String {
    let json: serde_json::Value =
        serde_json::from_slice(&run(pkgload(cache).args(["load", "--json", reference])).stdout)
            .unwrap();
    let entry = json["entrypoint"].as_str().unwrap();
    let command = json["commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == entry)
        .unwrap();
    let digest = command["atom"].as_str().unwrap();
    // An OCI atom is a blob of its own in the cache; a webc atom is a slice of the stored
    // container, so the bytes pkgload reports (by sha256) are checked against the module.
    let cached = pkgload(cache)
        .args(["cache", "cat", digest])
        .output()
        .unwrap();
    let atom = if cached.status.success() {
        cached.stdout
    } else {
        let module = std::fs::read(example().join("hello.wasm")).unwrap();
        assert_eq!(
            digest,
            common::sha256(&module),
            "{tag}: the atom is not the module"
        );
        module
    };
    let tree = work.join(format!("{tag}-tree"));
    run(pkgload(cache).args(["unpack", reference, tree.to_str().unwrap()]));
    common::run_wasi(work, tag, &atom, &tree, &["hello"])
}

#[test]
fn the_example_runs_under_node_wasi_as_a_package_and_as_a_webc() {
    let work = tempfile::tempdir().unwrap();
    let example = example();
    let expected = std::fs::read_to_string(example.join("data/config.json")).unwrap();

    // As an OCI package, packed from the example directory.
    let layout = work.path().join("hello-layout");
    let cache = work.path().join("cache");
    run(pkgload(&cache).args([
        "pack",
        example.to_str().unwrap(),
        "--output",
        &format!("oci:{}", layout.display()),
    ]));
    let printed = load_and_run(
        work.path(),
        &cache,
        &format!("oci:{}", layout.display()),
        "oci",
    );
    assert_eq!(printed, expected);

    // As a webc v3 file with the same volumes, mappings and atom.
    let mut pkg = Package {
        name: Some(("examples/hello".into(), "1.0.0".into())),
        atoms: vec![(
            "hello".into(),
            std::fs::read(example.join("hello.wasm")).unwrap(),
        )],
        entrypoint: Some("hello".into()),
        ..Package::default()
    };
    pkg.commands = Package::hello().commands;
    for (volume, dir) in [("site", "site"), ("data", "data")] {
        for file in walk(&example.join(dir)) {
            let rel = file.strip_prefix(example.join(dir)).unwrap();
            pkg.files.push((
                volume.into(),
                format!("/{}", rel.display()),
                Node::File(std::fs::read(&file).unwrap()),
            ));
        }
    }
    pkg.fs = Some(vec![
        FileSystemMapping {
            from: None,
            volume_name: "site".into(),
            host_path: None,
            mount_path: "/app".into(),
        },
        FileSystemMapping {
            from: None,
            volume_name: "data".into(),
            host_path: None,
            mount_path: "/app/data".into(),
        },
    ]);
    let file = work.path().join("hello.webc");
    pkg.write(3, &file);
    let printed = load_and_run(
        work.path(),
        &work.path().join("cache-webc"),
        file.to_str().unwrap(),
        "webc",
    );
    assert_eq!(printed, expected);

    // As the webc file `pkgload pack --output FILE.webc` writes from the example directory.
    let packed = work.path().join("packed-hello.webc");
    run(pkgload(&cache).args([
        "pack",
        example.to_str().unwrap(),
        "--output",
        packed.to_str().unwrap(),
    ]));
    let printed = load_and_run(
        work.path(),
        &work.path().join("cache-packed"),
        packed.to_str().unwrap(),
        "packed",
    );
    assert_eq!(printed, expected);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

//! Container images and wasm artifacts through the real binary: an image pushed with
//! `skopeo` to a real `docker-registry` unpacks exactly as `umoci unpack` unpacks the same
//! layout, and a wasm artifact loads as one command.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use test_servers::registry::Registry;

fn sha256(data: &[u8]) -> String {
    cache_core::Algorithm::Sha256.digest(data).to_string()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn pkgload(cache: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pkgload"));
    c.arg("--cache-dir").arg(cache).env_remove("RUST_LOG");
    c
}

enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, &'a [u8]),
    Link(&'a str, &'a str),
    Hard(&'a str, &'a str),
}

fn layer(entries: &[E<'_>]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        match e {
            E::Dir(p, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                tar.append_data(&mut h, p, std::io::empty()).unwrap();
            }
            E::File(p, mode, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                tar.append_data(&mut h, p, *data).unwrap();
            }
            E::Link(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                tar.append_link(&mut h, p, target).unwrap();
            }
            E::Hard(p, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_size(0);
                tar.append_link(&mut h, p, target).unwrap();
            }
        }
    }
    tar.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn write_blob(layout: &Path, data: &[u8]) -> String {
    let digest = sha256(data);
    let hex = digest.trim_start_matches("sha256:");
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(hex), data).unwrap();
    digest
}

/// An OCI layout holding one image tagged `v1`, built from tar layers (gzip-compressed).
fn image_layout(dir: &Path, layers: &[Vec<u8>]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    let descriptors: Vec<Value> = layers
        .iter()
        .map(|l| {
            let gz = gzip(l);
            json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": write_blob(dir, &gz),
                "size": gz.len(),
            })
        })
        .collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": write_blob(dir, &config),
            "size": config.len(),
        },
        "layers": descriptors,
    }))
    .unwrap();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": write_blob(dir, &manifest),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "v1"},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Path → (type, permission bits, size, content digest or link target) of a real tree.
fn snapshot(root: &Path) -> BTreeMap<String, (char, u32, u64, String)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let mode = meta.permissions().mode() & 0o7777;
            let entry = if meta.is_dir() {
                stack.push(path.clone());
                ('d', mode, 0, String::new())
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                ('l', 0, 0, target.display().to_string())
            } else {
                (
                    'f',
                    mode,
                    meta.size(),
                    sha256(&std::fs::read(&path).unwrap()),
                )
            };
            out.insert(rel, entry);
        }
    }
    out
}

#[test]
fn image_from_registry_unpacks_like_umoci() {
    let registry = Registry::start().expect("docker-registry (cargo xtask test installs it)");
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    image_layout(
        &layout,
        &[
            layer(&[
                E::Dir("etc/", 0o755),
                E::File("etc/passwd", 0o644, b"root:x:0:0\n"),
                E::File("etc/shadow", 0o600, b"secret\n"),
                E::Dir("usr/", 0o755),
                E::Dir("usr/bin/", 0o755),
                E::File("usr/bin/tool", 0o4755, b"#!/bin/sh\n"),
                E::Hard("usr/bin/tool-again", "usr/bin/tool"),
                E::Dir("var/", 0o755),
                E::Dir("var/cache/", 0o755),
                E::File("var/cache/a", 0o644, b"a"),
                E::File("var/cache/b", 0o644, b"b"),
                E::Dir("old/", 0o755),
                E::File("old/file", 0o644, b"old"),
                E::File("big.bin", 0o644, &big),
            ]),
            layer(&[
                E::File("etc/.wh.shadow", 0o644, b""),
                E::File("var/cache/new", 0o644, b"new"),
                E::File("var/cache/.wh..wh..opq", 0o644, b""),
                E::File(".wh.old", 0o644, b""),
                E::Link("bin", "usr/bin"),
                E::Link("usr/bin/sh", "/usr/bin/tool"),
                E::Dir("old/", 0o700),
                E::File("old/recreated", 0o640, b"again"),
            ]),
        ],
    );

    // skopeo pushes the layout; pkgload unpacks from the registry.
    let image = format!("{}/test/img:1", registry.host());
    run(Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{image}"),
    ]));
    let cache = work.path().join("cache");
    let ours = work.path().join("ours");
    run(pkgload(&cache).args(["unpack", &image, ours.to_str().unwrap()]));

    // umoci unpacks the same layout.
    let bundle = work.path().join("bundle");
    run(Command::new("umoci").args([
        "unpack",
        "--rootless",
        "--image",
        &format!("{}:v1", layout.display()),
        bundle.to_str().unwrap(),
    ]));
    let theirs = snapshot(&bundle.join("rootfs"));
    let mine = snapshot(&ours);
    let differences: Vec<String> = theirs
        .keys()
        .chain(mine.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| theirs.get(*k) != mine.get(*k))
        .map(|k| format!("{k}: umoci {:?}, pkgload {:?}", theirs.get(k), mine.get(k)))
        .collect();
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    // The tree is what the layers say (not two empty trees agreeing).
    assert!(mine.contains_key("old/recreated") && !mine.contains_key("old/file"));
    assert!(!mine.contains_key("etc/shadow") && !mine.contains_key("var/cache/a"));
    assert_eq!(mine["usr/bin/tool"].1, 0o4755);

    // Reading without unpacking agrees, and the JSON names the image.
    let cat = run(pkgload(&cache).args(["cat", &image, "/bin/sh"]));
    assert_eq!(cat.stdout, b"#!/bin/sh\n");
    let loaded = run(pkgload(&cache).args(["load", &image, "--json"]));
    let loaded: Value = serde_json::from_slice(&loaded.stdout).unwrap();
    assert_eq!(loaded["kind"], "image");
    assert!(loaded["footprint"]["bytes"].as_u64().unwrap() > 200_000);
}

#[test]
fn wasm_artifact_loads_as_one_command() {
    let work = tempfile::tempdir().unwrap();
    let layout: PathBuf = work.path().join("greeter");
    std::fs::create_dir_all(&layout).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let module = b"\0asm\x01\0\0\0";
    let config = b"{}";
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": write_blob(&layout, config), "size": 2},
        "layers": [{"mediaType": "application/wasm", "digest": write_blob(&layout, module), "size": module.len()}],
    }))
    .unwrap();
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": write_blob(&layout, &manifest),
            "size": manifest.len(),
        }],
    });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    let cache = work.path().join("cache");
    let out = run(pkgload(&cache).args(["load", &format!("oci:{}", layout.display()), "--json"]));
    let loaded: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(loaded["kind"], "wasm");
    assert_eq!(loaded["entrypoint"], "greeter");
    assert_eq!(loaded["commands"][0]["atom"], sha256(module));
}

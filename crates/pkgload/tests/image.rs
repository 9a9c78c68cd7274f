//! Container images and wasm artifacts through the real binary: an image pushed with
//! `skopeo` to a real `docker-registry` unpacks exactly as `umoci unpack` unpacks the same
//! layout, and a wasm artifact loads as one command.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{E, finish_layout, gzip_layout, layer, pkgload, run, sha256, snapshot, write_blob};
use serde_json::{Value, json};
use test_servers::registry::Registry;

#[test]
fn image_from_registry_unpacks_like_umoci() {
    let registry = Registry::start().expect("docker-registry (cargo xtask test installs it)");
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    gzip_layout(
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
    let differences = common::differences(&theirs, &mine);
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

    // gc keeps what the tag's load reads (manifest, config, layers, uncompressed tars):
    // afterwards an offline load still works and decompresses nothing new.
    let gc = run(pkgload(&cache).args(["cache", "gc"]));
    assert!(
        String::from_utf8_lossy(&gc.stdout).starts_with("removed 0 blobs"),
        "{gc:?}"
    );
    let cat = run(pkgload(&cache).args(["--offline", "cat", &image, "/big.bin"]));
    assert_eq!(cat.stdout, big);
    // Without the tag ref as a root, everything goes.
    let gc = run(pkgload(&cache).args(["cache", "gc", "--no-refs"]));
    assert!(
        !String::from_utf8_lossy(&gc.stdout).starts_with("removed 0 blobs"),
        "{gc:?}"
    );
}

#[test]
fn wasm_artifact_loads_as_one_command() {
    let work = tempfile::tempdir().unwrap();
    let layout: PathBuf = work.path().join("greeter");
    let module = b"\0asm\x01\0\0\0";
    let config = b"{}";
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": write_blob(&layout, config), "size": 2},
        "layers": [{"mediaType": "application/wasm", "digest": write_blob(&layout, module), "size": module.len()}],
    }))
    .unwrap();
    finish_layout(&layout, &manifest, None);
    let cache = work.path().join("cache");
    let out = run(pkgload(&cache).args(["load", &format!("oci:{}", layout.display()), "--json"]));
    let loaded: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(loaded["kind"], "wasm");
    assert_eq!(loaded["entrypoint"], "greeter");
    assert_eq!(loaded["commands"][0]["atom"], sha256(module));
}

/// Wasm modules as other tools publish them: containerd/runwasi (a component layer beside a
/// tar layer, under an OCI image config) and wasm-to-oci (`…content.layer.v1+wasm`). The
/// module is the wasm layer, and only it is fetched.
#[test]
fn wasm_artifacts_of_other_tools_load_their_module() {
    let work = tempfile::tempdir().unwrap();
    let module = b"\0asm\x0d\0\x01\0component";
    let cases = [
        (
            "runwasi",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
            true,
        ),
        (
            "wasm-to-oci",
            "application/vnd.wasm.config.v1+json",
            "application/vnd.wasm.content.layer.v1+wasm",
            false,
        ),
    ];
    for (name, config_type, layer_type, with_tar) in cases {
        let layout: PathBuf = work.path().join(name);
        let config =
            br#"{"architecture":"wasm","os":"wasip1","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let mut layers = vec![json!({
            "mediaType": layer_type,
            "digest": write_blob(&layout, module),
            "size": module.len(),
        })];
        if with_tar {
            // A layer the load must not fetch: its blob is not even in the layout.
            layers.insert(
                0,
                json!({
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256(b"never written"),
                    "size": 13,
                }),
            );
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": config_type, "digest": write_blob(&layout, config), "size": config.len()},
            "layers": layers,
        }))
        .unwrap();
        finish_layout(&layout, &manifest, None);
        let cache = work.path().join(format!("cache-{name}"));
        let out =
            run(pkgload(&cache).args(["load", &format!("oci:{}", layout.display()), "--json"]));
        let loaded: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(loaded["kind"], "wasm", "{name}");
        assert_eq!(loaded["commands"][0]["atom"], sha256(module), "{name}");
    }

    // Two wasm layers: no one module; the error names the media types that would do.
    let layout: PathBuf = work.path().join("two");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": write_blob(&layout, b"{}"), "size": 2},
        "layers": [
            {"mediaType": "application/wasm", "digest": write_blob(&layout, module), "size": module.len()},
            {"mediaType": "application/wasm", "digest": write_blob(&layout, b"\0asm\x01\0\0\0"), "size": 8},
        ],
    }))
    .unwrap();
    finish_layout(&layout, &manifest, None);
    let out = pkgload(&work.path().join("cache-two"))
        .args(["load", &format!("oci:{}", layout.display())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("several wasm layers") && err.contains("two"),
        "{err}"
    );
}

//! Lazy reads of zstd:chunked layers against real parts: an image converted by `skopeo copy
//! --dest-compress-format zstd:chunked` and served by a real `docker-registry` loads from
//! its tables of contents, its tree (every file read lazily) equals `umoci unpack` of the
//! original image, and only what is read crosses the wire.
//!
//! Debian's skopeo keeps the source's diff_ids although its output's tars end with a
//! shorter end-of-archive padding; like containerd, pkgload refuses such an image when it
//! checks diff_ids, so the fixture's config is repaired from the converted layers (the
//! check itself is tested with a config that lies on purpose).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    E, annotated_layout, finish_layout, image_layout, layer, pkgload, run, sha256, snapshot,
    verify_clean, write_blob,
};
use loader::{Lazy, LoadError, Loader, PackageRef};
use serde_json::Value;
use test_servers::registry::Registry;
use test_servers::shaped::{Shape, ShapedProxy};

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Two layers, each over the 1 MiB below which layers are fetched whole, with whiteouts,
/// an opaque directory, links of both kinds and a hardlink into the layer below.
fn original(dir: &Path) {
    let [l1, l2] = original_layers();
    let diff_ids = [sha256(&l1), sha256(&l2)];
    image_layout(dir, &[(l1, TAR), (l2, TAR)], &diff_ids);
}

/// The tars of [`original`]'s layers.
fn original_layers() -> [Vec<u8>; 2] {
    let (big1, big2) = (noise(2 << 20, 7), noise(2 << 20, 11));
    let l1 = layer(&[
        E::Dir("etc/", 0o755),
        E::File("etc/hello.txt", 0o644, b"hello world\n"),
        E::File("etc/shadow", 0o600, b"secret\n"),
        E::File("etc/empty", 0o644, b""),
        E::Dir("usr/", 0o755),
        E::Dir("usr/bin/", 0o755),
        E::File("usr/bin/tool", 0o4755, b"#!/bin/sh\necho tool\n"),
        E::Hard("usr/bin/tool-again", "usr/bin/tool"),
        E::Dir("var/", 0o755),
        E::Dir("var/cache/", 0o755),
        E::File("var/cache/a", 0o644, b"a"),
        E::File("big1.bin", 0o644, &big1),
    ]);
    let l2 = layer(&[
        E::File("etc/.wh.shadow", 0o644, b""),
        E::File("var/cache/.wh..wh..opq", 0o644, b""),
        E::File("var/cache/new", 0o644, b"new"),
        E::Link("bin", "usr/bin"),
        E::Hard("usr/bin/tool-link", "usr/bin/tool"),
        E::File("etc/hello.txt", 0o640, b"hello again\n"),
        E::File("big2.bin", 0o644, &big2),
    ]);
    [l1, l2]
}

/// `original` converted by skopeo to zstd:chunked, its config's diff_ids recomputed from
/// the converted layers (or, with `lie`, the last one replaced by a wrong digest).
fn chunked(work: &Path, original: &Path, lie: bool) -> PathBuf {
    let name = if lie { "chunked-lying" } else { "chunked" };
    chunked_with(work, original, name, |config| {
        if lie {
            config["rootfs"]["diff_ids"][1] = Value::from(sha256(b"not this layer"));
        }
    })
}

/// `original` converted into `work/name`, its diff_ids repaired, its config then changed by
/// `edit`.
fn chunked_with(
    work: &Path,
    original: &Path,
    name: &str,
    edit: impl FnOnce(&mut Value),
) -> PathBuf {
    let out = work.join(name);
    run(Command::new("skopeo").args([
        "copy",
        "--dest-compress",
        "--dest-compress-format",
        "zstd:chunked",
        &format!("oci:{}:v1", original.display()),
        &format!("oci:{}:v1", out.display()),
    ]));
    let blob = |digest: &str| {
        std::fs::read(
            out.join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let index: Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    let mut manifest: Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let mut config: Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    let layers = manifest["layers"].as_array().unwrap().clone();
    assert_eq!(layers.len(), 2);
    let mut diff_ids: Vec<Value> = Vec::new();
    for l in &layers {
        assert!(
            l["annotations"].as_object().is_some_and(|a| a
                .keys()
                .any(|k| k.contains("zstd-chunked.manifest-position"))),
            "skopeo wrote a zstd:chunked layer: {l}"
        );
        let tar = zstd::stream::decode_all(&blob(l["digest"].as_str().unwrap())[..]).unwrap();
        diff_ids.push(Value::from(sha256(&tar)));
    }
    config["rootfs"]["diff_ids"] = Value::from(diff_ids);
    edit(&mut config);
    let config = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = Value::from(write_blob(&out, &config));
    manifest["config"]["size"] = Value::from(config.len());
    finish_layout(&out, &serde_json::to_vec(&manifest).unwrap(), Some("v1"));
    out
}

fn push(layout: &Path, image: &str) {
    run(Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{image}"),
    ]));
}

fn umoci_tree(
    work: &Path,
    layout: &Path,
) -> std::collections::BTreeMap<String, (char, u32, u64, String)> {
    let bundle = work.join("bundle");
    run(Command::new("umoci").args([
        "unpack",
        "--rootless",
        "--image",
        &format!("{}:v1", layout.display()),
        bundle.to_str().unwrap(),
    ]));
    snapshot(&bundle.join("rootfs"))
}

async fn loader(cache: &Path, lazy: Lazy) -> Loader {
    Loader::builder()
        .cache_dir(cache)
        .lazy(lazy)
        .credentials(fetch_http::Credentials::default())
        .hosts_dir(cache.join("no-hosts-dir"))
        .build()
        .await
        .unwrap()
}

/// `image` loaded into `cache` by a fresh loader (the tree outlives it).
async fn load(cache: &Path, lazy: Lazy, image: &str) -> loader::LoadedPackage {
    loader(cache, lazy)
        .await
        .load(&PackageRef::parse(image).unwrap(), None)
        .await
        .unwrap()
}

/// The original image converted (honest diff_ids) and pushed as `lazy/img:1`, with the
/// reference that reaches it through a counting proxy and the converted layers' size.
struct Served {
    /// Kept alive for the test: the registry stops when dropped.
    registry: Registry,
    meter: ShapedProxy,
    work: tempfile::TempDir,
    orig: PathBuf,
    image: String,
    layers_size: u64,
}

fn served() -> Served {
    let registry = Registry::start().expect("docker-registry (cargo xtask test installs it)");
    let work = tempfile::tempdir().unwrap();
    let orig = work.path().join("original");
    original(&orig);
    let layout = chunked(work.path(), &orig, false);
    let meter = ShapedProxy::start(registry.addr(), Shape::none()).unwrap();
    push(&layout, &format!("{}/lazy/img:1", registry.host()));
    let image = format!("{}/lazy/img:1", meter.host());
    let layers_size = blob_sizes(&layout);
    Served {
        registry,
        meter,
        work,
        orig,
        image,
        layers_size,
    }
}

fn blob_sizes(layout: &Path) -> u64 {
    std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[test]
fn a_lazily_read_tree_equals_umoci_unpack_of_the_original() {
    let Served {
        registry: _registry,
        meter,
        work,
        orig,
        image,
        layers_size,
        ..
    } = served();
    let theirs = umoci_tree(work.path(), &orig);

    let cache = work.path().join("cache");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let loaded = rt.block_on(load(&cache, Lazy::Only, &image));
    assert!(
        loaded.lazy_fill().is_none(),
        "Only never starts a background download"
    );
    let after_load = meter.bytes_served();
    assert!(
        after_load < 64 << 10,
        "loading needs the manifest, the config and two tables, not the layers: {after_load} bytes of {layers_size}"
    );

    // Reading every file (materialize copies each) fetches the files' frames, no more.
    let ours = work.path().join("ours");
    vfs_overlay::materialize(
        loaded.fs.as_ref(),
        &ours,
        vfs_overlay::MaterializeOptions::new().link_mode(vfs_overlay::LinkMode::Copy),
    )
    .unwrap();
    let mine = snapshot(&ours);
    let differences = common::differences(&theirs, &mine);
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    assert!(!mine.contains_key("etc/shadow") && !mine.contains_key("var/cache/a"));
    assert_eq!(mine["etc/hello.txt"].3, sha256(b"hello again\n"));
    assert_eq!(mine["usr/bin/tool"].1, 0o4755);
    let total = meter.bytes_served();
    assert!(
        total < layers_size + (64 << 10),
        "every file's frames once: {total} bytes for {layers_size} bytes of layers"
    );
    // The files are in the store under their own digests; the layers are not.
    let store = rt.block_on(cache_core::Store::open(&cache)).unwrap();
    let big = noise(2 << 20, 7);
    assert!(store.contains(&cache_core::Algorithm::Sha256.digest(&big)));
}

#[test]
fn cat_fetches_the_table_and_one_file_and_lazy_off_fetches_the_layers() {
    let Served {
        registry: _registry,
        meter,
        work,
        image,
        layers_size,
        ..
    } = served();

    let cache = work.path().join("cache");
    let cat = run(pkgload(&cache).args(["cat", &image, "/etc/hello.txt"]));
    assert_eq!(cat.stdout, b"hello again\n");
    let lazy_bytes = meter.bytes_served();
    assert!(
        lazy_bytes < 64 << 10,
        "{lazy_bytes} bytes on the wire for one small file"
    );
    let ls = run(pkgload(&cache).args(["ls", "-l", &image, "/usr/bin"]));
    let ls = String::from_utf8(ls.stdout).unwrap();
    assert!(ls.contains("tool-link") && ls.contains("-4755"), "{ls}");
    // A second cat of the same file is served from the cache: tag and manifest refs are
    // fresh, the table and the file are stored.
    meter.clear();
    let again = run(pkgload(&cache).args(["cat", &image, "/etc/hello.txt"]));
    assert_eq!(again.stdout, b"hello again\n");
    assert!(meter.bytes_served() < 8 << 10, "{}", meter.bytes_served());

    // Offline, the stored table and file serve `ls` and that `cat`; a file never read is
    // an error naming it, its layer and the cache, not a request.
    meter.clear();
    let offline = |args: &[&str]| {
        let mut command = pkgload(&cache);
        command.arg("--offline").args(args);
        command.output().unwrap()
    };
    let again = offline(&["cat", &image, "/etc/hello.txt"]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(again.stdout, b"hello again\n");
    let listed = offline(&["ls", &image, "/usr/bin"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("tool-link"));
    let missing = offline(&["cat", &image, "/big2.bin"]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("offline")
            && stderr.contains("big2.bin")
            && stderr.contains("layer sha256:")
            && stderr.contains(cache.to_str().unwrap()),
        "{stderr}"
    );
    assert!(missing.stdout.is_empty(), "no partial output");
    assert_eq!(meter.bytes_served(), 0, "offline makes no request");

    // A table over the limit is an error naming the layer, not a silent full pull.
    let small = work.path().join("cache-small-limit");
    let refused = pkgload(&small)
        .args(["--max-toc-size", "100", "cat", &image, "/etc/hello.txt"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("table of contents") && stderr.contains("limit of 100 bytes"),
        "{stderr}"
    );

    meter.clear();
    let cache_off = work.path().join("cache-off");
    let full = run(pkgload(&cache_off).args(["--lazy=off", "cat", &image, "/etc/hello.txt"]));
    assert_eq!(full.stdout, b"hello again\n");
    assert!(
        meter.bytes_served() >= layers_size - (64 << 10),
        "--lazy=off downloads the layers: {} of {layers_size}",
        meter.bytes_served()
    );
}

#[test]
fn the_background_fill_stores_the_layers_and_checks_their_diff_ids() {
    let registry = Registry::start().expect("docker-registry (cargo xtask test installs it)");
    let work = tempfile::tempdir().unwrap();
    let orig = work.path().join("original");
    original(&orig);
    let honest = chunked(work.path(), &orig, false);
    let lying = chunked(work.path(), &orig, true);
    let proxy = ShapedProxy::start(registry.addr(), Shape::none()).unwrap();
    push(&honest, &format!("{}/lazy/honest:1", registry.host()));
    push(&lying, &format!("{}/lazy/lying:1", registry.host()));
    let rt = tokio::runtime::Runtime::new().unwrap();

    // Honest: the fill completes, and afterwards files no one read yet come from the
    // stored layers, with the registry gone.
    let cache = work.path().join("cache");
    let loaded = rt.block_on(async {
        let image = format!("{}/lazy/honest:1", proxy.host());
        let loaded = load(&cache, Lazy::Auto, &image).await;
        loaded
            .lazy_fill()
            .expect("two layers are read lazily")
            .wait()
            .await
            .unwrap();
        loaded
    });
    drop(proxy);
    let fs = loaded.fs.clone();
    let big2 = rt
        .block_on(
            rt.spawn_blocking(move || {
                fs.read_all(&vfs_overlay::VfsPath::new("/big2.bin").unwrap())
            }),
        )
        .unwrap()
        .unwrap();
    assert_eq!(&big2[..], &noise(2 << 20, 11)[..]);

    // Lying: the tree loads (diff_ids cannot be checked before the layers are whole),
    // but the fill fails, naming the layer and the files already read from it (the
    // proxy's 2 MB/s makes the fill take seconds, the small read milliseconds), and later
    // reads from that layer fail.
    let proxy = ShapedProxy::start(
        registry.addr(),
        Shape {
            latency: std::time::Duration::ZERO,
            bytes_per_sec: Some(2_000_000),
        },
    )
    .unwrap();
    let cache = work.path().join("cache-lying");
    let (err, after) = rt.block_on(async {
        let image = format!("{}/lazy/lying:1", proxy.host());
        let loaded = load(&cache, Lazy::Auto, &image).await;
        let fs = loaded.fs.clone();
        let read = tokio::task::spawn_blocking(move || {
            fs.read_all(&vfs_overlay::VfsPath::new("/etc/hello.txt").unwrap())
        });
        assert_eq!(read.await.unwrap().unwrap(), "hello again\n");
        let err = loaded.lazy_fill().unwrap().wait().await.unwrap_err();
        let fs = loaded.fs.clone();
        let after = tokio::task::spawn_blocking(move || {
            fs.read_all(&vfs_overlay::VfsPath::new("/big2.bin").unwrap())
        })
        .await
        .unwrap();
        (err, after)
    });
    assert!(matches!(*err, LoadError::LazyUntrusted { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("/etc/hello.txt") && text.contains("untrusted"),
        "{text}"
    );
    let after = after.unwrap_err().to_string();
    assert!(after.contains("untrusted"), "{after}");
    // Without lazy reads the same image is refused outright.
    let off = Command::new(env!("CARGO_BIN_EXE_pkgload"))
        .args([
            "--cache-dir",
            work.path().join("cache-off").to_str().unwrap(),
            "--lazy=off",
        ])
        .args(["ls", &format!("{}/lazy/lying:1", proxy.host())])
        .env("DOCKER_CONFIG", work.path().join("none"))
        .env("PKGLOAD_HOSTS_DIR", work.path().join("none"))
        .output()
        .unwrap();
    assert!(!off.status.success());
    assert!(
        String::from_utf8_lossy(&off.stderr).contains("diff"),
        "{off:?}"
    );
}

#[test]
fn a_registry_that_ignores_range_gets_a_full_pull_without_error() {
    use test_servers::fault::{FaultServer, RangeMode, Route};
    let work = tempfile::tempdir().unwrap();
    let orig = work.path().join("original");
    original(&orig);
    let layout = chunked(work.path(), &orig, false);
    // A registry that answers every request with the whole body (200), Range or not.
    let server = FaultServer::start("127.0.0.1".parse().unwrap()).unwrap();
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    for entry in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let digest = format!("sha256:{}", entry.file_name().to_string_lossy());
        let data = std::fs::read(entry.path()).unwrap();
        let route = || Route::new(data.clone()).ranges(RangeMode::Ignore);
        if digest == manifest_digest {
            let media = "application/vnd.oci.image.manifest.v1+json";
            server.route(
                "/v2/lazy/img/manifests/1",
                route().header("Content-Type", media),
            );
            server.route(
                &format!("/v2/lazy/img/manifests/{digest}"),
                route().header("Content-Type", media),
            );
        }
        server.route(&format!("/v2/lazy/img/blobs/{digest}"), route());
    }
    let image = format!("{}/lazy/img:1", server.addr());
    let cache = work.path().join("cache");
    let cat = run(pkgload(&cache).args(["-v", "cat", &image, "/big2.bin"]));
    assert_eq!(cat.stdout, noise(2 << 20, 11));
    assert!(
        String::from_utf8_lossy(&cat.stderr).contains("ignores Range"),
        "{}",
        String::from_utf8_lossy(&cat.stderr)
    );
}

#[test]
fn a_package_volume_is_read_lazily_too() {
    let registry = Registry::start().expect("docker-registry (cargo xtask test installs it)");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("pkg");
    std::fs::create_dir_all(dir.join("data/docs")).unwrap();
    std::fs::write(
        dir.join("pkgload.toml"),
        "name = \"lazy/pkg\"\nversion = \"1.0.0\"\n\n[[fs]]\nvolume = \"data\"\nmount = \"/app\"\n\n[volumes]\ndata = \"data\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("data/big.bin"), noise(3 << 20, 13)).unwrap();
    std::fs::write(dir.join("data/docs/readme.txt"), b"read me\n").unwrap();
    std::fs::write(dir.join("data/docs/unread.txt"), b"never read online\n").unwrap();
    let cache = work.path().join("cache-push");
    run(pkgload(&cache).args([
        "push",
        dir.to_str().unwrap(),
        &format!("{}/lazy/pkg", registry.host()),
    ]));
    let meter = ShapedProxy::start(registry.addr(), Shape::none()).unwrap();
    let package = format!("{}/lazy/pkg:1.0.0", meter.host());

    let cache = work.path().join("cache");
    let cat = run(pkgload(&cache).args(["cat", &package, "/app/docs/readme.txt"]));
    assert_eq!(cat.stdout, b"read me\n");
    let lazy_bytes = meter.bytes_served();
    assert!(
        lazy_bytes < 64 << 10,
        "{lazy_bytes} bytes for one small file"
    );
    let big = run(pkgload(&cache).args(["cat", &package, "/app/big.bin"]));
    assert_eq!(big.stdout, noise(3 << 20, 13));

    // A locked load, then offline ones: the lockfile pins the digests, the stored table
    // and files serve what was read, and what was not is named.
    let lock = work.path().join("pkgload.lock");
    let lock_arg = lock.to_str().unwrap();
    run(pkgload(&cache).args(["load", "--lock", lock_arg, &package]));
    assert!(lock.exists());
    meter.clear();
    let offline = run(pkgload(&cache).args(["--offline", "load", "--lock", lock_arg, &package]));
    assert!(offline.status.success());
    let read = run(pkgload(&cache).args(["--offline", "cat", &package, "/app/docs/readme.txt"]));
    assert_eq!(read.stdout, b"read me\n");
    let unread = pkgload(&cache)
        .args(["--offline", "cat", &package, "/app/docs/unread.txt"])
        .output()
        .unwrap();
    assert!(!unread.status.success());
    let stderr = String::from_utf8_lossy(&unread.stderr);
    assert!(
        stderr.contains("offline")
            && stderr.contains("unread.txt")
            && stderr.contains("layer sha256:"),
        "{stderr}"
    );
    assert_eq!(meter.bytes_served(), 0, "offline makes no request");

    meter.clear();
    let off = work.path().join("cache-off");
    let cat = run(pkgload(&off).args(["--lazy=off", "cat", &package, "/app/docs/readme.txt"]));
    assert_eq!(cat.stdout, b"read me\n");
    assert!(meter.bytes_served() > 3 << 20, "{}", meter.bytes_served());
    // Whatever was read lazily, the cache holds only verified blobs.
    let verify = run(pkgload(&cache).args(["cache", "verify"]));
    assert!(verify.status.success());
}

#[test]
fn the_prefetch_brings_the_program_and_what_earlier_loads_read_in_few_requests() {
    let registry = Registry::start().expect("docker-registry (cargo xtask test installs it)");
    let work = tempfile::tempdir().unwrap();
    let orig = work.path().join("original");
    original(&orig);
    let layout = chunked_with(work.path(), &orig, "chunked-tool", |config| {
        config["config"] = serde_json::json!({
            "Entrypoint": ["tool", "--flag"],
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
        });
    });
    let meter = ShapedProxy::start(registry.addr(), Shape::none()).unwrap();
    push(&layout, &format!("{}/lazy/tool:1", registry.host()));
    let image = PackageRef::parse(&format!("{}/lazy/tool:1", meter.host())).unwrap();
    let (tool, hello, big1) = (
        cache_core::Algorithm::Sha256.digest(b"#!/bin/sh\necho tool\n"),
        cache_core::Algorithm::Sha256.digest(b"hello again\n"),
        cache_core::Algorithm::Sha256.digest(&noise(2 << 20, 7)),
    );
    let cache = work.path().join("cache");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(cache_core::Store::open(&cache)).unwrap();

    // First load: the entrypoint (found on the config's PATH) is fetched before anyone
    // reads it; nothing else is.
    rt.block_on(async {
        let loaded = loader(&cache, Lazy::Only)
            .await
            .load(&image, None)
            .await
            .unwrap();
        let report = loaded
            .lazy_prefetch()
            .expect("lazy layers are prefetched")
            .wait()
            .await;
        assert_eq!(
            (report.program, report.files, report.failed),
            (1, 0, 0),
            "{report:?}"
        );
        assert!(store.contains(&tool), "the program is in the cache");
        assert!(!store.contains(&big1) && !store.contains(&hello));
        // What this load reads is recorded for the next one.
        let fs = loaded.fs.clone();
        tokio::task::spawn_blocking(move || {
            assert_eq!(
                fs.read_all(&vfs_path("/etc/hello.txt")).unwrap(),
                &b"hello again\n"[..]
            );
            assert_eq!(fs.read_all(&vfs_path("/big1.bin")).unwrap().len(), 2 << 20);
        })
        .await
        .unwrap();
    });
    // The record is written behind the reads; wait for it (a memo in the cache).
    let layers: Vec<cache_core::Digest> = {
        let index: Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(
                layout.join("blobs/sha256").join(
                    index["manifests"][0]["digest"]
                        .as_str()
                        .unwrap()
                        .trim_start_matches("sha256:"),
                ),
            )
            .unwrap(),
        )
        .unwrap();
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| cache_core::Digest::parse(l["digest"].as_str().unwrap()).unwrap())
            .collect()
    };
    let kind = cache_core::DerivedKind::new("lazy-reads").unwrap();
    let recorded = |d: &cache_core::Digest| {
        store
            .get_derived(d, &kind)
            .unwrap()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !(recorded(&layers[0]).contains("/big1.bin")
        && recorded(&layers[1]).contains("/etc/hello.txt"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the reads were recorded: {:?} {:?}",
            recorded(&layers[0]),
            recorded(&layers[1])
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // The files leave the cache (as a trim would take them); the next load brings them
    // back before they are read: one request per layer, nothing more when they are read.
    for d in [&hello, &big1] {
        std::fs::remove_file(store.blob_path(d)).unwrap();
    }
    meter.clear();
    rt.block_on(async {
        let loaded = loader(&cache, Lazy::Only)
            .await
            .load(&image, None)
            .await
            .unwrap();
        let report = loaded.lazy_prefetch().unwrap().wait().await;
        assert_eq!(report.failed, 0, "{report:?}");
        assert_eq!(report.files, 2, "{report:?}");
        assert_eq!(
            report.requests, 2,
            "one merged request per layer: {report:?}"
        );
        assert!(store.contains(&hello) && store.contains(&big1));
        let prefetched = meter.bytes_served();
        assert!(prefetched < (2 << 20) + (256 << 10), "{prefetched} bytes");
        let fs = loaded.fs.clone();
        tokio::task::spawn_blocking(move || {
            assert_eq!(
                fs.read_all(&vfs_path("/big1.bin")).unwrap(),
                noise(2 << 20, 7)
            );
        })
        .await
        .unwrap();
        assert_eq!(
            meter.bytes_served(),
            prefetched,
            "the read needed no request"
        );
    });

    // A loader that does not prefetch has nothing to wait for.
    rt.block_on(async {
        let loaded = Loader::builder()
            .cache_dir(work.path().join("cache-no-prefetch"))
            .lazy(Lazy::Only)
            .lazy_prefetch(false)
            .credentials(fetch_http::Credentials::default())
            .hosts_dir(work.path().join("no-hosts-dir"))
            .build()
            .await
            .unwrap()
            .load(&image, None)
            .await
            .unwrap();
        assert!(loaded.lazy_prefetch().is_none());
    });
}

fn vfs_path(p: &str) -> vfs_overlay::VfsPath {
    vfs_overlay::VfsPath::new(p).unwrap()
}

#[test]
fn sigkill_during_lazy_reads_leaves_a_cache_that_verifies_clean() {
    let served = served();
    // Slow enough that a kill lands while a file's frames are on the wire or being
    // decoded into the store.
    let shape = Shape {
        latency: std::time::Duration::from_millis(5),
        bytes_per_sec: Some(8 << 20),
    };
    let slow = ShapedProxy::start(served.registry.addr(), shape).unwrap();
    let image = format!("{}/lazy/img:1", slow.host());
    let cat = |cache: &Path| {
        let mut command = pkgload(cache);
        command.args(["cat", &image, "/big2.bin"]);
        command
    };
    let timing = served.work.path().join("timing");
    let started = std::time::Instant::now();
    run(&mut cat(&timing));
    let full = started.elapsed();

    let cache = served.work.path().join("cache-killed");
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut landed = 0;
    for trial in 0..30 {
        if landed >= 6 {
            break;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = full.mul_f64((rng % 1000) as f64 / 1000.0 * 0.9);
        let mut child = cat(&cache)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            landed += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // Every object in the store, file objects included, is whole and what its name
        // says: a partial file is never visible.
        verify_clean(&cache);
        if trial % 3 == 2 {
            run(pkgload(&cache).args(["cache", "clean"]));
        }
    }
    assert!(landed >= 3, "only {landed} kills landed mid-read");
    let whole = run(&mut cat(&cache));
    assert_eq!(whole.stdout, noise(2 << 20, 11));
    verify_clean(&cache);
}

/// `blob`, a zstd:chunked layer written by `layer_toc`, with its table rewritten by `edit`
/// (the table's frame, the footer and the annotations follow; the tar is unchanged).
fn with_edited_table(
    blob: &[u8],
    annotations: &[(String, String)],
    edit: impl FnOnce(&mut Value),
) -> (Vec<u8>, Vec<(String, String)>) {
    let position = &annotations
        .iter()
        .find(|(k, _)| k.ends_with("manifest-position"))
        .unwrap()
        .1;
    let numbers: Vec<usize> = position.split(':').map(|n| n.parse().unwrap()).collect();
    let (offset, len) = (numbers[0], numbers[1]);
    let mut toc: Value =
        serde_json::from_slice(&zstd::stream::decode_all(&blob[offset..offset + len]).unwrap())
            .unwrap();
    edit(&mut toc);
    let json = serde_json::to_vec(&toc).unwrap();
    let compressed = zstd::bulk::compress(&json, 3).unwrap();
    let mut out = blob[..offset].to_vec();
    out[offset - 4..offset].copy_from_slice(&(compressed.len() as u32).to_le_bytes());
    out.extend_from_slice(&compressed);
    let mut footer = Vec::new();
    for v in [offset as u64, compressed.len() as u64, json.len() as u64, 1] {
        footer.extend_from_slice(&v.to_le_bytes());
    }
    footer.extend_from_slice(b"GnUlInUx");
    out.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18]);
    out.extend_from_slice(&(footer.len() as u32).to_le_bytes());
    out.extend_from_slice(&footer);
    let annotations = vec![
        (
            layer_toc::WRITTEN_CHECKSUM_KEY.to_owned(),
            sha256(&compressed),
        ),
        (
            layer_toc::WRITTEN_POSITION_KEY.to_owned(),
            format!("{offset}:{}:{}:1", compressed.len(), json.len()),
        ),
    ];
    (out, annotations)
}

#[test]
fn a_table_of_a_kind_not_served_lazily_means_the_layer_is_read_whole() {
    let registry = Registry::start().expect("docker-registry (cargo xtask test installs it)");
    let work = tempfile::tempdir().unwrap();
    let big = noise(2 << 20, 5);
    let tar = layer(&[
        E::Dir("data/", 0o755),
        E::File("data/big.bin", 0o644, &big),
        E::File("data/small.txt", 0o644, b"small\n"),
    ]);
    let mut written = Vec::new();
    let annotations = layer_toc::write_zstd_chunked(&tar, 3, &mut written).unwrap();
    // The same layer with a table of a later version: valid, but not one this reader
    // serves. Any zstd reader still reads the layer (the table is in a skippable frame).
    let (blob, annotations) = with_edited_table(&written, &annotations, |toc| {
        toc["version"] = Value::from(2)
    });
    assert_eq!(zstd::stream::decode_all(&blob[..]).unwrap(), tar);
    let layout = work.path().join("later-version");
    let media = "application/vnd.oci.image.layer.v1.tar+zstd";
    annotated_layout(
        &layout,
        &[(blob.clone(), media, annotations)],
        &[sha256(&tar)],
    );
    let meter = ShapedProxy::start(registry.addr(), Shape::none()).unwrap();
    push(&layout, &format!("{}/lazy/later:1", registry.host()));
    let image = format!("{}/lazy/later:1", meter.host());

    let cache = work.path().join("cache");
    let cat = run(pkgload(&cache).args(["-v", "cat", &image, "/data/small.txt"]));
    assert_eq!(cat.stdout, b"small\n");
    let log = String::from_utf8_lossy(&cat.stderr);
    assert!(
        log.contains("reading the layer whole") && log.contains("version 2"),
        "{log}"
    );
    assert!(
        meter.bytes_served() >= blob.len() as u64,
        "the whole layer was fetched: {} of {}",
        meter.bytes_served(),
        blob.len()
    );
    let store = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(cache_core::Store::open(&cache))
        .unwrap();
    assert!(store.contains(&cache_core::Digest::parse(&sha256(&blob)).unwrap()));
}

#[test]
fn a_read_slower_than_the_deadline_fails_with_eio_naming_the_layer_and_file() {
    let served = served();
    // 32 KB/s: the manifest, the config and the tables arrive; a 2 MiB file would take
    // a minute.
    let shape = Shape {
        latency: std::time::Duration::ZERO,
        bytes_per_sec: Some(32_000),
    };
    let slow = ShapedProxy::start(served.registry.addr(), shape).unwrap();
    let image = PackageRef::parse(&format!("{}/lazy/img:1", slow.host())).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let loaded = rt.block_on(async {
        Loader::builder()
            .cache_dir(served.work.path().join("cache"))
            .lazy(Lazy::Only)
            .lazy_read_deadline(std::time::Duration::from_secs(1))
            .credentials(fetch_http::Credentials::default())
            .hosts_dir(served.work.path().join("no-hosts-dir"))
            .build()
            .await
            .unwrap()
            .load(&image, None)
            .await
            .unwrap()
    });
    let started = std::time::Instant::now();
    let err = loaded.fs.read_all(&vfs_path("/big1.bin")).unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    // `Io` is the variant a POSIX front end reports as EIO.
    assert!(
        matches!(err, vfs_overlay::VfsError::Io { op: "fetch", .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("big1.bin") && text.contains("layer sha256:") && text.contains("within"),
        "{text}"
    );
}

/// [`original`]'s layers written as eStargz into an image at `dir` (small files sharing
/// gzip members, large ones in 1 MiB chunks); `lie` puts a wrong table digest on the
/// second layer.
fn estargz_layout(dir: &Path, lie: bool) {
    let options = layer_toc::EstargzOptions {
        chunk_size: 1 << 20,
        min_chunk_size: 16 << 10,
        level: 6,
    };
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, tar) in original_layers().iter().enumerate() {
        let mut blob = Vec::new();
        let written = layer_toc::write_estargz(tar, &mut blob, &options).unwrap();
        let mut annotations = written.annotations.clone();
        if lie && i == 1 {
            for (key, value) in &mut annotations {
                if key == layer_toc::ESTARGZ_TOC_DIGEST_KEY {
                    *value = sha256(b"another table");
                }
            }
        }
        diff_ids.push(written.diff_id.to_string());
        layers.push((
            blob,
            "application/vnd.oci.image.layer.v1.tar+gzip",
            annotations,
        ));
    }
    annotated_layout(dir, &layers, &diff_ids);
}

#[test]
fn an_estargz_image_reads_lazily_and_its_tree_equals_umoci_unpack() {
    let registry = Registry::start().expect("docker-registry (cargo xtask test installs it)");
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("estargz");
    estargz_layout(&layout, false);
    let lying = work.path().join("estargz-lying");
    estargz_layout(&lying, true);
    let meter = ShapedProxy::start(registry.addr(), Shape::none()).unwrap();
    push(&layout, &format!("{}/lazy/estargz:1", registry.host()));
    push(&lying, &format!("{}/lazy/estargz-lying:1", registry.host()));
    let image = format!("{}/lazy/estargz:1", meter.host());
    let layers_size = blob_sizes(&layout);
    // umoci reads an eStargz layer as the tar+gzip it also is (the table included).
    let theirs = umoci_tree(work.path(), &layout);
    assert!(theirs.contains_key("stargz.index.json"));

    let cache = work.path().join("cache");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let loaded = rt.block_on(load(&cache, Lazy::Only, &image));
    let after_load = meter.bytes_served();
    assert!(
        after_load < 2 * layer_toc::EstargzPosition::TAIL + (64 << 10),
        "the manifest, the config and one tail request per layer: {after_load} bytes of {layers_size}"
    );
    let ours = work.path().join("ours");
    vfs_overlay::materialize(
        loaded.fs.as_ref(),
        &ours,
        vfs_overlay::MaterializeOptions::new().link_mode(vfs_overlay::LinkMode::Copy),
    )
    .unwrap();
    let mine = snapshot(&ours);
    let differences = common::differences(&theirs, &mine);
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    assert_eq!(mine["etc/hello.txt"].3, sha256(b"hello again\n"));

    // The CLI: one small file costs the tails and that file; the cache verifies.
    let cold = work.path().join("cache-cli");
    meter.clear();
    let cat = run(pkgload(&cold).args(["cat", &image, "/usr/bin/tool"]));
    assert_eq!(cat.stdout, b"#!/bin/sh\necho tool\n");
    assert!(
        meter.bytes_served() < 2 * layer_toc::EstargzPosition::TAIL + (64 << 10),
        "{} bytes",
        meter.bytes_served()
    );
    run(pkgload(&cold).args(["cache", "verify"]));
    // Offline, the kept tables and the file read serve again.
    let again = run(pkgload(&cold).args(["--offline", "cat", &image, "/usr/bin/tool"]));
    assert_eq!(again.stdout, cat.stdout);

    // A table that is not the annotated one is refused, naming the layer.
    let lie = pkgload(&work.path().join("cache-lie"))
        .args(["ls", &format!("{}/lazy/estargz-lying:1", meter.host())])
        .output()
        .unwrap();
    assert!(!lie.status.success());
    let stderr = String::from_utf8_lossy(&lie.stderr);
    assert!(
        stderr.contains("table of contents hashes to") && stderr.contains("layer sha256:"),
        "{stderr}"
    );
}

/// The layer writer of containerd's stargz-snapshotter (its Go `estargz` package, from
/// Debian), built from `tests/stargz-writer` in GOPATH mode: layers pkgload did not write.
fn stargz_writer(work: &Path) -> PathBuf {
    let binary = work.join("stargz-writer");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stargz-writer/main.go");
    run(Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(source)
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOFLAGS", "")
        .env("GOCACHE", work.join("go-cache")));
    binary
}

/// [`original_layers`] written by the stargz-snapshotter writer in `format` (`estargz` or
/// `zstdchunked`, its legacy zstd:chunked) into an image at `dir`, in 512 KiB chunks, the
/// first layer with a prioritized file. Returns the same layers as plain tars, decoded by
/// flate2 / zstd, for the reference unpack.
fn stargz_layout(writer: &Path, work: &Path, dir: &Path, format: &str) -> Vec<Vec<u8>> {
    let media = match format {
        "estargz" => "application/vnd.oci.image.layer.v1.tar+gzip",
        _ => "application/vnd.oci.image.layer.v1.tar+zstd",
    };
    let (mut layers, mut diff_ids, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    for (i, tar) in original_layers().iter().enumerate() {
        let input = work.join(format!("{format}-{i}.tar"));
        let output = work.join(format!("{format}-{i}.layer"));
        std::fs::write(&input, tar).unwrap();
        let mut command = Command::new(writer);
        command.args(["-format", format, "-chunk-size", "524288"]);
        if i == 0 {
            command.args(["-prioritized", "etc/hello.txt"]);
        }
        let written: Value =
            serde_json::from_slice(&run(command.arg(&input).arg(&output)).stdout).unwrap();
        let blob = std::fs::read(&output).unwrap();
        let decoded = if format == "estargz" {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&blob[..]), &mut out)
                .unwrap();
            out
        } else {
            zstd::stream::decode_all(&blob[..]).unwrap()
        };
        let diff_id = written["diff_id"].as_str().unwrap().to_owned();
        assert_eq!(
            diff_id,
            sha256(&decoded),
            "the writer's diff_id is its tar's"
        );
        let annotations: Vec<(String, String)> = written["annotations"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        assert!(!annotations.is_empty(), "{written}");
        layers.push((blob, media, annotations));
        diff_ids.push(diff_id);
        plain.push(decoded);
    }
    annotated_layout(dir, &layers, &diff_ids);
    plain
}

#[test]
fn layers_written_by_the_stargz_snapshotter_library_read_lazily_as_their_tars_unpack() {
    let registry = Registry::start().expect("docker-registry (cargo xtask test installs it)");
    let work = tempfile::tempdir().unwrap();
    let writer = stargz_writer(work.path());
    let meter = ShapedProxy::start(registry.addr(), Shape::none()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (format, table_bytes) in [
        ("estargz", 2 * layer_toc::EstargzPosition::TAIL),
        ("zstdchunked", 0),
    ] {
        let layout = work.path().join(format);
        let plain = stargz_layout(&writer, work.path(), &layout, format);
        // The reference: umoci's unpack of the writer's tar streams.
        let reference = work.path().join(format!("{format}-plain"));
        let diff_ids: Vec<String> = plain.iter().map(|tar| sha256(tar)).collect();
        image_layout(
            &reference,
            &plain.into_iter().map(|tar| (tar, TAR)).collect::<Vec<_>>(),
            &diff_ids,
        );
        let theirs = umoci_tree(&work.path().join(format), &reference);
        assert!(
            theirs.contains_key(".prefetch.landmark") && theirs.contains_key("big2.bin"),
            "{:?}",
            theirs.keys().collect::<Vec<_>>()
        );

        push(&layout, &format!("{}/lazy/{format}:1", registry.host()));
        let image = format!("{}/lazy/{format}:1", meter.host());
        let layers_size = blob_sizes(&layout);
        meter.clear();
        let cache = work.path().join(format!("{format}-cache"));
        let loaded = rt.block_on(load(&cache, Lazy::Only, &image));
        let after_load = meter.bytes_served();
        assert!(
            after_load < table_bytes + (64 << 10),
            "{format}: the manifest, the config and the tables: {after_load} bytes of {layers_size}"
        );
        let ours = work.path().join(format!("{format}-ours"));
        vfs_overlay::materialize(
            loaded.fs.as_ref(),
            &ours,
            vfs_overlay::MaterializeOptions::new().link_mode(vfs_overlay::LinkMode::Copy),
        )
        .unwrap();
        let mine = snapshot(&ours);
        let differences = common::differences(&theirs, &mine);
        assert!(
            differences.is_empty(),
            "{format}: {}",
            differences.join("\n")
        );
        let total = meter.bytes_served();
        assert!(
            total < layers_size + table_bytes + (64 << 10),
            "{format}: every file's frames once: {total} bytes for {layers_size} bytes of layers"
        );
        run(pkgload(&cache).args(["cache", "verify"]));

        // The background fill checks the writer's whole layers against its diff_ids.
        let filled = work.path().join(format!("{format}-filled"));
        rt.block_on(async {
            let loaded = load(&filled, Lazy::Auto, &image).await;
            loaded
                .lazy_fill()
                .unwrap_or_else(|| panic!("{format}: both layers are read lazily"))
                .wait()
                .await
                .unwrap();
        });
        run(pkgload(&filled).args(["cache", "verify"]));
    }
}

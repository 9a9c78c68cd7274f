//! The reliability suite: the real binary against a real `docker-registry`, killed,
//! raced and lied to. Whatever happens, the cache verifies clean and the next run works.
//!
//! - SIGKILL during `pkgload fetch`, at 15 random moments;
//! - six processes fetching one 16-layer image into one cache, through a counting proxy:
//!   every blob crosses the wire once;
//! - a fault-injecting proxy (resets mid-body, truncation, flipped bytes, 503 with
//!   `Retry-After`): loads finish with exactly the right content;
//! - the same proxy rolling dice (about half of all blob responses damaged) for 20 seeds: a
//!   16-layer pull and a package-tree load are exact every time.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{E, gzip_layout, layer, pkgload, run, verify_clean};
use test_servers::proxy::{CountingProxy, Fault, FaultMix};
use test_servers::registry::Registry;

/// Incompressible bytes from a seeded xorshift, so gzip cannot shrink a layer to nothing.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Push an image of `layers` layers, `bytes` of noise each (plus a small text file), to
/// `registry` as `test/big:1` through skopeo; returns the files per layer for checks.
fn push_image(
    registry: &Registry,
    work: &Path,
    layers: usize,
    bytes: usize,
) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let tars: Vec<Vec<u8>> = (0..layers)
        .map(|i| {
            let name = format!("data/layer-{i:02}.bin");
            let data = noise(i as u64 + 1, bytes);
            let tar = layer(&[E::Dir("data/", 0o755), E::File(&name, 0o644, &data)]);
            files.push((format!("/{name}"), data));
            tar
        })
        .collect();
    let layout = work.join("layout");
    gzip_layout(&layout, &tars);
    run(Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}/test/big:1", registry.host()),
    ]));
    files
}

#[test]
fn sigkill_during_fetch_leaves_a_verifiable_cache() {
    let registry = Registry::start().expect("docker-registry (cargo xtask test installs it)");
    let work = tempfile::tempdir().unwrap();
    push_image(&registry, work.path(), 8, 2 << 20);
    let image = format!("{}/test/big:1", registry.host());

    // How long an uninterrupted cold fetch takes, to aim the kills inside it.
    let timing = work.path().join("timing-cache");
    let started = Instant::now();
    run(pkgload(&timing).args(["fetch", &image]));
    let full = started.elapsed();

    let cache = work.path().join("cache");
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut killed_mid_run = 0;
    // A resumed fetch is shorter than the timed one and a busy machine shifts everything,
    // so trials go on (up to 40) until 8 kills have landed mid-fetch.
    for trial in 0..40 {
        if killed_mid_run >= 8 {
            break;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = full.mul_f64((rng % 1000) as f64 / 1000.0 * 0.8);
        let mut child = pkgload(&cache)
            .args(["fetch", &image])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        verify_clean(&cache);
        // Every third trial starts over from an empty cache, so kills also land early.
        if trial % 3 == 2 {
            run(pkgload(&cache).args(["cache", "clean"]));
        }
    }
    assert!(
        killed_mid_run >= 5,
        "only {killed_mid_run} kills landed mid-fetch"
    );
    run(pkgload(&cache).args(["fetch", &image]));
    verify_clean(&cache);
    let loaded = run(pkgload(&cache).args(["--offline", "load", &image, "--json"]));
    let loaded: serde_json::Value = serde_json::from_slice(&loaded.stdout).unwrap();
    assert_eq!(loaded["footprint"]["files"], 8);
}

#[test]
fn six_processes_share_every_download() {
    let registry = Registry::start().expect("docker-registry (cargo xtask test installs it)");
    let work = tempfile::tempdir().unwrap();
    push_image(&registry, work.path(), 16, 256 << 10);
    let proxy = CountingProxy::start(registry.addr()).unwrap();
    let image = format!("{}/test/big:1", proxy.host());
    let cache = work.path().join("cache");
    let children: Vec<_> = (0..6)
        .map(|_| {
            pkgload(&cache)
                .args(["fetch", &image])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    verify_clean(&cache);
    let mut per_blob: HashMap<String, usize> = HashMap::new();
    for line in proxy.requests() {
        if line.starts_with("GET ") && line.contains("/blobs/") {
            *per_blob.entry(line).or_default() += 1;
        }
    }
    // 16 layers and the config.
    assert_eq!(per_blob.len(), 17, "{per_blob:#?}");
    let repeated: Vec<_> = per_blob.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "fetched more than once: {repeated:#?}");
}

#[test]
fn faults_on_the_wire_never_reach_the_cache() {
    let registry = Registry::start().expect("docker-registry (cargo xtask test installs it)");
    let work = tempfile::tempdir().unwrap();
    let files = push_image(&registry, work.path(), 6, 512 << 10);
    let proxy = CountingProxy::with_faults(
        registry.addr(),
        &[
            Fault::Reset,
            Fault::Unavailable,
            Fault::Truncate,
            Fault::Flip,
        ],
    )
    .unwrap();
    let image = format!("{}/test/big:1", proxy.host());
    let cache = work.path().join("cache");
    let started = Instant::now();
    run(pkgload(&cache).args(["fetch", &image]));
    assert!(started.elapsed() < Duration::from_secs(120));
    let injected = proxy.injected();
    for kind in [
        Fault::Reset,
        Fault::Unavailable,
        Fault::Truncate,
        Fault::Flip,
    ] {
        assert!(
            injected.iter().any(|(_, f)| *f == kind),
            "{kind:?} never injected: {injected:?}"
        );
    }
    verify_clean(&cache);
    for (path, data) in &files {
        let out = run(pkgload(&cache).args(["--offline", "cat", &image, path]));
        assert!(out.stdout == *data, "{path} differs after faults");
    }
}

/// Push `acme/app` 1.0.0, which needs `acme/dep1` … `acme/dep5`; each package has one
/// volume holding 256 KiB of noise and an atom. Returns (path in the tree, content).
fn push_package_tree(registry: &Registry, work: &Path) -> Vec<(String, Vec<u8>)> {
    let publisher = work.join("publisher-cache");
    let mut files = Vec::new();
    let mut deps = String::new();
    // Dependencies first: the root names them all.
    for i in (1..=5u64).chain([0]) {
        let name = if i == 0 {
            "app".to_owned()
        } else {
            format!("dep{i}")
        };
        let dir = work.join(format!("pkg-{name}"));
        std::fs::create_dir_all(dir.join("v/data")).unwrap();
        let data = noise(100 + i, 256 << 10);
        std::fs::write(dir.join("v/data/blob.bin"), &data).unwrap();
        std::fs::write(dir.join("run.wasm"), format!("\0asm {name}")).unwrap();
        files.push((format!("/{name}/blob.bin"), data));
        let mut toml = format!(
            "name = \"acme/{name}\"\nversion = \"1.0.0\"\n\
             [[fs]]\nvolume = \"data\"\nmount = \"/{name}\"\n\
             [volumes]\ndata = \"v/data\"\n[atoms]\nrun = \"run.wasm\"\n"
        );
        if i == 0 {
            // Dependencies' volumes are mounted only where the root maps them.
            for d in 1..=5 {
                toml += &format!(
                    "[[fs]]\nvolume = \"data\"\nmount = \"/dep{d}\"\ndependency = \"dep{d}\"\n"
                );
            }
            toml += &format!("[dependencies]\n{deps}");
        } else {
            deps += &format!("{name} = {{ package = \"acme/{name}\", version = \"^1\" }}\n");
        }
        std::fs::write(dir.join("pkgload.toml"), toml).unwrap();
        // Dependencies first, so the root's are all present when it is pushed.
        if i > 0 {
            run(pkgload(&publisher).args([
                "push",
                dir.to_str().unwrap(),
                &format!("{}/team/acme/{name}:1.0.0", registry.host()),
            ]));
        }
    }
    run(pkgload(&publisher).args([
        "push",
        work.join("pkg-app").to_str().unwrap(),
        &format!("{}/team/acme/app:1.0.0", registry.host()),
    ]));
    files
}

#[test]
fn a_hostile_network_at_twenty_seeds() {
    let registry = Registry::start().expect("docker-registry (cargo xtask test installs it)");
    let work = tempfile::tempdir().unwrap();
    let layers = push_image(&registry, work.path(), 16, 1 << 20);
    let tree = push_package_tree(&registry, work.path());
    let mut injected = 0;
    for seed in 0..20 {
        let proxy =
            CountingProxy::with_fault_mix(registry.addr(), FaultMix::hostile(seed)).unwrap();
        let cache = work.path().join(format!("cache-{seed}"));
        let image = format!("{}/test/big:1", proxy.host());
        let app = format!("{}/team/acme/app:1.0.0", proxy.host());
        let fetched = pkgload(&cache).args(["fetch", &image]).output().unwrap();
        let loaded = pkgload(&cache).args(["load", &app]).output().unwrap();
        for (what, out) in [("fetch", &fetched), ("load", &loaded)] {
            assert!(
                out.status.success(),
                "seed {seed}: {what} failed under faults {:?}:\n{}",
                proxy.injected(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        injected += proxy.injected().len();
        verify_clean(&cache);
        // Exact: every file read back offline equals what was pushed.
        let unpacked = work.path().join(format!("unpacked-{seed}"));
        run(pkgload(&cache).args(["--offline", "unpack", &image, unpacked.to_str().unwrap()]));
        for (path, data) in &layers {
            let got = std::fs::read(unpacked.join(path.trim_start_matches('/'))).unwrap();
            assert!(got == *data, "seed {seed}: {path} differs");
        }
        for (path, data) in &tree {
            let out = run(pkgload(&cache).args(["--offline", "cat", &app, path]));
            assert!(out.stdout == *data, "seed {seed}: {path} differs");
        }
        std::fs::remove_dir_all(&unpacked).unwrap();
        std::fs::remove_dir_all(&cache).unwrap();
    }
    // 20 × (16 layers + config + 6 packages' volumes, atoms and configs): at half damaged,
    // hundreds of faults; a broken proxy that injects nothing must not pass.
    assert!(injected > 200, "only {injected} faults injected");
}

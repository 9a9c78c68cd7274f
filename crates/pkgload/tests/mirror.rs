//! Mirrors configured the way containerd users do (`hosts.toml`), against real parts: an
//! origin `docker-registry`, a second `docker-registry` in proxy mode (a pull-through cache)
//! as the mirror, counting proxies in front of both, and a fault server playing a mirror
//! that serves corrupt blobs.
//!
//! A fleet of cache directories ("hosts") loads through the mirror: after the first, the
//! origin serves no more blobs. A mirror that is down or corrupt costs a detour to the
//! origin, never a failed load, and nothing unverified is kept.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{E, gzip, layer, sha256};
use test_servers::proxy::CountingProxy;
use test_servers::registry::{PushedImage, Registry};

const LAYERS: usize = 16;

fn pkgload(cache: &Path, hosts: &Path, args: &[&str]) -> Command {
    let mut command = common::pkgload(cache);
    command.arg("--hosts-dir").arg(hosts).args(args);
    command
}

/// A loopback address nothing listens on: a mirror that is down.
fn closed_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "pkgload failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The origin, seen through a counting proxy (its address is the registry's name).
struct Origin {
    registry: Registry,
    proxy: CountingProxy,
}

impl Origin {
    fn start() -> Origin {
        let registry = Registry::start().expect("docker-registry (cargo xtask test installs it)");
        let proxy = CountingProxy::start(registry.addr()).unwrap();
        Origin { registry, proxy }
    }

    fn host(&self) -> String {
        self.proxy.host()
    }

    /// Blob GETs the origin answered so far.
    fn blob_gets(&self) -> usize {
        self.proxy
            .requests()
            .iter()
            .filter(|r| r.starts_with("GET ") && r.contains("/blobs/sha256:"))
            .count()
    }

    /// An image of 16 small gzip layers, one file each ([`layer_data`] at
    /// `/layerNN/data.bin`), tagged `acme/image:1.0`.
    fn push_image_full(&self) -> PushedImage {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for i in 0..LAYERS {
            let data = layer_data(i);
            let name = format!("layer{i:02}/data.bin");
            let tar = layer(&[E::File(&name, 0o644, &data)]);
            diff_ids.push(sha256(&tar));
            layers.push(gzip(&tar));
        }
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
            diff_ids
                .iter()
                .map(|d| format!("\"{d}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        let typed: Vec<(&str, &[u8])> = layers
            .iter()
            .map(|l| ("application/vnd.oci.image.layer.v1.tar+gzip", l.as_slice()))
            .collect();
        self.registry
            .push_image("acme/image", "1.0", config.as_bytes(), &typed)
            .unwrap()
    }

    /// [`push_image_full`](Self::push_image_full), returning the layers' digests.
    fn push_image(&self) -> Vec<String> {
        self.push_image_full().layer_digests
    }

    /// A package tree: acme/app 1.0.0 needs acme/lib ^1, each with one volume.
    fn push_packages(&self, work: &Path, hosts: &Path) {
        for (name, toml) in [
            ("lib", String::new()),
            (
                "app",
                "[dependencies]\nlib = { package = \"acme/lib\", version = \"^1\" }\n".to_owned(),
            ),
        ] {
            let dir = work.join(format!("pkg-{name}"));
            std::fs::create_dir_all(dir.join("v")).unwrap();
            std::fs::write(dir.join("v").join(format!("{name}.txt")), name).unwrap();
            std::fs::write(
                dir.join("pkgload.toml"),
                format!(
                    "name = \"acme/{name}\"\nversion = \"1.0.0\"\n{toml}[[fs]]\nvolume = \"v\"\n\
                     mount = \"/{name}\"\n[volumes]\nv = \"v\"\n"
                ),
            )
            .unwrap();
            let reference = format!("{}/acme/{name}:1.0.0", self.host());
            ok(pkgload(
                &work.join("publisher"),
                hosts,
                &["push", dir.to_str().unwrap(), &reference],
            )
            .output()
            .unwrap());
        }
    }
}

/// The file of layer `i`: 64 KiB that compress poorly, different in every layer.
fn layer_data(i: usize) -> Vec<u8> {
    (0..64 * 1024u32)
        .map(|n| (n.wrapping_mul(2_654_435_761).wrapping_add(i as u32) >> 13) as u8)
        .collect()
}

/// `DIR/<origin>/hosts.toml`: the origin, and `mirrors` (URL, capabilities) in order.
fn hosts_dir(dir: &Path, origin: &str, mirrors: &[(&str, &str)]) -> PathBuf {
    let mut text = format!("server = \"http://{origin}\"\n");
    for (url, capabilities) in mirrors {
        text += &format!("\n[host.\"{url}\"]\ncapabilities = {capabilities}\n");
    }
    std::fs::create_dir_all(dir.join(origin)).unwrap();
    std::fs::write(dir.join(origin).join("hosts.toml"), text).unwrap();
    dir.to_owned()
}

fn verify_clean(cache: &Path, hosts: &Path) {
    let out = pkgload(cache, hosts, &["cache", "verify"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cache verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_fleet_behind_a_pull_through_mirror_takes_blobs_from_the_origin_once() {
    let origin = Origin::start();
    let mirror = Registry::start_proxy(&format!("http://{}", origin.host()))
        .expect("docker-registry in proxy mode");
    let mirror_seen = CountingProxy::start(mirror.addr()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let hosts = hosts_dir(
        &work.path().join("hosts.d"),
        &origin.host(),
        &[(
            &format!("http://{}", mirror_seen.host()),
            "[\"pull\", \"resolve\"]",
        )],
    );
    origin.push_image();
    origin.push_packages(work.path(), &hosts);
    let image = format!("{}/acme/image:1.0", origin.host());
    let app = format!("{}/acme/app:1.0.0", origin.host());
    let load = |host: usize| {
        let cache = work.path().join(format!("host-{host}"));
        let image_load = pkgload(&cache, &hosts, &["load", "--json", &image])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let app_load = pkgload(&cache, &hosts, &["cat", &app, "/lib/lib.txt"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        (cache, image_load, app_load)
    };
    let finish =
        |(cache, image_load, app_load): (PathBuf, std::process::Child, std::process::Child)| {
            // `load --json` says who served the blobs: the mirror, all of them.
            let report: serde_json::Value =
                serde_json::from_str(&ok(image_load.wait_with_output().unwrap())).unwrap();
            let served = report["served"].as_array().expect("a served list");
            assert_eq!(served.len(), 1, "{served:?}");
            assert_eq!(served[0]["host"], mirror_seen.host().as_str(), "{served:?}");
            assert_eq!(served[0]["blobs"], (LAYERS + 1) as u64, "{served:?}");
            assert_eq!(ok(app_load.wait_with_output().unwrap()), "lib");
            verify_clean(&cache, &hosts);
        };

    // The first host: the mirror fetches what it lacks from the origin.
    origin.proxy.clear();
    finish(load(1));
    let after_first = origin.blob_gets();
    assert!(after_first > 0, "the mirror never asked the origin");
    // Everything pkgload fetched went through the mirror, told which registry is meant.
    let through_mirror = mirror_seen.requests();
    assert!(
        through_mirror
            .iter()
            .filter(|r| r.contains("/blobs/"))
            .count()
            >= LAYERS,
        "{through_mirror:?}"
    );
    let ns = format!("ns={}", origin.host().replace(':', "%3A"));
    let without: Vec<_> = through_mirror.iter().filter(|r| !r.contains(&ns)).collect();
    assert!(without.is_empty(), "{without:?}");

    // Seven more at once: the origin serves no more blobs.
    let loads: Vec<_> = (2..=8).map(load).collect();
    for running in loads {
        finish(running);
    }
    assert_eq!(
        origin.blob_gets(),
        after_first,
        "{:?}",
        origin.proxy.requests()
    );
}

#[test]
fn a_mirror_that_is_down_or_killed_costs_a_detour_not_a_load() {
    let origin = Origin::start();
    let work = tempfile::tempdir().unwrap();
    let closed = closed_port();
    let hosts = hosts_dir(
        &work.path().join("down.d"),
        &origin.host(),
        &[(&format!("http://{closed}"), "[\"pull\", \"resolve\"]")],
    );
    origin.push_image();
    let image = format!("{}/acme/image:1.0", origin.host());
    let cache = work.path().join("down");
    let out = pkgload(&cache, &hosts, &["-v", "load", &image])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out);
    assert!(log.contains("trying the next"), "{log}");
    // Left at once, not retried into the time limit.
    assert!(!log.contains("retrying"), "{log}");
    verify_clean(&cache, &hosts);

    // A mirror that serves the first host, then is killed: later hosts load from the
    // origin.
    let mirror = Registry::start_proxy(&format!("http://{}", origin.host()))
        .expect("docker-registry in proxy mode");
    let hosts = hosts_dir(
        &work.path().join("killed.d"),
        &origin.host(),
        &[(
            &format!("http://{}", mirror.host()),
            "[\"pull\", \"resolve\"]",
        )],
    );
    ok(
        pkgload(&work.path().join("first"), &hosts, &["load", &image])
            .output()
            .unwrap(),
    );
    drop(mirror);
    for host in ["second", "third"] {
        let cache = work.path().join(host);
        ok(pkgload(&cache, &hosts, &["load", &image]).output().unwrap());
        verify_clean(&cache, &hosts);
    }
}

#[test]
fn a_mirror_serving_a_corrupt_blob_is_caught_and_the_origin_serves_it() {
    use test_servers::fault::{FaultServer, Route};
    let origin = Origin::start();
    let work = tempfile::tempdir().unwrap();
    let digests = origin.push_image();
    // The "mirror" knows one blob, and serves it with a byte flipped, every time; it
    // answers 404 for everything else.
    let bad = FaultServer::start("127.0.0.1".parse().unwrap()).unwrap();
    let victim = &digests[3];
    let path = format!("/v2/acme/image/blobs/{victim}");
    let real = origin.registry.get(&path).unwrap().body;
    bad.route(&path, Route::new(real).flip_byte(100, usize::MAX));
    let hosts = hosts_dir(
        &work.path().join("hosts.d"),
        &origin.host(),
        &[(&bad.base_url(), "[\"pull\"]")],
    );
    let image = format!("{}/acme/image:1.0", origin.host());
    let cache = work.path().join("cache");
    let out = pkgload(&cache, &hosts, &["-v", "load", "--json", &image])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out);
    assert!(bad.hits(&path) >= 1, "the mirror was never asked");
    assert!(log.contains("trying the next"), "{log}");
    verify_clean(&cache, &hosts);
    // What is stored under the digest is the real blob.
    let stored = std::fs::read(
        walk(&cache)
            .into_iter()
            .find(|p| {
                p.to_string_lossy()
                    .ends_with(victim.trim_start_matches("sha256:"))
            })
            .expect("the blob is stored"),
    )
    .unwrap();
    assert_eq!(sha256(&stored), *victim);
}

#[test]
fn a_mirror_killed_mid_load_leaves_every_load_to_finish_from_the_origin() {
    let origin = Origin::start();
    origin.push_image();
    let mirror = Registry::start_proxy(&format!("http://{}", origin.host()))
        .expect("docker-registry in proxy mode");
    // The mirror passes bodies on at 4 KiB every 10 ms (a layer takes about 160 ms), so
    // that it dies with blobs on the wire.
    let front = CountingProxy::throttled(mirror.addr(), 4096, Duration::from_millis(10)).unwrap();
    let work = tempfile::tempdir().unwrap();
    let hosts = hosts_dir(
        &work.path().join("hosts.d"),
        &origin.host(),
        &[(
            &format!("http://{}", front.host()),
            "[\"pull\", \"resolve\"]",
        )],
    );
    let image = format!("{}/acme/image:1.0", origin.host());
    let caches: Vec<PathBuf> = (1..=3)
        .map(|h| work.path().join(format!("host-{h}")))
        .collect();
    let loads: Vec<_> = caches
        .iter()
        .map(|cache| {
            pkgload(cache, &hosts, &["-v", "load", &image])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Stop it once bodies are flowing: 256 KiB of the 3 MiB the loads need.
    let deadline = Instant::now() + Duration::from_secs(60);
    while front.bytes_passed() < 256 * 1024 {
        assert!(Instant::now() < deadline, "{:?}", front.requests());
        std::thread::sleep(Duration::from_millis(5));
    }
    let origin_before = origin.blob_gets();
    drop(front);
    drop(mirror);

    let mut logs = String::new();
    for (cache, load) in caches.iter().zip(loads) {
        let out = load.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        ok(out);
        assert!(log.contains("trying the next"), "{log}");
        logs += &log;
        verify_clean(cache, &hosts);
        for i in [0, 7, LAYERS - 1] {
            let out = pkgload(
                cache,
                &hosts,
                &["cat", &image, &format!("/layer{i:02}/data.bin")],
            )
            .output()
            .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.stdout == layer_data(i), "layer {i} differs");
        }
    }
    // Some blob was cut mid-body, and its partial was handed on to the origin.
    let handed_on = logs
        .lines()
        .filter(|l| l.contains("trying the next") && l.contains("held="))
        .any(|l| !l.contains("held=0"));
    assert!(handed_on, "{logs}");
    // What the mirror did not deliver came from the origin.
    assert!(
        origin.blob_gets() > origin_before,
        "{:?}",
        origin.proxy.requests()
    );
}

#[test]
fn a_mirror_gets_only_its_own_credentials_even_when_it_asks() {
    use test_servers::fault::{FaultServer, Route};
    let origin = Origin::start();
    let pushed = origin.push_image_full();
    // The mirror serves every blob of the image, to bob only; anyone else gets a 401.
    let mirror = FaultServer::start("127.0.0.1".parse().unwrap()).unwrap();
    for digest in pushed.layer_digests.iter().chain([&pushed.config_digest]) {
        let path = format!("/v2/acme/image/blobs/{digest}");
        let body = origin.registry.get(&path).unwrap().body;
        mirror.route(
            &path,
            Route::new(body).require_basic("bob", "mirror-secret"),
        );
    }
    let work = tempfile::tempdir().unwrap();
    let hosts = hosts_dir(
        &work.path().join("hosts.d"),
        &origin.host(),
        &[(&mirror.base_url(), "[\"pull\"]")],
    );
    let image = format!("{}/acme/image:1.0", origin.host());
    let docker_config = |entries: &[(String, &str, &str)]| {
        let dir = work.path().join(format!("docker-{}", entries.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let auths: Vec<String> = entries
            .iter()
            .map(|(host, user, password)| {
                format!(r#""{host}": {{"username": "{user}", "password": "{password}"}}"#)
            })
            .collect();
        std::fs::write(
            dir.join("config.json"),
            format!(r#"{{"auths": {{{}}}}}"#, auths.join(", ")),
        )
        .unwrap();
        dir
    };

    // Credentials for the origin only: the mirror's 401 gets nothing; the origin serves.
    let origin_only = docker_config(&[(origin.host(), "alice", "origin-secret")]);
    let cache = work.path().join("origin-only");
    let out = pkgload(&cache, &hosts, &["-v", "load", &image])
        .env("DOCKER_CONFIG", &origin_only)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out);
    assert!(!mirror.requests().is_empty(), "the mirror was never asked");
    assert!(!mirror.saw_authorization(), "{:?}", mirror.requests());
    assert!(log.contains("trying the next"), "{log}");
    verify_clean(&cache, &hosts);

    // With the mirror's own credentials configured too, the mirror serves every blob.
    let both = docker_config(&[
        (origin.host(), "alice", "origin-secret"),
        (mirror.host(), "bob", "mirror-secret"),
    ]);
    let origin_before = origin.blob_gets();
    let cache = work.path().join("both");
    ok(pkgload(&cache, &hosts, &["load", &image])
        .env("DOCKER_CONFIG", &both)
        .output()
        .unwrap());
    assert_eq!(
        origin.blob_gets(),
        origin_before,
        "{:?}",
        origin.proxy.requests()
    );
    verify_clean(&cache, &hosts);
}

#[test]
fn pushes_go_to_the_first_mirror_allowed_to_take_them() {
    let origin = Origin::start();
    // A plain registry that takes the pushes (a staging area in front of the origin).
    let staging = Registry::start().expect("docker-registry");
    let work = tempfile::tempdir().unwrap();
    let closed = closed_port();
    // A pull-only mirror first (down: a push that went there would fail), then staging.
    let hosts = hosts_dir(
        &work.path().join("push.d"),
        &origin.host(),
        &[
            (&format!("http://{closed}"), "[\"pull\"]"),
            (&staging.url(), "[\"push\"]"),
        ],
    );
    origin.push_packages(work.path(), &hosts);
    for name in ["lib", "app"] {
        let tags = staging.get(&format!("/v2/acme/{name}/tags/list")).unwrap();
        assert_eq!(tags.status, 200, "{}", tags.text());
        assert!(tags.text().contains("1.0.0"), "{}", tags.text());
        let at_origin = origin
            .registry
            .get(&format!("/v2/acme/{name}/tags/list"))
            .unwrap();
        assert_eq!(at_origin.status, 404, "{}", at_origin.text());
    }
    let writes: Vec<_> = origin
        .proxy
        .requests()
        .into_iter()
        .filter(|r| !r.starts_with("GET ") && !r.starts_with("HEAD "))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");

    // What staging took loads from it, when it may resolve.
    let hosts = hosts_dir(
        &work.path().join("pull.d"),
        &origin.host(),
        &[(&staging.url(), "[\"pull\", \"resolve\"]")],
    );
    let app = format!("{}/acme/app:1.0.0", origin.host());
    let out = ok(pkgload(
        &work.path().join("cache"),
        &hosts,
        &["cat", &app, "/lib/lib.txt"],
    )
    .output()
    .unwrap());
    assert_eq!(out, "lib");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

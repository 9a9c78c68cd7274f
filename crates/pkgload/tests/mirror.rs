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
use std::process::{Command, Output};

use common::{E, gzip, layer, sha256};
use test_servers::proxy::CountingProxy;
use test_servers::registry::Registry;

const LAYERS: usize = 16;

fn pkgload(cache: &Path, hosts: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pkgload"));
    command
        .arg("--cache-dir")
        .arg(cache)
        .arg("--hosts-dir")
        .arg(hosts)
        .args(args)
        .env_remove("RUST_LOG")
        .env("DOCKER_CONFIG", cache.join("no-docker-config"));
    command
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

    /// An image of 16 small gzip layers, one file each, tagged `acme/image:1.0`. Returns
    /// the layers' digests.
    fn push_image(&self) -> Vec<String> {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for i in 0..LAYERS {
            let data: Vec<u8> = (0..64 * 1024u32)
                .map(|n| (n.wrapping_mul(2_654_435_761).wrapping_add(i as u32) >> 13) as u8)
                .collect();
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
            .layer_digests
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
            ok(image_load.wait_with_output().unwrap());
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
    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
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

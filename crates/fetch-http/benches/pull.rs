//! Cold pull of a many-layer gzip image from a loopback `docker-registry`, side by side in
//! one run with `skopeo copy docker://… oci:…` and `curl --parallel` + `sha256sum` of the
//! same blobs; then the peak RSS of pulling one 1 GiB layer.
//!
//! `PKGLOAD_BENCH_IMAGE_MIB` (default 512) and `PKGLOAD_BENCH_LAYERS` (default 16) shape the
//! image; `PKGLOAD_BENCH_LAYER_MIB` (default 1024) the RSS layer. Needs `docker-registry`,
//! `skopeo` and `curl` (`cargo xtask test` installs the first two).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cache_core::{Algorithm, Digest, Store};
use criterion::{Criterion, SamplingMode, Throughput};
use fetch_http::{ClientConfig, Credentials, HttpClient, ManifestKind};
use futures::StreamExt;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn client() -> HttpClient {
    HttpClient::new(ClientConfig::default(), Credentials::new()).unwrap()
}

/// Push `layers` gzip layers of incompressible data, `total` bytes in all; returns the
/// layer digests and sizes.
async fn push_image(
    client: &HttpClient,
    host: &str,
    repo: &str,
    layers: usize,
    total: usize,
) -> Vec<(Digest, u64)> {
    let per = total / layers;
    let config = Bytes::from_static(
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let config_digest = Algorithm::Sha256.digest(&config);
    client
        .push_blob(host, repo, &config_digest, config.clone(), None, None)
        .await
        .unwrap();
    let mut out = Vec::new();
    for i in 0..layers {
        let raw = support::random_bytes(per, 7_000 + i as u64);
        let gz = Bytes::from(support::gzip(&raw));
        let d = Algorithm::Sha256.digest(&gz);
        client
            .push_blob(host, repo, &d, gz.clone(), None, None)
            .await
            .unwrap();
        out.push((d, gz.len() as u64));
    }
    let layer_json: Vec<String> = out
        .iter()
        .map(|(d, s)| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d}","size":{s}}}"#
            )
        })
        .collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{}]}}"#,
        config.len(),
        layer_json.join(",")
    );
    client
        .push_manifest(host, repo, "v1", MANIFEST, Bytes::from(manifest))
        .await
        .unwrap();
    out
}

/// What pkgload does for a cold pull: the manifest, then every blob at once.
async fn pkgload_pull(client: &HttpClient, host: &str, repo: &str, store: &Store) -> u64 {
    let manifest = client.pull_manifest(host, repo, "v1").await.unwrap();
    let ManifestKind::Image(m) = manifest.kind else {
        panic!("image manifest")
    };
    let blobs: Vec<(Digest, u64)> = std::iter::once(m.config())
        .chain(m.layers().iter())
        .map(|d| (Digest::parse(d.digest().as_ref()).unwrap(), d.size()))
        .collect();
    let jobs = blobs.len();
    futures::stream::iter(blobs)
        .map(|(d, size)| {
            let req = client.registry_blob(host, repo, d, Some(size)).unwrap();
            async move { client.fetch_blob(req, store).await.unwrap().len() }
        })
        .buffer_unordered(jobs)
        .fold(0u64, |acc, n| async move { acc + n })
        .await
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn cold_pull(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    host: &str,
    layers: &[(Digest, u64)],
    scratch: &Path,
) {
    let client = client();
    let total: u64 = layers.iter().map(|(_, s)| s).sum();
    let mut group = c.benchmark_group("cold_pull");
    group.throughput(Throughput::Bytes(total));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.bench_function("pkgload", |b| {
        b.iter_custom(|iters| {
            timed_into(iters, &scratch.join("store"), |dir| {
                rt.block_on(async {
                    let store = Store::open(dir).await.unwrap();
                    pkgload_pull(&client, host, "bench/img", &store).await;
                });
            })
        })
    });
    group.bench_function("skopeo_copy", |b| {
        b.iter_custom(|iters| {
            timed_into(iters, &scratch.join("skopeo"), |dir| {
                run(Command::new("skopeo")
                    .args(["copy", "--quiet", "--src-tls-verify=false"])
                    .arg(format!("docker://{host}/bench/img:v1"))
                    .arg(format!("oci:{}:v1", dir.display())));
            })
        })
    });
    group.bench_function("curl_parallel_sha256sum", |b| {
        b.iter_custom(|iters| {
            timed_into(iters, &scratch.join("curl"), |dir| {
                std::fs::create_dir_all(dir).unwrap();
                let mut curl = Command::new("curl");
                curl.args(["--silent", "--fail", "--parallel", "--parallel-max", "16"]);
                let mut files = Vec::new();
                for (i, (d, _)) in layers.iter().enumerate() {
                    let file = dir.join(format!("l{i}"));
                    curl.arg("-o")
                        .arg(&file)
                        .arg(format!("http://{host}/v2/bench/img/blobs/{d}"));
                    files.push(file);
                }
                run(&mut curl);
                run(Command::new("sha256sum").args(&files));
            })
        })
    });
    group.finish();
}

/// Run `pull` into a fresh `dir` `iters` times; the time spent pulling (not cleaning up).
fn timed_into(iters: u64, dir: &Path, mut pull: impl FnMut(&Path)) -> Duration {
    let mut spent = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        pull(dir);
        spent += start.elapsed();
        remove_tree(dir);
    }
    spent
}

fn remove_tree(dir: &Path) {
    // Store blobs are read-only; unlinking needs writable directories only, but be thorough.
    let _ = Command::new("chmod").arg("-R").arg("u+w").arg(dir).status();
    let _ = std::fs::remove_dir_all(dir);
}

/// Child mode: pull one big layer into an empty store and print VmHWM (KiB).
fn rss_child() {
    let host = std::env::var("PKGLOAD_BENCH_HOST").unwrap();
    let digest: Digest = std::env::var("PKGLOAD_BENCH_DIGEST")
        .unwrap()
        .parse()
        .unwrap();
    let size: u64 = std::env::var("PKGLOAD_BENCH_SIZE")
        .unwrap()
        .parse()
        .unwrap();
    let dir = PathBuf::from(std::env::var("PKGLOAD_BENCH_STORE").unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::open(&dir).await.unwrap();
        let client = client();
        let req = client
            .registry_blob(&host, "bench/big", digest, Some(size))
            .unwrap();
        let blob = client.fetch_blob(req, &store).await.unwrap();
        assert_eq!(blob.len(), size);
    });
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .map(|v| v.trim().trim_end_matches(" kB").trim().to_owned())
        .unwrap_or_default();
    println!("{hwm}");
}

fn peak_rss(rt: &tokio::runtime::Runtime, host: &str, scratch: &Path) {
    let mib = env_usize("PKGLOAD_BENCH_LAYER_MIB", 1024);
    let data = support::random_bytes(mib << 20, 99);
    let digest = Algorithm::Sha256.digest(&data);
    let len = data.len() as u64;
    rt.block_on(async {
        client()
            .push_blob(host, "bench/big", &digest, data, None, None)
            .await
            .unwrap();
    });
    let store = scratch.join("rss-store");
    let out = Command::new(std::env::current_exe().unwrap())
        .env("PKGLOAD_BENCH_RSS_CHILD", "1")
        .env("PKGLOAD_BENCH_HOST", host)
        .env("PKGLOAD_BENCH_DIGEST", digest.to_string())
        .env("PKGLOAD_BENCH_SIZE", len.to_string())
        .env("PKGLOAD_BENCH_STORE", &store)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kib: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    println!(
        "peak RSS pulling one {mib} MiB layer: {:.1} MiB (goal <= 64 MiB)",
        kib as f64 / 1024.0
    );
    remove_tree(&store);
}

fn main() {
    if std::env::var_os("PKGLOAD_BENCH_RSS_CHILD").is_some() {
        rss_child();
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let registry = test_servers::registry::Registry::start().unwrap();
    let host = registry.host();
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let layers = rt.block_on(push_image(
        &client(),
        &host,
        "bench/img",
        env_usize("PKGLOAD_BENCH_LAYERS", 16),
        env_usize("PKGLOAD_BENCH_IMAGE_MIB", 512) << 20,
    ));
    cold_pull(&mut c, &rt, &host, &layers, scratch.path());
    c.final_summary();
    peak_rss(&rt, &host, scratch.path());
}

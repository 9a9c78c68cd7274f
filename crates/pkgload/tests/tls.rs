//! TLS to registries configured through `hosts.toml` (containerd's format), against a real
//! `docker-registry` serving TLS with a CA the test generates: a loopback registry is spoken
//! to over HTTPS when its `server` says so, HTTP/2 is negotiated, a certificate signed by a
//! CA nobody configured is one clear error with no retries, and a registry that requires a
//! client certificate gets the one `client` names; one that refuses ours, or its absence, is
//! one clear error too. More large downloads than blocking threads over one HTTP/2
//! connection complete instead of stalling each other.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use test_servers::registry::{Registry, RegistryTls};
use test_servers::tls::TestPki;

fn pkgload(cache: &Path, hosts: &Path, args: &[&str]) -> Output {
    common::pkgload(cache)
        .arg("--hosts-dir")
        .arg(hosts)
        .args(args)
        .env_remove("SSL_CERT_FILE")
        .output()
        .expect("run pkgload")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "pkgload failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// A `docker-registry` serving TLS with `pki`'s server certificate, asking clients for a
/// certificate signed by `client_ca` when there is one; `what` names it if it cannot start.
fn tls_registry(pki: &TestPki, client_ca: Option<PathBuf>, what: &str) -> Registry {
    let (certificate, key) = pki.server();
    Registry::start_tls(&RegistryTls {
        certificate,
        key,
        client_ca,
    })
    .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// `DIR/<host>/hosts.toml` saying the registry is at `https://<host>`, with `extra` lines.
fn hosts_dir(work: &Path, name: &str, registry: &Registry, extra: &str) -> PathBuf {
    let dir = work.join(name);
    let host = registry.host();
    std::fs::create_dir_all(dir.join(&host)).unwrap();
    std::fs::write(
        dir.join(&host).join("hosts.toml"),
        format!("server = \"https://{host}\"\n{extra}"),
    )
    .unwrap();
    dir
}

/// A one-volume package directory.
fn package(work: &Path) -> PathBuf {
    let dir = work.join("pkg");
    std::fs::create_dir_all(dir.join("v")).unwrap();
    std::fs::write(dir.join("v/hello.txt"), "over TLS\n").unwrap();
    std::fs::write(
        dir.join("pkgload.toml"),
        "name = \"acme/tls\"\nversion = \"1.0.0\"\n[[fs]]\nvolume = \"v\"\nmount = \"/\"\n\
         [volumes]\nv = \"v\"\n",
    )
    .unwrap();
    dir
}

fn toml_path(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn a_loopback_registry_over_tls_with_the_ca_from_hosts_toml() {
    let pki = TestPki::generate().expect("generate a test PKI (cargo xtask test installs openssl)");
    let registry = tls_registry(&pki, None, "start docker-registry over TLS");
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let trusted = hosts_dir(
        work.path(),
        "trusted",
        &registry,
        &format!("ca = \"{}\"\n", toml_path(&pki.ca())),
    );
    let reference = format!("{}/acme/tls:1.0.0", registry.host());
    let dir = package(work.path());
    ok(&pkgload(
        &cache,
        &trusted,
        &["push", dir.to_str().unwrap(), &reference],
    ));

    let out = pkgload(&cache, &trusted, &["-vv", "cat", &reference, "/hello.txt"]);
    assert_eq!(ok(&out), "over TLS\n");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("HTTP/2.0"),
        "HTTP/2 was not negotiated:\n{log}"
    );
    assert!(
        log.contains(&format!("https://{}", registry.host())),
        "{log}"
    );

    // A CA that did not sign the registry's certificate: one error, at once, naming the
    // host and saying how to trust a CA; nothing retried.
    let wrong = hosts_dir(
        work.path(),
        "wrong",
        &registry,
        &format!("ca = \"{}\"\n", toml_path(&pki.other_ca())),
    );
    let out = pkgload(
        &work.path().join("cache2"),
        &wrong,
        &["-v", "load", &reference],
    );
    let err = failed(&out);
    assert!(
        err.contains(&registry.host()) && err.contains("hosts.toml") && err.contains("ca ="),
        "{err}"
    );
    assert!(
        !err.contains("retrying"),
        "a certificate error was retried:\n{err}"
    );

    // No hosts.toml: loopback is plain HTTP, as always, which a TLS port refuses.
    let none = work.path().join("none");
    let err = failed(&pkgload(
        &work.path().join("cache3"),
        &none,
        &["load", &reference],
    ));
    assert!(err.contains("400"), "{err}");

    // A malformed hosts.toml names its file and line.
    let bad = hosts_dir(
        work.path(),
        "bad",
        &registry,
        "\ncapabilities = [\"pul\"]\n",
    );
    let err = failed(&pkgload(
        &work.path().join("cache4"),
        &bad,
        &["load", &reference],
    ));
    assert!(err.contains("hosts.toml:3") && err.contains("pul"), "{err}");
}

/// A `[host."…"]` table naming the registry's own `host:port` is a host of its own, spoken
/// to with its own settings, as containerd does: the common way to give the registry a CA
/// is such a table repeating the `server` URL. Both ways round: the table's CA is used when
/// the `server` has none, and a table with the wrong CA fails (and is left for the `server`,
/// whose top-level CA is right) instead of borrowing the `server`'s settings.
#[test]
fn a_host_table_naming_the_registry_itself_keeps_its_own_tls_settings() {
    let pki = TestPki::generate().expect("generate a test PKI (cargo xtask test installs openssl)");
    let registry = tls_registry(&pki, None, "start docker-registry over TLS");
    let work = tempfile::tempdir().unwrap();
    let host = registry.host();
    let reference = format!("{host}/acme/tls:1.0.0");
    let trusted = hosts_dir(
        work.path(),
        "trusted",
        &registry,
        &format!("ca = \"{}\"\n", toml_path(&pki.ca())),
    );
    let dir = package(work.path());
    ok(&pkgload(
        &work.path().join("cache-push"),
        &trusted,
        &["push", dir.to_str().unwrap(), &reference],
    ));

    let table_ca = hosts_dir(
        work.path(),
        "table-ca",
        &registry,
        &format!(
            "[host.\"https://{host}\"]\ncapabilities = [\"pull\", \"resolve\"]\nca = \"{}\"\n",
            toml_path(&pki.ca())
        ),
    );
    assert_eq!(
        ok(&pkgload(
            &work.path().join("cache1"),
            &table_ca,
            &["cat", &reference, "/hello.txt"]
        )),
        "over TLS\n"
    );

    let table_wrong = hosts_dir(
        work.path(),
        "table-wrong",
        &registry,
        &format!(
            "ca = \"{}\"\n[host.\"https://{host}\"]\ncapabilities = [\"pull\", \"resolve\"]\nca = \"{}\"\n",
            toml_path(&pki.ca()),
            toml_path(&pki.other_ca())
        ),
    );
    let out = pkgload(
        &work.path().join("cache2"),
        &table_wrong,
        &["-v", "cat", &reference, "/hello.txt"],
    );
    assert_eq!(ok(&out), "over TLS\n");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("host failed; trying the next") && log.contains("UnknownIssuer"),
        "the table's own (wrong) CA was not used:\n{log}"
    );
}

#[test]
fn a_registry_that_requires_a_client_certificate_gets_the_one_configured() {
    let pki = TestPki::generate().expect("generate a test PKI (cargo xtask test installs openssl)");
    let registry = tls_registry(
        &pki,
        Some(pki.ca()),
        "start docker-registry over mutual TLS",
    );
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let (client_cert, client_key) = pki.client();
    let with_client = hosts_dir(
        work.path(),
        "client",
        &registry,
        &format!(
            "ca = \"{}\"\nclient = [\"{}\", \"{}\"]\n",
            toml_path(&pki.ca()),
            toml_path(&client_cert),
            toml_path(&client_key)
        ),
    );
    let reference = format!("{}/acme/tls:1.0.0", registry.host());
    let dir = package(work.path());
    ok(&pkgload(
        &cache,
        &with_client,
        &["push", dir.to_str().unwrap(), &reference],
    ));
    assert_eq!(
        ok(&pkgload(
            &cache,
            &with_client,
            &["cat", &reference, "/hello.txt"]
        )),
        "over TLS\n"
    );

    // Without a client certificate the server refuses us. Under TLS 1.3 it says so only
    // after the handshake, with an alert on the first read: that is final at once (one
    // attempt), and the error names the registry and what to configure.
    let without = hosts_dir(
        work.path(),
        "without",
        &registry,
        &format!("ca = \"{}\"\n", toml_path(&pki.ca())),
    );
    let err = failed(&pkgload(
        &work.path().join("cache2"),
        &without,
        &["load", &reference],
    ));
    assert!(
        err.contains(&format!("{} refused the TLS connection", registry.host()))
            && err.contains("client = [")
            // A retried failure reads "failed after N attempts".
            && !err.contains("attempts"),
        "{err}"
    );

    // A registry that trusts another CA for its clients refuses the certificate we present:
    // the same one error.
    let strict = tls_registry(
        &pki,
        Some(pki.other_ca()),
        "start docker-registry trusting another client CA",
    );
    let refused = hosts_dir(
        work.path(),
        "refused",
        &strict,
        &format!(
            "ca = \"{}\"\nclient = [\"{}\", \"{}\"]\n",
            toml_path(&pki.ca()),
            toml_path(&client_cert),
            toml_path(&client_key)
        ),
    );
    let err = failed(&pkgload(
        &work.path().join("cache3"),
        &refused,
        &["load", &format!("{}/acme/tls:1.0.0", strict.host())],
    ));
    assert!(
        err.contains(&format!("{} refused the TLS connection", strict.host()))
            && !err.contains("attempts"),
        "{err}"
    );
}

/// More downloads in flight than the CLI keeps threads for short file jobs, over one HTTP/2
/// connection: 24 layers of 4 MiB with `--jobs 32`. Each download's ingest worker holds a
/// blocking thread for the whole transfer; when the runtime's bound was 16 threads, the
/// downloads whose workers waited in the queue left their bodies unread, those bodies held
/// the connection's flow-control window, and the running transfers stopped for good (the
/// load hung). The bound now leaves a thread for every download `--jobs` allows.
#[test]
fn more_large_downloads_than_threads_over_one_http2_connection_complete() {
    let pki = TestPki::generate().expect("generate a test PKI (cargo xtask test installs openssl)");
    let registry = tls_registry(&pki, None, "start docker-registry over TLS");
    let work = tempfile::tempdir().unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let layers: Vec<(Vec<u8>, &str)> = (0..24)
        .map(|i| {
            let mut data = vec![0u8; 4 << 20];
            for word in data.chunks_exact_mut(8) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                word.copy_from_slice(&seed.to_le_bytes());
            }
            let tar = common::layer(&[common::E::File(&format!("layer-{i}.bin"), 0o644, &data)]);
            (tar, "application/vnd.oci.image.layer.v1.tar")
        })
        .collect();
    let diff_ids: Vec<String> = layers.iter().map(|(tar, _)| common::sha256(tar)).collect();
    let layout = work.path().join("layout");
    common::image_layout(&layout, &layers, &diff_ids);
    let certs = work.path().join("skopeo-certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(pki.ca(), certs.join("ca.crt")).unwrap();
    let reference = format!("{}/acme/big:v1", registry.host());
    common::run(std::process::Command::new("skopeo").args([
        "copy",
        "--quiet",
        "--dest-cert-dir",
        certs.to_str().unwrap(),
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{reference}"),
    ]));

    let hosts = hosts_dir(
        work.path(),
        "hosts",
        &registry,
        &format!("ca = \"{}\"\n", toml_path(&pki.ca())),
    );
    let cache = work.path().join("cache");
    let mut child = common::pkgload(&cache)
        .arg("--hosts-dir")
        .arg(&hosts)
        .args(["-vv", "--jobs", "32", "fetch", &reference])
        .env_remove("SSL_CERT_FILE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run pkgload");
    // Read stderr meanwhile, so a full pipe cannot stop the child.
    let mut stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        text
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the fetch of 24 layers with --jobs 32 over HTTP/2 hung for 120 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let log = log.join().unwrap();
    assert!(status.success(), "pkgload failed:\n{log}");
    assert!(
        log.contains("HTTP/2.0"),
        "HTTP/2 was not negotiated:\n{log}"
    );
    common::verify_clean(&cache);
}

//! `fetch_blob_range` against a real loopback server: exactly the bytes asked for, retried
//! through a 503, the next host after a 404, and `RangeIgnored` at once (body unread) from
//! a server that answers the whole blob; one mirror that two registries' `hosts.toml` name
//! gets each one's own settings.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::time::Duration;

use fetch_http::{BlobHost, BlobSource, ClientConfig, Credentials, Error, HttpClient, RetryPolicy};
use support::random_bytes;
use test_servers::fault::{FaultServer, RangeMode, Route};

fn client() -> HttpClient {
    HttpClient::new(
        ClientConfig {
            retry: RetryPolicy {
                max_attempts: 3,
                max_stalled_attempts: 3,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(50),
                max_elapsed: Duration::from_secs(10),
            },
            ..ClientConfig::default()
        },
        Credentials::new(),
    )
    .unwrap()
}

fn server() -> FaultServer {
    FaultServer::start("127.0.0.1".parse().unwrap()).unwrap()
}

#[tokio::test]
async fn a_range_is_exactly_its_bytes_after_a_transient_failure() {
    let data = random_bytes(100_000, 3);
    let s = server();
    s.route(
        "/blob",
        Route::new(data.clone()).status_first(1, 503, Some("0")),
    );
    let source = BlobSource::parse(&s.url("/blob")).unwrap();
    let got = client()
        .fetch_blob_range(&source, 1_000..51_000)
        .await
        .unwrap();
    assert_eq!(got, data.slice(1_000..51_000));
    let asked = s.requests_to("/blob");
    assert_eq!(asked.len(), 2, "the 503, then the range");
    assert!(
        asked
            .iter()
            .all(|r| r.header("range") == Some("bytes=1000-50999")),
        "one closed range, asked again after the 503"
    );
}

#[tokio::test]
async fn a_server_that_ignores_range_is_named_at_once() {
    let data = random_bytes(4 << 20, 4);
    let s = server();
    s.route("/blob", Route::new(data).ranges(RangeMode::Ignore));
    let source = BlobSource::parse(&s.url("/blob")).unwrap();
    let err = client()
        .fetch_blob_range(&source, 10..20)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RangeIgnored { .. }), "{err}");
    assert_eq!(s.hits("/blob"), 1, "not retried");
}

#[tokio::test]
async fn hosts_are_tried_in_order() {
    let data = random_bytes(10_000, 5);
    let (mirror, origin) = (server(), server());
    mirror.route("/blob", Route::new("").status_first(9, 404, None));
    origin.route("/blob", Route::new(data.clone()));
    let url = |s: &FaultServer| reqwest_url(&s.url("/blob"));
    let source = BlobSource::Hosts(vec![
        BlobHost::new(url(&mirror), None),
        BlobHost::new(url(&origin), None),
    ]);
    let got = client().fetch_blob_range(&source, 0..10).await.unwrap();
    assert_eq!(got, data.slice(0..10));
    assert_eq!(mirror.hits("/blob"), 1);
}

fn reqwest_url(text: &str) -> fetch_http::Url {
    fetch_http::Url::parse(text).unwrap()
}

/// Two registries' `hosts.toml` files name one mirror, each with its own header: every
/// request for a registry carries that registry's header, not the other file's (settings
/// travel with the request, not with the mirror's `host:port`).
#[tokio::test]
async fn one_mirror_named_by_two_registries_gets_each_ones_settings() {
    let data = random_bytes(10_000, 6);
    let digest = cache_core::Algorithm::Sha256.digest(&data);
    let (mirror, origin) = (server(), server());
    let path = format!("/v2/acme/app/blobs/{digest}");
    mirror.route(&path, Route::new(data.clone()));
    let dir = tempfile::tempdir().unwrap();
    for registry in ["one.test", "two.test"] {
        std::fs::create_dir_all(dir.path().join(registry)).unwrap();
        std::fs::write(
            dir.path().join(registry).join("hosts.toml"),
            format!(
                "server = \"{}\"\n[host.\"{}\"]\ncapabilities = [\"pull\"]\n\
                 [host.\"{}\".header]\nx-registry = \"{registry}\"\n",
                origin.base_url(),
                mirror.base_url(),
                mirror.base_url()
            ),
        )
        .unwrap();
    }
    let client = HttpClient::new(
        ClientConfig {
            hosts: fetch_http::hosts::HostsDirs::pinned(dir.path()),
            ..ClientConfig::default()
        },
        Credentials::new(),
    )
    .unwrap();
    for registry in ["one.test", "two.test", "one.test"] {
        let request = client
            .registry_blob(registry, "acme/app", digest, Some(data.len() as u64))
            .unwrap();
        let got = client
            .fetch_blob_range(&request.source, 0..10)
            .await
            .unwrap();
        assert_eq!(got, data.slice(0..10));
    }
    let requests = mirror.requests_to(&path);
    assert_eq!(requests.len(), 3, "the origin was asked");
    for request in requests {
        let ns = request
            .path_and_query
            .split("ns=")
            .nth(1)
            .unwrap()
            .to_owned();
        let header = request
            .headers
            .get("x-registry")
            .map(|v| v.to_str().unwrap());
        assert_eq!(header, Some(ns.as_str()), "{}", request.path_and_query);
    }
    assert_eq!(origin.requests().len(), 0);
}

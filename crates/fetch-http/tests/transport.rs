//! `fetch_blob` and the transport against a real loopback server that misbehaves on demand.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cache_core::{Algorithm, Digest, Store};
use fetch_http::{
    BlobRequest, BlobSource, ClientConfig, Credential, Credentials, Error, HttpClient, Progress,
    RetryPolicy,
};
use support::{FaultServer, Reply, Seen, gzip, random_bytes, zstd};

fn client_with(credentials: Credentials) -> HttpClient {
    HttpClient::new(
        ClientConfig {
            retry: RetryPolicy {
                max_attempts: 4,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_secs(2),
                max_elapsed: Duration::from_secs(30),
            },
            ..ClientConfig::default()
        },
        credentials,
    )
    .unwrap()
}

fn client() -> HttpClient {
    client_with(Credentials::new())
}

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    (dir, store)
}

fn request(url: String, data: &[u8]) -> BlobRequest {
    BlobRequest::new(
        BlobSource::parse(&url).unwrap(),
        Algorithm::Sha256.digest(data),
        Some(data.len() as u64),
    )
}

fn nth(counter: &AtomicUsize) -> usize {
    counter.fetch_add(1, Ordering::SeqCst)
}

#[tokio::test]
async fn cache_first_and_shared_between_callers() {
    let data = random_bytes(3 << 20, 1);
    let body = data.clone();
    let server = FaultServer::start("127.0.0.1", move |_| Reply::ok(body.clone())).await;
    let (_d, store) = store().await;
    let client = client();
    let req = request(server.url("/blob"), &data);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (client, store, req) = (client.clone(), store.clone(), req.clone());
            tokio::spawn(async move { client.fetch_blob(req, &store).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().len(), data.len() as u64);
    }
    assert_eq!(server.hits("/blob"), 1, "eight callers, one download");
    let blob = client.fetch_blob(req, &store).await.unwrap();
    assert_eq!(&blob[..], &data[..]);
    assert_eq!(server.hits("/blob"), 1, "a stored blob costs no request");
}

#[tokio::test]
async fn retries_503_honouring_retry_after() {
    let data = random_bytes(10_000, 2);
    let body = data.clone();
    let count = AtomicUsize::new(0);
    let server = FaultServer::start("127.0.0.1", move |_| match nth(&count) {
        0 => Reply::status(503).header("retry-after", "1"),
        1 => Reply::status(429).header("retry-after", "0"),
        _ => Reply::ok(body.clone()),
    })
    .await;
    let (_d, store) = store().await;
    let start = Instant::now();
    let blob = client()
        .fetch_blob(request(server.url("/b"), &data), &store)
        .await
        .unwrap();
    assert_eq!(&blob[..], &data[..]);
    assert_eq!(server.hits("/b"), 3);
    assert!(
        start.elapsed() >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured"
    );
}

#[tokio::test]
async fn a_reset_body_resumes_with_range_and_if_range() {
    let data = random_bytes(2 << 20, 3);
    let body = data.clone();
    let count = AtomicUsize::new(0);
    let server = FaultServer::start("127.0.0.1", move |seen| {
        let reply = Reply::ranged(seen, &body, "\"v1\"");
        if nth(&count) == 0 {
            reply.abort_after(700_000)
        } else {
            reply
        }
    })
    .await;
    let (_d, store) = store().await;
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let mut req = request(server.url("/b"), &data);
    req.progress = Some(Arc::new(move |e| sink.lock().unwrap().push(e)));
    let blob = client().fetch_blob(req, &store).await.unwrap();
    assert_eq!(&blob[..], &data[..]);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].range_start(), None);
    assert_eq!(
        seen[0].header("accept-encoding").as_deref(),
        Some("zstd, gzip")
    );
    let resumed_at = seen[1].range_start().expect("second request resumes");
    assert!(resumed_at > 0 && resumed_at <= 700_000, "{resumed_at}");
    assert_eq!(seen[1].header("if-range").as_deref(), Some("\"v1\""));
    assert_eq!(
        seen[1].header("accept-encoding").as_deref(),
        Some("identity")
    );
    let events = events.lock().unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Progress::Retrying { attempt: 1, .. }))
    );
    assert!(
        matches!(events.last(), Some(Progress::Finished { bytes, .. }) if *bytes == data.len() as u64)
    );
}

#[tokio::test]
async fn a_server_ignoring_range_restarts_cleanly() {
    let data = random_bytes(1 << 20, 4);
    let body = data.clone();
    let count = AtomicUsize::new(0);
    let server = FaultServer::start("127.0.0.1", move |_| {
        let reply = Reply::ok(body.clone());
        if nth(&count) == 0 {
            reply.abort_after(300_000)
        } else {
            reply
        }
    })
    .await;
    let (_d, store) = store().await;
    let blob = client()
        .fetch_blob(request(server.url("/b"), &data), &store)
        .await
        .unwrap();
    assert_eq!(&blob[..], &data[..]);
    assert!(
        server.seen()[1].range_start().is_some(),
        "we asked to resume"
    );
}

#[tokio::test]
async fn corrupt_transfers_never_enter_the_store() {
    let data = random_bytes(500_000, 5);
    let mut flipped = data.to_vec();
    flipped[123_456] ^= 0x40;
    let flipped = Bytes::from(flipped);
    let (good, bad) = (data.clone(), flipped.clone());
    let count = AtomicUsize::new(0);
    // Once corrupt, then good: retried from scratch.
    let server = FaultServer::start("127.0.0.1", move |_| {
        if nth(&count) == 0 {
            Reply::ok(bad.clone())
        } else {
            Reply::ok(good.clone())
        }
    })
    .await;
    let (_d, store) = store().await;
    let blob = client()
        .fetch_blob(request(server.url("/b"), &data), &store)
        .await
        .unwrap();
    assert_eq!(&blob[..], &data[..]);
    assert_eq!(
        server.seen()[1].range_start(),
        None,
        "a corrupt blob restarts at 0"
    );

    // Always corrupt: a final error naming URL and digest; nothing stored.
    let bad = flipped.clone();
    let server = FaultServer::start("127.0.0.1", move |_| Reply::ok(bad.clone())).await;
    let (_d2, store) = self::store().await;
    let req = request(server.url("/b"), &data);
    let err = client().fetch_blob(req.clone(), &store).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err.store_error(),
            Some(cache_core::Error::DigestMismatch { .. })
        ),
        "{text}"
    );
    assert!(
        text.contains("/b") && text.contains(&req.digest.to_string()),
        "{text}"
    );
    assert_eq!(server.hits("/b"), 4, "bounded attempts");
    assert!(!store.contains(&req.digest));
    assert!(store.scan().await.unwrap().is_empty());
}

#[tokio::test]
async fn truncated_and_overlong_bodies() {
    // Truncated (Content-Length promises more, the connection ends): resumed.
    let data = random_bytes(400_000, 6);
    let body = data.clone();
    let count = AtomicUsize::new(0);
    let server = FaultServer::start("127.0.0.1", move |seen| {
        let reply = Reply::ranged(seen, &body, "\"t\"");
        if nth(&count) < 2 {
            reply.abort_after(100_000)
        } else {
            reply
        }
    })
    .await;
    let (_d, store) = store().await;
    let blob = client()
        .fetch_blob(request(server.url("/t"), &data), &store)
        .await
        .unwrap();
    assert_eq!(&blob[..], &data[..]);

    // Longer than the descriptor says: cut off at the limit, never stored.
    let long = random_bytes(200_000, 7);
    let declared = long.slice(..150_000);
    let body = long.clone();
    let server = FaultServer::start("127.0.0.1", move |_| Reply::ok(body.clone())).await;
    let err = client()
        .fetch_blob(request(server.url("/long"), &declared), &store)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RetriesExhausted { .. }), "{err}");
    assert!(err.to_string().contains("size mismatch"), "{err}");
    assert!(!store.contains(&Algorithm::Sha256.digest(&declared)));
}

#[tokio::test]
async fn content_encodings_are_decoded_as_a_stream() {
    let data = random_bytes(300_000, 8);
    let text = Bytes::from(data.iter().map(|b| b'a' + b % 4).collect::<Vec<u8>>());
    let gz = Bytes::from(gzip(&text));
    let zs = Bytes::from(zstd(&text));
    let stacked = Bytes::from(zstd(&gzip(&text)));
    let server = FaultServer::start("127.0.0.1", move |seen: &Seen| match seen.path() {
        "/gzip" => Reply::ok(gz.clone()).header("content-encoding", "gzip"),
        "/zstd" => Reply::ok(zs.clone()).header("content-encoding", "zstd"),
        "/stacked" => Reply::ok(stacked.clone()).header("content-encoding", "gzip, zstd"),
        _ => Reply::ok(Bytes::from_static(b"??")).header("content-encoding", "br"),
    })
    .await;
    let (_d, store) = store().await;
    let client = client();
    for path in ["/gzip", "/zstd", "/stacked"] {
        store.retain(|_| false).await.unwrap();
        let blob = client
            .fetch_blob(request(server.url(path), &text), &store)
            .await
            .unwrap();
        assert_eq!(&blob[..], &text[..], "{path}");
    }
    let err = client
        .fetch_blob(request(server.url("/br"), b"xx"), &store)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedEncoding { ref encoding, .. } if encoding == "br"),
        "{err}"
    );
    assert_eq!(server.hits("/br"), 1, "an unknown encoding is final");
}

#[tokio::test]
async fn final_statuses_carry_hints() {
    let server = FaultServer::start("127.0.0.1", |seen: &Seen| match seen.path() {
        "/missing" => Reply::status(404),
        _ => Reply::status(403),
    })
    .await;
    let (_d, store) = store().await;
    let err = client()
        .fetch_blob(request(server.url("/missing"), b"x"), &store)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert!(
        err.to_string().contains("no such repository, tag or blob"),
        "{err}"
    );
    let err = client()
        .fetch_blob(request(server.url("/forbidden"), b"x"), &store)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("credentials"), "{err}");
    assert_eq!(server.seen().len(), 2, "final statuses are not retried");
}

#[tokio::test]
async fn plain_http_to_remote_hosts_is_refused() {
    let (_d, store) = store().await;
    let err = client()
        .fetch_blob(
            request("http://registry.example.com/v2/x/blobs/y".into(), b"x"),
            &store,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Refused { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("--insecure-registry registry.example.com"),
        "{err}"
    );
}

#[tokio::test]
async fn tokens_are_fetched_once_and_never_follow_redirects() {
    const TOKEN: &str = "tok-7f3a-secret";
    let blobs: Vec<Bytes> = (0..6).map(|i| random_bytes(200_000, 100 + 2 * i)).collect();
    // A second loopback host: the "CDN" the registry redirects blob downloads to.
    let served = blobs.clone();
    let cdn = FaultServer::start("127.0.0.2", move |seen: &Seen| {
        let i: usize = seen.path().rsplit('/').next().unwrap().parse().unwrap();
        Reply::ok(served[i].clone())
    })
    .await;
    let cdn_base = cdn.url("/storage");
    let token_calls = Arc::new(AtomicUsize::new(0));
    let calls = token_calls.clone();
    let registry = FaultServer::start("127.0.0.1", move |seen: &Seen| {
        if seen.path() == "/token" {
            calls.fetch_add(1, Ordering::SeqCst);
            // The realm receives the user's basic credentials (alice:pw).
            if seen.header("authorization").as_deref() != Some("Basic YWxpY2U6cHc=") {
                return Reply::status(401);
            }
            std::thread::sleep(Duration::from_millis(100)); // a slow token service
            return Reply::ok(format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#));
        }
        if seen.header("authorization").as_deref() != Some(&format!("Bearer {TOKEN}")) {
            let host = seen.header("host").unwrap_or_default();
            return Reply::status(401).header(
                "www-authenticate",
                &format!(
                    r#"Bearer realm="http://{host}/token",service="test-registry",scope="repository:acme/app:pull""#
                ),
            );
        }
        let i = seen.path().rsplit('/').next().unwrap();
        Reply::status(307).header("location", &format!("{cdn_base}/{i}?X-Signature=abc"))
    })
    .await;
    let mut creds = Credentials::new();
    creds.insert(
        &registry.addr.to_string(),
        Credential::Basic {
            username: "alice".into(),
            password: "pw".into(),
        },
    );
    let client = client_with(creds);
    let (_d, store) = store().await;
    let tasks: Vec<_> = blobs
        .iter()
        .enumerate()
        .map(|(i, data)| {
            let (client, store) = (client.clone(), store.clone());
            let req = request(registry.url(&format!("/v2/acme/app/blobs/{i}")), data);
            tokio::spawn(async move { client.fetch_blob(req, &store).await })
        })
        .collect();
    for (t, data) in tasks.into_iter().zip(&blobs) {
        assert_eq!(&t.await.unwrap().unwrap()[..], &data[..]);
    }
    assert_eq!(
        token_calls.load(Ordering::SeqCst),
        1,
        "six parallel pulls, one token"
    );
    let cdn_seen = cdn.seen();
    assert_eq!(cdn_seen.len(), 6);
    assert!(
        cdn_seen.iter().all(|s| s.header("authorization").is_none()),
        "the Authorization header leaked to the redirect target"
    );
    assert!(cdn_seen[0].target.contains("X-Signature=abc"));
    let with_token = registry
        .seen()
        .iter()
        .filter(|s| s.header("authorization").as_deref() == Some(&format!("Bearer {TOKEN}")))
        .count();
    assert_eq!(with_token, 6);
}

#[tokio::test]
async fn secrets_stay_out_of_errors() {
    const TOKEN: &str = "tok-never-print-me";
    let registry = FaultServer::start("127.0.0.1", move |seen: &Seen| {
        if seen.path() == "/token" {
            return Reply::ok(format!(r#"{{"token":"{TOKEN}"}}"#));
        }
        // Rejects every token.
        let host = seen.header("host").unwrap_or_default();
        Reply::status(401).header(
            "www-authenticate",
            &format!(r#"Bearer realm="http://{host}/token",service="s""#),
        )
    })
    .await;
    let mut creds = Credentials::new();
    creds.insert(
        &registry.addr.to_string(),
        Credential::Basic {
            username: "bob".into(),
            password: "hunter2-password".into(),
        },
    );
    let (_d, store) = store().await;
    let err = client_with(creds.clone())
        .fetch_blob(
            request(registry.url("/v2/a/blobs/x?sig=query-secret"), b"x"),
            &store,
        )
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?} {creds:?}");
    assert!(matches!(err, Error::Auth { .. }), "{err}");
    for secret in [TOKEN, "hunter2-password", "query-secret"] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
}

#[tokio::test]
async fn local_files_and_file_urls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob.bin");
    let data = random_bytes(700_000, 10);
    std::fs::write(&path, &data).unwrap();
    let (_d, store) = store().await;
    let digest: Digest = Algorithm::Sha256.digest(&data);
    let url = format!("file://{}", path.display());
    let blob = client()
        .fetch_blob(
            BlobRequest::new(
                BlobSource::parse(&url).unwrap(),
                digest,
                Some(data.len() as u64),
            ),
            &store,
        )
        .await
        .unwrap();
    assert_eq!(&blob[..], &data[..]);
    let wrong = Algorithm::Sha256.digest(b"other");
    let err = client()
        .fetch_blob(
            BlobRequest::new(BlobSource::File(path), wrong, None),
            &store,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

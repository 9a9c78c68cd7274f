//! `fetch_blob` and the transport against a real loopback server that misbehaves on demand
//! (`test_servers::fault`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cache_core::{Algorithm, Store, VerifyMode};
use fetch_http::{
    BlobRequest, BlobSource, ClientConfig, Credential, Credentials, Error, HttpClient, Progress,
    RetryPolicy,
};
use support::{gzip, random_bytes, range_start, zstd};
use test_servers::fault::{Bearer, Encoding, FaultServer, RangeMode, Route, TokenEndpoint};

fn client_with(credentials: Credentials) -> HttpClient {
    HttpClient::new(
        ClientConfig {
            retry: RetryPolicy {
                max_attempts: 4,
                max_stalled_attempts: 4,
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

fn server(ip: &str) -> FaultServer {
    FaultServer::start(ip.parse().unwrap()).unwrap()
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

/// Fetch every `(url, data)` at once; each blob must arrive intact.
async fn fetch_all_in_parallel(client: &HttpClient, store: &Store, items: Vec<(String, Bytes)>) {
    let tasks: Vec<_> = items
        .into_iter()
        .map(|(url, data)| {
            let (client, store) = (client.clone(), store.clone());
            tokio::spawn(async move {
                let blob = client
                    .fetch_blob(request(url, &data), &store)
                    .await
                    .unwrap();
                assert_eq!(&blob[..], &data[..]);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// `(url, data)` for blob `i` of `acme/app` on `registry`, as routed by the token tests.
fn app_blobs(registry: &FaultServer, blobs: &[Bytes]) -> Vec<(String, Bytes)> {
    blobs
        .iter()
        .enumerate()
        .map(|(i, data)| {
            (
                registry.url(&format!("/v2/acme/app/blobs/{i}")),
                data.clone(),
            )
        })
        .collect()
}

fn basic(user: &str, password: &str) -> Credential {
    Credential::Basic {
        username: user.into(),
        password: password.into(),
    }
}

#[tokio::test]
async fn cache_first_and_shared_between_callers() {
    let data = random_bytes(3 << 20, 1);
    let server = server("127.0.0.1");
    server.route("/blob", Route::new(data.clone()));
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
    let server = server("127.0.0.1");
    server.route(
        "/b",
        Route::new(data.clone())
            .status_first(1, 503, Some("1"))
            .status_first(1, 429, Some("0")),
    );
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
    let server = server("127.0.0.1");
    server.route(
        "/b",
        Route::new(data.clone())
            .etag("\"v1\"")
            .reset_after(700_000, 1),
    );
    let (_d, store) = store().await;
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let mut req = request(server.url("/b"), &data);
    req.progress = Some(Arc::new(move |e| sink.lock().unwrap().push(e)));
    let blob = client().fetch_blob(req, &store).await.unwrap();
    assert_eq!(&blob[..], &data[..]);
    let seen = server.requests_to("/b");
    assert_eq!(seen.len(), 2);
    assert_eq!(range_start(&seen[0]), None);
    assert_eq!(seen[0].header("accept-encoding"), Some("zstd, gzip"));
    let resumed_at = range_start(&seen[1]).expect("second request resumes");
    assert!(resumed_at > 0 && resumed_at <= 700_000, "{resumed_at}");
    assert_eq!(seen[1].header("if-range"), Some("\"v1\""));
    assert_eq!(seen[1].header("accept-encoding"), Some("identity"));
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
    let server = server("127.0.0.1");
    server.route(
        "/b",
        Route::new(data.clone())
            .ranges(RangeMode::Ignore)
            .reset_after(300_000, 1),
    );
    let (_d, store) = store().await;
    let blob = client()
        .fetch_blob(request(server.url("/b"), &data), &store)
        .await
        .unwrap();
    assert_eq!(&blob[..], &data[..]);
    assert!(
        range_start(&server.requests_to("/b")[1]).is_some(),
        "we asked to resume"
    );
}

#[tokio::test]
async fn corrupt_transfers_never_enter_the_store() {
    let data = random_bytes(500_000, 5);
    // Once corrupt, then good: retried from scratch.
    let server = server("127.0.0.1");
    server.route("/once", Route::new(data.clone()).flip_byte(123_456, 1));
    server.route(
        "/always",
        Route::new(data.clone()).flip_byte(123_456, usize::MAX),
    );
    let (_d, store) = store().await;
    let blob = client()
        .fetch_blob(request(server.url("/once"), &data), &store)
        .await
        .unwrap();
    assert_eq!(&blob[..], &data[..]);
    assert_eq!(
        range_start(&server.requests_to("/once")[1]),
        None,
        "a corrupt blob restarts at 0"
    );

    // Always corrupt: a final error naming URL and digest; nothing stored.
    let (_d2, store) = self::store().await;
    let req = request(server.url("/always"), &data);
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
        text.contains("/always") && text.contains(&req.digest.to_string()),
        "{text}"
    );
    // The same wrong bytes twice are what the server holds: no third attempt.
    assert_eq!(
        server.hits("/always"),
        2,
        "the same wrong content twice ends it"
    );
    assert!(!store.contains(&req.digest));
    assert!(store.scan().await.unwrap().is_empty());
}

#[tokio::test]
async fn truncated_and_overlong_bodies() {
    // Truncated (Content-Length promises more, the connection ends cleanly): resumed.
    let data = random_bytes(400_000, 6);
    let server = server("127.0.0.1");
    server.route(
        "/t",
        Route::new(data.clone())
            .etag("\"t\"")
            .truncate_after(100_000, 2),
    );
    let (_d, store) = store().await;
    let blob = client()
        .fetch_blob(request(server.url("/t"), &data), &store)
        .await
        .unwrap();
    assert_eq!(&blob[..], &data[..]);
    assert!(range_start(&server.requests_to("/t")[1]).is_some());

    // Longer than the descriptor says: cut off at the limit, never stored.
    let long = random_bytes(200_000, 7);
    let declared = long.slice(..150_000);
    server.route("/long", Route::new(long.clone()));
    let err = client()
        .fetch_blob(request(server.url("/long"), &declared), &store)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.store_error(),
            Some(cache_core::Error::SizeMismatch { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("size mismatch"), "{err}");
    assert!(!store.contains(&Algorithm::Sha256.digest(&declared)));
}

#[tokio::test]
async fn attempts_that_make_progress_are_not_counted() {
    // Every response is cut short after 100 kB, 20 times in a row: far more failures than
    // the client's budget of 4, yet each one moved the download forward.
    let data = random_bytes(2_000_000, 21);
    let server = server("127.0.0.1");
    server.route(
        "/p",
        Route::new(data.clone())
            .etag("\"p\"")
            .truncate_after(100_000, 10)
            .reset_after(100_000, 9),
    );
    let (_d, store) = store().await;
    let blob = client()
        .fetch_blob(request(server.url("/p"), &data), &store)
        .await
        .unwrap();
    assert_eq!(&blob[..], &data[..]);
    let starts: Vec<u64> = server
        .requests_to("/p")
        .iter()
        .map(|r| range_start(r).unwrap_or(0))
        .collect();
    assert_eq!(starts.len(), 20, "{starts:?}");
    assert!(
        starts.windows(2).all(|w| w[0] < w[1]),
        "each attempt resumes further on: {starts:?}"
    );

    // A digest mismatch restarts from byte 0 and counts as an attempt without progress;
    // the growth after it is progress again, so cuts on top of it do not exhaust the budget.
    let server2 = self::server("127.0.0.1");
    server2.route(
        "/m",
        Route::new(data.clone())
            .etag("\"m\"")
            .flip_byte(1_500_000, 1)
            .truncate_after(400_000, 8),
    );
    let (_d2, store2) = self::store().await;
    let blob = client()
        .fetch_blob(request(server2.url("/m"), &data), &store2)
        .await
        .unwrap();
    assert_eq!(&blob[..], &data[..]);
    let report = store2.verify(VerifyMode::Warn).await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[tokio::test]
async fn a_server_that_never_progresses_fails_naming_blob_url_and_cause() {
    let data = random_bytes(300_000, 22);
    let server = server("127.0.0.1");
    server.route(
        "/stuck",
        Route::new(data.clone())
            .etag("\"s\"")
            .truncate_after(0, usize::MAX),
    );
    let (_d, store) = store().await;
    let url = format!("{}?X-Amz-Signature=secret", server.url("/stuck"));
    let req = request(url, &data);

    // By the attempt budget: 4 attempts in a row without progress.
    let err = client().fetch_blob(req.clone(), &store).await.unwrap_err();
    let text = err.to_string();
    match &err {
        Error::RetriesExhausted {
            attempts,
            without_progress,
            ..
        } => {
            assert_eq!((*attempts, *without_progress), (4, Some(4)), "{text}");
        }
        other => panic!("{other:?}"),
    }
    assert!(text.contains(&req.digest.to_string()), "{text}");
    assert!(
        text.contains("/stuck") && !text.contains("secret"),
        "{text}"
    );
    assert!(text.contains("without progress"), "{text}");
    assert!(
        text.contains("last error") && text.contains("connection lost after 0 of 300000 bytes"),
        "the last cause is named: {text}"
    );
    assert_eq!(server.hits("/stuck"), 4);

    // By the time limit, with an attempt budget too large to matter.
    let patient = HttpClient::new(
        ClientConfig {
            retry: RetryPolicy {
                max_attempts: 1000,
                max_stalled_attempts: 1000,
                base_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(200),
                max_elapsed: Duration::from_secs(1),
            },
            ..ClientConfig::default()
        },
        Credentials::new(),
    )
    .unwrap();
    let started = Instant::now();
    let err = patient.fetch_blob(req.clone(), &store).await.unwrap_err();
    assert!(
        matches!(err, Error::RetriesExhausted { attempts, .. } if attempts > 4 && attempts < 1000),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the time limit holds: {:?}",
        started.elapsed()
    );
    assert!(!store.contains(&req.digest));
}

#[tokio::test]
async fn content_encodings_are_decoded_as_a_stream() {
    let data = random_bytes(300_000, 8);
    let text = Bytes::from(data.iter().map(|b| b'a' + b % 4).collect::<Vec<u8>>());
    // Sanity: the helpers' encoders agree with the server's.
    assert!(gzip(&text).len() < text.len() && zstd(&text).len() < text.len());
    let server = server("127.0.0.1");
    server.route(
        "/gzip",
        Route::new(text.clone()).encodings([Encoding::Gzip]),
    );
    server.route(
        "/zstd",
        Route::new(text.clone()).encodings([Encoding::Zstd]),
    );
    server.route(
        "/stacked",
        Route::new(text.clone()).encodings([Encoding::Gzip, Encoding::Zstd]),
    );
    server.route(
        "/br",
        Route::new(Bytes::from_static(b"xx"))
            .encodings([Encoding::Other("br".into())])
            .force_encodings(),
    );
    let (_d, store) = store().await;
    let client = client();
    for path in ["/gzip", "/zstd", "/stacked"] {
        store.retain(|_| false).await.unwrap();
        let blob = client
            .fetch_blob(request(server.url(path), &text), &store)
            .await
            .unwrap();
        assert_eq!(&blob[..], &text[..], "{path}");
        let sent = server.requests_to(path);
        assert!(sent[0].header("accept-encoding").is_some());
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
    let server = server("127.0.0.1");
    server.route("/forbidden", Route::new("").status_first(100, 403, None));
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
    assert_eq!(server.requests().len(), 2, "final statuses are not retried");
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
    let blobs: Vec<Bytes> = (0..6).map(|i| random_bytes(200_000, 100 + i)).collect();
    // A second loopback host: the "CDN" the registry redirects blob downloads to.
    let cdn = server("127.0.0.2");
    let registry = server("127.0.0.1");
    registry.token_endpoint(
        "/token",
        TokenEndpoint {
            token: TOKEN.into(),
            expires_in: Some(300),
            require_basic: Some(("alice".into(), "pw".into())),
        },
    );
    for (i, data) in blobs.iter().enumerate() {
        cdn.route(&format!("/storage/{i}"), Route::new(data.clone()));
        registry.route(
            &format!("/v2/acme/app/blobs/{i}"),
            Route::new("")
                .require_bearer(Bearer {
                    token: TOKEN.into(),
                    realm: registry.url("/token"),
                    service: "test-registry".into(),
                    scope: "repository:acme/app:pull".into(),
                })
                .redirect_to(&cdn.url(&format!("/storage/{i}?X-Signature=abc"))),
        );
    }
    let mut creds = Credentials::new();
    creds.insert(&registry.host(), basic("alice", "pw"));
    let client = client_with(creds);
    let (_d, store) = store().await;
    let items = app_blobs(&registry, &blobs);
    fetch_all_in_parallel(&client, &store, items).await;
    assert_eq!(registry.hits("/token"), 1, "six parallel pulls, one token");
    let token_request = &registry.requests_to("/token")[0];
    assert_eq!(
        token_request.query_param("scope").as_deref(),
        Some("repository:acme/app:pull")
    );
    assert_eq!(
        token_request.query_param("service").as_deref(),
        Some("test-registry")
    );
    let cdn_seen = cdn.requests();
    assert_eq!(cdn_seen.len(), 6);
    assert!(
        !cdn.saw_authorization(),
        "the Authorization header leaked to the redirect target"
    );
    assert!(cdn_seen[0].path_and_query.contains("X-Signature=abc"));
    let with_token = registry
        .requests()
        .iter()
        .filter(|r| r.header("authorization") == Some(&format!("Bearer {TOKEN}")))
        .count();
    assert_eq!(with_token, 6);
}

/// A Docker config with `credsStore` whose helper answers the token realm's password: the
/// client asks it once, when its first request to the registry is made.
#[tokio::test]
async fn docker_credential_helper_answers_the_registry() {
    use std::os::unix::fs::PermissionsExt as _;
    const TOKEN: &str = "tok-from-helper-creds";
    let blobs: Vec<Bytes> = (0..4).map(|i| random_bytes(50_000, 300 + i)).collect();
    let registry = server("127.0.0.1");
    registry.token_endpoint(
        "/token",
        TokenEndpoint {
            token: TOKEN.into(),
            expires_in: Some(300),
            require_basic: Some(("helper-user".into(), "helper-pw".into())),
        },
    );
    for (i, data) in blobs.iter().enumerate() {
        registry.route(
            &format!("/v2/acme/app/blobs/{i}"),
            Route::new(data.clone()).require_bearer(Bearer {
                token: TOKEN.into(),
                realm: registry.url("/token"),
                service: "test-registry".into(),
                scope: "repository:acme/app:pull".into(),
            }),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let helper = dir.path().join("docker-credential-testing");
    std::fs::write(
        &helper,
        "#!/bin/sh\nread -r host\necho \"$host\" >> \"$(dirname \"$0\")/asked.log\"\n\
         echo '{\"Username\":\"helper-user\",\"Secret\":\"helper-pw\"}'\n",
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, r#"{"credsStore": "testing"}"#).unwrap();
    let mut creds = Credentials::new();
    creds.set_helper_path(dir.path().as_os_str());
    creds.merge_docker_config(&config).unwrap();

    let (_d, store) = store().await;
    let items = app_blobs(&registry, &blobs);
    fetch_all_in_parallel(&client_with(creds), &store, items).await;
    let asked = std::fs::read_to_string(dir.path().join("asked.log")).unwrap();
    assert_eq!(asked.lines().collect::<Vec<_>>(), [registry.host()]);
    assert_eq!(registry.hits("/token"), 1);
}

#[tokio::test]
async fn secrets_stay_out_of_errors() {
    const TOKEN: &str = "tok-never-print-me";
    let registry = server("127.0.0.1");
    registry.token_endpoint(
        "/token",
        TokenEndpoint {
            token: TOKEN.into(),
            expires_in: None,
            require_basic: None,
        },
    );
    // The route wants a token the endpoint never hands out: every token is rejected.
    registry.route(
        "/v2/a/blobs/x",
        Route::new("").require_bearer(Bearer {
            token: "some-other-token".into(),
            realm: registry.url("/token"),
            service: "s".into(),
            scope: String::new(),
        }),
    );
    let mut creds = Credentials::new();
    creds.insert(&registry.host(), basic("bob", "hunter2-password"));
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
    let digest = Algorithm::Sha256.digest(&data);
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

#[tokio::test]
async fn a_token_rejected_later_is_renewed_once() {
    let registry = server("127.0.0.1");
    let (one, two) = (random_bytes(50_000, 31), random_bytes(50_000, 32));
    let serve = |token: &str| {
        registry.token_endpoint(
            "/token",
            TokenEndpoint {
                token: token.into(),
                expires_in: Some(3600),
                require_basic: None,
            },
        );
        for (path, data) in [("/v2/r/blobs/1", &one), ("/v2/r/blobs/2", &two)] {
            registry.route(
                path,
                Route::new(data.clone()).require_bearer(Bearer {
                    token: token.into(),
                    realm: registry.url("/token"),
                    service: "s".into(),
                    scope: "repository:r:pull".into(),
                }),
            );
        }
    };
    serve("first-token");
    let client = client();
    let (_d, store) = store().await;
    client
        .fetch_blob(request(registry.url("/v2/r/blobs/1"), &one), &store)
        .await
        .unwrap();
    // The registry revokes the token (its lifetime said an hour).
    serve("second-token");
    let blob = client
        .fetch_blob(request(registry.url("/v2/r/blobs/2"), &two), &store)
        .await
        .unwrap();
    assert_eq!(&blob[..], &two[..]);
    // One token before the revocation, one after.
    assert_eq!(registry.requests_to("/token").len(), 2);
    let auth: Vec<Option<String>> = registry
        .requests_to("/v2/r/blobs/2")
        .iter()
        .map(|r| r.header("authorization").map(str::to_owned))
        .collect();
    // Challenged, answered with the cached (revoked) token, renewed once, succeeded.
    assert_eq!(
        auth,
        vec![
            None,
            Some("Bearer first-token".to_owned()),
            Some("Bearer second-token".to_owned())
        ]
    );
}

#[tokio::test]
async fn the_per_host_limit_holds_under_parallel_pulls() {
    let server = server("127.0.0.1");
    let blobs: Vec<Bytes> = (0..6).map(|i| random_bytes(64_000, 40 + i)).collect();
    for (i, data) in blobs.iter().enumerate() {
        server.route(
            &format!("/b{i}"),
            Route::new(data.clone()).throttle(16_000, Duration::from_millis(20)),
        );
    }
    let client = HttpClient::new(
        ClientConfig {
            max_per_host: 2,
            ..ClientConfig::default()
        },
        Credentials::new(),
    )
    .unwrap();
    let (_d, store) = store().await;
    let items = (0..blobs.len())
        .map(|i| (server.url(&format!("/b{i}")), blobs[i].clone()))
        .collect();
    fetch_all_in_parallel(&client, &store, items).await;
    assert_eq!(server.requests().len(), 6);
    assert!(
        server.peak_in_flight() <= 2,
        "{} in flight",
        server.peak_in_flight()
    );
    assert_eq!(
        server.peak_in_flight(),
        2,
        "the limit should still allow parallelism"
    );
}

//! The fault server's behaviours, observed with a raw client on a real socket.

mod common;

use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::{Conn, End, get, head, pattern};
use test_servers::fault::{Bearer, Encoding, FaultServer, Method, RangeMode, Route, TokenEndpoint};

#[allow(clippy::unwrap_used)] // test helper: a failure is the test failing
fn local() -> FaultServer {
    FaultServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap()
}

#[allow(clippy::unwrap_used)]
fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn serves_body_with_validators_and_head_without_body() {
    let server = local();
    let body = pattern(1000);
    server.route("/blob", Route::new(body.clone()));

    let reply = get(server.addr(), "/blob", &[]);
    assert_eq!((reply.status, reply.end), (200, End::Complete));
    assert_eq!(reply.body, body);
    assert_eq!(reply.content_length(), 1000);
    assert_eq!(reply.header("accept-ranges"), Some("bytes"));
    let etag = reply.header("etag").unwrap();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() == 66,
        "{etag}"
    );

    // HEAD: the same headers, no body; the connection stays usable, which proves no body
    // bytes were sent after the head.
    let mut conn = Conn::open(server.addr());
    let headed = conn.request("HEAD", "/blob", &[]);
    assert_eq!(headed.status, 200);
    assert_eq!(headed.content_length(), 1000);
    assert_eq!(headed.header("etag"), Some(etag));
    let again = conn.request("GET", "/blob", &[]);
    assert_eq!(again.body, body);

    assert_eq!(get(server.addr(), "/nothing", &[]).status, 404);
    assert_eq!(server.hits("/blob"), 3);
    assert_eq!(server.hits("/nothing"), 1);
}

#[test]
fn records_requests_with_query_headers_and_connection() {
    let server = local();
    server.route("/a", Route::new("x"));
    let mut conn = Conn::open(server.addr());
    conn.request(
        "GET",
        "/a?scope=repository%3Afoo%3Apull&n=1",
        &[("X-Test", "one")],
    );
    conn.request("GET", "/a", &[("Authorization", "Bearer abc")]);
    get(server.addr(), "/a", &[]);

    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    let first = &requests[0];
    assert_eq!(first.method, Method::GET);
    assert_eq!(first.path(), "/a");
    assert_eq!(first.path_and_query, "/a?scope=repository%3Afoo%3Apull&n=1");
    assert_eq!(
        first.query_param("scope").as_deref(),
        Some("repository:foo:pull")
    );
    assert_eq!(first.query_param("missing"), None);
    assert_eq!(first.header("x-test"), Some("one"));
    assert!(!first.has_authorization());
    assert!(requests[1].has_authorization());
    // Keep-alive reused the first connection; the third request opened a new one.
    assert_eq!(requests[0].connection, requests[1].connection);
    assert_ne!(requests[1].connection, requests[2].connection);
    assert_eq!(server.connections(), 2);
    assert!(server.saw_authorization());

    server.clear_requests();
    assert!(server.requests().is_empty() && !server.saw_authorization());
}

#[test]
fn injected_statuses_with_retry_after_then_success() {
    let server = local();
    server.route(
        "/flaky",
        Route::new("payload")
            .status_first(2, 503, Some("1"))
            .status_first(1, 429, None),
    );
    let first = get(server.addr(), "/flaky", &[]);
    assert_eq!(
        (first.status, first.header("retry-after")),
        (503, Some("1"))
    );
    let second = get(server.addr(), "/flaky", &[]);
    assert_eq!(
        (second.status, second.header("retry-after")),
        (503, Some("1"))
    );
    let third = get(server.addr(), "/flaky", &[]);
    assert_eq!((third.status, third.header("retry-after")), (429, None));
    let fourth = get(server.addr(), "/flaky", &[]);
    assert_eq!(
        (fourth.status, fourth.body.as_slice()),
        (200, &b"payload"[..])
    );
}

#[test]
fn reset_cuts_the_body_with_a_tcp_reset() {
    let server = local();
    let body = pattern(200_000);
    server.route("/blob", Route::new(body.clone()).reset_after(70_000, 1));

    let cut = get(server.addr(), "/blob", &[]);
    assert_eq!(cut.status, 200);
    assert_eq!(
        cut.content_length(),
        200_000,
        "the full length is announced"
    );
    assert_eq!(cut.end, End::Reset);
    assert_eq!(cut.body, &body[..70_000]);

    let whole = get(server.addr(), "/blob", &[]);
    assert_eq!((whole.end, whole.body == body), (End::Complete, true));
    // HEAD consumed nothing and is unaffected.
    assert_eq!(head(server.addr(), "/blob", &[]).content_length(), 200_000);
}

#[test]
fn truncation_closes_cleanly_short_of_content_length() {
    let server = local();
    let body = pattern(5000);
    server.route(
        "/blob",
        Route::new(body.clone())
            .truncate_after(1234, 1)
            .reset_after(10, 1),
    );
    let short = get(server.addr(), "/blob", &[]);
    assert_eq!((short.content_length(), short.end), (5000, End::Eof));
    assert_eq!(short.body, &body[..1234]);
    // Cuts queue up: the reset comes second.
    let reset = get(server.addr(), "/blob", &[]);
    assert_eq!((reset.end, reset.body.len()), (End::Reset, 10));
    assert_eq!(get(server.addr(), "/blob", &[]).body, body);
}

#[test]
fn flipped_byte_corrupts_only_that_byte_only_that_often() {
    let server = local();
    let body = pattern(100);
    server.route(
        "/blob",
        Route::new(body.clone()).flip_byte(42, 1).flip_byte(42, 1),
    );
    let etag = head(server.addr(), "/blob", &[])
        .header("etag")
        .unwrap()
        .to_owned();
    for _ in 0..2 {
        let reply = get(server.addr(), "/blob", &[]);
        assert_eq!(
            reply.header("etag"),
            Some(etag.as_str()),
            "headers stay truthful"
        );
        let differing: Vec<usize> = (0..100).filter(|&i| reply.body[i] != body[i]).collect();
        assert_eq!(differing, [42]);
    }
    assert_eq!(get(server.addr(), "/blob", &[]).body, body);

    // A range that excludes the offset does not use up the flip.
    server.route("/blob", Route::new(body.clone()).flip_byte(42, 1));
    let early = get(server.addr(), "/blob", &[("Range", "bytes=0-9")]);
    assert_eq!(early.body, &body[..10]);
    let late = get(server.addr(), "/blob", &[("Range", "bytes=40-")]);
    assert_eq!(late.body[2], !body[42]);
}

#[test]
fn honoured_ranges() {
    let server = local();
    let body = pattern(1000);
    server.route("/blob", Route::new(body.clone()));

    let tail = get(server.addr(), "/blob", &[("Range", "bytes=600-")]);
    assert_eq!(tail.status, 206);
    assert_eq!(tail.header("content-range"), Some("bytes 600-999/1000"));
    assert_eq!(tail.body, &body[600..]);

    let middle = get(server.addr(), "/blob", &[("Range", "bytes=10-19")]);
    assert_eq!(
        (middle.status, middle.body.as_slice()),
        (206, &body[10..20])
    );

    let suffix = get(server.addr(), "/blob", &[("Range", "bytes=-5")]);
    assert_eq!(suffix.header("content-range"), Some("bytes 995-999/1000"));

    for bad in ["bytes=1000-", "bytes=9-3", "bytes=x-", "lines=1-2"] {
        let refused = get(server.addr(), "/blob", &[("Range", bad)]);
        assert_eq!(refused.status, 416, "{bad}");
        assert_eq!(refused.header("content-range"), Some("bytes */1000"));
    }
    // Several ranges: the whole body, as HTTP allows.
    let multi = get(server.addr(), "/blob", &[("Range", "bytes=0-1,5-6")]);
    assert_eq!((multi.status, multi.body.len()), (200, 1000));
}

#[test]
fn ignored_ranges_get_the_full_body() {
    let server = local();
    let body = pattern(1000);
    server.route("/blob", Route::new(body.clone()).ranges(RangeMode::Ignore));
    let reply = get(server.addr(), "/blob", &[("Range", "bytes=600-")]);
    assert_eq!((reply.status, reply.body == body), (200, true));
    assert_eq!(reply.header("accept-ranges"), None);
    assert_eq!(reply.header("content-range"), None);
}

#[test]
fn if_range_needs_the_current_strong_etag() {
    let server = local();
    let old = pattern(1000);
    server.route("/blob", Route::new(old.clone()));
    let etag = head(server.addr(), "/blob", &[])
        .header("etag")
        .unwrap()
        .to_owned();

    let resumed = get(
        server.addr(),
        "/blob",
        &[("Range", "bytes=500-"), ("If-Range", &etag)],
    );
    assert_eq!(
        (resumed.status, resumed.body.as_slice()),
        (206, &old[500..])
    );

    // The content changed behind the client's back: its If-Range no longer matches, so it
    // gets the whole new body instead of a spliced one.
    let new = pattern(1200).into_iter().rev().collect::<Vec<u8>>();
    server.route("/blob", Route::new(new.clone()));
    let restarted = get(
        server.addr(),
        "/blob",
        &[("Range", "bytes=500-"), ("If-Range", &etag)],
    );
    assert_eq!((restarted.status, restarted.body == new), (200, true));
    assert_ne!(restarted.header("etag"), Some(etag.as_str()));

    // Weak validators never match; without an ETag nothing does.
    server.route("/weak", Route::new(old.clone()).etag("W/\"v1\""));
    let weak = get(
        server.addr(),
        "/weak",
        &[("Range", "bytes=1-"), ("If-Range", "W/\"v1\"")],
    );
    assert_eq!(weak.status, 200);
    server.route("/fixed", Route::new(old.clone()).etag("\"v1\""));
    let fixed = get(
        server.addr(),
        "/fixed",
        &[("Range", "bytes=1-"), ("If-Range", "\"v1\"")],
    );
    assert_eq!((fixed.status, fixed.header("etag")), (206, Some("\"v1\"")));
    server.route("/none", Route::new(old).without_etag());
    let none = get(
        server.addr(),
        "/none",
        &[("Range", "bytes=1-"), ("If-Range", "\"v1\"")],
    );
    assert_eq!((none.status, none.header("etag")), (200, None));
}

#[test]
fn encodings_follow_accept_encoding_and_decode_to_the_original() {
    let server = local();
    let body = b"compressible text, compressible text, compressible text".repeat(100);
    server.route("/gz", Route::new(body.clone()).encodings([Encoding::Gzip]));
    server.route("/zst", Route::new(body.clone()).encodings([Encoding::Zstd]));
    server.route(
        "/both",
        Route::new(body.clone()).encodings([Encoding::Gzip, Encoding::Zstd]),
    );

    let gz = get(server.addr(), "/gz", &[("Accept-Encoding", "gzip")]);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("vary"), Some("accept-encoding"));
    assert!(gz.body.len() < body.len());
    assert_eq!(gunzip(&gz.body), body);

    let zst = get(server.addr(), "/zst", &[("Accept-Encoding", "zstd")]);
    assert_eq!(zst.header("content-encoding"), Some("zstd"));
    assert_eq!(zstd::decode_all(zst.body.as_slice()).unwrap(), body);

    let both = get(server.addr(), "/both", &[("Accept-Encoding", "gzip, zstd")]);
    assert_eq!(both.header("content-encoding"), Some("gzip, zstd"));
    // Applied in order, so undone in reverse.
    assert_eq!(
        gunzip(&zstd::decode_all(both.body.as_slice()).unwrap()),
        body
    );

    // Not asked for, not sent; only what is allowed is applied.
    let plain = get(server.addr(), "/both", &[]);
    assert_eq!(
        (plain.header("content-encoding"), plain.body == body),
        (None, true)
    );
    let gz_only = get(
        server.addr(),
        "/both",
        &[("Accept-Encoding", "gzip, zstd;q=0")],
    );
    assert_eq!(gz_only.header("content-encoding"), Some("gzip"));

    // The ETag names the representation, so it differs per coding.
    assert_ne!(gz.header("etag"), plain.header("etag"));

    // Ranges apply to the encoded bytes.
    let part = get(
        server.addr(),
        "/gz",
        &[("Accept-Encoding", "gzip"), ("Range", "bytes=0-9")],
    );
    assert_eq!(part.body, &gz.body[..10]);
}

#[test]
fn forced_and_unknown_encodings_are_sent_regardless() {
    let server = local();
    server.route(
        "/odd",
        Route::new("raw bytes")
            .encodings([Encoding::Other("br2".into())])
            .force_encodings(),
    );
    let reply = get(server.addr(), "/odd", &[("Accept-Encoding", "identity")]);
    assert_eq!(reply.header("content-encoding"), Some("br2"));
    assert_eq!(reply.body, b"raw bytes");

    server.route(
        "/gz",
        Route::new("hello")
            .encodings([Encoding::Gzip])
            .force_encodings(),
    );
    let forced = get(server.addr(), "/gz", &[]);
    assert_eq!(forced.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&forced.body), b"hello");
}

#[test]
fn two_hosts_and_a_redirect_between_them() {
    let origin = local();
    let cdn = FaultServer::start(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))).unwrap();
    assert_eq!(cdn.addr().ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    assert_ne!(origin.host(), cdn.host());
    assert!(cdn.base_url().starts_with("http://127.0.0.2:"));

    cdn.route("/blob", Route::new("from the cdn"));
    origin.route("/blob", Route::new("unused").redirect_to(&cdn.url("/blob")));

    let redirect = get(
        origin.addr(),
        "/blob",
        &[("Authorization", "Bearer secret")],
    );
    assert_eq!(redirect.status, 307);
    let location = redirect.header("location").unwrap().to_owned();
    assert_eq!(location, cdn.url("/blob"));

    // Follow it the way a careful client does: no credentials to another host.
    let target = location.strip_prefix(&cdn.base_url()).unwrap();
    let followed = get(cdn.addr(), target, &[]);
    assert_eq!(followed.body, b"from the cdn");
    assert!(origin.saw_authorization());
    assert!(!cdn.saw_authorization());
    assert_eq!(origin.hits("/blob"), 1);
    assert_eq!(cdn.hits("/blob"), 1);
}

#[test]
fn bearer_challenge_token_then_success() {
    let server = local();
    server.token_endpoint(
        "/token",
        TokenEndpoint {
            token: "t0ken".into(),
            expires_in: Some(300),
            require_basic: Some(("alice".into(), "s3cret".into())),
        },
    );
    server.route(
        "/v2/demo/blobs/x",
        Route::new("layer").require_bearer(Bearer {
            token: "t0ken".into(),
            realm: server.url("/token"),
            service: "test-registry".into(),
            scope: "repository:demo:pull".into(),
        }),
    );

    let challenged = get(server.addr(), "/v2/demo/blobs/x", &[]);
    assert_eq!(challenged.status, 401);
    assert_eq!(
        challenged.header("www-authenticate").unwrap(),
        format!(
            r#"Bearer realm="{}",service="test-registry",scope="repository:demo:pull""#,
            server.url("/token")
        )
    );
    let wrong = get(
        server.addr(),
        "/v2/demo/blobs/x",
        &[("Authorization", "Bearer nope")],
    );
    assert_eq!(wrong.status, 401);

    let token_path = "/token?service=test-registry&scope=repository%3Ademo%3Apull";
    let anonymous = get(server.addr(), token_path, &[]);
    assert_eq!(anonymous.status, 401);
    assert_eq!(
        anonymous.header("www-authenticate"),
        Some(r#"Basic realm="token""#)
    );
    // "alice:s3cret" in base64.
    let token = get(
        server.addr(),
        token_path,
        &[("Authorization", "Basic YWxpY2U6czNjcmV0")],
    );
    assert_eq!(token.status, 200);
    assert_eq!(token.header("content-type"), Some("application/json"));
    assert_eq!(token.body, br#"{"token":"t0ken","expires_in":300}"#);
    assert_eq!(server.hits("/token"), 2);
    let asked = &server.requests_to("/token")[1];
    assert_eq!(
        asked.query_param("scope").as_deref(),
        Some("repository:demo:pull")
    );
    assert_eq!(
        asked.query_param("service").as_deref(),
        Some("test-registry")
    );

    let granted = get(
        server.addr(),
        "/v2/demo/blobs/x",
        &[("Authorization", "Bearer t0ken")],
    );
    assert_eq!(
        (granted.status, granted.body.as_slice()),
        (200, &b"layer"[..])
    );
}

#[test]
fn basic_auth_and_extra_headers() {
    let server = local();
    server.route(
        "/private",
        Route::new("{}")
            .require_basic("bob", "pw")
            .header("Content-Type", "application/json")
            .header("Docker-Distribution-Api-Version", "registry/2.0")
            .header("X-Twice", "a")
            .header("X-Twice", "b"),
    );
    let challenged = get(server.addr(), "/private", &[]);
    assert_eq!(challenged.status, 401);
    assert_eq!(
        challenged.header("www-authenticate"),
        Some(r#"Basic realm="test""#)
    );
    assert_eq!(
        challenged.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );

    // "bob:pw" in base64.
    let granted = get(
        server.addr(),
        "/private",
        &[("Authorization", "Basic Ym9iOnB3")],
    );
    assert_eq!(granted.status, 200);
    assert_eq!(granted.header_all("content-type"), ["application/json"]);
    assert_eq!(granted.header_all("x-twice"), ["a", "b"]);

    server.route("/broken", Route::new("x").header("Bad Name", "v"));
    assert_eq!(get(server.addr(), "/broken", &[]).status, 500);
}

#[test]
fn throttled_bodies_overlap_and_are_counted_in_flight() {
    let server = local();
    let body = pattern(4000);
    // 4 chunks, 3 pauses of 60 ms: about 180 ms per response.
    server.route(
        "/slow",
        Route::new(body.clone()).throttle(1000, Duration::from_millis(60)),
    );
    let addr = server.addr();
    let started = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || get(addr, "/slow", &[])))
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap().body, body);
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(180), "{elapsed:?}");
    // All four were in progress at once: served concurrently, not one after another.
    assert_eq!(server.peak_in_flight(), 4);
}

#[test]
fn delayed_headers() {
    let server = local();
    server.route(
        "/late",
        Route::new("x").delay_headers(Duration::from_millis(150)),
    );
    let started = Instant::now();
    assert_eq!(get(server.addr(), "/late", &[]).status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[test]
fn writes_are_recorded_and_refused_unless_accepted() {
    let server = local();
    server.route("/ro", Route::new("x"));
    server.route("/upload", Route::new("").accept_writes(201));

    let mut conn = Conn::open(server.addr());
    let refused = conn.request_with_body("PUT", "/ro", &[], b"data");
    assert_eq!(
        (refused.status, refused.header("allow")),
        (405, Some("GET, HEAD"))
    );
    let created = conn.request_with_body("PUT", "/upload?digest=sha256:00", &[], b"layer data");
    assert_eq!(created.status, 201);
    let patched = conn.request_with_body("PATCH", "/upload", &[], b"more");
    assert_eq!(patched.status, 201);

    let uploads = server.requests_to("/upload");
    assert_eq!(uploads[0].method, Method::PUT);
    assert_eq!(uploads[0].body.as_ref(), b"layer data");
    assert_eq!(uploads[1].method, Method::PATCH);
    assert_eq!(uploads[1].body.as_ref(), b"more");
}

#[test]
fn odd_requests_do_not_break_the_server() {
    let server = local();
    server.route("/blob", Route::new("fine"));

    let mut garbage = Conn::open(server.addr());
    garbage.send_raw(b"\x00\xff NOT HTTP\r\n\r\n");
    assert_eq!(garbage.read_reply(false).status, 400);

    let mut binary_range = Conn::open(server.addr());
    binary_range.send_raw(b"GET /blob HTTP/1.1\r\nHost: x\r\nRange: bytes=\xff-\r\n\r\n");
    assert_eq!(binary_range.read_reply(false).status, 416);

    let weird = get(
        server.addr(),
        "/blob?%zz=%&&=",
        &[("Accept-Encoding", ";;q=,*;q=x")],
    );
    assert_eq!(weird.body, b"fine");
    assert_eq!(
        server
            .requests()
            .last()
            .unwrap()
            .query_param("%zz")
            .as_deref(),
        Some("%")
    );

    // A client that vanishes mid-request leaves the server serving.
    let mut quitter = Conn::open(server.addr());
    quitter.send_raw(b"GET /blob HTTP/1.1\r\nHost:");
    drop(quitter);
    assert_eq!(get(server.addr(), "/blob", &[]).body, b"fine");
}

#[test]
fn dropping_the_server_stops_it() {
    let server = local();
    let addr = server.addr();
    server.route("/x", Route::new("x"));
    let mut idle = Conn::open(addr);
    assert_eq!(idle.request("GET", "/x", &[]).status, 200);
    drop(server);
    assert!(idle.closed_by_server(), "open connections are closed");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the port no longer accepts"
    );
}

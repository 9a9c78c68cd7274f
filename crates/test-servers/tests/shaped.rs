//! The shaped proxy's latency, shared bandwidth cap and counters, measured through real
//! sockets in front of a fault server.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{Conn, pattern};
use test_servers::fault::{FaultServer, Route};
use test_servers::shaped::{Shape, ShapedProxy};

/// A server with `body` at `/blob`.
#[allow(clippy::unwrap_used)] // test helper: a failure is the test failing
fn upstream(body: Vec<u8>) -> FaultServer {
    let server = FaultServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
    server.route("/blob", Route::new(body));
    server
}

/// `GET /blob` on a fresh connection closed after it: every byte that came back, head
/// and body, to compare with what the proxy counted.
#[allow(clippy::unwrap_used)]
fn fetch_raw(addr: SocketAddr) -> Vec<u8> {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(b"GET /blob HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).unwrap();
    reply
}

#[allow(clippy::unwrap_used)]
fn body_of(reply: &[u8]) -> &[u8] {
    let head_end = reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    reply.get(head_end + 4..).unwrap()
}

#[test]
fn bandwidth_cap_is_shared_by_all_connections() {
    const PER_CONNECTION: usize = 250_000;
    let server = upstream(pattern(PER_CONNECTION));
    let shape = Shape {
        latency: Duration::ZERO,
        bytes_per_sec: Some(2_000_000),
    };
    let proxy = ShapedProxy::start(server.addr(), shape).unwrap();
    let addr = proxy.addr();

    let started = Instant::now();
    let replies: Vec<Vec<u8>> = thread::scope(|scope| {
        let fetches: Vec<_> = (0..4).map(|_| scope.spawn(|| fetch_raw(addr))).collect();
        fetches.into_iter().map(|f| f.join().unwrap()).collect()
    });
    let elapsed = started.elapsed();

    for reply in &replies {
        assert!(reply.starts_with(b"HTTP/1.1 200"));
        assert_eq!(body_of(reply), pattern(PER_CONNECTION));
    }
    // 1 MB at 2 MB/s is 0.5 s, less the 50 ms burst. A cap per connection would have let
    // the four through in about 0.125 s.
    assert!(
        elapsed >= Duration::from_millis(400),
        "1 MB over 4 connections took only {elapsed:?}"
    );
    let total: usize = replies.iter().map(Vec::len).sum();
    assert_eq!(proxy.bytes_served(), total as u64, "headers included");
    assert_eq!(proxy.connections(), 4);

    proxy.clear();
    assert_eq!(proxy.bytes_served(), 0);
    assert_eq!(proxy.connections(), 0);
}

#[test]
fn every_request_on_a_kept_alive_connection_pays_the_latency() {
    let server = upstream(pattern(1000));
    let shape = Shape {
        latency: Duration::from_millis(100),
        bytes_per_sec: None,
    };
    let proxy = ShapedProxy::start(server.addr(), shape).unwrap();

    let mut conn = Conn::open(proxy.addr());
    let started = Instant::now();
    for _ in 0..2 {
        let reply = conn.request("GET", "/blob", &[]);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, pattern(1000));
    }
    let elapsed = started.elapsed();

    assert!(
        elapsed >= Duration::from_millis(200),
        "two requests took only {elapsed:?}"
    );
    // One connection each side: the second request paid again although nothing reconnected.
    assert_eq!(proxy.connections(), 1);
    assert_eq!(server.connections(), 1);
    assert!(proxy.bytes_served() > 2000);
}

#[test]
fn unshaped_relays_bytes_unchanged_and_counts_them() {
    let server = upstream(pattern(300_000));
    let proxy = ShapedProxy::start(server.addr(), Shape::none()).unwrap();
    assert_eq!(proxy.host(), format!("127.0.0.1:{}", proxy.addr().port()));

    let reply = fetch_raw(proxy.addr());
    assert!(reply.starts_with(b"HTTP/1.1 200"));
    assert_eq!(body_of(&reply), pattern(300_000));
    assert_eq!(proxy.bytes_served(), reply.len() as u64);

    // Kept alive, too.
    let mut conn = Conn::open(proxy.addr());
    for _ in 0..3 {
        assert_eq!(conn.request("GET", "/blob", &[]).body, pattern(300_000));
    }
    assert_eq!(proxy.connections(), 2);
    assert_eq!(server.connections(), 2);
}

#[test]
fn dropping_stops_accepting() {
    let server = upstream(pattern(10));
    let proxy = ShapedProxy::start(server.addr(), Shape::none()).unwrap();
    let addr = proxy.addr();
    drop(proxy);
    // The listener closes once the accept thread has woken up to the drop.
    let deadline = Instant::now() + Duration::from_secs(2);
    while TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after drop");
        thread::sleep(Duration::from_millis(10));
    }
}

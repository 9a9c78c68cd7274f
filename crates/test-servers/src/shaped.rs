//! [`ShapedProxy`]: a loopback TCP relay that makes a server on loopback behave like a
//! distant registry, for benchmarks of lazy (range-request) reads.
//!
//! Lazy reads trade fewer bytes for more round trips. On loopback both are free, so a
//! benchmark there cannot tell a good trade from a bad one. Behind this proxy a request costs
//! a round trip and a byte costs its share of a narrow pipe, as they do from a registry
//! across the internet. It relays plain TCP without parsing HTTP, so every connection a
//! client opens (and every request on a kept-alive one) is shaped the same way. It also
//! counts what the server sent back, so a benchmark can report how many bytes each strategy
//! fetched.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The largest piece of a response relayed at once. The bandwidth is shared: a connection
/// holding a large reservation would make all the others wait behind it.
const MAX_CHUNK: usize = 16 * 1024;

/// How much unused bandwidth an idle pipe saves up. Enough that a short response is not
/// paced to the byte, too little to hide the cap from a transfer of any length.
const BURST: Duration = Duration::from_millis(50);

/// Client bytes are read in pieces this large. Requests are small, and the latency is paid
/// per piece read, so there is no reason to cut them finer.
const REQUEST_CHUNK: usize = 64 * 1024;

/// The network between the clients and the server.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// How long everything the client sends is held before it is passed on. Only that
    /// direction is delayed, so this is the whole round trip each request adds, including a
    /// request on a kept-alive connection. Zero adds nothing.
    pub latency: Duration,
    /// The capacity of the server-to-client direction in bytes per second, shared by all
    /// connections, as they would share one link to a distant registry: opening more
    /// connections does not buy more bandwidth. `None` for no cap; `Some(0)` is taken as
    /// 1 byte per second rather than a pipe that never delivers.
    pub bytes_per_sec: Option<u64>,
}

impl Shape {
    /// No latency and no cap: the same relay and counters without the distance, as the
    /// baseline of a benchmark.
    pub fn none() -> Self {
        Shape {
            latency: Duration::ZERO,
            bytes_per_sec: None,
        }
    }
}

/// A running proxy on `127.0.0.1:<free port>` in front of one upstream address.
///
/// Dropping it stops accepting connections; those already open run to their end, so a
/// benchmark that drops the proxy early does not cut its own transfers.
#[derive(Debug)]
pub struct ShapedProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

/// Shared by the handle and the relay threads.
#[derive(Debug, Default)]
struct Counters {
    served: AtomicU64,
    connections: AtomicU64,
}

impl ShapedProxy {
    /// Relays `127.0.0.1:<free port>` to `upstream` through `shape`.
    ///
    /// Connections to `upstream` are opened per client connection, when it arrives: a
    /// server that is down shows as a client connection closed at once, as it would
    /// through a real proxy.
    pub fn start(upstream: SocketAddr, shape: Shape) -> io::Result<ShapedProxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let bucket = shape.bytes_per_sec.map(|rate| Arc::new(Bucket::new(rate)));
        let (stopping, counting) = (Arc::clone(&stop), Arc::clone(&counters));
        thread::Builder::new()
            .name("shaped-proxy".into())
            .spawn(move || {
                accept(
                    &listener,
                    upstream,
                    shape.latency,
                    bucket.as_ref(),
                    &stopping,
                    &counting,
                );
            })?;
        Ok(ShapedProxy {
            addr,
            stop,
            counters,
        })
    }

    /// `127.0.0.1:PORT`, to use as the registry host of references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The address the proxy listens on, for clients that take a [`SocketAddr`].
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Bytes passed from the server to clients since the start or the last
    /// [`clear`](Self::clear), headers included: what the transfer cost on the wire, not
    /// just the bodies a client asked for.
    pub fn bytes_served(&self) -> u64 {
        self.counters.served.load(Ordering::SeqCst)
    }

    /// Client connections accepted since the start or the last [`clear`](Self::clear).
    pub fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::SeqCst)
    }

    /// Resets both counters, so that one proxy can measure several runs in turn. Bytes of
    /// transfers still under way are counted afresh from here.
    pub fn clear(&self) {
        self.counters.served.store(0, Ordering::SeqCst);
        self.counters.connections.store(0, Ordering::SeqCst);
    }
}

impl Drop for ShapedProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // The accept loop is blocked in `accept`: a connection wakes it to see the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// The shared bandwidth cap: a token bucket, refilled continuously, in its virtual-time
/// form. Rather than a token count topped up by a timer, it keeps the moment the pipe will
/// have carried everything reserved so far. Each chunk reserves the next span of pipe time,
/// so connections are served in the order they asked, and no thread holds the lock while
/// it waits for its turn.
#[derive(Debug)]
struct Bucket {
    bytes_per_sec: u64,
    /// When the bytes reserved so far will have gone through.
    drained_at: Mutex<Instant>,
}

impl Bucket {
    fn new(bytes_per_sec: u64) -> Self {
        Bucket {
            bytes_per_sec: bytes_per_sec.max(1),
            drained_at: Mutex::new(Instant::now()),
        }
    }

    /// The chunk size to relay in: never more than a burst's worth, so that a single chunk
    /// cannot exceed the burst on a slow pipe.
    fn chunk(&self) -> usize {
        let burst = u128::from(self.bytes_per_sec) * BURST.as_millis() / 1000;
        usize::try_from(burst).map_or(MAX_CHUNK, |burst| burst.clamp(1, MAX_CHUNK))
    }

    /// Waits until `bytes` more may go through the pipe.
    fn take(&self, bytes: usize) {
        let nanos = (bytes as u128).saturating_mul(1_000_000_000) / u128::from(self.bytes_per_sec);
        let cost = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        let now = Instant::now();
        let wait = {
            let mut drained_at = self
                .drained_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Time the pipe stood idle is not owed to anyone: the reservation starts now at
            // the earliest, and only the burst allowance lets it go out ahead of its span.
            let start = (*drained_at).max(now);
            let end = start.checked_add(cost).unwrap_or(start);
            *drained_at = end;
            end.saturating_duration_since(now).saturating_sub(BURST)
        };
        if !wait.is_zero() {
            thread::sleep(wait);
        }
    }
}

fn accept(
    listener: &TcpListener,
    upstream: SocketAddr,
    latency: Duration,
    bucket: Option<&Arc<Bucket>>,
    stop: &AtomicBool,
    counters: &Arc<Counters>,
) {
    for client in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(client) = client else {
            // Out of descriptors, say: give the open connections time to end, not a spin.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        counters.connections.fetch_add(1, Ordering::SeqCst);
        let (bucket, counters) = (bucket.cloned(), Arc::clone(counters));
        // A thread that cannot start drops the client: it sees a closed connection.
        let _ = thread::Builder::new()
            .name("shaped-proxy-conn".into())
            .spawn(move || {
                let _ = relay(
                    client,
                    upstream,
                    latency,
                    bucket.as_deref(),
                    &counters.served,
                );
            });
    }
}

/// Relays one client connection until the server closes its side (or the client goes away).
fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    latency: Duration,
    bucket: Option<&Bucket>,
    served: &AtomicU64,
) -> io::Result<()> {
    let server = TcpStream::connect(upstream)?;
    // Chunks are timed one by one: Nagle's algorithm would add delays of its own.
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let requests = forward_requests(client.try_clone()?, server.try_clone()?, latency)?;
    forward_responses(server, &client, bucket, served);
    // Also ends the request direction, blocked reading from the client.
    let _ = client.shutdown(Shutdown::Both);
    for thread in requests {
        let _ = thread.join();
    }
    Ok(())
}

/// Starts passing the client's bytes to the server, each chunk `latency` after it arrived.
///
/// With a latency, reading and writing run on separate threads: chunks are stamped when
/// they arrive rather than when the previous one went out, so a request written in several
/// pieces pays the latency once, not once per piece.
fn forward_requests(
    mut client: TcpStream,
    mut server: TcpStream,
    latency: Duration,
) -> io::Result<Vec<JoinHandle<()>>> {
    if latency.is_zero() {
        let direct = thread::Builder::new()
            .name("shaped-proxy-up".into())
            .spawn(move || {
                for_each_chunk(&mut client, REQUEST_CHUNK, |chunk| {
                    server.write_all(chunk).is_ok()
                });
                // Pass the client's half-close on: the server may still be answering.
                let _ = server.shutdown(Shutdown::Write);
            })?;
        return Ok(vec![direct]);
    }
    let (queue, delayed) = mpsc::channel::<(Instant, Vec<u8>)>();
    // The writer first: if the reader cannot start, its queue end is dropped and the writer
    // finishes at once.
    let writer = thread::Builder::new()
        .name("shaped-proxy-delay".into())
        .spawn(move || {
            for (due, chunk) in delayed {
                thread::sleep(due.saturating_duration_since(Instant::now()));
                if server.write_all(&chunk).is_err() {
                    break;
                }
            }
            let _ = server.shutdown(Shutdown::Write);
        })?;
    let reader = thread::Builder::new()
        .name("shaped-proxy-up".into())
        .spawn(move || {
            for_each_chunk(&mut client, REQUEST_CHUNK, |chunk| {
                let now = Instant::now();
                let due = now.checked_add(latency).unwrap_or(now);
                queue.send((due, chunk.to_vec())).is_ok()
            });
        })?;
    Ok(vec![writer, reader])
}

/// Passes the server's bytes to the client through the bucket, counting them.
fn forward_responses(
    mut server: TcpStream,
    mut client: &TcpStream,
    bucket: Option<&Bucket>,
    served: &AtomicU64,
) {
    let chunk = bucket.map_or(MAX_CHUNK, Bucket::chunk);
    for_each_chunk(&mut server, chunk, |bytes| {
        if let Some(bucket) = bucket {
            bucket.take(bytes.len());
        }
        // Counted before the write, so a client that has the bytes never reads a count
        // without them; taken back if they were not sent.
        served.fetch_add(bytes.len() as u64, Ordering::SeqCst);
        let sent = client.write_all(bytes).is_ok();
        if !sent {
            served.fetch_sub(bytes.len() as u64, Ordering::SeqCst);
        }
        sent
    });
}

/// Reads `from` in chunks of at most `size` bytes until it ends or fails, handing each
/// chunk to `each` for as long as that returns `true`.
fn for_each_chunk(from: &mut impl Read, size: usize, mut each: impl FnMut(&[u8]) -> bool) {
    let mut buf = vec![0u8; size];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if !each(buf.get(..n).unwrap_or_default()) {
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

//! [`CountingProxy`]: an HTTP/1.1 forwarder on loopback that records every request line
//! passing through it, so a test can count what a client really asked a real server for.
//!
//! It understands just enough HTTP to find request boundaries on kept-alive connections:
//! the header block, then `Content-Length` bytes of body (chunked request bodies are not
//! supported: no client in this workspace sends one). Responses are copied back untouched.
//! Dropping the proxy stops it: later connections are refused, as from a server that is down.
//!
//! Started with [`CountingProxy::with_faults`], it also damages the first responses to each
//! blob `GET` (`/v2/…/blobs/<digest>`) in turn: the body cut by a connection reset, the
//! body truncated behind a full `Content-Length`, one byte flipped, or a `503` with
//! `Retry-After: 1` instead of the answer. A client that survives it retried and resumed.
//!
//! Started with [`CountingProxy::throttled`], it passes responses on slowly, so that a test
//! can stop it (as a mirror that dies) while bodies are still on the wire.
//!
//! Started with [`CountingProxy::with_fault_mix`], it damages blob responses at random
//! instead, in the proportions of a [`FaultMix`] and at random places in the body. The
//! dice are a hash of the seed, the path and how many responses that path had before, so a
//! seed damages the same responses the same way whatever order parallel requests arrive in:
//! a failing seed can be replayed.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A damage done to one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Send half the body, then reset the connection.
    Reset,
    /// Send half the body behind the full `Content-Length`, then close.
    Truncate,
    /// Send the whole body with one byte flipped.
    Flip,
    /// Answer `503 Service Unavailable` with `Retry-After: 1` (nothing forwarded).
    Unavailable,
}

/// Random faults for blob responses: each response suffers at most one, with these
/// chances in percent (their sum at most 100); the rest pass untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultMix {
    /// Replaying a seed replays its faults.
    pub seed: u64,
    /// Part of the body, then a connection reset.
    pub reset: u8,
    /// Part of the body behind the full `Content-Length`, then a clean close.
    pub truncate: u8,
    /// The whole body with one byte flipped.
    pub flip: u8,
    /// `503` with `Retry-After: 0`, nothing forwarded.
    pub unavailable: u8,
}

impl FaultMix {
    /// About half of all blob responses damaged: 15% reset mid-body, 15% truncated, 10% one
    /// flipped byte, 15% `503`.
    pub fn hostile(seed: u64) -> Self {
        FaultMix {
            seed,
            reset: 15,
            truncate: 15,
            flip: 10,
            unavailable: 15,
        }
    }

    /// The fault for the `n`-th response to `path`, and a second die for where in the body.
    fn roll(&self, path: &str, n: usize) -> (Option<Fault>, u64) {
        let key = fnv1a(path.as_bytes()) ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let first = splitmix64(self.seed ^ key);
        let second = splitmix64(first);
        let roll = first % 100;
        let mut edge = 0;
        for (chance, fault) in [
            (self.reset, Fault::Reset),
            (self.truncate, Fault::Truncate),
            (self.flip, Fault::Flip),
            (self.unavailable, Fault::Unavailable),
        ] {
            edge += u64::from(chance);
            if roll < edge {
                return (Some(fault), second);
            }
        }
        (None, second)
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One response's damage: which fault, and a die for where in the body it strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Damage {
    fault: Fault,
    /// `None`: the middle of the body (the schedule's faults).
    at: Option<u64>,
    /// The `Retry-After` of a `503`, in seconds.
    retry_after: u8,
}

/// Which faults to inject. With a schedule, the `n`-th response to one blob path (counting
/// from 0) suffers a fault while `n < schedule.len()`; blobs start at different points of
/// the schedule (by arrival order) so that every fault meets every kind of request. With a
/// mix, every response rolls its dice.
#[derive(Debug, Clone, Default)]
struct Faults {
    schedule: Vec<Fault>,
    mix: Option<FaultMix>,
    /// Path → (arrival order, responses so far).
    seen: HashMap<String, (usize, usize)>,
    injected: Vec<(String, Fault)>,
}

impl Faults {
    fn active(&self) -> bool {
        !self.schedule.is_empty() || self.mix.is_some()
    }

    fn next(&mut self, method: &str, path: &str) -> Option<Damage> {
        if !self.active() || method != "GET" || !path.contains("/blobs/") {
            return None;
        }
        let order = self.seen.len();
        let entry = self.seen.entry(path.to_owned()).or_insert((order, 0));
        let (order, n) = *entry;
        entry.1 += 1;
        let damage = match &self.mix {
            Some(mix) => {
                let (fault, at) = mix.roll(path, n);
                Damage {
                    fault: fault?,
                    at: Some(at),
                    retry_after: 0,
                }
            }
            None => {
                if n >= self.schedule.len() {
                    return None;
                }
                Damage {
                    fault: *self.schedule.get((n + order) % self.schedule.len())?,
                    at: None,
                    retry_after: 1,
                }
            }
        };
        self.injected.push((path.to_owned(), damage.fault));
        Some(damage)
    }
}

/// How fast responses are passed on: at most `bytes` every `every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pace {
    bytes: usize,
    every: std::time::Duration,
}

/// Requests forwarded whose response has not started yet, and the most there ever were.
#[derive(Debug, Default)]
struct InFlight {
    now: usize,
    max: usize,
}

/// A running proxy; stopped on drop.
#[derive(Debug)]
pub struct CountingProxy {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    in_flight: Arc<Mutex<InFlight>>,
    faults: Arc<Mutex<Faults>>,
    connections: Arc<Mutex<u64>>,
    /// Response bytes passed on (throttled proxies only).
    passed: Arc<std::sync::atomic::AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CountingProxy {
    /// Forward `127.0.0.1:<free port>` to `upstream`.
    pub fn start(upstream: SocketAddr) -> std::io::Result<CountingProxy> {
        CountingProxy::with_faults(upstream, &[])
    }

    /// Forward to `upstream`, passing responses on at most `bytes` every `every`.
    pub fn throttled(
        upstream: SocketAddr,
        bytes: usize,
        every: std::time::Duration,
    ) -> std::io::Result<CountingProxy> {
        CountingProxy::spawn(
            upstream,
            Faults::default(),
            Some(Pace {
                bytes: bytes.max(1),
                every,
            }),
        )
    }

    /// Forward to `upstream`, damaging blob responses per `schedule` (see [`Fault`]).
    pub fn with_faults(upstream: SocketAddr, schedule: &[Fault]) -> std::io::Result<CountingProxy> {
        CountingProxy::spawn(
            upstream,
            Faults {
                schedule: schedule.to_vec(),
                ..Faults::default()
            },
            None,
        )
    }

    /// Forward to `upstream`, damaging blob responses at random per `mix`.
    pub fn with_fault_mix(upstream: SocketAddr, mix: FaultMix) -> std::io::Result<CountingProxy> {
        CountingProxy::spawn(
            upstream,
            Faults {
                mix: Some(mix),
                ..Faults::default()
            },
            None,
        )
    }

    fn spawn(
        upstream: SocketAddr,
        faults: Faults,
        pace: Option<Pace>,
    ) -> std::io::Result<CountingProxy> {
        let std_listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let in_flight = Arc::new(Mutex::new(InFlight::default()));
        let connections = Arc::new(Mutex::new(0));
        let faulty = faults.active();
        let faults = Arc::new(Mutex::new(faults));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (reqs, conns, damage) = (requests.clone(), connections.clone(), faults.clone());
        let flying = in_flight.clone();
        let passed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = passed.clone();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(std_listener) else {
                    return;
                };
                let serve = async {
                    loop {
                        let Ok((client, _)) = listener.accept().await else {
                            continue;
                        };
                        *conns.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                        if faulty {
                            tokio::spawn(forward_faulty(
                                client,
                                upstream,
                                reqs.clone(),
                                damage.clone(),
                            ));
                        } else {
                            tokio::spawn(forward(
                                client,
                                upstream,
                                reqs.clone(),
                                flying.clone(),
                                pace.map(|pace| (pace, counted.clone())),
                            ));
                        }
                    }
                };
                tokio::select! {
                    () = serve => {}
                    _ = stopped => {}
                }
            });
        });
        Ok(CountingProxy {
            addr,
            requests,
            in_flight,
            faults,
            connections,
            passed,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `127.0.0.1:PORT`: use it as the registry host of references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Every request line seen so far (`GET /v2/… HTTP/1.1`), in arrival order.
    pub fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The faults injected so far: (request path, fault).
    pub fn injected(&self) -> Vec<(String, Fault)> {
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .injected
            .clone()
    }

    /// The most requests that were ever waiting for their response at once (since the last
    /// [`clear`](Self::clear)); not tracked with faults. A client that sends one request at
    /// a time never exceeds 1: it cannot send the next before this one's answer started.
    pub fn max_in_flight(&self) -> usize {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).max
    }

    /// Response bytes passed on so far by a [`throttled`](Self::throttled) proxy (0 for
    /// others): a test waits on it to stop the proxy while bodies are on the wire.
    pub fn bytes_passed(&self) -> u64 {
        self.passed.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        *self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forget the requests and connections seen so far.
    pub fn clear(&self) {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        *self.connections.lock().unwrap_or_else(|e| e.into_inner()) = 0;
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        in_flight.max = in_flight.now;
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn forward(
    mut client: TcpStream,
    upstream: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    in_flight: Arc<Mutex<InFlight>>,
    pace: Option<(Pace, Arc<std::sync::atomic::AtomicU64>)>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut server_read, mut server_write) = server.into_split();
    let (mut client_read, mut client_write) = client.split();
    // HTTP/1.1 without pipelining: the next bytes from upstream after a request are its
    // response, so its first bytes end that request's wait.
    let awaiting = AtomicBool::new(false);
    let answered = || {
        if awaiting.swap(false, Ordering::SeqCst) {
            let mut f = in_flight.lock().unwrap_or_else(|e| e.into_inner());
            f.now = f.now.saturating_sub(1);
        }
    };
    let upstream_to_client = async {
        let mut chunk = vec![0u8; pace.as_ref().map_or(64 << 10, |(p, _)| p.bytes)];
        loop {
            match server_read.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    answered();
                    if let Some((pace, passed)) = &pace {
                        tokio::time::sleep(pace.every).await;
                        passed.fetch_add(n as u64, Ordering::SeqCst);
                    }
                    if client_write
                        .write_all(chunk.get(..n).unwrap_or_default())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    };
    let client_to_upstream = async {
        let mut buffer: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            // One request: its header block, then its body.
            let header_end = loop {
                if let Some(i) = find(&buffer, b"\r\n\r\n") {
                    break i + 4;
                }
                match client_read.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                }
            };
            let head =
                String::from_utf8_lossy(buffer.get(..header_end).unwrap_or_default()).into_owned();
            let line = head.lines().next().unwrap_or_default().to_owned();
            requests
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(line);
            {
                let mut f = in_flight.lock().unwrap_or_else(|e| e.into_inner());
                f.now += 1;
                f.max = f.max.max(f.now);
            }
            awaiting.store(true, Ordering::SeqCst);
            let body_len = content_length(&head);
            let mut wanted = header_end + body_len;
            while buffer.len() < wanted {
                match client_read.read(&mut chunk).await {
                    Ok(0) | Err(_) => {
                        wanted = buffer.len();
                        break;
                    }
                    Ok(n) => buffer.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                }
            }
            let rest = buffer.split_off(wanted);
            if server_write.write_all(&buffer).await.is_err() {
                return;
            }
            buffer = rest;
        }
    };
    tokio::select! {
        () = upstream_to_client => {}
        () = client_to_upstream => {}
    }
    // A request the connection never answered is no longer waiting either.
    answered();
}

/// Read one request (header block and `Content-Length` body) from `buffer` + `from`.
async fn read_request(
    from: &mut (impl AsyncReadExt + Unpin),
    buffer: &mut Vec<u8>,
) -> Option<(String, Vec<u8>)> {
    let mut chunk = vec![0u8; 64 << 10];
    let header_end = loop {
        if let Some(i) = find(buffer, b"\r\n\r\n") {
            break i + 4;
        }
        match from.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(chunk.get(..n).unwrap_or_default()),
        }
    };
    let head = String::from_utf8_lossy(buffer.get(..header_end).unwrap_or_default()).into_owned();
    let wanted = header_end + content_length(&head);
    while buffer.len() < wanted {
        match from.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(chunk.get(..n).unwrap_or_default()),
        }
    }
    let rest = buffer.split_off(wanted);
    let request = std::mem::replace(buffer, rest);
    Some((head, request))
}

/// One request at a time: each is sent upstream on a fresh `Connection: close` connection,
/// its whole response read, then damaged or not, and written back.
async fn forward_faulty(
    mut client: TcpStream,
    upstream: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    faults: Arc<Mutex<Faults>>,
) {
    let mut buffer = Vec::new();
    while let Some((head, request)) = read_request(&mut client, &mut buffer).await {
        let line = head.lines().next().unwrap_or_default().to_owned();
        requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line.clone());
        let mut parts = line.split(' ');
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let damage = faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next(method, path);
        let fault = damage.map(|d| d.fault);
        if let Some(Damage {
            fault: Fault::Unavailable,
            retry_after,
            ..
        }) = damage
        {
            let reply = format!(
                "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {retry_after}\r\n\
                 Content-Length: 0\r\n\r\n"
            );
            if client.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        let Some(response) = exchange(upstream, &request).await else {
            return;
        };
        let Some(body_start) = find(&response, b"\r\n\r\n").map(|i| i + 4) else {
            let _ = client.write_all(&response).await;
            return;
        };
        let body_len = response.len() - body_start;
        // Where the damage strikes: a byte inside the body (never its first, so a cut
        // always delivers something), the middle unless the dice say otherwise.
        let at = |d: Option<Damage>| -> usize {
            let inner = body_len.saturating_sub(1).max(1) as u64;
            let offset = match d.and_then(|d| d.at) {
                Some(die) => 1 + die % inner,
                None => body_len as u64 / 2,
            };
            body_start + usize::try_from(offset).unwrap_or(0)
        };
        match fault {
            Some(Fault::Reset) | Some(Fault::Truncate) if body_len > 1 => {
                let cut = at(damage);
                let _ = client
                    .write_all(response.get(..cut).unwrap_or_default())
                    .await;
                if fault == Some(Fault::Reset) {
                    // SO_LINGER 0: close with RST, not FIN.
                    let _ = client.set_zero_linger();
                }
                return;
            }
            Some(Fault::Flip) if body_len > 0 => {
                let mut damaged = response;
                let at = match damage.and_then(|d| d.at) {
                    Some(die) => body_start + usize::try_from(die % body_len as u64).unwrap_or(0),
                    None => body_start + body_len / 2,
                };
                if let Some(b) = damaged.get_mut(at) {
                    *b ^= 0x40;
                }
                if client.write_all(&damaged).await.is_err() {
                    return;
                }
            }
            _ => {
                if client.write_all(&response).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Send one request upstream with `Connection: close` and read the whole response.
async fn exchange(upstream: SocketAddr, request: &[u8]) -> Option<Vec<u8>> {
    let header_end = find(request, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(request.get(..header_end)?).into_owned();
    let mut rewritten: String = head
        .trim_end()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    rewritten.push_str("Connection: close\r\n\r\n");
    let mut server = TcpStream::connect(upstream).await.ok()?;
    server.write_all(rewritten.as_bytes()).await.ok()?;
    server.write_all(request.get(header_end..)?).await.ok()?;
    let mut response = Vec::new();
    server.read_to_end(&mut response).await.ok()?;
    Some(response)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &str) -> usize {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

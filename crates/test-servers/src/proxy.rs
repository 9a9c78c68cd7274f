//! [`CountingProxy`]: an HTTP/1.1 forwarder on loopback that records every request line
//! passing through it, so a test can count what a client really asked a real server for.
//!
//! It understands just enough HTTP to find request boundaries on kept-alive connections:
//! the header block, then `Content-Length` bytes of body (chunked request bodies are not
//! supported: no client in this workspace sends one). Responses are copied back untouched.
//! Dropping the proxy stops it: later connections are refused, as from a server that is down.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy; stopped on drop.
#[derive(Debug)]
pub struct CountingProxy {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    connections: Arc<Mutex<u64>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CountingProxy {
    /// Forward `127.0.0.1:<free port>` to `upstream`.
    pub fn start(upstream: SocketAddr) -> std::io::Result<CountingProxy> {
        let std_listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (reqs, conns) = (requests.clone(), connections.clone());
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
                        tokio::spawn(forward(client, upstream, reqs.clone()));
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
            connections,
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

async fn forward(mut client: TcpStream, upstream: SocketAddr, requests: Arc<Mutex<Vec<String>>>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut server_read, mut server_write) = server.into_split();
    let (mut client_read, mut client_write) = client.split();
    let upstream_to_client = tokio::io::copy(&mut server_read, &mut client_write);
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
        _ = upstream_to_client => {}
        () = client_to_upstream => {}
    }
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

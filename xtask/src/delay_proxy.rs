//! A loopback TCP proxy that adds latency to every request and counts what the server sent
//! back: a registry "further away", and a meter on how much it served.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::{Error, Result};

/// Holds every chunk the client sends for `delay` before passing it on, so each HTTP
/// request arrives `delay` late, as over a slower network. Responses pass untouched, their
/// bytes counted. Stops accepting on drop (connections already open run to their end).
#[derive(Debug)]
pub(crate) struct DelayProxy {
    pub(crate) addr: SocketAddr,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
}

impl DelayProxy {
    pub(crate) fn start(upstream: SocketAddr, delay: Duration) -> Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| Error::new(format!("proxy: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::new(format!("proxy: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let (stopping, counter) = (Arc::clone(&stop), Arc::clone(&served));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let counter = Arc::clone(&counter);
                std::thread::spawn(move || {
                    let _ = relay(client, upstream, delay, &counter);
                });
            }
        });
        Ok(Self { addr, stop, served })
    }

    /// `127.0.0.1:PORT`, to use as a registry host.
    pub(crate) fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Bytes the upstream server has sent to clients so far (headers included).
    pub(crate) fn bytes_served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    delay: Duration,
    served: &AtomicU64,
) -> io::Result<()> {
    let server = TcpStream::connect(upstream)?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (mut client_read, mut server_write) = (client.try_clone()?, server.try_clone()?);
    let up = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match client_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    std::thread::sleep(delay);
                    if server_write
                        .write_all(buf.get(..n).unwrap_or_default())
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = server_write.shutdown(Shutdown::Write);
    });
    let (mut server_read, mut client_write) = (server, client);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match server_read.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                served.fetch_add(n as u64, Ordering::Relaxed);
                if client_write
                    .write_all(buf.get(..n).unwrap_or_default())
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    let _ = client_write.shutdown(Shutdown::Both);
    let _ = up.join();
    Ok(())
}

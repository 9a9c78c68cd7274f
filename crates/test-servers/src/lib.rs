//! Real servers on loopback for the integration tests of pkgload's HTTP and OCI crates.
//!
//! Mocks answer the questions their author thought of; a real socket also answers the ones
//! nobody did (a reset that lands mid-body, a `Content-Length` the body never reaches, a
//! stacked `Content-Encoding`). This dev-only crate gives tests such servers:
//!
//! - [`fault::FaultServer`]: a hyper HTTP/1.1 server on `127.0.0.x:0` whose routes are
//!   programmed with faults: statuses with `Retry-After`, resets and truncations mid-body,
//!   corrupted bytes, ranges honoured or ignored, `ETag`/`If-Range`, gzip/zstd/unknown
//!   encodings, redirects, bearer and basic auth with a token endpoint, slow bodies. Every
//!   request is recorded so a test can assert what the client sent.
//! - [`tls::TestPki`]: a CA, server and client certificates made with `openssl`.
//! - [`registry::Registry`]: a throwaway `docker-registry` (the CNCF distribution server)
//!   on a free loopback port with its storage in a temporary directory.
//! - [`proxy::CountingProxy`]: a forwarder that records each request line passing through,
//!   to count what a client asked a real server for (and to play a server that went down).
//! - [`shaped::ShapedProxy`]: a TCP relay that adds latency to every request and caps the
//!   bandwidth all connections share, to benchmark lazy reads against a "distant" registry.
//!
//! The fault server runs on its own thread and runtime, so it serves synchronous tests and
//! any flavour of async runtime alike:
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::{IpAddr, Ipv4Addr, TcpStream};
//! use test_servers::fault::{FaultServer, Route};
//!
//! let server = FaultServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST))?;
//! // The first request gets a 503 asking to retry in a second; later ones get the body.
//! server.route("/blob", Route::new("hello").status_first(1, 503, Some("1")));
//!
//! let get = |server: &FaultServer| -> std::io::Result<String> {
//!     let mut conn = TcpStream::connect(server.addr())?;
//!     conn.write_all(b"GET /blob HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")?;
//!     let mut reply = String::new();
//!     conn.read_to_string(&mut reply)?;
//!     Ok(reply)
//! };
//! let first = get(&server)?;
//! assert!(first.starts_with("HTTP/1.1 503"));
//! assert!(first.to_ascii_lowercase().contains("retry-after: 1"));
//! assert!(get(&server)?.ends_with("\r\n\r\nhello"));
//! assert_eq!(server.hits("/blob"), 2);
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod fault;
pub mod proxy;
pub mod registry;
pub mod shaped;
mod text;
pub mod tls;
pub mod webc;

//! A raw HTTP/1.1 client over `std::net::TcpStream` that reports exactly what came off the
//! wire: how the body ended (complete, clean close, reset) matters more here than
//! convenience, and a real client library would hide it.

// Test support: a panic is how a broken expectation is reported here, as in a test body.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How the body ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// All `Content-Length` bytes arrived.
    Complete,
    /// The server closed the connection cleanly before `Content-Length` was reached.
    Eof,
    /// The connection was reset.
    Reset,
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub end: End,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .collect()
    }

    pub fn content_length(&self) -> usize {
        self.header("content-length").unwrap().parse().unwrap()
    }
}

/// One client connection, for requests in sequence (keep-alive).
pub struct Conn {
    stream: TcpStream,
    /// Bytes read past the previous response.
    buffered: Vec<u8>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Conn {
            stream,
            buffered: Vec::new(),
        }
    }

    /// Sends raw bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn request(&mut self, method: &str, target: &str, headers: &[(&str, &str)]) -> Reply {
        self.request_with_body(method, target, headers, b"")
    }

    pub fn request_with_body(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: test\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        self.send_raw(head.as_bytes());
        self.send_raw(body);
        self.read_reply(method == "HEAD")
    }

    /// Reads one response; the body is read by `Content-Length` (the fault server always
    /// sends it), stopping early at a close or reset.
    pub fn read_reply(&mut self, head_only: bool) -> Reply {
        let head_end = loop {
            if let Some(at) = self.buffered.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            let mut chunk = [0u8; 8192];
            let n = self
                .stream
                .read(&mut chunk)
                .expect("reading the response head");
            assert!(n > 0, "connection closed before a response head");
            self.buffered.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(self.buffered[..head_end].to_vec()).unwrap();
        self.buffered.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap();
                (name.trim().to_ascii_lowercase(), value.trim().to_owned())
            })
            .collect();
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
            end: End::Complete,
        };
        if head_only {
            return reply;
        }
        let length = reply.content_length();
        while self.buffered.len() < length {
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    reply.end = End::Eof;
                    break;
                }
                Ok(n) => self.buffered.extend_from_slice(&chunk[..n]),
                Err(error) if error.kind() == ErrorKind::ConnectionReset => {
                    reply.end = End::Reset;
                    break;
                }
                Err(error) => panic!("reading the body: {error}"),
            }
        }
        let take = length.min(self.buffered.len());
        reply.body = self.buffered.drain(..take).collect();
        reply
    }

    /// Whether the server closed the connection (reads EOF or a reset within a second).
    pub fn closed_by_server(&mut self) -> bool {
        self.stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => true,
            Err(error) => error.kind() == ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    }
}

/// One request on a fresh connection.
pub fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Reply {
    Conn::open(addr).request("GET", target, headers)
}

pub fn head(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Reply {
    Conn::open(addr).request("HEAD", target, headers)
}

/// A body of `len` bytes that is not all one value, so offsets matter.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

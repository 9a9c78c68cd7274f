//! Real servers on loopback for the integration tests: a programmable HTTP/1.1 server for
//! faults a real registry will not produce on demand, and a real `docker-registry`.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream;
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// What the server saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// The `N` of `Range: bytes=N-`.
    pub fn range_start(&self) -> Option<u64> {
        self.header("range")?
            .strip_prefix("bytes=")?
            .strip_suffix('-')?
            .parse()
            .ok()
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

/// How to answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Send only this many body bytes, then break the connection (Content-Length still
    /// announces the whole body).
    pub abort_after: Option<usize>,
}

impl Reply {
    pub fn ok(body: impl Into<Bytes>) -> Self {
        Reply {
            status: 200,
            headers: Vec::new(),
            body: body.into(),
            abort_after: None,
        }
    }

    pub fn status(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            abort_after: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn abort_after(mut self, n: usize) -> Self {
        self.abort_after = Some(n);
        self
    }

    /// Serve `body` honouring `Range: bytes=N-` (206), with a strong ETag.
    pub fn ranged(seen: &Seen, body: &Bytes, etag: &str) -> Self {
        match seen.range_start() {
            Some(start) if (start as usize) < body.len() => {
                let if_range_ok = seen.header("if-range").is_none_or(|v| v == etag);
                if !if_range_ok {
                    return Reply::ok(body.clone()).header("etag", etag);
                }
                let end = body.len() - 1;
                Reply {
                    status: 206,
                    headers: vec![
                        ("etag".into(), etag.into()),
                        (
                            "content-range".into(),
                            format!("bytes {start}-{end}/{}", body.len()),
                        ),
                    ],
                    body: body.slice(start as usize..),
                    abort_after: None,
                }
            }
            _ => Reply::ok(body.clone()).header("etag", etag),
        }
    }
}

type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A loopback HTTP server answering with `handler`; stops when dropped.
pub struct FaultServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultServer {
    pub async fn start(ip: &str, handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        let ip: IpAddr = ip.parse().unwrap();
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (handler, log) = (handler.clone(), log.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (handler, log) = (handler.clone(), log.clone());
                        async move { Ok::<_, Infallible>(answer(req, &*handler, &log).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FaultServer { addr, seen, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn hits(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.path() == path).count()
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    req: Request<Incoming>,
    handler: &Handler,
    log: &Mutex<Vec<Seen>>,
) -> Response<BoxBody<Bytes, std::io::Error>> {
    let method = req.method().to_string();
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let seen = Seen {
        method: method.clone(),
        target,
        headers,
        body,
    };
    log.lock().unwrap().push(seen.clone());
    let reply = handler(&seen);
    let mut builder = Response::builder().status(StatusCode::from_u16(reply.status).unwrap());
    for (k, v) in &reply.headers {
        builder = builder.header(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let len = reply.body.len();
    builder = builder.header("content-length", len.to_string());
    let body: BoxBody<Bytes, std::io::Error> = if method == "HEAD" {
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed()
    } else if let Some(cut) = reply.abort_after {
        let head = reply.body.slice(..cut.min(len));
        // Data first, then (after it had time to leave the socket) the failure that makes
        // hyper drop the connection mid-body.
        let frames = stream::unfold(Some(head), |state| async move {
            match state {
                Some(head) => Some((Ok(Frame::data(head)), None)),
                None => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Some((
                        Err(std::io::Error::other("injected connection reset")),
                        None,
                    ))
                }
            }
        });
        StreamBody::new(frames).boxed()
    } else {
        http_body_util::Full::new(reply.body)
            .map_err(|never| match never {})
            .boxed()
    };
    builder.body(body).unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

pub fn random_bytes(len: usize, mut seed: u64) -> Bytes {
    let mut out = Vec::with_capacity(len + 8);
    seed = seed.wrapping_mul(2).wrapping_add(1);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// A real `docker-registry` on a free loopback port, in a temp dir; killed when dropped.
pub struct Registry {
    pub host: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        let binary = ["/usr/bin/docker-registry", "docker-registry"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok())
            .expect("docker-registry is not installed: run `cargo xtask test`, which installs it");
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let host = format!("127.0.0.1:{port}");
        let registry = Registry {
            host,
            child,
            _dir: dir,
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&self) {
        use std::io::{Read, Write};
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut s) = std::net::TcpStream::connect(&self.host) {
                let _ = write!(s, "GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.host);
                let mut buf = [0u8; 12];
                if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.0 200") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log =
            std::fs::read_to_string(self._dir.path().join("registry.log")).unwrap_or_default();
        panic!("docker-registry did not come up on {}: {log}", self.host);
    }

    pub fn data_dir(&self) -> PathBuf {
        self._dir.path().join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! The server itself: a listener on its own thread and runtime, one hyper HTTP/1.1
//! connection task per client, the route table and the request log.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Collected, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::body::{FaultBody, Gauge};
use super::record::{RecordedRequest, split_target};
use super::respond::{Reply, Request, RouteState, token_reply};
use super::route::{Route, TokenEndpoint};

/// Request bodies beyond this are refused with `413` (and recorded empty).
const MAX_REQUEST_BODY: usize = 256 * 1024 * 1024;

/// What a path is bound to.
#[derive(Debug)]
enum Handler {
    Content(Box<RouteState>),
    Token(TokenEndpoint),
}

/// State shared by the handle and the connection tasks.
#[derive(Debug, Default)]
struct Shared {
    routes: Mutex<HashMap<String, Handler>>,
    log: Mutex<Vec<RecordedRequest>>,
    connections: AtomicU64,
    in_flight: Arc<Gauge>,
}

/// Locks `mutex`, also after a panic elsewhere: the data (a table, a log) stays usable,
/// and a test server must keep answering whatever happened in a test thread.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A programmable HTTP/1.1 server on a loopback address; see the [module docs](super).
///
/// It serves from a background thread until dropped. Routes can be added or replaced at
/// any time through `&self`, so the server can be shared (e.g. in an `Arc`).
pub struct FaultServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FaultServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FaultServer {
    /// Binds `bind_ip` on a free port and starts serving.
    ///
    /// On Linux all of `127.0.0.0/8` is loopback, so `127.0.0.1` and `127.0.0.2` give a
    /// test two distinct hosts (e.g. a registry and the CDN it redirects to).
    pub fn start(bind_ip: IpAddr) -> io::Result<FaultServer> {
        let listener = std::net::TcpListener::bind(SocketAddr::new(bind_ip, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        // Its own runtime, so synchronous tests and any async runtime can use the server,
        // and a test blocking its own thread cannot stall it.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = {
            let _context = runtime.enter();
            TcpListener::from_std(listener)?
        };
        let shared = Arc::new(Shared::default());
        let (shutdown, stop) = oneshot::channel();
        let task_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("fault-server {addr}"))
            .spawn(move || {
                runtime.block_on(accept_loop(listener, task_shared, stop));
                // Dropping the runtime here cancels the connection tasks, closing their
                // sockets.
            })?;
        Ok(FaultServer {
            addr,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `host:port`, as in a `Host` header or an image reference.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://host:port`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL of `path` (which should start with `/`) on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// Serves `route` at `path` (matched exactly, query ignored), replacing whatever was
    /// there along with its counters.
    pub fn route(&self, path: &str, route: Route) {
        let handler = Handler::Content(Box::new(RouteState::new(route)));
        lock(&self.shared.routes).insert(path.to_owned(), handler);
    }

    /// Serves a token endpoint at `path`; see [`TokenEndpoint`]. How often it was asked is
    /// [`hits(path)`](FaultServer::hits).
    pub fn token_endpoint(&self, path: &str, endpoint: TokenEndpoint) {
        lock(&self.shared.routes).insert(path.to_owned(), Handler::Token(endpoint));
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.log).clone()
    }

    /// The requests to `path` (query ignored).
    pub fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        lock(&self.shared.log)
            .iter()
            .filter(|request| request.path() == path)
            .cloned()
            .collect()
    }

    /// How many requests `path` received (query ignored), whatever their outcome.
    pub fn hits(&self, path: &str) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|request| request.path() == path)
            .count()
    }

    /// Whether any request so far carried an `Authorization` header: the check that
    /// credentials did not follow a redirect to another host.
    pub fn saw_authorization(&self) -> bool {
        lock(&self.shared.log)
            .iter()
            .any(RecordedRequest::has_authorization)
    }

    /// Forgets the requests recorded so far.
    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The most responses that were in progress at once (from the request head to the last
    /// body byte), e.g. to check a client's concurrency limit with a throttled route.
    pub fn peak_in_flight(&self) -> usize {
        self.shared.in_flight.peak()
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The loop may already be gone; nothing to stop then.
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => serve_connection(stream, &shared),
            // E.g. out of file descriptors: back off instead of spinning, keep serving.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

fn serve_connection(stream: TcpStream, shared: &Arc<Shared>) {
    let connection = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
    // Small writes before an injected fault must leave at once, not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let reset = Arc::new(AtomicBool::new(false));
    let io = TokioIo::new(ConnIo {
        stream,
        reset: Arc::clone(&reset),
    });
    let shared = Arc::clone(shared);
    let service = service_fn(move |request| {
        let shared = Arc::clone(&shared);
        let reset = Arc::clone(&reset);
        async move { Ok::<_, Infallible>(handle(&shared, connection, &reset, request).await) }
    });
    tokio::spawn(async move {
        // Errors here are the client's business (or an injected fault): nothing to do.
        let _ = http1::Builder::new().serve_connection(io, service).await;
    });
}

async fn handle(
    shared: &Arc<Shared>,
    connection: u64,
    reset: &Arc<AtomicBool>,
    request: hyper::Request<Incoming>,
) -> Response<FaultBody> {
    let in_flight = shared.in_flight.enter();
    let received = Instant::now();
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, MAX_REQUEST_BODY)
        .collect()
        .await
        .map(Collected::to_bytes)
        .ok();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |target| target.as_str().to_owned());
    lock(&shared.log).push(RecordedRequest {
        method: parts.method.clone(),
        path_and_query: path_and_query.clone(),
        headers: parts.headers.clone(),
        body: body.clone().unwrap_or_default(),
        connection,
        received,
    });

    let reply = if body.is_none() {
        Reply::body_too_large()
    } else {
        let view = Request {
            method: &parts.method,
            headers: &parts.headers,
        };
        let path = split_target(&path_and_query).0;
        match lock(&shared.routes).get_mut(path) {
            Some(Handler::Content(state)) => state.respond(view),
            Some(Handler::Token(endpoint)) => token_reply(endpoint, view),
            None => Reply::not_found(path),
        }
    };

    if let Some(delay) = reply.header_delay {
        tokio::time::sleep(delay).await;
    }
    let mut body = if parts.method == Method::HEAD {
        FaultBody::empty()
    } else {
        FaultBody::full(reply.body)
    };
    if let Some((after, kind)) = reply.cut {
        body = body.cut(after, kind, reset);
    }
    if let Some(throttle) = reply.throttle {
        body = body.throttle(throttle);
    }
    let mut response = Response::new(body.counted(in_flight));
    *response.status_mut() = reply.status;
    *response.headers_mut() = reply.headers;
    response
}

/// The connection's socket, which can end in a TCP reset.
///
/// A reset cannot be asked of hyper; instead a cut body raises `reset` and fails, hyper
/// gives up on the connection, and this wrapper makes the close abortive: no FIN on
/// shutdown, and `SO_LINGER` 0 when dropped, so the kernel sends RST.
#[derive(Debug)]
struct ConnIo {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl ConnIo {
    fn resetting(&self) -> bool {
        self.reset.load(Ordering::SeqCst)
    }
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        if self.resetting() {
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.resetting() {
            // A FIN now would turn the reset into a clean close.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

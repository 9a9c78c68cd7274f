//! What a route serves and how it misbehaves: the configuration a test writes.
//!
//! A [`Route`] is built once and handed to [`FaultServer::route`](super::FaultServer::route);
//! the server keeps it together with its counters, so "the first `n` responses" counts from
//! the moment the route was installed.

use std::time::Duration;

use bytes::Bytes;

/// Whether a route answers `Range` requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RangeMode {
    /// `Range: bytes=…` gets `206 Partial Content` with `Content-Range` (single ranges only;
    /// a multi-range request gets the whole body, which HTTP allows). `Accept-Ranges: bytes`
    /// is announced.
    #[default]
    Honour,
    /// `Range` is ignored: the whole body with `200 OK`, and no `Accept-Ranges`.
    Ignore,
}

/// A content coding a route can apply to its body.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `gzip` (RFC 1952).
    Gzip,
    /// `zstd` (RFC 8878).
    Zstd,
    /// `identity`: the body is unchanged but the token is still listed in
    /// `Content-Encoding`, as some servers do.
    Identity,
    /// Any other token. The body is sent unchanged under that name, so a client that
    /// does not know the coding can be seen to refuse it.
    Other(String),
}

impl Encoding {
    /// The token that names this coding in `Accept-Encoding` and `Content-Encoding`.
    pub fn token(&self) -> &str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Zstd => "zstd",
            Encoding::Identity => "identity",
            Encoding::Other(token) => token,
        }
    }
}

/// A bearer-token requirement, answered with a registry-style challenge.
///
/// Without `Authorization: Bearer <token>` the route answers `401` with
/// `WWW-Authenticate: Bearer realm="<realm>",service="<service>",scope="<scope>"`
/// (`service` and `scope` are left out when empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bearer {
    /// The only token accepted.
    pub token: String,
    /// Where a client gets the token, usually a [`TokenEndpoint`] URL from
    /// [`FaultServer::url`](super::FaultServer::url).
    pub realm: String,
    /// The `service` parameter of the challenge.
    pub service: String,
    /// The `scope` parameter of the challenge.
    pub scope: String,
}

/// A token endpoint in the style of the Docker registry token protocol.
///
/// `GET <path>?service=…&scope=…` answers `{"token": "<token>", "expires_in": N}`. The query
/// is not checked, only recorded: a test asserts on it with
/// [`RecordedRequest::query_param`](super::RecordedRequest::query_param).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenEndpoint {
    /// The token handed out.
    pub token: String,
    /// `expires_in` in seconds; left out of the answer when `None`.
    pub expires_in: Option<u64>,
    /// When set, the endpoint itself wants these basic credentials (`401` otherwise).
    pub require_basic: Option<(String, String)>,
}

/// A status answered instead of the content, a given number of times.
#[derive(Clone, Debug)]
pub(crate) struct InjectedStatus {
    pub(crate) remaining: usize,
    pub(crate) status: u16,
    pub(crate) retry_after: Option<String>,
}

/// How a cut response ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CutKind {
    /// Abort the connection with a TCP reset.
    Reset,
    /// End the body early and close the connection normally.
    Truncate,
}

/// A response body cut short after `after` bytes, a given number of times.
#[derive(Clone, Debug)]
pub(crate) struct Cut {
    pub(crate) remaining: usize,
    pub(crate) after: usize,
    pub(crate) kind: CutKind,
}

/// One corrupted byte at `offset` of the representation, a given number of times.
#[derive(Clone, Debug)]
pub(crate) struct Flip {
    pub(crate) remaining: usize,
    pub(crate) offset: usize,
}

/// Where the `ETag` comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum EtagMode {
    /// `"<sha256 hex of the representation>"`, so it changes with the content and coding.
    Digest,
    /// Exactly this value.
    Fixed(String),
    /// No `ETag` at all.
    Off,
}

/// Slow bodies: `bytes` per chunk with `delay` between chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Throttle {
    pub(crate) bytes: usize,
    pub(crate) delay: Duration,
}

/// What one path serves: a body plus the faults and rules applied to it.
///
/// Faults with a count are consumed in the order they were added: two
/// [`status_first`](Route::status_first) calls queue up (the first `n1` requests get the
/// first status, the next `n2` the second), and so do [`reset_after`](Route::reset_after)
/// and [`truncate_after`](Route::truncate_after), which share one queue of cuts.
///
/// A request goes through, in order: authentication (`401`), injected statuses, the
/// redirect, then the content (`GET`/`HEAD`): encodings, `Range`/`If-Range`, and for `GET`
/// the corrupted bytes and the cut. `HEAD` gets the headers `GET` would get and consumes
/// no body fault.
#[derive(Clone, Debug)]
pub struct Route {
    pub(crate) body: Bytes,
    pub(crate) statuses: Vec<InjectedStatus>,
    pub(crate) cuts: Vec<Cut>,
    pub(crate) flips: Vec<Flip>,
    pub(crate) ranges: RangeMode,
    pub(crate) etag: EtagMode,
    pub(crate) encodings: Vec<Encoding>,
    pub(crate) force_encodings: bool,
    pub(crate) redirect: Option<String>,
    pub(crate) bearer: Option<Bearer>,
    pub(crate) basic: Option<(String, String)>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) throttle: Option<Throttle>,
    pub(crate) header_delay: Option<Duration>,
    pub(crate) write_status: Option<u16>,
}

impl Route {
    /// A route serving `body` as `application/octet-stream`, ranges honoured, with a
    /// digest `ETag` and no faults.
    pub fn new(body: impl Into<Bytes>) -> Self {
        Route {
            body: body.into(),
            statuses: Vec::new(),
            cuts: Vec::new(),
            flips: Vec::new(),
            ranges: RangeMode::Honour,
            etag: EtagMode::Digest,
            encodings: Vec::new(),
            force_encodings: false,
            redirect: None,
            bearer: None,
            basic: None,
            headers: Vec::new(),
            throttle: None,
            header_delay: None,
            write_status: None,
        }
    }

    /// The next `n` requests get `status` (with `Retry-After: <retry_after>` when given)
    /// instead of the content. `usize::MAX` makes the status permanent.
    pub fn status_first(mut self, n: usize, status: u16, retry_after: Option<&str>) -> Self {
        self.statuses.push(InjectedStatus {
            remaining: n,
            status,
            retry_after: retry_after.map(str::to_owned),
        });
        self
    }

    /// The next `times` `GET` responses announce their full `Content-Length`, send the
    /// first `bytes` bytes of their body, then abort the connection with a TCP reset.
    ///
    /// The server pauses briefly before the reset so the bytes leave the socket; a client
    /// that reads along receives exactly them, then a connection-reset error.
    pub fn reset_after(mut self, bytes: usize, times: usize) -> Self {
        self.cuts.push(Cut {
            remaining: times,
            after: bytes,
            kind: CutKind::Reset,
        });
        self
    }

    /// Like [`reset_after`](Route::reset_after), but the connection is closed cleanly (FIN):
    /// the client sees end-of-stream before `Content-Length` is reached.
    pub fn truncate_after(mut self, bytes: usize, times: usize) -> Self {
        self.cuts.push(Cut {
            remaining: times,
            after: bytes,
            kind: CutKind::Truncate,
        });
        self
    }

    /// The next `times` `GET` responses whose body includes byte `offset` of the
    /// representation (after encodings, before ranges) carry that byte inverted. Headers,
    /// `ETag` included, still describe the correct content.
    pub fn flip_byte(mut self, offset: usize, times: usize) -> Self {
        self.flips.push(Flip {
            remaining: times,
            offset,
        });
        self
    }

    /// Whether `Range` requests are honoured (the default) or ignored.
    pub fn ranges(mut self, mode: RangeMode) -> Self {
        self.ranges = mode;
        self
    }

    /// Sends exactly `value` as the `ETag` (quotes included, e.g. `"v2"` or `W/"v2"`)
    /// instead of the digest of the content.
    pub fn etag(mut self, value: &str) -> Self {
        self.etag = EtagMode::Fixed(value.to_owned());
        self
    }

    /// Sends no `ETag`; `If-Range` then never matches.
    pub fn without_etag(mut self) -> Self {
        self.etag = EtagMode::Off;
        self
    }

    /// Content codings applied in order (the body is gzipped, then the result zstd'ed,
    /// for `[Gzip, Zstd]`) and listed in that order in `Content-Encoding`.
    ///
    /// Each coding is applied only when the request's `Accept-Encoding` allows it; a
    /// request without `Accept-Encoding` gets none. See
    /// [`force_encodings`](Route::force_encodings) to send them regardless.
    pub fn encodings(mut self, encodings: impl IntoIterator<Item = Encoding>) -> Self {
        self.encodings = encodings.into_iter().collect();
        self
    }

    /// Applies every configured coding whatever `Accept-Encoding` says, as a misbehaving
    /// server or proxy would.
    pub fn force_encodings(mut self) -> Self {
        self.force_encodings = true;
        self
    }

    /// Answers `307 Temporary Redirect` with `Location: <url>`.
    pub fn redirect_to(mut self, url: &str) -> Self {
        self.redirect = Some(url.to_owned());
        self
    }

    /// Requires `Authorization: Bearer <token>`; see [`Bearer`] for the challenge.
    pub fn require_bearer(mut self, bearer: Bearer) -> Self {
        self.bearer = Some(bearer);
        self
    }

    /// Requires `Authorization: Basic` with these credentials; otherwise `401` with
    /// `WWW-Authenticate: Basic realm="test"`. Combined with
    /// [`require_bearer`](Route::require_bearer), either credential is accepted and both
    /// challenges are sent.
    pub fn require_basic(mut self, user: &str, password: &str) -> Self {
        self.basic = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// Adds a header to every response of the route (`401`s and injected statuses
    /// included). A name the server sets itself (`Content-Type`, `ETag`, …) replaces the
    /// server's header; repeating a name sends it several times. An invalid name or value
    /// makes the route answer `500` saying so. Overriding `Content-Length` is at the test's
    /// own risk: hyper sends the body by it.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sends bodies `bytes_per_chunk` bytes at a time with `delay` between chunks, to keep
    /// responses in flight long enough to observe concurrency.
    pub fn throttle(mut self, bytes_per_chunk: usize, delay: Duration) -> Self {
        self.throttle = Some(Throttle {
            bytes: bytes_per_chunk.max(1),
            delay,
        });
        self
    }

    /// Waits `delay` before sending the response headers (every response of the route),
    /// for timeout tests.
    pub fn delay_headers(mut self, delay: Duration) -> Self {
        self.header_delay = Some(delay);
        self
    }

    /// Accepts `PUT`, `POST`, `PATCH` and `DELETE`, answering `status` with an empty body
    /// (their bodies are recorded either way). Without this they get `405`.
    pub fn accept_writes(mut self, status: u16) -> Self {
        self.write_status = Some(status);
        self
    }
}

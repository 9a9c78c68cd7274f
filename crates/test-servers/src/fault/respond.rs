//! Deciding a response: from a route's configuration, its counters and the request, to a
//! status, headers and body plan. No I/O happens here; the server sends what this decides.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{
    ACCEPT_ENCODING, ACCEPT_RANGES, ALLOW, AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH,
    CONTENT_RANGE, CONTENT_TYPE, ETAG, HeaderName, HeaderValue, IF_NONE_MATCH, IF_RANGE, LOCATION,
    RANGE, RETRY_AFTER, VARY, WWW_AUTHENTICATE,
};
use hyper::{HeaderMap, Method, StatusCode};
use sha2::{Digest as _, Sha256};

use super::encoding::{encode, negotiate};
use super::range::{Selection, select};
use super::route::{
    Bearer, CutKind, Encoding, EtagMode, Flip, RangeMode, Route, Throttle, TokenEndpoint,
};
use crate::text::{base64, hex, json_string};

/// What to send back.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    /// Complete, `Content-Length` included (the length `GET` gets, also for `HEAD`).
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// End the body early after this many bytes, in this way.
    pub(crate) cut: Option<(usize, CutKind)>,
    pub(crate) throttle: Option<Throttle>,
    pub(crate) header_delay: Option<Duration>,
}

impl Reply {
    fn new(status: StatusCode, content_type: &'static str, body: Bytes) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        Reply {
            status,
            headers,
            body,
            cut: None,
            throttle: None,
            header_delay: None,
        }
    }

    fn text(status: StatusCode, message: String) -> Self {
        Reply::new(
            status,
            "text/plain; charset=utf-8",
            Bytes::from(message + "\n"),
        )
    }

    fn empty(status: StatusCode) -> Self {
        Reply::new(status, "application/octet-stream", Bytes::new())
    }

    /// A mistake in the test's own configuration: say so loudly rather than panic.
    pub(crate) fn misconfigured(message: String) -> Self {
        Reply::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("test-servers: {message}"),
        )
    }

    pub(crate) fn not_found(path: &str) -> Self {
        Reply::text(
            StatusCode::NOT_FOUND,
            format!("test-servers: no route for {path}"),
        )
    }

    pub(crate) fn body_too_large() -> Self {
        Reply::text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "test-servers: request body too large or unreadable".to_owned(),
        )
    }
}

/// The parts of a request that decide a response.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Request<'a> {
    pub(crate) method: &'a Method,
    pub(crate) headers: &'a HeaderMap,
}

impl Request<'_> {
    fn header(&self, name: HeaderName) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    fn is_get_or_head(&self) -> bool {
        *self.method == Method::GET || *self.method == Method::HEAD
    }
}

/// A route with its live counters and the representations computed so far.
#[derive(Debug)]
pub(crate) struct RouteState {
    route: Route,
    /// Encoded bodies and their digest `ETag`s, by applied codings: compressing or hashing a
    /// large body on every request would dominate test time.
    representations: HashMap<Vec<Encoding>, (Bytes, String)>,
}

impl RouteState {
    pub(crate) fn new(route: Route) -> Self {
        RouteState {
            route,
            representations: HashMap::new(),
        }
    }

    /// Decides the response to `request`, consuming the faults it uses.
    pub(crate) fn respond(&mut self, request: Request<'_>) -> Reply {
        let mut reply = self.decide(request);
        reply.header_delay = self.route.header_delay;
        if let Err(message) = apply_extra_headers(&mut reply.headers, &self.route.headers) {
            return Reply::misconfigured(message);
        }
        reply
    }

    fn decide(&mut self, request: Request<'_>) -> Reply {
        let route = &mut self.route;
        if !authorized(route, request.headers) {
            return unauthorized(route);
        }
        if let Some(injected) = route.statuses.iter_mut().find(|s| s.remaining > 0) {
            injected.remaining -= 1;
            let Ok(status) = StatusCode::from_u16(injected.status) else {
                return Reply::misconfigured(format!("invalid status {}", injected.status));
            };
            let mut reply = Reply::text(status, format!("test-servers: injected {status}"));
            if let Some(retry_after) = &injected.retry_after {
                match HeaderValue::from_str(retry_after) {
                    Ok(value) => reply.headers.insert(RETRY_AFTER, value),
                    Err(_) => {
                        return Reply::misconfigured(format!("bad Retry-After {retry_after:?}"));
                    }
                };
            }
            return reply;
        }
        if let Some(location) = &route.redirect {
            let Ok(value) = HeaderValue::from_str(location) else {
                return Reply::misconfigured(format!("bad redirect location {location:?}"));
            };
            let mut reply = Reply::empty(StatusCode::TEMPORARY_REDIRECT);
            reply.headers.insert(LOCATION, value);
            return reply;
        }
        if !request.is_get_or_head() {
            return match route.write_status.map(StatusCode::from_u16) {
                Some(Ok(status)) => Reply::empty(status),
                Some(Err(_)) => Reply::misconfigured("invalid accept_writes status".to_owned()),
                None => {
                    let mut reply = Reply::empty(StatusCode::METHOD_NOT_ALLOWED);
                    reply
                        .headers
                        .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
                    reply
                }
            };
        }
        self.content(request)
    }

    /// The `200`/`206`/`416` answer for `GET` and `HEAD`.
    fn content(&mut self, request: Request<'_>) -> Reply {
        let applied = negotiate(
            &self.route.encodings,
            self.route.force_encodings,
            request.header(ACCEPT_ENCODING),
        );
        let (representation, digest_etag) = match self.representation(&applied) {
            Ok(found) => found,
            Err(message) => return Reply::misconfigured(message),
        };
        let route = &mut self.route;
        let etag = match &route.etag {
            EtagMode::Digest => Some(digest_etag),
            EtagMode::Fixed(value) => Some(value.clone()),
            EtagMode::Off => None,
        };

        // If-None-Match (weak comparison, a list or `*`): an unchanged representation is a
        // bodiless 304 that repeats the validator.
        if let (Some(etag), Some(condition)) = (&etag, request.header(IF_NONE_MATCH)) {
            let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
            let unchanged = condition.trim() == "*"
                || condition.split(',').any(|tag| opaque(tag) == opaque(etag));
            if unchanged {
                let mut reply = Reply::empty(StatusCode::NOT_MODIFIED);
                match HeaderValue::from_str(etag) {
                    Ok(value) => reply.headers.insert(ETAG, value),
                    Err(_) => return Reply::misconfigured(format!("bad ETag {etag:?}")),
                };
                return reply;
            }
        }

        let total = representation.len();
        let mut selection = match (route.ranges, request.header(RANGE)) {
            (RangeMode::Honour, Some(range)) => select(range, total),
            // A Range header that is not text is as malformed as a bad one.
            (RangeMode::Honour, None) if request.headers.contains_key(RANGE) => {
                Selection::Unsatisfiable
            }
            _ => Selection::Full,
        };
        // If-Range: a partial answer only while the validator still matches (strong
        // comparison, so weak tags never match); otherwise the whole new content.
        if let Some(if_range) = request.headers.get(IF_RANGE) {
            let matches = etag.as_deref().is_some_and(|etag| {
                !etag.starts_with("W/") && if_range.as_bytes() == etag.as_bytes()
            });
            if !matches && selection != Selection::Unsatisfiable {
                selection = Selection::Full;
            }
        }

        let (status, start, end) = match selection {
            Selection::Full => (StatusCode::OK, 0, total),
            Selection::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end),
            Selection::Unsatisfiable => {
                let mut reply = Reply::empty(StatusCode::RANGE_NOT_SATISFIABLE);
                reply
                    .headers
                    .insert(CONTENT_RANGE, ascii(format!("bytes */{total}")));
                return reply;
            }
        };

        let mut body = representation.slice(start..end);
        let mut cut = None;
        if *request.method == Method::GET {
            body = corrupt(body, start, &mut route.flips);
            if let Some(next) = route.cuts.iter_mut().find(|c| c.remaining > 0) {
                next.remaining -= 1;
                cut = Some((next.after, next.kind));
            }
        }

        let mut reply = Reply::new(status, "application/octet-stream", body);
        let headers = &mut reply.headers;
        if status == StatusCode::PARTIAL_CONTENT {
            let range = format!("bytes {start}-{}/{total}", end.saturating_sub(1));
            headers.insert(CONTENT_RANGE, ascii(range));
        }
        if route.ranges == RangeMode::Honour {
            headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        }
        if let Some(etag) = etag {
            match HeaderValue::from_str(&etag) {
                Ok(value) => headers.insert(ETAG, value),
                Err(_) => return Reply::misconfigured(format!("bad ETag {etag:?}")),
            };
        }
        if !route.encodings.is_empty() {
            headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
        }
        if !applied.is_empty() {
            let tokens: Vec<&str> = applied.iter().map(Encoding::token).collect();
            match HeaderValue::from_str(&tokens.join(", ")) {
                Ok(value) => headers.insert(CONTENT_ENCODING, value),
                Err(_) => return Reply::misconfigured(format!("bad encoding token in {tokens:?}")),
            };
        }
        reply.cut = cut;
        reply.throttle = route.throttle;
        reply
    }

    /// The body under `applied` codings and its digest `ETag`, computed once.
    fn representation(&mut self, applied: &[Encoding]) -> Result<(Bytes, String), String> {
        if let Some(found) = self.representations.get(applied) {
            return Ok(found.clone());
        }
        let bytes = encode(&self.route.body, applied)
            .map_err(|error| format!("encoding the body failed: {error}"))?;
        let etag = format!("\"{}\"", hex(&Sha256::digest(&bytes)));
        self.representations
            .insert(applied.to_vec(), (bytes.clone(), etag.clone()));
        Ok((bytes, etag))
    }
}

/// Inverts the bytes that due flips hit in `body`, which starts at `start` of the
/// representation. Each offset is inverted at most once per response, so two queued flips
/// of one offset corrupt two responses instead of cancelling out.
fn corrupt(body: Bytes, start: usize, flips: &mut [Flip]) -> Bytes {
    let mut owned: Option<Vec<u8>> = None;
    let mut flipped = Vec::new();
    for flip in flips.iter_mut().filter(|flip| flip.remaining > 0) {
        let Some(index) = flip.offset.checked_sub(start) else {
            continue;
        };
        if index >= body.len() || flipped.contains(&index) {
            continue;
        }
        let buffer = owned.get_or_insert_with(|| body.to_vec());
        if let Some(byte) = buffer.get_mut(index) {
            *byte = !*byte;
            flip.remaining -= 1;
            flipped.push(index);
        }
    }
    owned.map_or(body, Bytes::from)
}

fn authorized(route: &Route, headers: &HeaderMap) -> bool {
    if route.bearer.is_none() && route.basic.is_none() {
        return true;
    }
    let bearer = route
        .bearer
        .as_ref()
        .is_some_and(|bearer| presents(headers, "bearer", &bearer.token));
    bearer
        || route
            .basic
            .as_ref()
            .is_some_and(|(user, password)| has_basic(headers, user, password))
}

/// Whether `headers` carry `Authorization: <scheme> <credentials>` (scheme in any case).
fn presents(headers: &HeaderMap, scheme: &str, credentials: &str) -> bool {
    headers.get_all(AUTHORIZATION).iter().any(|value| {
        value
            .to_str()
            .ok()
            .and_then(|value| value.split_once(' '))
            .is_some_and(|(given_scheme, given)| {
                given_scheme.eq_ignore_ascii_case(scheme) && given.trim() == credentials
            })
    })
}

/// Whether `headers` carry `Authorization: Basic` for `user`/`password`.
fn has_basic(headers: &HeaderMap, user: &str, password: &str) -> bool {
    presents(
        headers,
        "basic",
        &base64(format!("{user}:{password}").as_bytes()),
    )
}

fn unauthorized(route: &Route) -> Reply {
    let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
    let mut reply = Reply::new(
        StatusCode::UNAUTHORIZED,
        "application/json",
        Bytes::from_static(body.as_bytes()),
    );
    let mut challenges = Vec::new();
    if let Some(bearer) = &route.bearer {
        challenges.push(bearer_challenge(bearer));
    }
    if route.basic.is_some() {
        challenges.push(r#"Basic realm="test""#.to_owned());
    }
    for challenge in challenges {
        match HeaderValue::from_str(&challenge) {
            Ok(value) => reply.headers.append(WWW_AUTHENTICATE, value),
            Err(_) => return Reply::misconfigured(format!("bad challenge {challenge:?}")),
        };
    }
    reply
}

fn bearer_challenge(bearer: &Bearer) -> String {
    let mut challenge = format!("Bearer realm={}", json_string(&bearer.realm));
    for (name, value) in [("service", &bearer.service), ("scope", &bearer.scope)] {
        if !value.is_empty() {
            challenge.push_str(&format!(",{name}={}", json_string(value)));
        }
    }
    challenge
}

/// The answer of a token endpoint.
pub(crate) fn token_reply(endpoint: &TokenEndpoint, request: Request<'_>) -> Reply {
    if let Some((user, password)) = &endpoint.require_basic
        && !has_basic(request.headers, user, password)
    {
        let mut reply = Reply::text(
            StatusCode::UNAUTHORIZED,
            "test-servers: token endpoint wants basic credentials".to_owned(),
        );
        reply.headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="token""#),
        );
        return reply;
    }
    let mut json = format!("{{\"token\":{}", json_string(&endpoint.token));
    if let Some(expires_in) = endpoint.expires_in {
        json.push_str(&format!(",\"expires_in\":{expires_in}"));
    }
    json.push('}');
    Reply::new(StatusCode::OK, "application/json", Bytes::from(json))
}

/// Adds the route's own headers; each name given replaces the server's header of that name.
fn apply_extra_headers(headers: &mut HeaderMap, extra: &[(String, String)]) -> Result<(), String> {
    let mut replaced: Vec<HeaderName> = Vec::new();
    for (name, value) in extra {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name:?}"))?;
        let value =
            HeaderValue::from_str(value).map_err(|_| format!("invalid header value {value:?}"))?;
        if !replaced.contains(&name) {
            headers.remove(&name);
            replaced.push(name.clone());
        }
        headers.append(name, value);
    }
    Ok(())
}

/// A header value the server composed from digits and ASCII, so always valid; the fallback
/// only exists to avoid a panic path.
fn ascii(value: String) -> HeaderValue {
    HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

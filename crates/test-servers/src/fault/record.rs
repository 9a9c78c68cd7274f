//! The request log: what clients actually sent.

use std::time::Instant;

use bytes::Bytes;
use hyper::header::AUTHORIZATION;
use hyper::{HeaderMap, Method};

use crate::text::percent_decode;

/// One request as the server received it, in arrival order in
/// [`FaultServer::requests`](super::FaultServer::requests).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RecordedRequest {
    /// The request method.
    pub method: Method,
    /// The request target's path and query, e.g. `/token?service=reg&scope=…`.
    pub path_and_query: String,
    /// Every header, repeated ones included.
    pub headers: HeaderMap,
    /// The request body (empty for most `GET`s).
    pub body: Bytes,
    /// Which connection carried the request, numbered from 1 in accept order; equal numbers
    /// mean the client reused a connection.
    pub connection: u64,
    /// When the request head arrived.
    pub received: Instant,
}

impl RecordedRequest {
    /// The path, without the query.
    pub fn path(&self) -> &str {
        split_target(&self.path_and_query).0
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = split_target(&self.path_and_query).1?;
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key) == name).then(|| percent_decode(value))
        })
    }

    /// The first value of header `name` (any case), if present and valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// Whether the request carried an `Authorization` header of any kind.
    pub fn has_authorization(&self) -> bool {
        self.headers.contains_key(AUTHORIZATION)
    }
}

/// Splits a request target into path and optional query.
pub(crate) fn split_target(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

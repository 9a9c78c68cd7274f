//! A programmable HTTP/1.1 server on loopback that misbehaves on request.
//!
//! [`FaultServer::start`] binds a free port and serves [`Route`]s, each a body plus the
//! faults to inject: statuses ([`Route::status_first`]), cut bodies
//! ([`Route::reset_after`], [`Route::truncate_after`]), corruption ([`Route::flip_byte`]),
//! range handling ([`RangeMode`], `ETag`, `If-Range`, `If-None-Match`), content codings ([`Encoding`]),
//! redirects, authentication ([`Bearer`], [`TokenEndpoint`], basic) and slow bodies.
//! Unknown paths get `404`; every request is recorded ([`RecordedRequest`]).
//!
//! It is hyper underneath, so everything that is not an injected fault is ordinary,
//! well-formed HTTP/1.1 with keep-alive.

mod body;
mod encoding;
mod range;
mod record;
mod respond;
mod route;
mod server;

pub use hyper::{HeaderMap, Method};
pub use record::RecordedRequest;
pub use route::{Bearer, Encoding, RangeMode, Route, TokenEndpoint};
pub use server::FaultServer;

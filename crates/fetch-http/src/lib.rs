//! HTTP transport and OCI distribution for pkgload.
//!
//! One [`HttpClient`] per process: pooled connections, a global and a per-host concurrency
//! limit, timeouts, retries with backoff, credentials that never leave their origin, and
//! [`HttpClient::fetch_blob`], which streams a blob straight into a [`cache_core::Store`]:
//!
//! - **cache-first**: a blob already stored costs no request;
//! - **shared**: concurrent fetches of one digest (in this process and others) download once;
//! - **verified while streaming**: hashed as it is written, cut off past its declared size,
//!   retried from scratch when the digest does not match;
//! - **resumable**: an interrupted body continues with `Range` (and `If-Range`);
//! - **decoded**: `gzip`/`zstd` content encodings, stacked or not, as a stream.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use fetch_http::{BlobRequest, BlobSource, ClientConfig, Credentials, HttpClient};
//!
//! let store = cache_core::Store::open("/tmp/pkgload-cache").await?;
//! let client = HttpClient::new(ClientConfig::default(), Credentials::from_docker_config()?)?;
//! let digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse()?;
//! let source = BlobSource::parse("https://example.com/empty.bin")?;
//! let blob = client.fetch_blob(BlobRequest::new(source, digest, Some(0)), &store).await?;
//! assert!(blob.is_empty());
//! # Ok(()) }
//! ```
//!
//! On top of the transport: the OCI distribution API (manifests with platform selection,
//! blobs, tags with pagination, push with mount and chunked upload), OCI image layout
//! directories, and [`Repository`], one interface over both. [`reference`] parses
//! `registry/repo[:tag][@digest]` and `oci:DIR[:TAG]`; [`platform`] picks an image from an
//! index the way containerd does.

// `Error` embeds `cache_core::Error` (which carries two digests) so callers can match on
// the store's verdict; errors are rare and every fallible call does network or disk I/O.
#![allow(clippy::result_large_err)]

mod auth;
mod blob;
mod client;
mod download;
mod encoding;
mod error;
pub mod hosts;
mod layout;
pub mod platform;
mod range;
pub mod reference;
mod registry;
mod repository;
mod retry;
mod url_file;

/// The `WWW-Authenticate` parser, public only for the fuzzer in `fuzz/`; not a stable API.
#[doc(hidden)]
pub use auth::{Challenge, parse_challenge};
pub use auth::{Credential, Credentials};
pub use blob::{BlobHost, BlobRequest, BlobSource, Progress, ProgressFn};
pub use client::{ClientConfig, HttpClient};
pub use download::{AttemptFailed, Begun, BlobDownload};
pub use error::{Error, Result};
pub use layout::OciLayout;
pub use registry::{
    MANIFEST_LIMIT, MANIFEST_MEDIA_TYPES, Manifest, ManifestKind, Pushed, descriptor_platform,
};
pub use repository::Repository;
pub use reqwest::Url;
pub use retry::{RetryPolicy, parse_retry_after};
pub use url_file::UrlFile;

//! The crate's error type. Messages name the URL (with its query removed: pre-signed URLs
//! carry secrets there), the digest when there is one, and what the user can do. No
//! credential or token ever appears in one.

use std::time::Duration;

use cache_core::Digest;

/// Everything that can go wrong fetching or pushing.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with a status that retrying will not change.
    #[error("{method} {url}: HTTP {status}{}", hint_for(*status))]
    Status {
        /// The request method.
        method: String,
        /// The URL, without query.
        url: String,
        /// The status code.
        status: u16,
    },

    /// The server wants credentials we do not have, or rejected the ones we sent.
    #[error(
        "{url}: authentication failed: {reason}; check the credentials for {host} \
         (`docker login {host}`, $DOCKER_CONFIG/config.json, or credentials given in code)"
    )]
    Auth {
        /// The URL, without query.
        url: String,
        /// The registry host.
        host: String,
        /// What went wrong (never the credential itself).
        reason: String,
    },

    /// Transient failures went on longer than the retry policy allows.
    #[error(
        "fetching {what} from {url} failed after {attempts} attempts{} in {:.1?}; last error: {last}",
        without_progress.map(|n| format!(" (the last {n} without progress)")).unwrap_or_default(),
        elapsed
    )]
    RetriesExhausted {
        /// The digest (or "manifest …") being fetched.
        what: String,
        /// The URL, without query.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// For a resumable download: how many of the last attempts in a row moved nothing.
        without_progress: Option<u32>,
        /// Time spent.
        elapsed: Duration,
        /// The last cause.
        last: String,
    },

    /// The response used a content coding we cannot decode.
    #[error(
        "{url}: unsupported Content-Encoding {encoding:?} (supported: identity, gzip, zstd); \
         the server ignored our Accept-Encoding"
    )]
    UnsupportedEncoding {
        /// The URL, without query.
        url: String,
        /// The coding as sent.
        encoding: String,
    },

    /// A body was larger than allowed (manifests and indexes are capped).
    #[error("{url}: response exceeds the {limit}-byte limit for {what}")]
    TooLarge {
        /// The URL, without query.
        url: String,
        /// What was being read.
        what: &'static str,
        /// The limit in bytes.
        limit: u64,
    },

    /// A request was refused before it was sent (bad URL, plain HTTP to a remote host, …).
    #[error("{url}: {reason}")]
    Refused {
        /// The URL, without query.
        url: String,
        /// Why.
        reason: String,
    },

    /// A request for a byte range was answered with the whole body (the server ignores
    /// `Range`): the caller should fetch the whole blob instead.
    #[error("{url}: the server ignored the Range header and answered the whole blob")]
    RangeIgnored {
        /// The URL, without query.
        url: String,
    },

    /// A transport failure that retrying will not fix.
    #[error("{url}: {message}")]
    Transport {
        /// The URL, without query.
        url: String,
        /// The cause.
        message: String,
    },

    /// A local file given as a blob source could not be read.
    #[error("reading {path}: {message}")]
    File {
        /// The file.
        path: String,
        /// The cause.
        message: String,
    },

    /// A credentials file could not be used.
    #[error("credentials file {path}: {message}")]
    Credentials {
        /// The file.
        path: String,
        /// What is wrong with it (never its secrets).
        message: String,
    },

    /// A Docker credential helper failed (it is installed, but did not answer).
    #[error("credential helper {program} for {host}: {message}")]
    CredentialHelper {
        /// The helper program, `docker-credential-<name>`.
        program: String,
        /// The registry host it was asked about.
        host: String,
        /// What went wrong (never a secret).
        message: String,
    },

    /// A blob arrived but does not match its descriptor (after all retries).
    #[error("{url}: {source}")]
    Corrupt {
        /// The URL, without query.
        url: String,
        /// The store's verdict.
        #[source]
        source: cache_core::Error,
    },

    /// The server's certificate is not trusted, or ours was refused: not worth a retry.
    #[error(
        "{url}: TLS with {host} failed: {message}; to trust a private CA for this host, \
         set `ca = \"ca.pem\"` in its hosts.toml (--hosts-dir DIR/{host}/hosts.toml), or \
         point SSL_CERT_FILE at it"
    )]
    Tls {
        /// The URL, without query.
        url: String,
        /// `host[:port]`.
        host: String,
        /// What the TLS layer said.
        message: String,
    },

    /// The server refused our client certificate, or the lack of one (a TLS alert it sent):
    /// not worth a retry.
    #[error(
        "{url}: {host} refused the TLS connection: {message}; it wants a client certificate \
         it trusts: set `client = [\"cert.pem\", \"key.pem\"]` in its hosts.toml \
         (--hosts-dir DIR/{host}/hosts.toml)"
    )]
    TlsClientRefused {
        /// The URL, without query.
        url: String,
        /// `host[:port]`.
        host: String,
        /// What the TLS layer said.
        message: String,
    },

    /// A `hosts.toml` could not be used.
    #[error(transparent)]
    Hosts(#[from] crate::hosts::HostsError),

    /// The store failed (disk full, permissions, …).
    #[error(transparent)]
    Store(#[from] cache_core::Error),
}

impl Error {
    /// The digest mismatch/size mismatch/store error behind this one, if any.
    pub fn store_error(&self) -> Option<&cache_core::Error> {
        match self {
            Error::Corrupt { source, .. } | Error::Store(source) => Some(source),
            _ => None,
        }
    }

    /// The HTTP status, for [`Error::Status`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A store error from writing or committing what came from `source`: the data's fault
    /// ([`Error::Corrupt`]) or the store's.
    pub(crate) fn from_ingest(err: cache_core::Error, source: &str) -> Error {
        if err.is_corrupt_transfer() {
            Error::Corrupt {
                url: source.to_owned(),
                source: err,
            }
        } else {
            Error::Store(err)
        }
    }

    /// Undo the store's wrapping of our own error from inside a shared fetch.
    pub(crate) fn from_store(err: cache_core::Error, digest: Digest) -> Error {
        if let cache_core::Error::Source { source, .. } = &err
            && let Some(ours) = source.downcast_ref::<Error>()
        {
            return ours.clone();
        }
        let _ = digest;
        Error::Store(err)
    }
}

fn hint_for(status: u16) -> &'static str {
    match status {
        401 | 403 => " (check the registry credentials and that they may pull this repository)",
        404 => " (no such repository, tag or blob: check the reference)",
        405 => " (the registry does not support this operation)",
        _ => "",
    }
}

/// A URL as it may appear in messages and logs: no userinfo, no query, no fragment.
pub(crate) fn redact(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    let had_query = shown.query().is_some();
    shown.set_query(None);
    shown.set_fragment(None);
    let mut text = shown.to_string();
    if had_query {
        text.push_str("?…");
    }
    text
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

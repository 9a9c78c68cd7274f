//! [`BlobDownload`]: one blob on its way into the store, from whichever host serves it.
//!
//! A download is its partial file (an [`Ingest`] in the store) plus the accounting of how
//! the attempts to grow it went. It is not tied to a URL: [`BlobDownload::attempt`] takes
//! the URL of each attempt, and the partial continues from its length wherever the next
//! bytes come from, because the digest, not the host, says what the bytes must be. A caller
//! that knows several hosts for one blob (mirrors) can therefore move a download from one
//! to the next without losing what it has; [`BlobDownload::run`] is the one-host loop.
//!
//! Retries count progress, not attempts. On a bad network most failed attempts still move
//! the partial forward (a connection reset after 600 KiB of 1 MiB), and giving up after a
//! fixed number of those abandons a download that was going to finish. So an attempt that
//! grew the partial beyond its length at the start costs nothing and resets the backoff;
//! only attempts in a row that moved nothing forward are bounded (by
//! [`RetryPolicy::max_stalled_attempts`]), and the whole download by
//! [`RetryPolicy::max_elapsed`]. A digest mismatch discards the partial (it cannot be told
//! which bytes are wrong) and counts as an attempt without progress; the download then
//! starts again from byte 0, and its growth counts as progress again. The same wrong
//! content twice in a row ends the download at once: the server holds other bytes than
//! the digest names, and no retry will change that.

use std::time::{Duration, Instant};

use bytes::Bytes;
use cache_core::{Begin, Blob, Ingest, Store};
use futures::StreamExt;
use reqwest::{StatusCode, Url, header};

use crate::blob::{BlobHost, BlobRequest, Progress};
use crate::client::{Failure, HttpClient};
use crate::encoding;
use crate::error::{Error, Result, redact};
use crate::retry::RetryPolicy;

/// What [`BlobDownload::begin`] found.
#[derive(Debug)]
pub enum Begun {
    /// The blob is stored already (another caller or process finished it).
    Present(Blob),
    /// A download to continue: its partial holds whatever earlier attempts left.
    Download(Box<BlobDownload>),
}

/// How one attempt ended, when it did not store the blob.
#[derive(Debug)]
pub struct AttemptFailed {
    /// Why, naming the URL (without its query).
    pub cause: String,
    /// The server's `Retry-After`, if it sent one.
    pub retry_after: Option<Duration>,
    /// The partial grew beyond its length when the attempt began.
    pub progressed: bool,
    /// No connection could be made to the host.
    pub unreachable: bool,
    /// The store's verdict when the bytes proved wrong (digest or size mismatch); the
    /// partial is gone and the next attempt starts at byte 0.
    pub corrupt: Option<cache_core::Error>,
}

/// One blob being downloaded into the store (see the module docs).
#[derive(Debug)]
pub struct BlobDownload {
    store: Store,
    req: BlobRequest,
    /// The partial; `None` after a mismatch discarded it (the next attempt begins anew).
    ingest: Option<Ingest>,
    /// A validator for `If-Range`, and the URL that sent it: only that URL's answers can
    /// be checked against it.
    validator: Option<(Url, String)>,
    started: Instant,
    attempts: u32,
    stalled: u32,
    /// What the last complete body hashed to when it was not the digest: the same wrong
    /// content twice is what the server holds, not a transfer error, and is not retried.
    last_wrong: Option<cache_core::Digest>,
}

impl BlobDownload {
    /// Take the digest's partial in `store` (waiting for another process that holds it),
    /// or find the blob already stored.
    pub async fn begin(store: &Store, req: &BlobRequest) -> Result<Begun> {
        Ok(match store.begin(req.digest, req.size).await? {
            Begin::Present(blob) => Begun::Present(blob),
            Begin::Write(ingest) => Begun::Download(Box::new(BlobDownload {
                store: store.clone(),
                req: req.clone(),
                ingest: Some(ingest),
                validator: None,
                started: Instant::now(),
                attempts: 0,
                stalled: 0,
                last_wrong: None,
            })),
        })
    }

    /// Bytes held so far.
    pub fn held(&self) -> u64 {
        self.ingest.as_ref().map_or(0, Ingest::written)
    }

    /// Attempts made so far, and how many of the last ones in a row made no progress.
    pub fn attempts(&self) -> (u32, u32) {
        (self.attempts, self.stalled)
    }

    /// Download from `host` until the blob is stored, retrying per `client`'s
    /// [`RetryPolicy`]: bounded by attempts in a row without progress and by total time.
    pub async fn run(mut self, client: &HttpClient, host: &BlobHost) -> Result<Blob> {
        self.run_on(client, host, false).await
    }

    /// [`run`](Self::run) without giving the download up: when `host` fails for good (its
    /// retries spent, a final error, or with `leave_unreachable` no connection at all),
    /// the partial stays here for the next host to resume. The retry budget starts afresh
    /// on each host.
    pub async fn run_on(
        &mut self,
        client: &HttpClient,
        host: &BlobHost,
        leave_unreachable: bool,
    ) -> Result<Blob> {
        let url = &host.url;
        let policy = client.config().retry.clone();
        self.stalled = 0;
        self.started = Instant::now();
        loop {
            let failed = match self.attempt(client, host).await? {
                Ok(blob) => return Ok(blob),
                Err(failed) => failed,
            };
            if failed.unreachable && leave_unreachable {
                return Err(Error::Transport {
                    url: redact(url),
                    message: failed.cause,
                });
            }
            let Some(wait) = self.next_wait(&policy, &failed) else {
                if let Some(source) = failed.corrupt {
                    return Err(Error::Corrupt {
                        url: redact(url),
                        source,
                    });
                }
                return Err(Error::RetriesExhausted {
                    what: self.req.digest.to_string(),
                    url: redact(url),
                    attempts: self.attempts,
                    without_progress: Some(self.stalled),
                    elapsed: self.started.elapsed(),
                    last: failed.cause,
                });
            };
            tracing::info!(
                attempt = self.attempts,
                stalled = self.stalled,
                held = self.held(),
                cause = %failed.cause,
                "blob transfer failed; retrying"
            );
            self.req.report(Progress::Retrying {
                digest: self.req.digest,
                attempt: self.attempts,
                cause: failed.cause,
            });
            tokio::time::sleep(wait).await;
        }
    }

    /// Record a failed attempt; the wait before the next one, or `None` when `policy`
    /// allows no more.
    pub fn next_wait(&mut self, policy: &RetryPolicy, failed: &AttemptFailed) -> Option<Duration> {
        if failed.progressed {
            self.stalled = 0;
        } else {
            self.stalled += 1;
        }
        if self.stalled >= policy.max_stalled_attempts {
            return None;
        }
        if let Some(cache_core::Error::DigestMismatch { actual, .. }) = &failed.corrupt {
            if self.last_wrong == Some(*actual) {
                return None;
            }
            self.last_wrong = Some(*actual);
        }
        // Progress resets the backoff: the next wait is the first one again.
        let wait = policy.delay(self.stalled.max(1), failed.retry_after);
        // A wait that would end past the time limit is not worth starting.
        (self.started.elapsed() + wait < policy.max_elapsed).then_some(wait)
    }

    /// One attempt from `host`: request from the partial's length, stream the body into
    /// it, and commit when it is complete. `Err` is final (not found, refused, disk full);
    /// `Ok(Err(_))` is a transient failure worth another attempt, here or elsewhere.
    pub async fn attempt(
        &mut self,
        client: &HttpClient,
        host: &BlobHost,
    ) -> Result<std::result::Result<Blob, AttemptFailed>> {
        let url = &host.url;
        self.attempts += 1;
        let ingest = match self.ingest.take() {
            Some(ingest) => ingest,
            None => match self.store.begin(self.req.digest, self.req.size).await? {
                Begin::Present(blob) => return Ok(Ok(blob)),
                Begin::Write(ingest) => ingest,
            },
        };
        let before = ingest.written();
        if self.validator.as_ref().is_some_and(|(from, _)| from != url) {
            self.validator = None;
        }
        match self.transfer(client, host, ingest).await {
            Transfer::Complete(ingest) => match ingest.commit().await {
                Ok(blob) => Ok(Ok(blob)),
                // A corrupt transfer: the partial is gone; the next attempt starts at 0.
                Err(e) if e.is_corrupt_transfer() => {
                    self.validator = None;
                    Ok(Err(AttemptFailed {
                        cause: format!("{}: {e}", redact(url)),
                        retry_after: None,
                        progressed: false,
                        unreachable: false,
                        corrupt: Some(e),
                    }))
                }
                Err(e) => Err(e.into()),
            },
            Transfer::Retry {
                ingest,
                cause,
                retry_after,
                unreachable,
            } => {
                let progressed = ingest.written() > before;
                self.ingest = Some(ingest);
                Ok(Err(AttemptFailed {
                    cause,
                    retry_after,
                    progressed,
                    unreachable,
                    corrupt: None,
                }))
            }
            // The ingest was dropped, and its partial with it.
            Transfer::Discard(cause, e) => Ok(Err(AttemptFailed {
                cause,
                retry_after: None,
                progressed: false,
                unreachable: false,
                corrupt: Some(e),
            })),
            Transfer::Final(e) => Err(e),
        }
    }

    async fn transfer(
        &mut self,
        client: &HttpClient,
        host: &BlobHost,
        mut ingest: Ingest,
    ) -> Transfer {
        let url = &host.url;
        let req = &self.req;
        let offset = ingest.written();
        if req.size == Some(offset) {
            // Everything is here already (resumed after the last byte); commit verifies.
            return Transfer::Complete(ingest);
        }
        let mut request = host.request();
        if offset > 0 {
            request = request
                .header(header::RANGE, &format!("bytes={offset}-"))
                // A range of an encoded body cannot be decoded alone.
                .header(header::ACCEPT_ENCODING, "identity");
            if let Some((_, v)) = &self.validator {
                request = request.header(header::IF_RANGE, v);
            }
        } else {
            request = request.header(header::ACCEPT_ENCODING, encoding::ACCEPT);
        }
        let resp = match client.send(request).await {
            Ok(r) => r,
            Err(Failure::Retry {
                cause,
                retry_after,
                unreachable,
            }) => {
                return Transfer::Retry {
                    ingest,
                    cause,
                    retry_after,
                    unreachable,
                };
            }
            Err(Failure::Final(e)) => return Transfer::Final(e),
        };
        let status = resp.inner.status();
        if self.validator.is_none() {
            self.validator = strong_validator(resp.inner.headers()).map(|v| (url.clone(), v));
        }
        if offset > 0 {
            let resumed = status == StatusCode::PARTIAL_CONTENT
                && content_range_start(resp.inner.headers()) == Some(offset);
            if !resumed {
                // The server ignored Range (or If-Range failed): it sends the whole body.
                tracing::debug!(offset, %status, "server did not resume; restarting the blob");
                ingest = match ingest.restart().await {
                    Ok(i) => i,
                    Err(e) => return Transfer::Final(e.into()),
                };
                if status == StatusCode::PARTIAL_CONTENT {
                    // A range we did not ask for; ask again from zero.
                    let cause = format!(
                        "{}: the server answered with an unexpected Content-Range",
                        redact(url)
                    );
                    return Transfer::Retry {
                        ingest,
                        cause,
                        retry_after: None,
                        unreachable: false,
                    };
                }
            }
        }
        let codings = match resp
            .inner
            .headers()
            .get(header::CONTENT_ENCODING)
            .map(|v| encoding::parse(v.to_str().unwrap_or("?")))
            .transpose()
        {
            Ok(c) => c.unwrap_or_default(),
            Err(encoding) => {
                let e = Error::UnsupportedEncoding {
                    url: redact(url),
                    encoding,
                };
                return Transfer::Final(e);
            }
        };
        req.report(Progress::Started {
            digest: req.digest,
            offset: ingest.written(),
            total: req.size,
        });
        let mut body = encoding::decoded_body(resp.inner, &codings);
        while let Some(chunk) = body.next().await {
            let chunk: Bytes = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let cause = format!(
                        "{}: connection lost after {} of {} bytes: {e}",
                        redact(url),
                        ingest.written(),
                        req.size.map_or("?".into(), |s| s.to_string())
                    );
                    return Transfer::Retry {
                        ingest,
                        cause,
                        retry_after: None,
                        unreachable: false,
                    };
                }
            };
            if let Err(e) = ingest.write(chunk).await {
                let outcome = if e.is_corrupt_transfer() {
                    // Longer than the descriptor: the partial cannot be right.
                    Transfer::Discard(format!("{}: {e}", redact(url)), e)
                } else {
                    Transfer::Final(e.into())
                };
                return outcome;
            }
            req.report(Progress::Advanced {
                digest: req.digest,
                done: ingest.written(),
                total: req.size,
            });
        }
        if let Some(size) = req.size
            && ingest.written() < size
        {
            let cause = format!(
                "{}: body ended after {} of {size} bytes",
                redact(url),
                ingest.written()
            );
            return Transfer::Retry {
                ingest,
                cause,
                retry_after: None,
                unreachable: false,
            };
        }
        Transfer::Complete(ingest)
    }
}

/// How one transfer into the partial ended.
enum Transfer {
    /// The body ended where the blob should: commit to verify it.
    Complete(Ingest),
    /// Transient: the partial keeps what arrived.
    Retry {
        ingest: Ingest,
        cause: String,
        retry_after: Option<Duration>,
        unreachable: bool,
    },
    /// The partial is wrong and must go (the body ran past the declared size).
    Discard(String, cache_core::Error),
    /// Not worth another attempt anywhere.
    Final(Error),
}

/// An ETag usable in `If-Range` (strong only), else Last-Modified.
pub(crate) fn strong_validator(headers: &header::HeaderMap) -> Option<String> {
    if let Some(etag) = headers.get(header::ETAG).and_then(|v| v.to_str().ok())
        && !etag.starts_with("W/")
    {
        return Some(etag.to_owned());
    }
    headers
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `Content-Range: bytes 100-199/200` → 100.
pub(crate) fn content_range_start(headers: &header::HeaderMap) -> Option<u64> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let range = value.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_validators() {
        let mut h = header::HeaderMap::new();
        h.insert(header::CONTENT_RANGE, "bytes 100-199/200".parse().unwrap());
        assert_eq!(content_range_start(&h), Some(100));
        h.insert(header::ETAG, "W/\"weak\"".parse().unwrap());
        h.insert(
            header::LAST_MODIFIED,
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(
            strong_validator(&h).as_deref(),
            Some("Sun, 06 Nov 1994 08:49:37 GMT")
        );
        h.insert(header::ETAG, "\"strong\"".parse().unwrap());
        assert_eq!(strong_validator(&h).as_deref(), Some("\"strong\""));
    }
}

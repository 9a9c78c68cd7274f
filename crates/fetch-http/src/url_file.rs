//! [`HttpClient::fetch_url_file`]: a file at a URL whose digest nobody told us, revalidated
//! by its ETag.
//!
//! A webc package named by a bare URL has no digest to verify against, so the store learns
//! it from the bytes (an anonymous ingest) and the caller remembers the URL's ETag. Later
//! loads send `If-None-Match`: a 304 costs one round trip and no bytes. The body streams
//! into the store, never into memory, and an interrupted body resumes with `Range` +
//! `If-Range` when the server gave a strong validator (else it restarts). The retry budget
//! is the one blob downloads use: attempts in a row that moved nothing, and a total time.

use std::time::Instant;

use bytes::Bytes;
use cache_core::{Algorithm, Blob, Ingest, Store};
use futures::StreamExt as _;
use reqwest::{StatusCode, Url, header};

use crate::client::{Failure, HttpClient, Request};
use crate::download::{content_range_start, strong_validator};
use crate::encoding;
use crate::error::{Error, Result, redact};

/// What [`HttpClient::fetch_url_file`] found.
#[derive(Debug)]
pub enum UrlFile {
    /// The server said the representation still has the ETag we sent (HTTP 304).
    Unchanged,
    /// The file, now in the store under its sha256, and the ETag the server gave it.
    Fetched {
        /// The stored file.
        blob: Blob,
        /// The strong ETag to revalidate it with next time, if the server sent one.
        etag: Option<String>,
    },
}

/// How one attempt ended.
enum Attempt {
    Done(UrlFile),
    /// Transient; the ingest keeps what arrived.
    Retry(String, Option<std::time::Duration>),
}

impl HttpClient {
    /// The file at `url`, streamed into `store` under its sha256 (at most `limit` bytes).
    /// With `if_none_match` (an ETag from an earlier fetch) an unchanged file answers
    /// [`UrlFile::Unchanged`] without a body.
    pub async fn fetch_url_file(
        &self,
        url: &Url,
        if_none_match: Option<&str>,
        store: &Store,
        limit: u64,
    ) -> Result<UrlFile> {
        let policy = self.config().retry.clone();
        let started = Instant::now();
        let mut state = Transfer {
            url,
            limit,
            ingest: None,
            validator: None,
        };
        let (mut attempts, mut stalled) = (0u32, 0u32);
        loop {
            attempts += 1;
            let before = state.ingest.as_ref().map_or(0, Ingest::written);
            let (cause, retry_after) = match state.attempt(self, if_none_match, store).await? {
                Attempt::Done(file) => return Ok(file),
                Attempt::Retry(cause, retry_after) => (cause, retry_after),
            };
            if state.ingest.as_ref().map_or(0, Ingest::written) > before {
                stalled = 0;
            } else {
                stalled += 1;
            }
            let wait = policy.delay(stalled.max(1), retry_after);
            if stalled >= policy.max_stalled_attempts
                || started.elapsed() + wait >= policy.max_elapsed
            {
                if let Some(ingest) = state.ingest.take() {
                    ingest.abort().await;
                }
                return Err(Error::RetriesExhausted {
                    what: "file".to_owned(),
                    url: redact(url),
                    attempts,
                    without_progress: Some(stalled),
                    elapsed: started.elapsed(),
                    last: cause,
                });
            }
            tracing::info!(attempts, stalled, %cause, "file transfer failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }
}

/// One file's transfer across attempts.
struct Transfer<'a> {
    url: &'a Url,
    limit: u64,
    /// What has arrived so far (hashing as it is written).
    ingest: Option<Ingest>,
    /// The strong validator of the representation the ingest holds part of.
    validator: Option<String>,
}

impl Transfer<'_> {
    async fn attempt(
        &mut self,
        client: &HttpClient,
        if_none_match: Option<&str>,
        store: &Store,
    ) -> Result<Attempt> {
        let url = self.url;
        let offset = self.ingest.as_ref().map_or(0, Ingest::written);
        let mut request = Request::get(url.clone());
        match (&self.validator, offset) {
            (Some(validator), 1..) => {
                request = request
                    .header(header::RANGE, &format!("bytes={offset}-"))
                    .header(header::IF_RANGE, validator)
                    .header(header::ACCEPT_ENCODING, "identity");
            }
            _ => {
                request = request.header(header::ACCEPT_ENCODING, encoding::ACCEPT);
                if let Some(etag) = if_none_match {
                    request = request.header(header::IF_NONE_MATCH, etag);
                }
            }
        }
        let resp = match client.send(request).await {
            Ok(resp) => resp,
            Err(Failure::Retry {
                cause, retry_after, ..
            }) => {
                return Ok(Attempt::Retry(cause, retry_after));
            }
            Err(Failure::Final(e)) => return Err(e),
        };
        let status = resp.inner.status();
        if status == StatusCode::NOT_MODIFIED {
            if let Some(ingest) = self.ingest.take() {
                ingest.abort().await;
            }
            return Ok(Attempt::Done(UrlFile::Unchanged));
        }
        let resumed = offset > 0
            && status == StatusCode::PARTIAL_CONTENT
            && content_range_start(resp.inner.headers()) == Some(offset);
        let mut ingest = match self.ingest.take() {
            Some(ingest) if resumed => ingest,
            stale => {
                // A whole body (the server ignored Range, or the file changed under
                // If-Range): what arrived before belongs to another representation.
                if let Some(ingest) = stale {
                    ingest.abort().await;
                }
                if status == StatusCode::PARTIAL_CONTENT {
                    return Ok(Attempt::Retry(
                        format!("{}: an unexpected Content-Range", redact(url)),
                        None,
                    ));
                }
                self.validator = strong_validator(resp.inner.headers());
                store.begin_anonymous(Algorithm::Sha256).await?
            }
        };
        let codings = resp
            .inner
            .headers()
            .get(header::CONTENT_ENCODING)
            .map(|v| encoding::parse(v.to_str().unwrap_or("?")))
            .transpose()
            .map_err(|encoding| Error::UnsupportedEncoding {
                url: redact(url),
                encoding,
            })?
            .unwrap_or_default();
        let etag = resp
            .inner
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = encoding::decoded_body(resp.inner, &codings);
        while let Some(chunk) = body.next().await {
            let chunk: Bytes = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    let cause = format!(
                        "{}: connection lost after {} bytes: {e}",
                        redact(url),
                        ingest.written()
                    );
                    self.ingest = Some(ingest);
                    return Ok(Attempt::Retry(cause, None));
                }
            };
            if ingest.written() + chunk.len() as u64 > self.limit {
                ingest.abort().await;
                return Err(Error::TooLarge {
                    url: redact(url),
                    what: "file",
                    limit: self.limit,
                });
            }
            ingest.write(chunk).await?;
        }
        let blob = ingest.commit().await?;
        Ok(Attempt::Done(UrlFile::Fetched {
            blob,
            etag: etag.filter(|e| !e.starts_with("W/")),
        }))
    }
}

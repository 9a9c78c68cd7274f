//! [`HttpClient::fetch_blob`]: cache-first, shared, streaming, verified, resumable.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use cache_core::{Begin, Blob, Digest, Ingest, Store};
use futures::{StreamExt, TryStreamExt};
use reqwest::header;
use reqwest::{StatusCode, Url};

use crate::client::{Failure, HttpClient, Request};
use crate::encoding;
use crate::error::{Error, Result, redact};

/// Where a blob's bytes come from.
#[derive(Debug, Clone)]
pub enum BlobSource {
    /// An `http(s)` URL, with the token scope it needs (e.g. `repository:acme/app:pull`).
    Url {
        /// The URL.
        url: Url,
        /// The registry token scope, if the host uses token auth.
        scope: Option<String>,
    },
    /// A local file (`file://` URLs become this).
    File(PathBuf),
}

impl BlobSource {
    /// Parse `http(s)://…`, `file://…` or a plain local path.
    pub fn parse(text: &str) -> Result<Self> {
        if text.starts_with("http://") || text.starts_with("https://") {
            let url = Url::parse(text).map_err(|e| Error::Refused {
                url: text.chars().take(200).collect(),
                reason: format!("not a valid URL: {e}"),
            })?;
            return Ok(BlobSource::Url { url, scope: None });
        }
        if text.starts_with("file:") {
            let url = Url::parse(text).map_err(|e| Error::Refused {
                url: text.chars().take(200).collect(),
                reason: format!("not a valid URL: {e}"),
            })?;
            let path = url.to_file_path().map_err(|()| Error::Refused {
                url: text.chars().take(200).collect(),
                reason: "not a local file URL".into(),
            })?;
            return Ok(BlobSource::File(path));
        }
        Ok(BlobSource::File(PathBuf::from(text)))
    }

    fn shown(&self) -> String {
        match self {
            BlobSource::Url { url, .. } => redact(url),
            BlobSource::File(p) => p.display().to_string(),
        }
    }
}

/// Progress of one blob, for progress bars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A transfer (attempt) starts at `offset` bytes.
    Started {
        /// The blob.
        digest: Digest,
        /// Bytes already held (resumed).
        offset: u64,
        /// Expected size.
        total: Option<u64>,
    },
    /// More bytes arrived.
    Advanced {
        /// The blob.
        digest: Digest,
        /// Bytes held so far.
        done: u64,
        /// Expected size.
        total: Option<u64>,
    },
    /// An attempt failed and another follows.
    Retrying {
        /// The blob.
        digest: Digest,
        /// Attempts made so far.
        attempt: u32,
        /// Why the last one failed.
        cause: String,
    },
    /// Stored and verified.
    Finished {
        /// The blob.
        digest: Digest,
        /// Its size.
        bytes: u64,
    },
}

/// Receives [`Progress`] events; called from the downloading task, so keep it cheap.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// One blob to fetch: where from, and what it must be.
#[derive(Clone)]
pub struct BlobRequest {
    /// Where from.
    pub source: BlobSource,
    /// The digest it must hash to.
    pub digest: Digest,
    /// The size its descriptor gives (bodies are cut off past it).
    pub size: Option<u64>,
    /// Progress events, if wanted.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for BlobRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobRequest")
            .field("source", &self.source)
            .field("digest", &self.digest)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl BlobRequest {
    /// A request without progress reporting.
    pub fn new(source: BlobSource, digest: Digest, size: Option<u64>) -> Self {
        BlobRequest {
            source,
            digest,
            size,
            progress: None,
        }
    }

    fn report(&self, event: Progress) {
        if let Some(p) = &self.progress {
            p(event);
        }
    }
}

impl HttpClient {
    /// The blob, from the store if it is there (no request at all), else downloaded into it.
    ///
    /// Concurrent calls for one digest share one download (and other processes wait for
    /// it). The body streams through the store's ingest — hashed while written, cut off past
    /// the descriptor's size — and an interrupted transfer resumes with `Range`. Transient
    /// failures and corrupt transfers are retried per the [`RetryPolicy`](crate::RetryPolicy).
    pub async fn fetch_blob(&self, req: BlobRequest, store: &Store) -> Result<Blob> {
        let digest = req.digest;
        if let Some(blob) = store.get(&digest)? {
            return Ok(blob);
        }
        let client = self.clone();
        let st = store.clone();
        store
            .get_or_fetch(
                digest,
                move || async move { client.download(req, &st).await },
            )
            .await
            .map_err(|e| Error::from_store(e, digest))
    }

    #[tracing::instrument(level = "info", name = "fetch_blob", skip_all,
        fields(source = %req.source.shown(), digest = %req.digest, bytes = tracing::field::Empty))]
    async fn download(&self, req: BlobRequest, store: &Store) -> Result<Blob> {
        let blob = match &req.source {
            BlobSource::File(path) => copy_file(path.clone(), &req, store).await?,
            BlobSource::Url { url, scope } => {
                self.download_url(url, scope.clone(), &req, store).await?
            }
        };
        tracing::Span::current().record("bytes", blob.len());
        req.report(Progress::Finished {
            digest: req.digest,
            bytes: blob.len(),
        });
        Ok(blob)
    }

    async fn download_url(
        &self,
        url: &Url,
        scope: Option<String>,
        req: &BlobRequest,
        store: &Store,
    ) -> Result<Blob> {
        let policy = self.config().retry.clone();
        let start = Instant::now();
        let mut attempt: u32 = 0;
        let mut validator: Option<String> = None;
        let mut held: Option<Ingest> = None;
        loop {
            attempt += 1;
            let ingest = match held.take() {
                Some(i) => i,
                None => match store.begin(req.digest, req.size).await? {
                    Begin::Present(blob) => return Ok(blob),
                    Begin::Write(i) => i,
                },
            };
            let (cause, retry_after) = match self
                .transfer(url, scope.clone(), req, ingest, &mut validator)
                .await
            {
                Transfer::Done(ingest) => match ingest.commit().await {
                    Ok(blob) => return Ok(blob),
                    // A corrupt transfer: the partial is gone; start over from byte 0.
                    Err(e) if e.is_corrupt_transfer() => {
                        if attempt >= policy.max_attempts {
                            return Err(Error::Corrupt {
                                url: redact(url),
                                source: e,
                            });
                        }
                        validator = None;
                        (e.to_string(), None)
                    }
                    Err(e) => return Err(e.into()),
                },
                Transfer::Failed(ingest, Failure::Retry { cause, retry_after }) => {
                    held = ingest;
                    (cause, retry_after)
                }
                Transfer::Failed(_, Failure::Final(e)) => return Err(e),
            };
            if attempt >= policy.max_attempts || start.elapsed() >= policy.max_elapsed {
                return Err(Error::RetriesExhausted {
                    what: req.digest.to_string(),
                    url: redact(url),
                    attempts: attempt,
                    elapsed: start.elapsed(),
                    last: cause,
                });
            }
            tracing::info!(attempt, %cause, "blob transfer failed; retrying");
            req.report(Progress::Retrying {
                digest: req.digest,
                attempt,
                cause,
            });
            tokio::time::sleep(policy.delay(attempt, retry_after)).await;
        }
    }

    /// One attempt: request from the ingest's offset and stream the body into it.
    async fn transfer(
        &self,
        url: &Url,
        scope: Option<String>,
        req: &BlobRequest,
        mut ingest: Ingest,
        validator: &mut Option<String>,
    ) -> Transfer {
        let offset = ingest.written();
        if req.size == Some(offset) {
            // Everything is here already (resumed after the last byte); commit verifies.
            return Transfer::Done(ingest);
        }
        let mut request = Request::get(url.clone()).scope(scope);
        if offset > 0 {
            request = request
                .header(header::RANGE, &format!("bytes={offset}-"))
                // A range of an encoded body cannot be decoded alone.
                .header(header::ACCEPT_ENCODING, "identity");
            if let Some(v) = validator.as_deref() {
                request = request.header(header::IF_RANGE, v);
            }
        } else {
            request = request.header(header::ACCEPT_ENCODING, encoding::ACCEPT);
        }
        let resp = match self.send(request).await {
            Ok(r) => r,
            Err(f) => return Transfer::Failed(Some(ingest), f),
        };
        let status = resp.inner.status();
        if validator.is_none() {
            *validator = strong_validator(resp.inner.headers());
        }
        if offset > 0 {
            let resumed = status == StatusCode::PARTIAL_CONTENT
                && content_range_start(resp.inner.headers()) == Some(offset);
            if !resumed {
                // The server ignored Range (or If-Range failed): it sends the whole body.
                tracing::debug!(offset, %status, "server did not resume; restarting the blob");
                ingest = match ingest.restart().await {
                    Ok(i) => i,
                    Err(e) => return Transfer::Failed(None, Failure::Final(e.into())),
                };
                if status == StatusCode::PARTIAL_CONTENT {
                    // A range we did not ask for; ask again from zero.
                    return Transfer::Failed(
                        Some(ingest),
                        Failure::Retry {
                            cause: "the server answered with an unexpected Content-Range".into(),
                            retry_after: None,
                        },
                    );
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
                return Transfer::Failed(
                    Some(ingest),
                    Failure::Final(Error::UnsupportedEncoding {
                        url: redact(url),
                        encoding,
                    }),
                );
            }
        };
        req.report(Progress::Started {
            digest: req.digest,
            offset: ingest.written(),
            total: req.size,
        });
        let raw: encoding::ByteStream = resp
            .inner
            .bytes_stream()
            .map_err(|e| std::io::Error::other(e.without_url()))
            .boxed();
        let mut body = encoding::decode(raw, &codings);
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
                    return Transfer::Failed(
                        Some(ingest),
                        Failure::Retry {
                            cause,
                            retry_after: None,
                        },
                    );
                }
            };
            if let Err(e) = ingest.write(chunk).await {
                return if e.is_corrupt_transfer() {
                    // Longer than the descriptor: the ingest discards itself when dropped.
                    Transfer::Failed(
                        None,
                        Failure::Retry {
                            cause: format!("{}: {e}", redact(url)),
                            retry_after: None,
                        },
                    )
                } else {
                    Transfer::Failed(None, Failure::Final(e.into()))
                };
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
            return Transfer::Failed(
                Some(ingest),
                Failure::Retry {
                    cause,
                    retry_after: None,
                },
            );
        }
        Transfer::Done(ingest)
    }
}

enum Transfer {
    Done(Ingest),
    /// The ingest to continue with (None: start a fresh one), and why the attempt failed.
    Failed(Option<Ingest>, Failure),
}

/// An ETag usable in `If-Range` (strong only), else Last-Modified.
fn strong_validator(headers: &header::HeaderMap) -> Option<String> {
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
fn content_range_start(headers: &header::HeaderMap) -> Option<u64> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let range = value.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

/// Copy a local file into the store without blocking the runtime: a blocking reader feeds
/// chunks through a bounded channel.
async fn copy_file(path: PathBuf, req: &BlobRequest, store: &Store) -> Result<Blob> {
    let mut ingest = match store.begin(req.digest, req.size).await? {
        Begin::Present(blob) => return Ok(blob),
        Begin::Write(i) => i,
    };
    let offset = ingest.written();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let reader_path = path.clone();
    let reader = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Seek, SeekFrom};
        let run = || -> std::io::Result<()> {
            let mut file = std::fs::File::open(&reader_path)?;
            file.seek(SeekFrom::Start(offset))?;
            loop {
                let mut buf = vec![0u8; 256 * 1024];
                let n = file.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                buf.truncate(n);
                if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                    return Ok(());
                }
            }
        };
        if let Err(e) = run() {
            let _ = tx.blocking_send(Err(e));
        }
    });
    let file_error = |e: std::io::Error| Error::File {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let shown = path.display().to_string();
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk.map_err(file_error)?;
        ingest
            .write(chunk)
            .await
            .map_err(|e| Error::from_ingest(e, &shown))?;
    }
    let _ = reader.await;
    ingest
        .commit()
        .await
        .map_err(|e| Error::from_ingest(e, &shown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert!(matches!(
            BlobSource::parse("https://r.example/v2/a/blobs/x").unwrap(),
            BlobSource::Url { .. }
        ));
        match BlobSource::parse("file:///tmp/a%20b").unwrap() {
            BlobSource::File(p) => assert_eq!(p, PathBuf::from("/tmp/a b")),
            other => panic!("{other:?}"),
        }
        match BlobSource::parse("./rel/path").unwrap() {
            BlobSource::File(p) => assert_eq!(p, PathBuf::from("./rel/path")),
            other => panic!("{other:?}"),
        }
        assert!(BlobSource::parse("http://[::1").is_err());
    }

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

//! [`HttpClient::fetch_blob`]: cache-first, shared, streaming, verified, resumable.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use cache_core::{Begin, Blob, Digest, Store};
use reqwest::Url;

use crate::client::{Endpoint, HttpClient, Request};
use crate::download::{Begun, BlobDownload};
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
    /// The same blob at several hosts, tried in order (mirrors, then the origin): a host
    /// that fails for good hands its partial download to the next.
    Hosts(Vec<BlobHost>),
}

/// One host serving a blob: its URL, the token scope it needs, and the settings of the
/// `hosts.toml` table that named it (its CA, client certificate, headers).
#[derive(Debug, Clone)]
pub struct BlobHost {
    /// The URL.
    pub url: Url,
    /// The registry token scope, if the host uses token auth.
    pub scope: Option<String>,
    endpoint: Option<Arc<Endpoint>>,
}

impl BlobHost {
    /// A host spoken to with the settings configured for its `host[:port]`, if any.
    pub fn new(url: Url, scope: Option<String>) -> Self {
        BlobHost {
            url,
            scope,
            endpoint: None,
        }
    }

    pub(crate) fn via(mut self, endpoint: Option<Arc<Endpoint>>) -> Self {
        self.endpoint = endpoint;
        self
    }

    /// A request for its URL, addressed to its configured host.
    pub(crate) fn request(&self) -> Request {
        Request::get(self.url.clone())
            .scope(self.scope.clone())
            .via(self.endpoint.clone())
    }
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
            BlobSource::Hosts(hosts) => hosts
                .iter()
                .map(|host| redact(&host.url))
                .collect::<Vec<_>>()
                .join(" or "),
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
        /// The host (`host[:port]`) whose bytes completed it; `None` when the store already
        /// held it or it came from a local file.
        from: Option<String>,
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

    pub(crate) fn report(&self, event: Progress) {
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
        let (blob, from) = match &req.source {
            BlobSource::File(path) => (copy_file(path.clone(), &req, store).await?, None),
            BlobSource::Url { url, scope } => match BlobDownload::begin(store, &req).await? {
                Begun::Present(blob) => (blob, None),
                Begun::Download(download) => (
                    download
                        .run(self, &BlobHost::new(url.clone(), scope.clone()))
                        .await?,
                    Some(url.authority().to_owned()),
                ),
            },
            BlobSource::Hosts(hosts) => match BlobDownload::begin(store, &req).await? {
                Begun::Present(blob) => (blob, None),
                Begun::Download(mut download) => {
                    let (blob, from) = self.download_from_hosts(&mut download, hosts).await?;
                    (blob, Some(from))
                }
            },
        };
        tracing::Span::current().record("bytes", blob.len());
        req.report(Progress::Finished {
            digest: req.digest,
            bytes: blob.len(),
            from,
        });
        Ok(blob)
    }
}

impl HttpClient {
    /// `download` from each of `hosts` in turn until one serves it (the blob, and the
    /// `host[:port]` that completed it); the last host's error when none does. A host that is unreachable, answers with a final error, serves the
    /// wrong bytes or runs out of retries hands the partial on; only a store failure (disk
    /// full) ends the download early.
    async fn download_from_hosts(
        &self,
        download: &mut BlobDownload,
        hosts: &[BlobHost],
    ) -> Result<(Blob, String)> {
        let mut last = Error::Refused {
            url: String::new(),
            reason: "no host to fetch the blob from".to_owned(),
        };
        for (index, host) in hosts.iter().enumerate() {
            let more = index + 1 < hosts.len();
            let url = &host.url;
            match download.run_on(self, host, more).await {
                Ok(blob) => {
                    tracing::info!(
                        host = url.authority(),
                        held = download.held(),
                        "blob served"
                    );
                    return Ok((blob, url.authority().to_owned()));
                }
                Err(e @ Error::Store(_)) => return Err(e),
                Err(e) => {
                    if more {
                        tracing::warn!(host = url.authority(), held = download.held(), error = %e, "host failed; trying the next");
                    }
                    last = e;
                }
            }
        }
        Err(last)
    }
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
}

//! [`HttpClient::fetch_blob_range`]: a byte range of a blob, for readers that need part of
//! a layer (a table of contents, one file's frames) before or instead of all of it.
//!
//! The range is small and not resumable, so it is fetched whole under the plain attempt
//! budget, on each of the blob's hosts in turn (mirrors, then the origin) like a blob.
//! Nothing is verified here: the bytes of a range have no digest of their own, so the
//! caller checks them against what it knows (a table's annotated sha256, a file's sha256).
//! A server that ignores `Range` and starts sending the whole blob gets
//! [`Error::RangeIgnored`] at once, its body unread: the caller fetches the blob instead.

use std::ops::Range;

use bytes::Bytes;
use reqwest::header;

use crate::blob::{BlobHost, BlobSource};
use crate::client::{Failure, HttpClient, Response};
use crate::error::{Error, Result, redact};

impl HttpClient {
    /// Bytes `range` of the blob at `source` (exactly those).
    ///
    /// # Errors
    /// [`Error::RangeIgnored`] when a server answers with the whole blob; otherwise the
    /// last host's error (a status, exhausted retries, a short body) when no host serves
    /// the range.
    pub async fn fetch_blob_range(&self, source: &BlobSource, range: Range<u64>) -> Result<Bytes> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        match source {
            BlobSource::File(path) => read_file_range(path.clone(), range).await,
            BlobSource::Url { url, scope } => {
                let host = BlobHost::new(url.clone(), scope.clone());
                self.range_from(&host, &range, false).await
            }
            BlobSource::Hosts(hosts) => {
                let mut last = None;
                for (index, host) in hosts.iter().enumerate() {
                    let more = index + 1 < hosts.len();
                    let url = &host.url;
                    match self.range_from(host, &range, more).await {
                        Ok(bytes) => return Ok(bytes),
                        Err(e @ Error::RangeIgnored { .. }) => return Err(e),
                        Err(e) => {
                            if more {
                                tracing::warn!(host = url.authority(), error = %e, "range: host failed; trying the next");
                            }
                            last = Some(e);
                        }
                    }
                }
                Err(last.unwrap_or_else(|| Error::Refused {
                    url: String::new(),
                    reason: "no host to fetch the range from".to_owned(),
                }))
            }
        }
    }

    async fn range_from(
        &self,
        host: &BlobHost,
        range: &Range<u64>,
        leave_unreachable: bool,
    ) -> Result<Bytes> {
        let url = &host.url;
        let len = range.end - range.start;
        let req = host
            .request()
            .header(
                header::RANGE,
                &format!("bytes={}-{}", range.start, range.end - 1),
            )
            // A range of an encoded body would be a range of the encoding.
            .header(header::ACCEPT_ENCODING, "identity");
        let start = range.start;
        let check = move |resp: &Response| -> std::result::Result<(), Failure> {
            let shown = redact(resp.inner.url());
            match resp.inner.status().as_u16() {
                206 => {
                    let answered = resp
                        .inner
                        .headers()
                        .get(header::CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("bytes "))
                        .and_then(|v| v.split(['-', '/']).next())
                        .and_then(|v| v.parse::<u64>().ok());
                    if answered == Some(start) {
                        Ok(())
                    } else {
                        Err(Failure::Final(Error::Refused {
                            url: shown,
                            reason: format!(
                                "asked for bytes from {start}, the answer's Content-Range starts elsewhere"
                            ),
                        }))
                    }
                }
                200 => Err(Failure::Final(Error::RangeIgnored { url: shown })),
                code => Err(Failure::Final(Error::Status {
                    method: "GET".into(),
                    url: shown,
                    status: code,
                })),
            }
        };
        let (bytes, _, _) = self
            .fetch_checked(req, len, "a byte range", leave_unreachable, check)
            .await?;
        if bytes.len() as u64 != len {
            return Err(Error::Transport {
                url: redact(url),
                message: format!(
                    "asked for {len} bytes from {}, got {}",
                    range.start,
                    bytes.len()
                ),
            });
        }
        Ok(bytes)
    }
}

async fn read_file_range(path: std::path::PathBuf, range: Range<u64>) -> Result<Bytes> {
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || -> std::io::Result<Bytes> {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::open(&path)?;
        let len = usize::try_from(range.end - range.start)
            .map_err(|_| std::io::Error::other("the range does not fit in memory"))?;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, range.start)?;
        Ok(Bytes::from(buf))
    })
    .await
    .map_err(|e| Error::File {
        path: shown.clone(),
        message: e.to_string(),
    })?
    .map_err(|e| Error::File {
        path: shown,
        message: e.to_string(),
    })
}

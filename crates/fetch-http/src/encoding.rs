//! Decoding `Content-Encoding` as a stream.
//!
//! We ask for `zstd, gzip` on a fresh transfer (a resumed one asks for `identity`, because a
//! byte range of an encoded body cannot be decoded on its own). Stacked codings
//! (`Content-Encoding: gzip, zstd`) are undone in reverse order. Anything else is an error
//! rather than silently storing encoded bytes.

use std::io;
use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, BufReader};
use tokio_util::io::{ReaderStream, StreamReader};

/// The `Accept-Encoding` of a fresh transfer.
pub(crate) const ACCEPT: &str = "zstd, gzip";

/// One content coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Gzip,
    Zstd,
}

/// Parse a `Content-Encoding` value into the codings applied, in order; `Err` names the first
/// unsupported one. `identity` entries are dropped.
pub(crate) fn parse(value: &str) -> Result<Vec<Coding>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"))
        .map(|c| {
            if c.eq_ignore_ascii_case("gzip") || c.eq_ignore_ascii_case("x-gzip") {
                Ok(Coding::Gzip)
            } else if c.eq_ignore_ascii_case("zstd") {
                Ok(Coding::Zstd)
            } else {
                Err(c.to_owned())
            }
        })
        .collect()
}

pub(crate) type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// A response's body, decoded per `codings` (its `Content-Encoding`, outermost last).
pub(crate) fn decoded_body(resp: reqwest::Response, codings: &[Coding]) -> ByteStream {
    let raw: ByteStream = resp
        .bytes_stream()
        .map_err(|e| io::Error::other(e.without_url()))
        .boxed();
    decode(raw, codings)
}

/// The decoded body. Identity bodies pass through without copying.
pub(crate) fn decode(body: ByteStream, codings: &[Coding]) -> ByteStream {
    if codings.is_empty() {
        return body;
    }
    let mut reader: Pin<Box<dyn AsyncRead + Send>> = Box::pin(StreamReader::new(body));
    for coding in codings.iter().rev() {
        let buffered = BufReader::with_capacity(64 * 1024, reader);
        reader = match coding {
            Coding::Gzip => {
                let mut d = async_compression::tokio::bufread::GzipDecoder::new(buffered);
                // Concatenated gzip members are one valid stream (e.g. pigz output).
                d.multiple_members(true);
                Box::pin(d)
            }
            Coding::Zstd => Box::pin(async_compression::tokio::bufread::ZstdDecoder::new(
                buffered,
            )),
        };
    }
    ReaderStream::with_capacity(reader, 256 * 1024)
        .map_err(|e| io::Error::new(e.kind(), format!("decoding the body: {e}")))
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stacks_and_rejects_unknown() {
        assert_eq!(parse(""), Ok(vec![]));
        assert_eq!(parse("identity"), Ok(vec![]));
        assert_eq!(parse("gzip, zstd"), Ok(vec![Coding::Gzip, Coding::Zstd]));
        assert_eq!(parse("GZIP"), Ok(vec![Coding::Gzip]));
        assert_eq!(parse("gzip, br"), Err("br".to_owned()));
    }
}

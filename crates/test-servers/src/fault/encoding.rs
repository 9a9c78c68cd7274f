//! `Accept-Encoding` negotiation and the codings themselves.

use std::io::{self, Write as _};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;

use super::route::Encoding;

/// The configured codings this request gets: all of them when forced, otherwise those its
/// `Accept-Encoding` allows (none without the header).
pub(crate) fn negotiate(
    configured: &[Encoding],
    force: bool,
    accept_encoding: Option<&str>,
) -> Vec<Encoding> {
    if force {
        return configured.to_vec();
    }
    let Some(accept) = accept_encoding else {
        return Vec::new();
    };
    let preferences = parse_accept(accept);
    configured
        .iter()
        .filter(|encoding| acceptable(&preferences, encoding))
        .cloned()
        .collect()
}

/// `(lower-case token, quality)` pairs of an `Accept-Encoding` value.
fn parse_accept(value: &str) -> Vec<(String, f32)> {
    value
        .split(',')
        .filter_map(|item| {
            let mut parts = item.split(';');
            let token = parts.next()?.trim().to_ascii_lowercase();
            if token.is_empty() {
                return None;
            }
            // A missing or unreadable weight counts as 1: leniency suits a test server.
            let quality = parts
                .filter_map(|param| param.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
                .and_then(|(_, q)| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            Some((token, quality))
        })
        .collect()
}

fn acceptable(preferences: &[(String, f32)], encoding: &Encoding) -> bool {
    let token = encoding.token().to_ascii_lowercase();
    let quality_of = |wanted: &str| {
        preferences
            .iter()
            .find(|(name, _)| name == wanted)
            .map(|&(_, quality)| quality)
    };
    let alias = (token == "gzip").then(|| quality_of("x-gzip")).flatten();
    match quality_of(&token).or(alias).or_else(|| quality_of("*")) {
        Some(quality) => quality > 0.0,
        // RFC 9110 §12.5.3: identity is acceptable unless excluded.
        None => *encoding == Encoding::Identity,
    }
}

/// `body` with `encodings` applied in order.
pub(crate) fn encode(body: &Bytes, encodings: &[Encoding]) -> io::Result<Bytes> {
    let mut current = body.clone();
    for encoding in encodings {
        current = match encoding {
            Encoding::Gzip => {
                let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
                encoder.write_all(&current)?;
                Bytes::from(encoder.finish()?)
            }
            Encoding::Zstd => Bytes::from(zstd::encode_all(current.as_ref(), 1)?),
            // Labels only: the body goes out as it is.
            Encoding::Identity | Encoding::Other(_) => current,
        };
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::Encoding::{Gzip, Identity, Other, Zstd};
    use super::*;

    #[test]
    fn negotiation_follows_accept_encoding() {
        let all = [Gzip, Zstd, Identity, Other("br2".into())];
        assert_eq!(negotiate(&all, false, None), Vec::<Encoding>::new());
        assert_eq!(negotiate(&all, false, Some("gzip")), [Gzip, Identity]);
        assert_eq!(
            negotiate(&all, false, Some("zstd, gzip;q=0.5")),
            [Gzip, Zstd, Identity]
        );
        assert_eq!(
            negotiate(&all, false, Some("gzip;q=0, identity;q=0")),
            [] as [Encoding; 0]
        );
        assert_eq!(negotiate(&all, false, Some("x-gzip")), [Gzip, Identity]);
        assert_eq!(negotiate(&all, false, Some("*")), all);
        assert_eq!(
            negotiate(&all, false, Some("*, zstd;q=0")),
            [Gzip, Identity, Other("br2".into())]
        );
        assert_eq!(negotiate(&all, true, Some("identity")), all);
    }

    #[test]
    fn stacked_codings_apply_in_order() {
        let body = Bytes::from_static(b"hello hello hello");
        let encoded = encode(&body, &[Gzip, Zstd]).unwrap();
        let unzstd = zstd::decode_all(encoded.as_ref()).unwrap();
        let mut plain = Vec::new();
        io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(unzstd.as_slice()),
            &mut plain,
        )
        .unwrap();
        assert_eq!(plain, body);
    }
}

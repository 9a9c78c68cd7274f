//! Which seekable form a layer is in, as its descriptor's annotations say: the one place a
//! reader asks "can this layer be read lazily, and how do I find its table?".

use cache_core::Digest;
use vfs_overlay::Compression;

use crate::error::TocError;
use crate::estargz::EstargzPosition;
use crate::position::TocPosition;

/// A layer whose table of contents a lazy reader can find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seekable {
    /// zstd:chunked: the annotations locate the table exactly (one range request).
    ZstdChunked(TocPosition),
    /// eStargz: the annotation vouches for the table; its footer, at the blob's end,
    /// locates it.
    Estargz(EstargzPosition),
}

impl Seekable {
    /// The seekable form the annotations of layer `blob` (`size` bytes) announce, looked up
    /// with `annotation`; zstd:chunked's annotations win over eStargz's. `None` when they
    /// announce neither.
    ///
    /// # Errors
    /// [`TocError::BadAnnotation`] for an announcement that does not parse.
    pub fn from_annotations<'a>(
        blob: Digest,
        size: u64,
        annotation: impl Fn(&str) -> Option<&'a str>,
    ) -> Option<Result<Seekable, TocError>> {
        TocPosition::from_annotations(blob, &annotation)
            .map(|p| p.map(Seekable::ZstdChunked))
            .or_else(|| {
                EstargzPosition::from_annotations(blob, size, &annotation)
                    .map(|p| p.map(Seekable::Estargz))
            })
    }

    /// The layer.
    pub fn blob(&self) -> Digest {
        match self {
            Seekable::ZstdChunked(p) => p.blob,
            Seekable::Estargz(p) => p.blob,
        }
    }

    /// The compression the layer's media type must name for the table to be believed (an
    /// eStargz annotation on a zstd layer announces nothing a reader can use).
    pub fn compression(&self) -> Compression {
        match self {
            Seekable::ZstdChunked(_) => Compression::Zstd,
            Seekable::Estargz(_) => Compression::Gzip,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cache_core::Algorithm;

    fn found(pairs: &[(&str, &str)]) -> Option<Result<Seekable, TocError>> {
        let blob = Algorithm::Sha256.digest(b"layer");
        Seekable::from_annotations(blob, 1000, |k| {
            pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v)
        })
    }

    #[test]
    fn each_form_is_known_by_its_annotations() {
        let toc = Algorithm::Sha256.digest(b"toc").to_string();
        let zstd = [
            ("io.containers.zstd-chunked.manifest-checksum", toc.as_str()),
            (
                "io.containers.zstd-chunked.manifest-position",
                "100:20:40:1",
            ),
        ];
        let estargz = [("containerd.io/snapshot/stargz/toc.digest", toc.as_str())];
        assert!(matches!(found(&zstd), Some(Ok(Seekable::ZstdChunked(_)))));
        let seekable = found(&estargz);
        assert!(matches!(seekable, Some(Ok(Seekable::Estargz(_)))));
        assert_eq!(seekable.unwrap().unwrap().compression(), Compression::Gzip);
        let both = [zstd.as_slice(), estargz.as_slice()].concat();
        assert!(matches!(found(&both), Some(Ok(Seekable::ZstdChunked(_)))));
        assert!(found(&[]).is_none());
        assert!(matches!(
            found(&[("containerd.io/snapshot/stargz/toc.digest", "md5:x")]),
            Some(Err(TocError::BadAnnotation { .. }))
        ));
    }
}

//! Where a zstd:chunked layer keeps its table of contents: the layer's annotations (what a
//! lazy reader uses, so one range request fetches it) and the footer at the end of the blob
//! (which says the same, for a reader that holds the whole blob).
//!
//! containers/storage writes the table as a zstd-compressed JSON document inside a zstd
//! skippable frame; `manifest-position` is `offset:compressed:uncompressed:type`, the offset
//! being where the compressed document starts (after the frame's 8-byte header), and
//! `manifest-checksum` the sha256 of those compressed bytes. Older writers (Debian's skopeo
//! 1.9) use the `io.containers.` prefix and a 40-byte footer; newer ones
//! `io.github.containers.` and a 64-byte footer that also locates the tar-split.

use cache_core::Digest;

use crate::error::TocError;

/// The annotation holding the table's sha256 (current name).
pub const CHECKSUM_KEY: &str = "io.github.containers.zstd-chunked.manifest-checksum";
/// The annotation holding the table's position (current name).
pub const POSITION_KEY: &str = "io.github.containers.zstd-chunked.manifest-position";
/// The same two under the names older writers used.
const OLD_CHECKSUM_KEY: &str = "io.containers.zstd-chunked.manifest-checksum";
const OLD_POSITION_KEY: &str = "io.containers.zstd-chunked.manifest-position";

/// The only table format there is (CRFS-compatible JSON).
const MANIFEST_TYPE_CRFS: u64 = 1;
/// The last 8 bytes of every zstd:chunked blob.
pub(crate) const FOOTER_MAGIC: &[u8; 8] = b"GnUlInUx";
/// A zstd skippable frame starts with this (little-endian 0x184D2A50).
pub(crate) const SKIPPABLE_MAGIC: [u8; 4] = [0x50, 0x2a, 0x4d, 0x18];

/// Where the table of contents of one zstd:chunked blob is, and what it must hash to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TocPosition {
    /// The layer blob.
    pub blob: Digest,
    /// Offset of the compressed table in the blob.
    pub offset: u64,
    /// Its compressed length.
    pub compressed: u64,
    /// Its length once decompressed.
    pub uncompressed: u64,
    /// sha256 of the compressed bytes.
    pub digest: Digest,
}

impl TocPosition {
    /// The position a layer's annotations give, looked up with `annotation`; `None` when
    /// the layer is not zstd:chunked (neither annotation present).
    ///
    /// # Errors
    /// [`TocError::BadAnnotation`] when one is there without the other or does not parse.
    pub fn from_annotations<'a>(
        blob: Digest,
        annotation: impl Fn(&str) -> Option<&'a str>,
    ) -> Option<Result<TocPosition, TocError>> {
        let (checksum_key, position_key) = if annotation(POSITION_KEY).is_some()
            || annotation(CHECKSUM_KEY).is_some()
        {
            (CHECKSUM_KEY, POSITION_KEY)
        } else if annotation(OLD_POSITION_KEY).is_some() || annotation(OLD_CHECKSUM_KEY).is_some() {
            (OLD_CHECKSUM_KEY, OLD_POSITION_KEY)
        } else {
            return None;
        };
        Some(Self::parse(
            blob,
            (checksum_key, annotation(checksum_key)),
            (position_key, annotation(position_key)),
        ))
    }

    fn parse(
        blob: Digest,
        (checksum_key, checksum): (&str, Option<&str>),
        (position_key, position): (&str, Option<&str>),
    ) -> Result<TocPosition, TocError> {
        let bad = |key: &str, value: &str, reason| TocError::BadAnnotation {
            blob,
            key: key.to_owned(),
            value: value.chars().take(100).collect(),
            reason,
        };
        let checksum = checksum.ok_or_else(|| bad(checksum_key, "", "missing"))?;
        let position = position.ok_or_else(|| bad(position_key, "", "missing"))?;
        let digest = Digest::parse(checksum)
            .ok()
            .filter(|d| d.algorithm() == cache_core::Algorithm::Sha256)
            .ok_or_else(|| bad(checksum_key, checksum, "not a sha256 digest"))?;
        let fields: Vec<&str> = position.split(':').collect();
        let [offset, compressed, uncompressed, kind] = fields.as_slice() else {
            return Err(bad(
                position_key,
                position,
                "not offset:compressed:uncompressed:type",
            ));
        };
        let number = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| bad(position_key, position, "a field is not a number"))
        };
        if number(kind)? != MANIFEST_TYPE_CRFS {
            return Err(bad(position_key, position, "unknown table type"));
        }
        Ok(TocPosition {
            blob,
            offset: number(offset)?,
            compressed: number(compressed)?,
            uncompressed: number(uncompressed)?,
            digest,
        })
    }

    /// The byte range to fetch: `offset..offset + compressed`.
    pub fn range(&self) -> std::ops::Range<u64> {
        self.offset..self.offset.saturating_add(self.compressed)
    }

    /// Checks the position against the blob's size and the limits, before anything is
    /// fetched.
    ///
    /// # Errors
    /// [`TocError::OutOfBlob`] if the table (with its frame header) is not inside the blob;
    /// [`TocError::TooLarge`] if either length passes `limit`.
    pub fn check(&self, blob_size: u64, limit: u64) -> Result<(), TocError> {
        for (what, size) in [
            ("compressed", self.compressed),
            ("uncompressed", self.uncompressed),
        ] {
            if size > limit {
                return Err(TocError::TooLarge {
                    blob: self.blob,
                    what,
                    size,
                    limit,
                });
            }
        }
        let end = self.offset.checked_add(self.compressed);
        if self.offset < 8 || self.compressed == 0 || end.is_none_or(|e| e > blob_size) {
            return Err(TocError::OutOfBlob {
                blob: self.blob,
                what: "the table of contents".into(),
                start: self.offset,
                end: end.unwrap_or(u64::MAX),
                size: blob_size,
            });
        }
        Ok(())
    }
}

/// What the footer at the end of a zstd:chunked blob says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// Offset of the compressed table of contents.
    pub offset: u64,
    /// Its compressed length.
    pub compressed: u64,
    /// Its uncompressed length.
    pub uncompressed: u64,
    /// Where the tar-split is (offset, compressed, uncompressed), in the newer 64-byte form.
    pub tar_split: Option<(u64, u64, u64)>,
}

impl Footer {
    /// Bytes a reader should fetch from the end of the blob to find the footer.
    pub const TAIL: usize = 72;

    /// Parses the footer from the last bytes of `blob` (at least the 48 of the old form,
    /// [`Self::TAIL`] to find either), checking it lies inside a blob of `blob_size` bytes.
    ///
    /// # Errors
    /// [`TocError::BadFooter`] for anything but a footer in one of the two known forms.
    pub fn parse(blob: Digest, tail: &[u8], blob_size: u64) -> Result<Footer, TocError> {
        let bad = |reason: &str| TocError::BadFooter {
            blob,
            reason: format!("zstd:chunked: {reason}"),
        };
        if !tail.ends_with(FOOTER_MAGIC) {
            return Err(bad("the blob does not end with the zstd:chunked magic"));
        }
        let frame = |payload: usize| -> Option<&[u8]> {
            let start = tail.len().checked_sub(payload + 8)?;
            let header = tail.get(start..start + 8)?;
            let size = u32::from_le_bytes(header.get(4..8)?.try_into().ok()?);
            (header.get(..4)? == SKIPPABLE_MAGIC && size as usize == payload)
                .then(|| tail.get(start + 8..))
                .flatten()
        };
        let (payload, tar_split) = if let Some(p) = frame(64) {
            let f = fields(p);
            (p, Some((f(4), f(5), f(6))))
        } else if let Some(p) = frame(40) {
            (p, None)
        } else {
            return Err(bad("no skippable frame of 40 or 64 bytes holds the footer"));
        };
        let f = fields(payload);
        if f(3) != MANIFEST_TYPE_CRFS {
            return Err(bad("unknown table type"));
        }
        let footer = Footer {
            offset: f(0),
            compressed: f(1),
            uncompressed: f(2),
            tar_split,
        };
        let footer_len = payload.len() as u64 + 8;
        let fits = |offset: u64, len: u64| {
            offset
                .checked_add(len)
                .is_some_and(|end| end.saturating_add(footer_len) <= blob_size)
        };
        if !fits(footer.offset, footer.compressed)
            || footer
                .tar_split
                .is_some_and(|(offset, len, _)| !fits(offset, len))
        {
            return Err(bad("it points outside the blob"));
        }
        Ok(footer)
    }
}

/// The `n`th little-endian u64 of a footer payload (0 past its end).
fn fields(payload: &[u8]) -> impl Fn(usize) -> u64 + '_ {
    move |n| {
        payload
            .get(n * 8..n * 8 + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    }
}

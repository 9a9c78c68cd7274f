//! eStargz layers (containerd's stargz-snapshotter): where the table of contents is, and
//! the table itself.
//!
//! An eStargz blob is an ordinary `tar+gzip` layer made of many gzip members: each regular
//! file's content (each chunk of a large one) starts a member of its own, so it can be
//! fetched by range and decoded alone. The tar's last entry, `stargz.index.json`, is the
//! table of contents (the CRFS JSON schema zstd:chunked also uses, without `endOffset`):
//! its tar header, content and the end-of-archive blocks are one more member, and a footer
//! follows: an empty gzip member whose extra field holds the table member's offset as 16
//! hex digits and `STARGZ` (51 bytes: the field is an `SG` subfield; the 47-byte legacy
//! stargz footer holds the 22 bytes as the raw extra field).
//!
//! The footer says where the table is but nothing vouches for it: the layer annotation
//! [`ESTARGZ_TOC_DIGEST_KEY`] (sha256 of the table's JSON) does, so a layer without it is
//! not read lazily. A lazy reader:
//!
//! 1. [`EstargzPosition::from_annotations`];
//! 2. fetches [`EstargzPosition::tail`] (the last [`EstargzPosition::TAIL`] bytes) and
//!    parses the footer in it ([`EstargzPosition::footer`]);
//! 3. fetches [`EstargzPosition::still_needed`] if the table starts before the tail, and
//!    joins the two ([`EstargzPosition::toc_bytes`]);
//! 4. [`Toc::parse_estargz`]: the table's member decoded under the limit, its JSON hashed
//!    against the annotation and checked like a zstd:chunked table (see [`crate::toc`]).
//!
//! The table's own tar entry is part of the layer (and of its diff_id), so the volume has
//! it too: `/stargz.index.json`, read like any other file.

use std::ops::Range;

use cache_core::{Algorithm, Digest};
use vfs_overlay::{TarEntry, TarEntryKind, VfsPath};

use crate::error::TocError;
use crate::gunzip::Gunzip;
use crate::toc::{Codec, Toc, TocFile};

/// The layer annotation holding the sha256 of an eStargz table's (uncompressed) JSON.
pub const ESTARGZ_TOC_DIGEST_KEY: &str = "containerd.io/snapshot/stargz/toc.digest";
/// The layer annotation holding the layer's uncompressed size (informational).
pub const ESTARGZ_UNCOMPRESSED_SIZE_KEY: &str = "io.containers.estargz.uncompressed-size";
/// The tar name of the table of contents.
pub(crate) const TOC_TAR_NAME: &str = "stargz.index.json";

/// The eStargz footer's length, and the legacy stargz one's.
pub(crate) const FOOTER_LEN: usize = 51;
const LEGACY_FOOTER_LEN: usize = 47;
/// What the footer's extra field ends with, after the 16 hex digits.
const FOOTER_MAGIC: &[u8; 6] = b"STARGZ";

/// An eStargz layer a lazy reader may read: the blob, its size, and what its table of
/// contents must hash to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EstargzPosition {
    /// The layer blob.
    pub blob: Digest,
    /// Its size (from the manifest).
    pub size: u64,
    /// sha256 of the table's JSON (from [`ESTARGZ_TOC_DIGEST_KEY`]).
    pub toc_digest: Digest,
}

/// What an eStargz footer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EstargzFooter {
    /// The table's gzip member(s): from the offset the footer gives to the footer.
    pub toc: Range<u64>,
    /// The footer's length (51, or 47 in the legacy stargz form).
    pub len: u64,
}

impl EstargzPosition {
    /// How much of the blob's end a reader fetches first: the footer and, for all but
    /// large layers, the whole table with it, in one request. A table entry is some 200
    /// bytes of JSON that gzip shrinks several times, so 256 KiB holds the table of
    /// several thousand files; at 100 MB/s it costs 2.6 ms, less than a second round trip
    /// to most registries, while a larger tail would mostly bring file data a small layer's
    /// reader did not ask for (a larger table takes a second request).
    pub const TAIL: u64 = 256 << 10;

    /// The position a layer's annotations give; `None` when the layer has no eStargz
    /// table digest (then it is not read lazily).
    ///
    /// # Errors
    /// [`TocError::BadAnnotation`] when the digest does not parse as a sha256 digest.
    pub fn from_annotations<'a>(
        blob: Digest,
        size: u64,
        annotation: impl Fn(&str) -> Option<&'a str>,
    ) -> Option<Result<EstargzPosition, TocError>> {
        let value = annotation(ESTARGZ_TOC_DIGEST_KEY)?;
        Some(
            Digest::parse(value)
                .ok()
                .filter(|d| d.algorithm() == Algorithm::Sha256)
                .map(|toc_digest| EstargzPosition {
                    blob,
                    size,
                    toc_digest,
                })
                .ok_or_else(|| TocError::BadAnnotation {
                    blob,
                    key: ESTARGZ_TOC_DIGEST_KEY.to_owned(),
                    value: value.chars().take(100).collect(),
                    reason: "not a sha256 digest",
                }),
        )
    }

    /// The range to fetch first: the last [`Self::TAIL`] bytes (the whole of a smaller
    /// blob).
    pub fn tail(&self) -> Range<u64> {
        self.size.saturating_sub(Self::TAIL)..self.size
    }

    /// The footer at the end of `tail` (the bytes of [`Self::tail`]), checked against the
    /// blob's size; the table it locates may not be larger than `limit`.
    ///
    /// # Errors
    /// [`TocError::BadFooter`] for a tail that is not the blob's end or holds no eStargz
    /// footer, or a footer pointing outside the blob; [`TocError::TooLarge`] for a table
    /// over the limit.
    pub fn footer(&self, tail: &[u8], limit: u64) -> Result<EstargzFooter, TocError> {
        let range = self.tail();
        if tail.len() as u64 != range.end - range.start {
            return Err(TocError::BadFooter {
                blob: self.blob,
                reason: format!(
                    "{} bytes came back for the blob's last {}",
                    tail.len(),
                    range.end - range.start
                ),
            });
        }
        let footer = EstargzFooter::parse(self.blob, tail, self.size)?;
        let len = footer.toc.end - footer.toc.start;
        if len > limit {
            return Err(TocError::TooLarge {
                blob: self.blob,
                what: "compressed",
                size: len,
                limit,
            });
        }
        Ok(footer)
    }

    /// The part of the table the tail does not hold, to fetch next.
    pub fn still_needed(&self, footer: &EstargzFooter) -> Option<Range<u64>> {
        let tail = self.tail();
        (footer.toc.start < tail.start).then_some(footer.toc.start..tail.start)
    }

    /// The table's bytes, from `head` (the bytes of [`Self::still_needed`], empty when it
    /// is `None`) and `tail` (those of [`Self::tail`]).
    ///
    /// # Errors
    /// [`TocError::Decompress`] when either does not have the length its range has.
    pub fn toc_bytes(
        &self,
        footer: &EstargzFooter,
        head: &[u8],
        tail: &[u8],
    ) -> Result<Vec<u8>, TocError> {
        let tail_range = self.tail();
        let head_len = self
            .still_needed(footer)
            .map_or(0, |r| r.end.saturating_sub(r.start));
        let from = footer.toc.start.saturating_sub(tail_range.start);
        let to = footer.toc.end.saturating_sub(tail_range.start);
        let part = usize::try_from(from)
            .ok()
            .zip(usize::try_from(to).ok())
            .and_then(|(from, to)| tail.get(from..to));
        match part {
            Some(part) if head.len() as u64 == head_len => {
                let mut bytes = Vec::with_capacity(head.len() + part.len());
                bytes.extend_from_slice(head);
                bytes.extend_from_slice(part);
                Ok(bytes)
            }
            _ => Err(TocError::Decompress {
                blob: self.blob,
                reason: format!(
                    "the table's {} bytes were fetched as {} + {} bytes",
                    footer.toc.end - footer.toc.start,
                    head.len(),
                    tail.len()
                ),
            }),
        }
    }
}

impl EstargzFooter {
    /// Parses the footer from the last bytes of a blob of `blob_size` bytes (the 51 of
    /// the eStargz form, or 47 for the legacy one, at least).
    ///
    /// # Errors
    /// [`TocError::BadFooter`] for anything but a footer in one of the two forms, or one
    /// whose table would not lie between the blob's start and the footer.
    pub fn parse(blob: Digest, tail: &[u8], blob_size: u64) -> Result<EstargzFooter, TocError> {
        let bad = |reason: String| TocError::BadFooter {
            blob,
            reason: format!("eStargz: {reason}"),
        };
        let end_of = |len: usize| tail.len().checked_sub(len).and_then(|s| tail.get(s..));
        let found = [(FOOTER_LEN, true), (LEGACY_FOOTER_LEN, false)]
            .into_iter()
            .find_map(|(len, subfield)| {
                let footer = end_of(len)?;
                Some((footer, offset_in(footer, subfield)?))
            });
        let Some((footer, offset)) = found else {
            return Err(bad(
                "the blob does not end with a 51-byte (or legacy 47-byte) footer".into(),
            ));
        };
        if !is_empty_member(footer) {
            return Err(bad("the footer is not an empty gzip member".into()));
        }
        let len = footer.len() as u64;
        let footer_start = blob_size
            .checked_sub(len)
            .filter(|_| tail.len() as u64 <= blob_size)
            .ok_or_else(|| bad(format!("a {blob_size}-byte blob cannot hold it")))?;
        if offset >= footer_start {
            return Err(bad(format!(
                "it puts the table of contents at byte {offset}, past its own start \
                 ({footer_start})"
            )));
        }
        Ok(EstargzFooter {
            toc: offset..footer_start,
            len,
        })
    }
}

/// The offset a footer's extra field holds: in an `SG` subfield (eStargz) or as the whole
/// field (legacy stargz).
fn offset_in(footer: &[u8], subfield: bool) -> Option<u64> {
    const FEXTRA: u8 = 0x04;
    let (header, rest) = footer.split_at_checked(10)?;
    if header.get(..3)? != [0x1f, 0x8b, 8] || header.get(3)? & FEXTRA == 0 {
        return None;
    }
    let (xlen, rest) = rest.split_at_checked(2)?;
    let payload = if subfield {
        let (id, rest) = rest.split_at_checked(2)?;
        let (len, rest) = rest.split_at_checked(2)?;
        (xlen == [26, 0] && id == b"SG" && len == [22, 0]).then_some(rest)?
    } else {
        (xlen == [22, 0]).then_some(rest)?
    };
    let (hex, magic) = payload.get(..22)?.split_at_checked(16)?;
    if magic != FOOTER_MAGIC || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

/// Whether `bytes` are exactly one gzip member holding nothing.
fn is_empty_member(bytes: &[u8]) -> bool {
    let mut gz = Gunzip::new();
    let mut out = [0u8; 16];
    let mut input = bytes;
    loop {
        match gz.step(input, &mut out) {
            Ok((0, 0)) => return gz.at_member_end() && input.is_empty(),
            Ok((_, written)) if written > 0 => return false,
            Ok((used, _)) => input = input.get(used..).unwrap_or_default(),
            Err(_) => return false,
        }
    }
}

impl Toc {
    /// Checks an eStargz table and builds it: `toc_bytes` are the blob's bytes
    /// `footer.toc` (see [`EstargzPosition::toc_bytes`]), decoded to at most `limit`
    /// bytes; the tar entry they hold must be `stargz.index.json`, its JSON must hash to
    /// the annotation's digest, and its entries pass the checks of [`crate::toc`].
    ///
    /// # Errors
    /// A [`TocError`] naming the first lie found.
    pub fn parse_estargz(
        position: &EstargzPosition,
        footer: &EstargzFooter,
        toc_bytes: &[u8],
        limit: u64,
    ) -> Result<Toc, TocError> {
        let blob = position.blob;
        let bad = |reason: String| TocError::Decompress { blob, reason };
        let expected = footer.toc.end - footer.toc.start;
        if toc_bytes.len() as u64 != expected {
            return Err(bad(format!(
                "{} bytes were fetched, the footer locates {expected}",
                toc_bytes.len()
            )));
        }
        if expected > limit {
            return Err(TocError::TooLarge {
                blob,
                what: "compressed",
                size: expected,
                limit,
            });
        }
        let tar = gunzip_bounded(blob, toc_bytes, limit)?;
        let (header, json_at, json) = toc_entry(&tar).map_err(bad)?;
        let actual = Algorithm::Sha256.digest(json);
        if actual != position.toc_digest {
            return Err(TocError::DigestMismatch {
                blob,
                expected: position.toc_digest,
                actual,
            });
        }
        let path = VfsPath::new(&format!("/{TOC_TAR_NAME}")).map_err(|e| bad(e.to_string()))?;
        let size = json.len() as u64;
        let entry = TarEntry {
            path: path.clone(),
            kind: TarEntryKind::File,
            mode: header.mode().unwrap_or(0o644) & 0o7777,
            uid: header
                .uid()
                .ok()
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(0),
            gid: header
                .gid()
                .ok()
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(0),
            mtime: header.mtime().unwrap_or(0),
            size,
            offset: 0,
            link: None,
            implied: false,
        };
        let file = TocFile {
            path,
            size,
            digest: actual,
            frames: footer.toc.clone(),
            codec: Codec::Gzip,
            skip: json_at,
        };
        Toc::from_estargz_json(blob, json, footer.toc.start, (entry, file))
    }
}

/// The whole gzip stream `compressed`, decoded to at most `limit` bytes.
fn gunzip_bounded(blob: Digest, compressed: &[u8], limit: u64) -> Result<Vec<u8>, TocError> {
    let bad = |reason: String| TocError::Decompress { blob, reason };
    let mut gz = Gunzip::new();
    let mut decoded = Vec::new();
    let mut out = vec![0u8; 64 << 10];
    let mut input = compressed;
    loop {
        let (used, written) = gz.step(input, &mut out).map_err(bad)?;
        if used == 0 && written == 0 {
            break;
        }
        input = input.get(used..).unwrap_or_default();
        if decoded.len() as u64 + written as u64 > limit {
            return Err(TocError::TooLarge {
                blob,
                what: "uncompressed",
                size: decoded.len() as u64 + written as u64,
                limit,
            });
        }
        decoded.extend_from_slice(out.get(..written).unwrap_or_default());
    }
    if !gz.at_member_end() {
        return Err(bad("its gzip data ends inside a member".into()));
    }
    Ok(decoded)
}

/// The header of the tar entry `tar` starts with, where its content starts, and the
/// content; it must be the table of contents.
fn toc_entry(tar: &[u8]) -> Result<(tar::Header, u64, &[u8]), String> {
    let mut archive = tar::Archive::new(tar);
    let entry = archive
        .entries()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("it holds no tar entry")?
        .map_err(|e| format!("its tar header: {e}"))?;
    let name = entry.path_bytes();
    let name = name.strip_prefix(b"./").unwrap_or(&name);
    if name != TOC_TAR_NAME.as_bytes() || !entry.header().entry_type().is_file() {
        return Err(format!(
            "its tar entry is {:?}, not the file {TOC_TAR_NAME}",
            String::from_utf8_lossy(name)
        ));
    }
    let at = entry.raw_file_position();
    let content = usize::try_from(at)
        .ok()
        .zip(usize::try_from(entry.size()).ok())
        .and_then(|(at, size)| tar.get(at..at.checked_add(size)?))
        .ok_or("its tar entry is truncated")?;
    Ok((entry.header().clone(), at, content))
}

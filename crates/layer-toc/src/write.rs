//! Writing a tar as a zstd:chunked layer, in the form Debian's skopeo writes and reads (the
//! `io.containers.zstd-chunked.*` annotations and the 40-byte footer).
//!
//! The tar is cut at file contents: the bytes between two files (headers, padding, the
//! end-of-archive blocks) become one zstd frame, each regular file's content another, so
//! the frames decompress, in order, to exactly the tar (same diff_id), and each file can be
//! fetched and decoded alone. Then the table of contents, zstd-compressed inside a skippable
//! frame (any zstd reader skips it), and the footer in another. Same tar, same level: same
//! bytes, so packing stays reproducible.

use std::io::{self, Cursor, Write};

use cache_core::Algorithm;
use serde::Serialize;

use crate::position::{FOOTER_MAGIC, SKIPPABLE_MAGIC};
use crate::time::rfc3339;

/// The annotations readers locate the table by (Debian's skopeo 1.9 names).
pub const WRITTEN_CHECKSUM_KEY: &str = "io.containers.zstd-chunked.manifest-checksum";
/// See [`WRITTEN_CHECKSUM_KEY`].
pub const WRITTEN_POSITION_KEY: &str = "io.containers.zstd-chunked.manifest-position";

/// A table of contents as both writers write it (CRFS JSON; fields left at zero or empty
/// are not written, so each format's entries carry only the fields it uses).
#[derive(Serialize)]
pub(crate) struct OutToc<'a> {
    pub(crate) version: u32,
    pub(crate) entries: &'a [OutEntry],
}

#[derive(Serialize, Default)]
pub(crate) struct OutEntry {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) name: String,
    #[serde(rename = "linkName", skip_serializing_if = "String::is_empty")]
    pub(crate) link_name: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) mode: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) size: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) uid: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) gid: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) modtime: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) digest: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) offset: u64,
    /// zstd:chunked: where the file's frames end.
    #[serde(rename = "endOffset", skip_serializing_if = "is_zero")]
    pub(crate) end_offset: u64,
    /// eStargz: decoded bytes before the chunk in its member.
    #[serde(rename = "innerOffset", skip_serializing_if = "is_zero")]
    pub(crate) inner_offset: u64,
    #[serde(rename = "chunkOffset", skip_serializing_if = "is_zero")]
    pub(crate) chunk_offset: u64,
    /// eStargz: 0 for "to the end of the file", as stargz-snapshotter writes it.
    #[serde(rename = "chunkSize", skip_serializing_if = "is_zero")]
    pub(crate) chunk_size: u64,
    #[serde(rename = "chunkDigest", skip_serializing_if = "String::is_empty")]
    pub(crate) chunk_digest: String,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Counts what passes, so frame offsets are known without seeking.
struct Counting<W> {
    inner: W,
    at: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.at += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes `tar` (an uncompressed tar) to `out` as a zstd:chunked layer compressed at
/// `level`; returns the layer's annotations (key, value).
///
/// # Errors
/// A tar the `tar` crate cannot read, or a failed write.
pub fn write_zstd_chunked(
    tar: &[u8],
    level: i32,
    out: impl Write,
) -> io::Result<Vec<(String, String)>> {
    let mut out = Counting { inner: out, at: 0 };
    let mut entries = Vec::new();
    let mut cursor = 0u64;
    let mut archive = tar::Archive::new(Cursor::new(tar));
    for entry in archive.entries_with_seek()? {
        let entry = entry?;
        let Some(meta) = TarMeta::of(&entry)? else {
            continue;
        };
        let kind = meta.kind;
        let mut e = OutEntry {
            kind,
            name: meta.name,
            link_name: meta.link_name,
            mode: meta.mode,
            size: 0,
            uid: meta.uid,
            gid: meta.gid,
            modtime: meta.modtime,
            ..OutEntry::default()
        };
        let size = entry.size();
        if kind == "reg" && size > 0 {
            let start = entry.raw_file_position();
            let end = start
                .checked_add(size)
                .filter(|&end| end <= tar.len() as u64)
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "tar is truncated"))?;
            frame(&mut out, slice(tar, cursor, start)?, level)?;
            let content = slice(tar, start, end)?;
            e.size = size;
            e.digest = Algorithm::Sha256.digest(content).to_string();
            e.offset = out.at;
            frame(&mut out, content, level)?;
            e.end_offset = out.at;
            cursor = end;
        }
        entries.push(e);
    }
    frame(&mut out, slice(tar, cursor, tar.len() as u64)?, level)?;

    let json = serde_json::to_vec(&OutToc {
        version: 1,
        entries: &entries,
    })
    .map_err(io::Error::other)?;
    let toc = zstd::bulk::compress(&json, level)?;
    let toc_offset = out.at + 8;
    skippable(&mut out, &toc)?;
    let mut footer = Vec::with_capacity(40);
    for v in [toc_offset, toc.len() as u64, json.len() as u64, 1] {
        footer.extend_from_slice(&v.to_le_bytes());
    }
    footer.extend_from_slice(FOOTER_MAGIC);
    skippable(&mut out, &footer)?;
    out.flush()?;
    Ok(vec![
        (
            WRITTEN_CHECKSUM_KEY.to_owned(),
            Algorithm::Sha256.digest(&toc).to_string(),
        ),
        (
            WRITTEN_POSITION_KEY.to_owned(),
            format!("{toc_offset}:{}:{}:1", toc.len(), json.len()),
        ),
    ])
}

/// What a table of contents says of a tar entry besides where its content is.
pub(crate) struct TarMeta {
    pub(crate) kind: &'static str,
    pub(crate) name: String,
    /// The target of a symlink or hardlink; empty for other kinds.
    pub(crate) link_name: String,
    pub(crate) mode: u64,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    pub(crate) modtime: String,
}

impl TarMeta {
    /// `None` for entries a table does not list (PAX globals, GNU volume labels).
    pub(crate) fn of<R: io::Read>(entry: &tar::Entry<'_, R>) -> io::Result<Option<TarMeta>> {
        let header = entry.header();
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        use tar::EntryType as T;
        let kind = match header.entry_type() {
            T::Regular | T::Continuous if name.ends_with('/') => "dir",
            T::Regular | T::Continuous => "reg",
            T::Directory => "dir",
            T::Symlink => "symlink",
            T::Link => "hardlink",
            T::Char => "char",
            T::Block => "block",
            T::Fifo => "fifo",
            _ => return Ok(None),
        };
        let link_name = match kind {
            "symlink" | "hardlink" => entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .unwrap_or_default(),
            _ => String::new(),
        };
        Ok(Some(TarMeta {
            kind,
            name,
            link_name,
            mode: u64::from(header.mode()? & 0o7777),
            uid: number(&header.as_old().uid, header.uid())?,
            gid: number(&header.as_old().gid, header.gid())?,
            modtime: rfc3339(number(&header.as_old().mtime, header.mtime())?),
        }))
    }
}

/// A numeric header field; one left empty (all NUL or spaces, as some writers leave uid,
/// gid or mtime) is 0, as the tar index reads it.
fn number(raw: &[u8], parsed: io::Result<u64>) -> io::Result<u64> {
    match parsed {
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        other => other,
    }
}

pub(crate) fn slice(tar: &[u8], start: u64, end: u64) -> io::Result<&[u8]> {
    usize::try_from(start)
        .ok()
        .zip(usize::try_from(end).ok())
        .and_then(|(s, e)| tar.get(s..e))
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "tar is truncated"))
}

/// One zstd frame holding `data` (nothing for no data).
fn frame(out: &mut impl Write, data: &[u8], level: i32) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let mut encoder = zstd::stream::write::Encoder::new(out, level)?;
    encoder.set_pledged_src_size(Some(data.len() as u64))?;
    encoder.include_contentsize(true)?;
    encoder.write_all(data)?;
    encoder.finish()?;
    Ok(())
}

fn skippable(out: &mut impl Write, data: &[u8]) -> io::Result<()> {
    let len = u32::try_from(data.len())
        .map_err(|_| io::Error::other("a skippable frame cannot hold 4 GiB"))?;
    out.write_all(&SKIPPABLE_MAGIC)?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(data)
}

//! Writing a tar as an eStargz layer, reproducibly (test fixtures, and `pack` if it wants).
//!
//! The tar's bytes are kept as they are, cut into gzip members: each regular file's content
//! (each chunk of a large one) starts a member, which also takes the padding and headers
//! that follow, up to the next file's content. The end-of-archive blocks are dropped and
//! the table of contents appended as the tar's last entry, `stargz.index.json`, in a member
//! of its own with new end-of-archive blocks; then the footer. The layer's diff_id is
//! therefore not the input tar's: [`EstargzWritten::diff_id`] is.
//!
//! Nothing comes from the environment: every gzip header has mtime 0 and OS 255, the table's
//! tar header mtime 0. Same tar and options, same bytes.

use std::io::{self, Cursor, Write};

use cache_core::{Algorithm, Digest, Hasher};
use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};

use crate::estargz::{ESTARGZ_TOC_DIGEST_KEY, ESTARGZ_UNCOMPRESSED_SIZE_KEY, TOC_TAR_NAME};
use crate::write::{OutEntry, OutToc, TarMeta, slice};

/// How [`write_estargz`] cuts and compresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EstargzOptions {
    /// Files larger than this are split into chunks of this size (the last one shorter),
    /// each in a member of its own (default 4 MiB, as stargz-snapshotter).
    pub chunk_size: u64,
    /// A file's first chunk shares the member before it (found by `innerOffset`) while
    /// that member holds fewer decoded bytes than this: small files share members. 0
    /// (the default) gives every file a member of its own.
    pub min_chunk_size: u64,
    /// gzip level, 0 to 9 (default 9, as stargz-snapshotter).
    pub level: u32,
}

impl Default for EstargzOptions {
    fn default() -> Self {
        EstargzOptions {
            chunk_size: 4 << 20,
            min_chunk_size: 0,
            level: 9,
        }
    }
}

/// What [`write_estargz`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EstargzWritten {
    /// sha256 of the table's JSON (the [`ESTARGZ_TOC_DIGEST_KEY`] annotation).
    pub toc_digest: Digest,
    /// sha256 of the decompressed layer (the tar with the table as its last entry).
    pub diff_id: Digest,
    /// The decompressed layer's size.
    pub uncompressed_size: u64,
    /// The blob's size.
    pub size: u64,
    /// The layer's annotations (key, value).
    pub annotations: Vec<(String, String)>,
}

/// The gzip members written so far and the one being written.
struct Members<W> {
    out: W,
    /// Bytes written to `out`.
    at: u64,
    level: Compression,
    /// The open member: its compressed bytes so far and how many bytes it decodes to.
    open: Option<(GzEncoder<Vec<u8>>, u64)>,
    /// Of every decoded byte: the diff_id.
    diff: Hasher,
}

impl<W: Write> Members<W> {
    /// Appends decoded bytes to the open member (opening one if none is).
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let level = self.level;
        let (member, decoded) = self.open.get_or_insert_with(|| {
            // mtime 0 and OS 255 (unknown), whatever the machine: reproducible.
            let member = GzBuilder::new()
                .mtime(0)
                .operating_system(255)
                .write(Vec::new(), level);
            (member, 0)
        });
        member.write_all(data)?;
        *decoded += data.len() as u64;
        self.diff.update(data);
        Ok(())
    }

    /// Ends the open member; returns where the next one starts.
    fn close(&mut self) -> io::Result<u64> {
        if let Some((member, _)) = self.open.take() {
            let bytes = member.finish()?;
            self.out.write_all(&bytes)?;
            self.at += bytes.len() as u64;
        }
        Ok(self.at)
    }

    /// Where a file's first chunk goes: (member offset, innerOffset). It shares the open
    /// member while that holds fewer than `min` decoded bytes.
    fn file_start(&mut self, min: u64) -> io::Result<(u64, u64)> {
        match &self.open {
            Some((_, decoded)) if *decoded < min => Ok((self.at, *decoded)),
            _ => Ok((self.close()?, 0)),
        }
    }
}

/// Writes `tar` (an uncompressed tar) to `out` as an eStargz layer; see the module docs.
///
/// # Errors
/// A tar the `tar` crate cannot read, one that already holds a `stargz.index.json`, a chunk
/// size of 0, or a failed write.
pub fn write_estargz(
    tar: &[u8],
    out: impl Write,
    options: &EstargzOptions,
) -> io::Result<EstargzWritten> {
    let chunk_size = usize::try_from(options.chunk_size)
        .ok()
        .filter(|&c| c > 0)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a chunk size of 0"))?;
    let mut members = Members {
        out,
        at: 0,
        level: Compression::new(options.level.min(9)),
        open: None,
        diff: Hasher::new(Algorithm::Sha256),
    };
    let mut entries = Vec::new();
    let mut cursor = 0u64;
    let mut entries_end = 0u64;
    let mut archive = tar::Archive::new(Cursor::new(tar));
    for entry in archive.entries_with_seek()? {
        let entry = entry?;
        let size = entry.size();
        let start = entry.raw_file_position();
        let end = start
            .checked_add(size)
            .filter(|&end| end <= tar.len() as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "tar is truncated"))?;
        entries_end = entries_end.max(end.next_multiple_of(512));
        let Some(meta) = TarMeta::of(&entry)? else {
            continue;
        };
        if meta.name.trim_start_matches("./").trim_start_matches('/') == TOC_TAR_NAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the tar already holds a stargz.index.json",
            ));
        }
        let mut first = OutEntry {
            kind: meta.kind,
            name: meta.name,
            link_name: meta.link_name,
            mode: meta.mode,
            size: 0,
            uid: meta.uid,
            gid: meta.gid,
            modtime: meta.modtime,
            ..OutEntry::default()
        };
        if first.kind != "reg" || size == 0 {
            entries.push(first);
            continue;
        }
        members.write(slice(tar, cursor, start)?)?;
        let content = slice(tar, start, end)?;
        first.size = size;
        first.digest = Algorithm::Sha256.digest(content).to_string();
        let name = first.name.clone();
        let mut chunk_offset = 0u64;
        for (i, chunk) in content.chunks(chunk_size).enumerate() {
            let (offset, inner_offset) = if i == 0 {
                members.file_start(options.min_chunk_size)?
            } else {
                (members.close()?, 0)
            };
            members.write(chunk)?;
            let full = chunk.len() == chunk_size;
            let chunk_entry = OutEntry {
                offset,
                inner_offset,
                chunk_offset,
                chunk_size: if full { chunk.len() as u64 } else { 0 },
                chunk_digest: Algorithm::Sha256.digest(chunk).to_string(),
                ..if i == 0 {
                    std::mem::replace(&mut first, chunk_of(String::new()))
                } else {
                    chunk_of(name.clone())
                }
            };
            entries.push(chunk_entry);
            chunk_offset += chunk.len() as u64;
        }
        cursor = end;
    }
    members.write(slice(tar, cursor, entries_end.min(tar.len() as u64))?)?;
    let toc_offset = members.close()?;

    let json = serde_json::to_vec(&OutToc {
        version: 1,
        entries: &entries,
    })
    .map_err(io::Error::other)?;
    members.write(&toc_entry(&json)?)?;
    let footer_at = members.close()?;
    members.out.write_all(&footer(toc_offset))?;
    members.out.flush()?;
    let uncompressed_size = members.diff.bytes_hashed();
    let toc_digest = Algorithm::Sha256.digest(&json);
    Ok(EstargzWritten {
        toc_digest,
        diff_id: members.diff.finalize(),
        uncompressed_size,
        size: footer_at + crate::estargz::FOOTER_LEN as u64,
        annotations: vec![
            (ESTARGZ_TOC_DIGEST_KEY.to_owned(), toc_digest.to_string()),
            (
                ESTARGZ_UNCOMPRESSED_SIZE_KEY.to_owned(),
                uncompressed_size.to_string(),
            ),
        ],
    })
}

/// A `chunk` entry of the file `name`, its place still to fill in.
fn chunk_of(name: String) -> OutEntry {
    OutEntry {
        kind: "chunk",
        name,
        ..OutEntry::default()
    }
}

/// The table's tar entry and the end-of-archive blocks after it.
fn toc_entry(json: &[u8]) -> io::Result<Vec<u8>> {
    let mut header = tar::Header::new_ustar();
    header.set_path(TOC_TAR_NAME)?;
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(json.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_cksum();
    let padded = (json.len() as u64).next_multiple_of(512);
    let mut bytes = Vec::with_capacity(json.len() + 512 * 4);
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(json);
    bytes.resize(
        512 + usize::try_from(padded).unwrap_or(usize::MAX) + 1024,
        0,
    );
    Ok(bytes)
}

/// The 51-byte footer: an empty gzip member (a stored block of nothing) whose extra field's
/// `SG` subfield says where the table's member starts.
fn footer(toc_offset: u64) -> Vec<u8> {
    let mut bytes = vec![
        0x1f, 0x8b, 8, 0x04, 0, 0, 0, 0, 0, 255, 26, 0, b'S', b'G', 22, 0,
    ];
    bytes.extend_from_slice(format!("{toc_offset:016x}STARGZ").as_bytes());
    // A final stored block of length 0, then CRC-32 and length of nothing.
    bytes.extend_from_slice(&[1, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
    bytes
}

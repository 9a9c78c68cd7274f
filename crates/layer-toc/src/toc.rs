//! The table of contents of a zstd:chunked layer: fetched bytes → checked → a path table.
//!
//! The table is JSON (containers/storage's `TOC`, the CRFS schema): one entry per tar
//! header, in archive order, each regular file with the sha256 of its content and the
//! range of the blob holding its zstd frame(s); a large file is split into chunks, the
//! first described by the file's own entry and the rest by `chunk` entries that follow it.
//!
//! Nothing in it is trusted. Checked here, before a volume is built from it:
//! - the compressed bytes hash to the annotation's digest, and decompress to exactly the
//!   declared length, never past the limit;
//! - names are normalized like tar names (`./a/`, `/a` and `a` are one path) and may not
//!   climb out with `..`, hold NUL, or appear twice;
//! - every file with content has a sha256 and a frame range inside the part of the blob
//!   before the table; no two files' ranges overlap; chunks follow their file, start where
//!   the last one ended (in the file and in the blob), and add up to the file's size;
//! - numbers are non-negative, timestamps parse.
//!
//! Chunk digests are not checked: the file's sha256 covers every byte, and is checked
//! before any byte is served (see [`crate::LazyFiles`]).
//!
//! An eStargz table ([`Toc::parse_estargz`], in [`crate::estargz`]) has the same schema and
//! passes the same checks, except where its chunks are: an entry gives only the offset of
//! the gzip member its data starts in (and `innerOffset`, the decoded bytes before it in
//! that member), so a chunk's member is taken to run to the next offset any entry names,
//! or to the table. Chunks of one file must follow each other in the decoded stream (in
//! the same member right after the last, or at the start of the next one); no two chunks
//! share decoded bytes.

use std::collections::HashSet;
use std::io::Read;
use std::ops::Range;
use std::sync::Arc;

use cache_core::{Algorithm, Digest};
use serde::Deserialize;
use vfs_overlay::{TarEntry, TarEntryKind, TarIndex, VfsPath};

use crate::error::TocError;
use crate::position::TocPosition;
use crate::time::unix_seconds;

/// How a file's content is compressed in the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// zstd frames that decode to exactly the file (zstd:chunked).
    Zstd,
    /// gzip members whose decoded stream holds the file after [`TocFile::skip`] bytes and
    /// may go on past it (eStargz: tar padding, the next headers, other small files).
    Gzip,
}

/// One regular file's content, as the table describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TocFile {
    /// Its path in the layer (the first name it had; hardlinks share it).
    pub path: VfsPath,
    /// Its size.
    pub size: u64,
    /// sha256 of its content.
    pub digest: Digest,
    /// The bytes of the blob to fetch: its zstd frames, or the gzip members its chunks
    /// are in (which other files' chunks may share).
    pub frames: Range<u64>,
    /// How `frames` decode.
    pub codec: Codec,
    /// Decoded bytes before the content starts (eStargz's `innerOffset`; 0 for zstd).
    pub skip: u64,
}

/// A checked table of contents.
#[derive(Debug, Clone)]
pub struct Toc {
    blob: Digest,
    /// Entries in archive order, each file's `offset` a number of its own (see `files`).
    entries: Vec<TarEntry>,
    /// Files with content, by increasing `entries` offset: `offsets[i]` is the offset the
    /// entries give `files[i]`.
    files: Vec<TocFile>,
    offsets: Vec<u64>,
    /// One past the last offset handed out.
    len: u64,
}

#[derive(Deserialize)]
struct RawToc {
    version: i64,
    #[serde(default)]
    entries: Vec<RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    #[serde(rename = "linkName", default)]
    link_name: String,
    #[serde(default)]
    mode: i64,
    #[serde(default)]
    size: i64,
    #[serde(default)]
    uid: i64,
    #[serde(default)]
    gid: i64,
    #[serde(default)]
    modtime: Option<String>,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    offset: i64,
    #[serde(rename = "endOffset", default)]
    end_offset: i64,
    #[serde(rename = "chunkSize", default)]
    chunk_size: i64,
    #[serde(rename = "chunkOffset", default)]
    chunk_offset: i64,
    #[serde(rename = "chunkType", default)]
    chunk_type: String,
    #[serde(rename = "innerOffset", default)]
    inner_offset: i64,
}

/// A file whose chunks are still being read.
struct OpenFile {
    file: usize,
    /// Bytes of the file the chunks so far cover.
    covered: u64,
    /// Where the last chunk starts in the blob.
    last_chunk_at: u64,
    /// Its `innerOffset` and size (eStargz: the next chunk in its member starts after it).
    last_inner: u64,
    last_size: u64,
    /// Whether `chunk` entries may follow (the file's entry gave a chunk size).
    chunked: bool,
    /// zstd:chunked without `endOffset` (the legacy layout): each chunk's frame runs to
    /// the next offset the table names, so the chunks must follow one another.
    frames_follow: bool,
}

/// Where file data may be and how a chunk's compressed range is known.
pub(crate) enum Layout {
    /// zstd:chunked: each file gives its frames' end, frames end by `frames_end`. Tables
    /// of the legacy layout (stargz-snapshotter's writer, early containers/storage) give no
    /// `endOffset`: there a chunk's frame runs to the next of `starts`, and also holds the
    /// tar headers written after the chunk.
    Zstd { frames_end: u64, starts: Vec<u64> },
    /// eStargz: a chunk's member runs to the next of `starts`, or to the table at
    /// `toc_offset`.
    Gzip { toc_offset: u64, starts: Vec<u64> },
}

impl Layout {
    /// The zstd:chunked layout of a table whose file frames end by `frames_end`.
    fn zstd(frames_end: u64, raw: &[RawEntry]) -> Layout {
        let starts = chunk_starts(raw, frames_end);
        Layout::Zstd { frames_end, starts }
    }

    /// The eStargz layout of a table at `toc_offset` whose entries are `raw`.
    fn gzip(toc_offset: u64, raw: &[RawEntry]) -> Layout {
        let starts = chunk_starts(raw, toc_offset);
        Layout::Gzip { toc_offset, starts }
    }

    /// Where the gzip member starting at `at` ends.
    fn member_end(&self, at: u64) -> u64 {
        let (Layout::Zstd {
            frames_end: end,
            starts,
        }
        | Layout::Gzip {
            toc_offset: end,
            starts,
        }) = self;
        let next = starts.partition_point(|&s| s <= at);
        starts.get(next).copied().unwrap_or(*end)
    }
}

/// Every blob offset a chunk of file data starts at, below `limit`, sorted, once each.
fn chunk_starts(raw: &[RawEntry], limit: u64) -> Vec<u64> {
    let mut starts: Vec<u64> = raw
        .iter()
        .filter(|e| e.kind == "chunk" || e.kind == "reg" && e.size > 0)
        .filter_map(|e| u64::try_from(e.offset).ok())
        .filter(|&o| o < limit)
        .collect();
    starts.sort_unstable();
    starts.dedup();
    starts
}

/// The decoded bytes one eStargz chunk takes in its member, for the overlap check.
struct Span {
    at: u64,
    inner: Range<u64>,
    file: usize,
}

impl Toc {
    /// Checks `compressed` (the bytes at `position`) and builds the table; see the module
    /// docs. `limit` bounds the decompressed size (on top of the position's own check).
    ///
    /// # Errors
    /// A [`TocError`] naming the first lie found.
    pub fn parse(position: &TocPosition, compressed: &[u8], limit: u64) -> Result<Toc, TocError> {
        let blob = position.blob;
        if compressed.len() as u64 != position.compressed {
            return Err(TocError::Decompress {
                blob,
                reason: format!(
                    "{} bytes were fetched, the annotation says {}",
                    compressed.len(),
                    position.compressed
                ),
            });
        }
        let actual = Algorithm::Sha256.digest(compressed);
        if actual != position.digest {
            return Err(TocError::DigestMismatch {
                blob,
                expected: position.digest,
                actual,
            });
        }
        if position.uncompressed > limit {
            return Err(TocError::TooLarge {
                blob,
                what: "uncompressed",
                size: position.uncompressed,
                limit,
            });
        }
        let json = decompress(blob, compressed, position.uncompressed)?;
        let raw: RawToc = serde_json::from_slice(&json).map_err(|e| TocError::Json {
            blob,
            reason: e.to_string(),
        })?;
        drop(json);
        if raw.version != 1 {
            return Err(TocError::Unsupported {
                blob,
                what: format!("table of contents version {}", raw.version),
            });
        }
        // File frames come before the table's own skippable frame (8-byte header).
        let frames_end = position.offset.saturating_sub(8);
        let mut builder = Builder::new(blob, Layout::zstd(frames_end, &raw.entries));
        builder.add_all(raw.entries)?;
        builder.finish()
    }

    /// Checks an eStargz table's JSON (already hashed against its annotation) whose gzip
    /// member starts at `toc_offset`, and builds the table, the file `extra` (the table's
    /// own tar entry) last.
    pub(crate) fn from_estargz_json(
        blob: Digest,
        json: &[u8],
        toc_offset: u64,
        extra: (TarEntry, TocFile),
    ) -> Result<Toc, TocError> {
        let raw: RawToc = serde_json::from_slice(json).map_err(|e| TocError::Json {
            blob,
            reason: e.to_string(),
        })?;
        if raw.version != 1 {
            return Err(TocError::Unsupported {
                blob,
                what: format!("table of contents version {}", raw.version),
            });
        }
        let mut builder = Builder::new(blob, Layout::gzip(toc_offset, &raw.entries));
        let count = raw.entries.len();
        builder.add_all(raw.entries)?;
        builder.add_file(count, extra.0, extra.1)?;
        builder.finish()
    }

    /// The layer this table describes.
    pub fn blob(&self) -> Digest {
        self.blob
    }

    /// Entries in archive order (files carry an offset of their own, not a tar offset).
    pub fn entries(&self) -> &[TarEntry] {
        &self.entries
    }

    /// Files with content.
    pub fn files(&self) -> &[TocFile] {
        &self.files
    }

    /// The path table, with the rules of a tar index (later entries win, hardlinks share
    /// their target's file, links to nothing earlier are links into the layers below).
    ///
    /// # Errors
    /// A [`TocError::BadEntry`] for what a tar index refuses (a hardlink to a directory, a
    /// root that is not a directory).
    pub fn index(&self) -> Result<Arc<TarIndex>, TocError> {
        TarIndex::from_archive(self.len, self.entries.iter().cloned())
            .map(Arc::new)
            .map_err(|e| TocError::BadEntry {
                blob: self.blob,
                index: 0,
                name: String::new(),
                reason: e.to_string(),
            })
    }

    /// The file an index entry's offset stands for.
    pub fn file_at(&self, offset: u64) -> Option<&TocFile> {
        let i = self.offsets.binary_search(&offset).ok()?;
        self.files.get(i)
    }
}

/// Decompresses exactly `expected` bytes, reading no further than one byte past them.
fn decompress(blob: Digest, compressed: &[u8], expected: u64) -> Result<Vec<u8>, TocError> {
    let bad = |reason: String| TocError::Decompress { blob, reason };
    let decoder = zstd::stream::read::Decoder::new(compressed).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::with_capacity(usize::try_from(expected).unwrap_or(0).min(1 << 24));
    decoder
        .take(expected.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| bad(e.to_string()))?;
    if out.len() as u64 != expected {
        return Err(bad(format!(
            "it holds {}{} bytes, the annotation says {expected}",
            out.len(),
            if out.len() as u64 > expected { "+" } else { "" }
        )));
    }
    Ok(out)
}

struct Builder {
    blob: Digest,
    layout: Layout,
    entries: Vec<TarEntry>,
    files: Vec<TocFile>,
    offsets: Vec<u64>,
    next_offset: u64,
    seen: HashSet<VfsPath>,
    open: Option<OpenFile>,
    /// eStargz chunks, for the overlap check.
    spans: Vec<Span>,
}

impl Builder {
    fn new(blob: Digest, layout: Layout) -> Self {
        Builder {
            blob,
            layout,
            entries: Vec::new(),
            files: Vec::new(),
            offsets: Vec::new(),
            next_offset: 0,
            seen: HashSet::new(),
            open: None,
            spans: Vec::new(),
        }
    }

    fn add_all(&mut self, raw: Vec<RawEntry>) -> Result<(), TocError> {
        for (index, entry) in raw.into_iter().enumerate() {
            self.add(index, entry)?;
        }
        self.close_file(usize::MAX, "")
    }

    /// A file that is no entry of the table (eStargz: the table's own tar entry), placed
    /// after the others; its path must be new like any other.
    fn add_file(
        &mut self,
        index: usize,
        mut entry: TarEntry,
        file: TocFile,
    ) -> Result<(), TocError> {
        if !self.seen.insert(entry.path.clone()) {
            return Err(TocError::BadEntry {
                blob: self.blob,
                index,
                name: entry.path.as_str().to_owned(),
                reason: "an entry has the name of the table of contents itself".into(),
            });
        }
        entry.offset = self.next_offset;
        self.next_offset = self.next_offset.saturating_add(entry.size.max(1));
        if entry.size > 0 {
            self.files.push(file);
            self.offsets.push(entry.offset);
        }
        self.entries.push(entry);
        Ok(())
    }

    fn finish(self) -> Result<Toc, TocError> {
        match self.layout {
            Layout::Zstd { .. } => self.check_frames_apart()?,
            Layout::Gzip { .. } => self.check_spans_apart()?,
        }
        Ok(Toc {
            blob: self.blob,
            entries: self.entries,
            files: self.files,
            offsets: self.offsets,
            len: self.next_offset,
        })
    }

    fn check_frames_apart(&self) -> Result<(), TocError> {
        let mut ranges: Vec<(&Range<u64>, &VfsPath)> =
            self.files.iter().map(|f| (&f.frames, &f.path)).collect();
        ranges.sort_by_key(|(r, _)| (r.start, r.end));
        for pair in ranges.windows(2) {
            if let [(a, a_path), (b, b_path)] = pair
                && b.start < a.end
            {
                return Err(TocError::BadEntry {
                    blob: self.blob,
                    index: 0,
                    name: b_path.as_str().to_owned(),
                    reason: format!(
                        "its frames {}..{} overlap those of {a_path} ({}..{})",
                        b.start, b.end, a.start, a.end
                    ),
                });
            }
        }
        Ok(())
    }

    /// No two eStargz chunks in one member share decoded bytes (chunks in different
    /// members cannot: a member ends where the next one a chunk names starts).
    fn check_spans_apart(&self) -> Result<(), TocError> {
        let mut spans: Vec<&Span> = self.spans.iter().collect();
        spans.sort_by_key(|s| (s.at, s.inner.start));
        for pair in spans.windows(2) {
            if let [a, b] = pair
                && a.at == b.at
                && b.inner.start < a.inner.end
            {
                let path = |i: usize| self.files.get(i).map(|f| f.path.as_str().to_owned());
                return Err(TocError::BadEntry {
                    blob: self.blob,
                    index: 0,
                    name: path(b.file).unwrap_or_default(),
                    reason: format!(
                        "its chunk at blob offset {} (decoded bytes {}..{}) overlaps one of {} \
                         ({}..{})",
                        b.at,
                        b.inner.start,
                        b.inner.end,
                        path(a.file).unwrap_or_default(),
                        a.inner.start,
                        a.inner.end
                    ),
                });
            }
        }
        Ok(())
    }

    fn add(&mut self, index: usize, raw: RawEntry) -> Result<(), TocError> {
        let blob = self.blob;
        let bad = |reason: String| TocError::BadEntry {
            blob,
            index,
            name: raw.name.chars().take(200).collect(),
            reason,
        };
        if raw.chunk_type == "zeros" {
            // Holes of newer writers' sparse files: valid, but not served lazily (yet).
            return Err(TocError::Unsupported {
                blob,
                what: format!("a sparse chunk ({})", raw.name),
            });
        }
        if raw.kind == "chunk" {
            return self.add_chunk(&raw).map_err(bad);
        }
        self.close_file(index, &raw.name)?;
        let path = normalize(&raw.name).map_err(|r| bad(r.to_owned()))?;
        if !self.seen.insert(path.clone()) {
            return Err(bad("appears twice".into()));
        }
        let kind = match raw.kind.as_str() {
            "reg" => TarEntryKind::File,
            "dir" => TarEntryKind::Dir,
            "symlink" => TarEntryKind::Symlink,
            "hardlink" => TarEntryKind::Hardlink,
            "char" | "block" | "fifo" => TarEntryKind::Other,
            other => {
                return Err(TocError::Unsupported {
                    blob,
                    what: format!("an entry of type {:?} ({})", other, raw.name),
                });
            }
        };
        let non_negative = |what: &str, v: i64| {
            u64::try_from(v).map_err(|_| bad(format!("{what} {v} is negative")))
        };
        let mode = non_negative("mode", raw.mode)? as u32 & 0o7777;
        let uid = non_negative("uid", raw.uid)?;
        let gid = non_negative("gid", raw.gid)?;
        let mtime = match raw.modtime.as_deref() {
            None => 0,
            Some(t) => {
                unix_seconds(t).ok_or_else(|| bad(format!("modtime {t:?} is not RFC 3339")))?
            }
        };
        let mut entry = TarEntry {
            path,
            kind,
            mode,
            uid: u32::try_from(uid).unwrap_or(u32::MAX),
            gid: u32::try_from(gid).unwrap_or(u32::MAX),
            mtime,
            size: 0,
            offset: 0,
            link: None,
            implied: false,
        };
        match kind {
            TarEntryKind::Symlink => {
                if raw.link_name.contains('\0') {
                    return Err(bad("its target holds a NUL byte".into()));
                }
                entry.link = Some(raw.link_name.clone());
            }
            TarEntryKind::Hardlink => {
                let target =
                    normalize(&raw.link_name).map_err(|r| bad(format!("link target: {r}")))?;
                entry.link = Some(target.as_str().to_owned());
            }
            TarEntryKind::File => {
                let size = non_negative("size", raw.size)?;
                entry.size = size;
                entry.offset = self.next_offset;
                self.next_offset = self
                    .next_offset
                    .checked_add(size.max(1))
                    .ok_or_else(|| bad("file sizes add up past 2^64".into()))?;
                if size > 0 {
                    self.open_file(&raw, &entry).map_err(bad)?;
                }
            }
            TarEntryKind::Dir | TarEntryKind::Other => {}
        }
        self.entries.push(entry);
        Ok(())
    }

    /// Starts the content of a regular file with data.
    fn open_file(&mut self, raw: &RawEntry, entry: &TarEntry) -> Result<(), String> {
        let digest = Digest::parse(&raw.digest)
            .ok()
            .filter(|d| d.algorithm() == Algorithm::Sha256)
            .ok_or_else(|| format!("digest {:?} is not a sha256 digest", raw.digest))?;
        let start = u64::try_from(raw.offset).map_err(|_| "a negative offset".to_owned())?;
        let chunk_size =
            u64::try_from(raw.chunk_size).map_err(|_| "a negative chunkSize".to_owned())?;
        if chunk_size > entry.size || raw.chunk_offset != 0 {
            return Err("its first chunk is not at its start or is larger than it".into());
        }
        check_chunk_type(raw)?;
        let mut frames_follow = false;
        let (frames, codec, skip) = match &self.layout {
            Layout::Zstd { frames_end, .. } => {
                let end = match raw.end_offset {
                    0 => {
                        frames_follow = true;
                        self.layout.member_end(start)
                    }
                    end => u64::try_from(end).map_err(|_| "a negative endOffset".to_owned())?,
                };
                if start >= end || end > *frames_end {
                    return Err(format!(
                        "its frames {start}..{end} are not inside the {frames_end} bytes of \
                         file data"
                    ));
                }
                (start..end, Codec::Zstd, 0)
            }
            Layout::Gzip { toc_offset, .. } => {
                if start >= *toc_offset {
                    return Err(format!(
                        "its data at blob offset {start} is not before the table of contents \
                         (at {toc_offset})"
                    ));
                }
                let skip = inner_offset(raw)?;
                (start..self.layout.member_end(start), Codec::Gzip, skip)
            }
        };
        let first = if chunk_size == 0 {
            entry.size
        } else {
            chunk_size
        };
        self.files.push(TocFile {
            path: entry.path.clone(),
            size: entry.size,
            digest,
            frames,
            codec,
            skip,
        });
        self.offsets.push(entry.offset);
        let file = self.files.len() - 1;
        if codec == Codec::Gzip {
            self.spans.push(span(start, skip, first, file)?);
        }
        self.open = Some(OpenFile {
            file,
            covered: first,
            last_chunk_at: start,
            last_inner: skip,
            last_size: first,
            chunked: chunk_size != 0,
            frames_follow,
        });
        Ok(())
    }

    fn add_chunk(&mut self, raw: &RawEntry) -> Result<(), String> {
        let Some(open) = self.open.as_mut() else {
            return Err("a chunk that follows no file with content".into());
        };
        let Some(file) = self.files.get_mut(open.file) else {
            return Err("a chunk that follows no file with content".into());
        };
        if normalize(&raw.name).ok().as_ref() != Some(&file.path) || !open.chunked {
            return Err(format!("a chunk that does not belong to {}", file.path));
        }
        check_chunk_type(raw)?;
        let at = u64::try_from(raw.offset).map_err(|_| "a negative offset".to_owned())?;
        let mut size =
            u64::try_from(raw.chunk_size).map_err(|_| "a negative chunkSize".to_owned())?;
        if size == 0 && file.codec == Codec::Gzip {
            // eStargz writes 0 for "to the end of the file".
            size = file.size.saturating_sub(open.covered);
        }
        if raw.chunk_offset != open.covered as i64 || size == 0 {
            return Err(format!(
                "a chunk at byte {} of the file, where {} bytes were covered",
                raw.chunk_offset, open.covered
            ));
        }
        match &self.layout {
            Layout::Zstd { .. } if open.frames_follow => {
                let next_frame = self.layout.member_end(open.last_chunk_at);
                if at != next_frame {
                    return Err(format!(
                        "a chunk at blob offset {at}, not the frame after the previous one \
                         (at {}, ending at {next_frame})",
                        open.last_chunk_at
                    ));
                }
                file.frames.end = self.layout.member_end(at);
            }
            Layout::Zstd { .. } => {
                if at <= open.last_chunk_at || at >= file.frames.end {
                    return Err(format!(
                        "a chunk at blob offset {at}, not after the previous one ({}) and \
                         inside the file's frames ({}..{})",
                        open.last_chunk_at, file.frames.start, file.frames.end
                    ));
                }
            }
            Layout::Gzip { toc_offset, .. } => {
                let inner = inner_offset(raw)?;
                let next_member = self.layout.member_end(open.last_chunk_at);
                let follows = if at == open.last_chunk_at {
                    Some(inner) == open.last_inner.checked_add(open.last_size)
                } else {
                    at == next_member && at < *toc_offset && inner == 0
                };
                if !follows {
                    return Err(format!(
                        "a chunk at blob offset {at} (innerOffset {inner}) that does not \
                         continue the previous one (at {}, decoded bytes {}..+{}; the next \
                         member starts at {next_member})",
                        open.last_chunk_at, open.last_inner, open.last_size
                    ));
                }
                file.frames.end = self.layout.member_end(at);
                self.spans.push(span(at, inner, size, open.file)?);
                open.last_inner = inner;
            }
        }
        open.covered = open
            .covered
            .checked_add(size)
            .filter(|&c| c <= file.size)
            .ok_or_else(|| format!("chunks cover more than the file's {} bytes", file.size))?;
        open.last_chunk_at = at;
        open.last_size = size;
        Ok(())
    }

    /// Ends the file whose chunks were being read: they must have covered it.
    fn close_file(&mut self, index: usize, name: &str) -> Result<(), TocError> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        match self.files.get(open.file) {
            Some(file) if open.covered != file.size => Err(TocError::BadEntry {
                blob: self.blob,
                index,
                name: name.chars().take(200).collect(),
                reason: format!(
                    "the chunks of {} cover {} of its {} bytes",
                    file.path, open.covered, file.size
                ),
            }),
            _ => Ok(()),
        }
    }
}

fn inner_offset(raw: &RawEntry) -> Result<u64, String> {
    u64::try_from(raw.inner_offset).map_err(|_| "a negative innerOffset".to_owned())
}

fn span(at: u64, inner: u64, size: u64, file: usize) -> Result<Span, String> {
    let end = inner
        .checked_add(size)
        .ok_or_else(|| "innerOffset and size add up past 2^64".to_owned())?;
    Ok(Span {
        at,
        inner: inner..end,
        file,
    })
}

fn check_chunk_type(raw: &RawEntry) -> Result<(), String> {
    match raw.chunk_type.as_str() {
        "" | "data" => Ok(()),
        other => Err(format!(
            "chunk type {other:?} (only data chunks are read lazily)"
        )),
    }
}

/// A tar name as a path inside the layer: `./`, leading `/` and empty components dropped;
/// `..` and NUL refused (a table of contents has no business naming them).
fn normalize(name: &str) -> Result<VfsPath, &'static str> {
    if name.contains('\0') {
        return Err("the name holds a NUL byte");
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("the name climbs out of the layer with `..`"),
            p => parts.push(p),
        }
    }
    VfsPath::new(&format!("/{}", parts.join("/"))).map_err(|_| "the name is not a valid path")
}

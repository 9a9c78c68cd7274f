//! zstd:chunked tables of contents (`layer_toc`): the annotations that locate a table, the
//! footer at the end of a blob, and the table itself, checked and turned into a path table.
//!
//! The first byte picks what the rest is:
//!
//! ```text
//! j POSITION \n JSON      the table's JSON; compressed here, so it always gets past the
//!                         digest and decompression checks to the entry checks
//! z POSITION \n BYTES     the compressed table, raw (its sha256 recomputed): the
//!                         decompression bound
//! f BLOB_SIZE \n TAIL     the last bytes of a blob, for `Footer::parse`
//! p \n LINES              `K=V` lines for `TocPosition::from_annotations` and `check`:
//!                         p/c the position/checksum under the current keys, P/C under the
//!                         old ones, s the blob size, l the limit
//! ```
//!
//! (another first byte picks one of the four by its value modulo 4). POSITION is the
//! `manifest-position` annotation, `offset:compressed:uncompressed:1`: its offset is kept
//! (file frames must end 8 bytes before it); `j` replaces the lengths with the true ones,
//! `z` only the compressed length (the declared uncompressed length is the bound under test).
//!
//! Seeds are written by `layer_toc::write_zstd_chunked` over small tars (files, directories,
//! symlinks, hardlinks, a link into the layers below), plus a hand-written chunked table and
//! a footer of the newer 64-byte form.

use std::collections::HashSet;

use cache_core::{Algorithm, Digest};
use layer_toc::{
    CHECKSUM_KEY, Footer, POSITION_KEY, Toc, TocError, TocPosition, WRITTEN_CHECKSUM_KEY,
    WRITTEN_POSITION_KEY, write_zstd_chunked,
};
use vfs_overlay::{TarEntryKind, VfsPath};

use super::{Feedback, Target};

/// Bound on the table, compressed or not, for `Toc::parse` and `check`.
const LIMIT: u64 = 1 << 20;

/// The old annotation names are the ones `write_zstd_chunked` writes.
const OLD_CHECKSUM_KEY: &str = WRITTEN_CHECKSUM_KEY;
const OLD_POSITION_KEY: &str = WRITTEN_POSITION_KEY;

const SKIPPABLE_MAGIC: [u8; 4] = [0x50, 0x2a, 0x4d, 0x18];
const FOOTER_MAGIC: &[u8; 8] = b"GnUlInUx";

pub(super) const ZSTD_CHUNKED_TOC: Target = Target {
    name: "zstd_chunked_toc",
    about: "layer_toc: Toc::parse + index() on a table's JSON (compressed here) or raw \
            compressed bytes, Footer::parse on a blob's tail, TocPosition::from_annotations \
            and check: frames lie before the table and do not overlap, every file is found \
            by its offset, paths are canonical, footers and positions lie inside the blob",
    run: zstd_chunked_toc,
    seeds: toc_seeds,
    dictionary: &[
        b"\"type\":",
        b"\"name\":",
        b"\"linkName\":",
        b"\"mode\":",
        b"\"size\":",
        b"\"uid\":",
        b"\"gid\":",
        b"\"modtime\":",
        b"\"digest\":",
        b"\"offset\":",
        b"\"endOffset\":",
        b"\"chunkSize\":",
        b"\"chunkOffset\":",
        b"\"chunkDigest\":",
        b"\"chunkType\":",
        b"\"version\":",
        b"\"entries\":",
        b"type",
        b"name",
        b"linkName",
        b"size",
        b"offset",
        b"endOffset",
        b"chunkSize",
        b"chunkOffset",
        b"\"reg\"",
        b"\"dir\"",
        b"\"symlink\"",
        b"\"hardlink\"",
        b"\"chunk\"",
        b"\"zeros\"",
        b"\"data\"",
        b"\"fifo\"",
        b",{\"type\":\"chunk\",\"name\":\"a\",\"offset\":1,\"chunkOffset\":1,\"chunkSize\":1}",
        b"sha256:",
        b"sha256:abababababababababababababababababababababababababababababababab",
        b"2023-11-14T22:13:20Z",
        b"GnUlInUx",
        b"\x50\x2a\x4d\x18",
        b"\x28\xb5\x2f\xfd",
        b"..",
        b"../",
        b"./",
        b":1\n",
        b"\np=",
        b"\nc=",
        b"\nP=",
        b"\nC=",
        b"\ns=",
        b"\nl=",
    ],
    max_len: 16384,
};

fn blob() -> Digest {
    Algorithm::Sha256.digest(b"the fuzzed layer")
}

fn zstd_chunked_toc(data: &[u8]) -> Feedback {
    let Some((&mode, rest)) = data.split_first() else {
        return Feedback::new("empty");
    };
    let mode = match mode {
        b'j' | b'z' | b'f' | b'p' => mode,
        other => *b"jzfp".get(usize::from(other % 4)).unwrap_or(&b'j'),
    };
    let (line, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (
            rest.get(..i).unwrap_or_default(),
            rest.get(i + 1..).unwrap_or_default(),
        ),
        None => (rest, &[][..]),
    };
    match mode {
        b'j' => {
            let json = body;
            let Ok(compressed) = zstd::bulk::compress(json, 1) else {
                panic!("zstd cannot compress {} bytes", json.len());
            };
            table(line, &compressed, Some(json.len() as u64)).with(Feedback::new("json"))
        }
        b'z' => table(line, body, None).with(Feedback::new("raw")),
        b'f' => footer(line, body),
        _ => annotations(rest),
    }
}

/// Modes `j` and `z`: the position from `line`, its lengths and digest made true for
/// `compressed` (the uncompressed length too when given), then the table.
fn table(line: &[u8], compressed: &[u8], uncompressed: Option<u64>) -> Feedback {
    let Some(line) = super::utf8(line) else {
        return Feedback::new("position not UTF-8");
    };
    let blob = blob();
    let checksum = Algorithm::Sha256.digest(compressed).to_string();
    let get = |key: &str| match key {
        POSITION_KEY => Some(line),
        CHECKSUM_KEY => Some(checksum.as_str()),
        _ => None,
    };
    let mut position = match TocPosition::from_annotations(blob, get) {
        None => panic!("from_annotations found no annotation, both were given"),
        Some(Err(e)) => return Feedback::err("position", &e),
        Some(Ok(p)) => p,
    };
    assert_eq!(position.blob, blob);
    assert_eq!(
        position.digest.to_string(),
        checksum,
        "the position carries another digest than its annotation"
    );
    position.compressed = compressed.len() as u64;
    if let Some(len) = uncompressed {
        position.uncompressed = len;
    }
    // A made-up blob: the table, then a 40-byte footer in its skippable frame.
    let blob_size = position
        .offset
        .saturating_add(position.compressed)
        .saturating_add(48);
    let checked = position.check(blob_size, LIMIT);
    assert_eq!(
        checked.is_ok(),
        position.offset >= 8
            && position.compressed > 0
            && position.compressed <= LIMIT
            && position.uncompressed <= LIMIT
            && position.offset.checked_add(position.compressed).is_some(),
        "check({blob_size}, {LIMIT}) of {position:?}: {checked:?}"
    );
    let feedback = match &checked {
        Ok(()) => Feedback::new("checked"),
        Err(e) => Feedback::err("check", e),
    };
    match Toc::parse(&position, compressed, LIMIT) {
        Ok(toc) => {
            assert!(
                position.uncompressed <= LIMIT,
                "a table of {} bytes was accepted over the limit",
                position.uncompressed
            );
            feedback.with(check_toc(&toc, &position))
        }
        Err(e) => {
            assert!(
                !matches!(e, TocError::DigestMismatch { .. }),
                "the digest was computed from the bytes: {e}"
            );
            if uncompressed.is_some() {
                assert!(
                    !matches!(e, TocError::Decompress { .. } | TocError::TooLarge { .. }),
                    "{} bytes compressed here with their true length: {e}",
                    position.uncompressed
                );
            } else if position.uncompressed > LIMIT {
                assert!(
                    matches!(e, TocError::TooLarge { .. }),
                    "{} bytes declared, over the limit, but: {e}",
                    position.uncompressed
                );
            }
            assert!(
                e.to_string().contains(&blob.to_string()),
                "the error does not name the layer: {e}"
            );
            feedback.with(Feedback::err("toc", &e))
        }
    }
}

/// Panics unless an accepted table keeps its promises.
fn check_toc(toc: &Toc, position: &TocPosition) -> Feedback {
    assert_eq!(toc.blob(), position.blob);
    let frames_end = position.offset.saturating_sub(8);
    for f in toc.files() {
        assert!(
            f.frames.start < f.frames.end && f.frames.end <= frames_end,
            "{}: frames {:?} not inside the {frames_end} bytes before the table",
            f.path,
            f.frames
        );
        assert!(f.size > 0, "{}: a file without content in files()", f.path);
        assert_eq!(f.digest.algorithm(), Algorithm::Sha256, "{}", f.path);
    }
    let mut ranges: Vec<_> = toc.files().iter().map(|f| (&f.frames, &f.path)).collect();
    ranges.sort_by_key(|(r, _)| (r.start, r.end));
    for pair in ranges.windows(2) {
        if let [(a, a_path), (b, b_path)] = pair {
            assert!(
                a.end <= b.start,
                "frames of {a_path} ({a:?}) and {b_path} ({b:?}) overlap"
            );
        }
    }

    let mut paths = HashSet::new();
    let mut with_content = 0;
    for e in toc.entries() {
        check_path(&e.path);
        assert!(paths.insert(&e.path), "{} appears twice", e.path);
        assert!(!e.implied, "{}: an implied entry in the table", e.path);
        match e.kind {
            TarEntryKind::File if e.size > 0 => {
                with_content += 1;
                let Some(f) = toc.file_at(e.offset) else {
                    panic!("{}: no file at its offset {}", e.path, e.offset);
                };
                assert_eq!(&f.path, &e.path, "file_at({}) is another file", e.offset);
                assert_eq!(f.size, e.size, "{}: sizes differ", e.path);
            }
            TarEntryKind::File => {
                assert!(
                    toc.file_at(e.offset).is_none(),
                    "{}: an empty file has content at {}",
                    e.path,
                    e.offset
                );
            }
            TarEntryKind::Hardlink => {
                let target = e.link.as_deref().map(VfsPath::new);
                let Some(Ok(target)) = target else {
                    panic!("{}: hardlink target {:?} is not a path", e.path, e.link);
                };
                check_path(&target);
            }
            TarEntryKind::Symlink => {
                let Some(link) = &e.link else {
                    panic!("{}: a symlink without a target", e.path);
                };
                assert!(!link.contains('\0'), "{}: NUL in the target", e.path);
            }
            TarEntryKind::Dir | TarEntryKind::Other => {}
        }
    }
    assert_eq!(
        with_content,
        toc.files().len(),
        "files with content in entries() and files() differ"
    );

    let feedback = Feedback::ok("toc", toc.entries().len()).and(super::size_class(with_content));
    match toc.index() {
        Ok(index) => {
            for e in index.entries() {
                check_path(&e.path);
                if !matches!(e.kind, TarEntryKind::File | TarEntryKind::Hardlink) || e.size == 0 {
                    continue;
                }
                let Some(f) = toc.file_at(e.offset) else {
                    panic!(
                        "{} ({:?}) in the index: no file at its offset {}",
                        e.path, e.kind, e.offset
                    );
                };
                assert_eq!(f.size, e.size, "{}: the index says another size", e.path);
                if e.kind == TarEntryKind::File {
                    assert_eq!(&f.path, &e.path, "index file at {}", e.offset);
                }
            }
            feedback.with(Feedback::ok("index", index.entries().len()))
        }
        Err(e) => feedback.with(Feedback::err("index", &e)),
    }
}

/// Panics unless `path` is canonical: rooted, no empty, `.` or `..` component, no NUL.
fn check_path(path: &VfsPath) {
    let text = path.as_str();
    assert!(text.starts_with('/'), "{text:?} is not rooted");
    assert!(!text.contains('\0'), "{text:?} holds a NUL");
    if text != "/" {
        for part in text.split('/').skip(1) {
            assert!(
                !matches!(part, "" | "." | ".."),
                "{text:?} has a component {part:?}"
            );
        }
    }
    assert_eq!(
        VfsPath::new(text).ok().as_ref(),
        Some(path),
        "{text:?} is not canonical"
    );
}

/// Mode `f`: `Footer::parse` of `tail` in a blob of the size on `line`.
fn footer(line: &[u8], tail: &[u8]) -> Feedback {
    let Some(blob_size) = super::utf8(line).and_then(|l| l.trim().parse::<u64>().ok()) else {
        return Feedback::new("blob size not a number");
    };
    let blob = blob();
    let footer = match Footer::parse(blob, tail, blob_size) {
        Ok(f) => f,
        Err(e) => {
            assert!(
                matches!(e, TocError::BadFooter { .. }),
                "not a BadFooter: {e}"
            );
            return Feedback::err("footer", &e);
        }
    };
    assert!(tail.ends_with(FOOTER_MAGIC), "accepted without the magic");
    // What the footer's own frame says, read independently.
    let payload_len = if footer.tar_split.is_some() { 64 } else { 40 };
    let payload = tail
        .len()
        .checked_sub(payload_len)
        .and_then(|start| tail.get(start..))
        .unwrap_or_else(|| panic!("accepted a {}-byte tail", tail.len()));
    let header = tail
        .len()
        .checked_sub(payload_len + 8)
        .and_then(|start| tail.get(start..start + 8))
        .unwrap_or_else(|| panic!("accepted a {}-byte tail", tail.len()));
    let mut expected_header = SKIPPABLE_MAGIC.to_vec();
    expected_header.extend_from_slice(&(payload_len as u32).to_le_bytes());
    assert_eq!(header, expected_header, "not a skippable frame header");
    let field = |n: usize| {
        payload
            .get(n * 8..n * 8 + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_le_bytes)
    };
    assert_eq!(
        (
            footer.offset,
            footer.compressed,
            footer.uncompressed,
            field(3)
        ),
        (field(0), field(1), field(2), 1),
        "the footer says other numbers than its payload"
    );
    if let Some(split) = footer.tar_split {
        assert_eq!(split, (field(4), field(5), field(6)));
    }
    // Inside the blob, before the footer.
    let footer_len = payload_len as u64 + 8;
    let fits = |offset: u64, len: u64| {
        offset
            .checked_add(len)
            .and_then(|end| end.checked_add(footer_len))
            .is_some_and(|end| end <= blob_size)
    };
    assert!(
        fits(footer.offset, footer.compressed),
        "table {}+{} past the {blob_size}-byte blob",
        footer.offset,
        footer.compressed
    );
    if let Some((offset, len, _)) = footer.tar_split {
        assert!(fits(offset, len), "tar-split {offset}+{len} past the blob");
    }
    // The same position as annotations says the same, and passes the same bounds.
    let text = format!(
        "{}:{}:{}:1",
        footer.offset, footer.compressed, footer.uncompressed
    );
    let checksum = format!("sha256:{}", "ab".repeat(32));
    let get = |key: &str| match key {
        POSITION_KEY => Some(text.as_str()),
        CHECKSUM_KEY => Some(checksum.as_str()),
        _ => None,
    };
    let Some(Ok(position)) = TocPosition::from_annotations(blob, get) else {
        panic!("the footer's position {text} does not parse as an annotation");
    };
    assert_eq!(
        (position.offset, position.compressed, position.uncompressed),
        (footer.offset, footer.compressed, footer.uncompressed)
    );
    if footer.offset >= 8
        && footer.compressed > 0
        && let Err(e) = position.check(blob_size, u64::MAX)
    {
        panic!("the footer's table is inside the blob, but check says: {e}");
    }
    Feedback::ok("footer", usize::from(footer.tar_split.is_some()))
}

/// Mode `p`: `K=V` lines as annotations, then `check`.
fn annotations(text: &[u8]) -> Feedback {
    let Some(text) = super::utf8(text) else {
        return Feedback::new("annotations not UTF-8");
    };
    let mut values: [Option<&str>; 4] = [None; 4];
    let (mut blob_size, mut limit) = (1u64 << 30, LIMIT);
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k {
            "p" => values[0] = Some(v),
            "c" => values[1] = Some(v),
            "P" => values[2] = Some(v),
            "C" => values[3] = Some(v),
            "s" => blob_size = v.parse().unwrap_or(blob_size),
            "l" => limit = v.parse().unwrap_or(limit),
            _ => {}
        }
    }
    let [new_position, new_checksum, old_position, old_checksum] = values;
    let get = |key: &str| match key {
        POSITION_KEY => new_position,
        CHECKSUM_KEY => new_checksum,
        OLD_POSITION_KEY => old_position,
        OLD_CHECKSUM_KEY => old_checksum,
        _ => None,
    };
    let blob = blob();
    let parsed = TocPosition::from_annotations(blob, get);
    // The model: the current names win when either is there.
    let chosen = if new_position.is_some() || new_checksum.is_some() {
        Some((new_position, new_checksum))
    } else if old_position.is_some() || old_checksum.is_some() {
        Some((old_position, old_checksum))
    } else {
        None
    };
    let expected = chosen.map(|(position, checksum)| {
        let digest = Digest::parse(checksum?)
            .ok()
            .filter(|d| d.algorithm() == Algorithm::Sha256)?;
        let fields: Vec<u64> = position?
            .split(':')
            .map(|f| f.parse::<u64>().ok())
            .collect::<Option<_>>()?;
        match fields.as_slice() {
            &[offset, compressed, uncompressed, 1] => {
                Some((offset, compressed, uncompressed, digest))
            }
            _ => None,
        }
    });
    let position = match (parsed, expected) {
        (None, None) => return Feedback::new("no annotations"),
        (Some(Err(e)), Some(None)) => {
            assert!(
                matches!(e, TocError::BadAnnotation { .. }),
                "not a BadAnnotation: {e}"
            );
            return Feedback::err("annotations", &e);
        }
        (Some(Ok(p)), Some(Some((offset, compressed, uncompressed, digest)))) => {
            assert_eq!(
                (p.blob, p.offset, p.compressed, p.uncompressed, p.digest),
                (blob, offset, compressed, uncompressed, digest),
                "the position is not what its annotations say"
            );
            p
        }
        (parsed, expected) => {
            panic!("from_annotations gave {parsed:?}, the model {expected:?}")
        }
    };
    let checked = position.check(blob_size, limit);
    let end = position.offset.checked_add(position.compressed);
    let fits = position.offset >= 8
        && position.compressed > 0
        && position.compressed <= limit
        && position.uncompressed <= limit
        && end.is_some_and(|end| end <= blob_size);
    assert_eq!(
        checked.is_ok(),
        fits,
        "check({blob_size}, {limit}) of {position:?}: {checked:?}"
    );
    if checked.is_ok() {
        let range = position.range();
        assert!(range.start >= 8 && range.start < range.end && range.end <= blob_size);
        assert_eq!(range.end - range.start, position.compressed);
    }
    match checked {
        Ok(()) => Feedback::ok("position", usize::from(position.offset > 1 << 20)),
        Err(e) => Feedback::err("check", &e),
    }
}

// --- Seeds -------------------------------------------------------------------------------

fn tar_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    h.set_uid(1000);
    h.set_gid(100);
    h
}

/// A tar of `(kind, name, link or content)`: `d` directory, `f` file, `l` symlink, `h`
/// hardlink, `p` fifo.
fn build_tar(entries: &[(char, &str, &str)]) -> std::io::Result<Vec<u8>> {
    use tar::EntryType as T;
    let mut b = tar::Builder::new(Vec::new());
    for &(kind, name, arg) in entries {
        match kind {
            'd' => b.append_data(&mut tar_header(T::Directory, 0o755, 0), name, &[][..])?,
            'f' => b.append_data(
                &mut tar_header(T::Regular, 0o644, arg.len() as u64),
                name,
                arg.as_bytes(),
            )?,
            'l' => b.append_link(&mut tar_header(T::Symlink, 0o777, 0), name, arg)?,
            'h' => b.append_link(&mut tar_header(T::Link, 0o644, 0), name, arg)?,
            _ => b.append_data(&mut tar_header(T::Fifo, 0o644, 0), name, &[][..])?,
        }
    }
    b.into_inner()
}

/// One written layer: the blob and its position annotation.
struct Written {
    blob: Vec<u8>,
    position: String,
    offset: usize,
    compressed: usize,
}

fn write(tar: &[u8]) -> Option<Written> {
    let mut blob = Vec::new();
    let annotations = write_zstd_chunked(tar, 3, &mut blob).ok()?;
    let position = annotations
        .iter()
        .find(|(k, _)| k == WRITTEN_POSITION_KEY)?
        .1
        .clone();
    let mut fields = position.split(':').map(|f| f.parse::<usize>().ok());
    let (offset, compressed) = (fields.next()??, fields.next()??);
    Some(Written {
        blob,
        position,
        offset,
        compressed,
    })
}

fn seed(mode: u8, line: &str, body: &[u8]) -> Vec<u8> {
    let mut s = vec![mode];
    s.extend_from_slice(line.as_bytes());
    s.push(b'\n');
    s.extend_from_slice(body);
    s
}

fn toc_seeds() -> Vec<Vec<u8>> {
    let long_name = format!("{}file", "long/".repeat(30));
    let tars: [&[(char, &str, &str)]; 3] = [
        &[
            ('d', "etc/", ""),
            ('f', "etc/hello.txt", "hello world\n"),
            ('f', "etc/empty", ""),
            ('l', "etc/link", "hello.txt"),
            ('h', "etc/hard", "etc/hello.txt"),
        ],
        &[
            ('f', "usr/share/doc/readme", "deep file, parents implied\n"),
            ('f', "./bin/sh", "#!/bin/true\n"),
            ('f', ".wh.gone", ""),
            ('h', "lib/below", "lib/in-the-layer-below"),
            ('p', "run/fifo", ""),
            ('d', "usr/", ""),
            ('f', &long_name, "a GNU long name\n"),
        ],
        &[('f', "only", "x")],
    ];
    let mut seeds = Vec::new();
    let mut written = 0;
    for entries in tars {
        let Some(w) = build_tar(entries).ok().and_then(|t| write(&t)) else {
            continue;
        };
        written += 1;
        let toc = w
            .blob
            .get(w.offset..w.offset.saturating_add(w.compressed))
            .unwrap_or_default();
        if let Ok(json) = zstd::stream::decode_all(toc) {
            seeds.push(seed(b'j', &w.position, &json));
        }
        seeds.push(seed(b'z', &w.position, toc));
        let tail = w
            .blob
            .get(w.blob.len().saturating_sub(Footer::TAIL)..)
            .unwrap_or_default();
        seeds.push(seed(b'f', &w.blob.len().to_string(), tail));
        let checksum = Algorithm::Sha256.digest(toc).to_string();
        seeds.push(seed(
            b'p',
            "",
            format!(
                "P={}\nC={checksum}\ns={}\nl={LIMIT}\n",
                w.position,
                w.blob.len()
            )
            .as_bytes(),
        ));
    }
    assert_eq!(
        written,
        tars.len(),
        "a zstd:chunked seed could not be written"
    );

    // A chunked file (the writer never chunks), as tests/lies.rs has it.
    let digest = |c: &str| format!("\"sha256:{}\"", c.repeat(32));
    let chunked = format!(
        r#"{{"version":1,"entries":[
{{"type":"dir","name":"./a/","mode":493}},
{{"type":"reg","name":"a/x","size":10,"offset":100,"endOffset":200,"digest":{},"modtime":"2023-11-14T22:13:20Z"}},
{{"type":"reg","name":"a/big","size":30,"offset":200,"endOffset":400,"digest":{},"chunkSize":10}},
{{"type":"chunk","name":"a/big","offset":300,"chunkOffset":10,"chunkSize":20,"chunkType":"data"}},
{{"type":"symlink","name":"a/l","linkName":"x"}},
{{"type":"hardlink","name":"a/h","linkName":"a/x"}}]}}"#,
        digest("ab"),
        digest("cd"),
    );
    seeds.push(seed(b'j', "10008:0:0:1", chunked.as_bytes()));
    // Compact entries, adjacent frames, three chunks, a chain of hardlinks, one to an empty
    // file, and a file that a later entry turns into a directory.
    let d = digest("ef");
    let compact = format!(
        r#"{{"version":1,"entries":[
{{"type":"reg","name":"a","size":4,"offset":8,"endOffset":20,"digest":{d}}},
{{"type":"reg","name":"b","size":9,"offset":20,"endOffset":60,"digest":{d},"chunkSize":3}},
{{"type":"chunk","name":"b","offset":30,"chunkOffset":3,"chunkSize":3}},
{{"type":"chunk","name":"b","offset":40,"chunkOffset":6,"chunkSize":3}},
{{"type":"reg","name":"e"}},
{{"type":"hardlink","name":"h1","linkName":"b"}},
{{"type":"hardlink","name":"h2","linkName":"h1"}},
{{"type":"hardlink","name":"h3","linkName":"/e"}},
{{"type":"symlink","name":"s","linkName":"../../a"}},
{{"type":"reg","name":"a/x","size":1,"offset":60,"endOffset":70,"digest":{d}}}]}}"#
    );
    seeds.push(seed(b'j', "78:0:0:1", compact.as_bytes()));

    // The newer 64-byte footer, which also locates the tar-split.
    let mut tail = SKIPPABLE_MAGIC.to_vec();
    tail.extend_from_slice(&64u32.to_le_bytes());
    for v in [1_000u64, 100, 400, 1, 1_100, 50, 2_048] {
        tail.extend_from_slice(&v.to_le_bytes());
    }
    tail.extend_from_slice(FOOTER_MAGIC);
    seeds.push(seed(b'f', "1300", &tail));

    // Both names present: the current ones win.
    seeds.push(seed(
        b'p',
        "",
        format!(
            "p=16:100:300:1\nc=sha256:{}\nP=8:1:1:1\ns=200\nl=1024\n",
            "ab".repeat(32)
        )
        .as_bytes(),
    ));
    seeds
}

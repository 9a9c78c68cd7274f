//! eStargz tables of contents (`layer_toc`): the annotation, the footer at the end of a
//! blob, and the table in its gzip member, found the way a lazy reader finds them (the
//! tail, the footer in it, maybe one more range) and checked.
//!
//! The first byte picks what the rest is:
//!
//! ```text
//! j OFFSET \n JSON     the table's JSON, put here into a blob: OFFSET (mod 64 KiB) bytes of
//!                      file data, the table's tar entry in a gzip member, the footer; the
//!                      annotation is the JSON's true sha256, so it reaches the entry checks
//! b DIGEST \n BLOB     a whole blob, its annotation DIGEST (a fixed one if that does not
//!                      parse): the footer, the table member's decoding, the limit (1 MiB)
//! p \n VALUE           the annotation's value, for `EstargzPosition::from_annotations`
//! ```
//!
//! (another first byte picks one of the three by its value modulo 3).
//!
//! Seeds are written by `layer_toc::write_estargz` over small tars (files, an empty one,
//! chunked ones, shared members, directories, links), as whole blobs and as their tables'
//! JSON, plus hand-written tables with `innerOffset` and chunks.

use std::collections::HashSet;
use std::io::{Read, Write};

use cache_core::{Algorithm, Digest};
use layer_toc::{
    Codec, ESTARGZ_TOC_DIGEST_KEY, EstargzFooter, EstargzOptions, EstargzPosition, Toc, TocError,
    write_estargz,
};
use vfs_overlay::{TarEntryKind, VfsPath};

use super::{Feedback, Target};

/// Bound on the table, compressed or not.
const LIMIT: u64 = 1 << 20;
/// The table's tar name, and its path in the volume.
const TOC_PATH: &str = "/stargz.index.json";

pub(super) const ESTARGZ_TOC: Target = Target {
    name: "estargz_toc",
    about: "layer_toc: an eStargz table's JSON (put into a blob here) or a whole blob, read \
            as a lazy reader does (tail, EstargzPosition::footer, still_needed, toc_bytes, \
            Toc::parse_estargz) + index(); EstargzPosition::from_annotations: files lie \
            before the table, every file is found by its offset, paths are canonical, \
            footers lie inside the blob",
    run: estargz_toc,
    seeds: estargz_seeds,
    dictionary: &[
        b"\"type\":",
        b"\"name\":",
        b"\"linkName\":",
        b"\"mode\":",
        b"\"size\":",
        b"\"modtime\":",
        b"\"digest\":",
        b"\"offset\":",
        b"\"innerOffset\":",
        b"\"chunkSize\":",
        b"\"chunkOffset\":",
        b"\"chunkDigest\":",
        b"\"version\":",
        b"\"entries\":",
        b"\"reg\"",
        b"\"dir\"",
        b"\"symlink\"",
        b"\"hardlink\"",
        b"\"chunk\"",
        b",{\"type\":\"chunk\",\"name\":\"a\",\"offset\":1,\"chunkOffset\":1,\"innerOffset\":1}",
        b"stargz.index.json",
        b"sha256:",
        b"sha256:abababababababababababababababababababababababababababababababab",
        b"STARGZ",
        b"SG\x16\x00",
        b"\x1f\x8b\x08\x04",
        b"\x1f\x8b\x08\x00",
        b"\x01\x00\x00\xff\xff",
        b"..",
        b"../",
        b"./",
    ],
    max_len: 16384,
};

fn blob_digest() -> Digest {
    Algorithm::Sha256.digest(b"the fuzzed eStargz layer")
}

fn estargz_toc(data: &[u8]) -> Feedback {
    let Some((&mode, rest)) = data.split_first() else {
        return Feedback::new("empty");
    };
    let mode = match mode {
        b'j' | b'b' | b'p' => mode,
        other => *b"jbp".get(usize::from(other % 3)).unwrap_or(&b'j'),
    };
    let (line, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (
            rest.get(..i).unwrap_or_default(),
            rest.get(i + 1..).unwrap_or_default(),
        ),
        None => (rest, &[][..]),
    };
    match mode {
        b'j' => json_table(line, body),
        b'b' => whole_blob(line, body),
        _ => annotation(body),
    }
}

/// Mode `j`: the JSON in a blob made here, with its true digest.
fn json_table(line: &[u8], json: &[u8]) -> Feedback {
    let offset = super::utf8(line)
        .and_then(|l| l.trim().parse::<u64>().ok())
        .unwrap_or(0)
        % (64 << 10);
    let data = vec![0u8; usize::try_from(offset).unwrap_or(0)];
    let Ok(blob) = blob_with(&data, json) else {
        return Feedback::new("tar entry not written");
    };
    let position = EstargzPosition {
        blob: blob_digest(),
        size: blob.len() as u64,
        toc_digest: Algorithm::Sha256.digest(json),
    };
    match read(&position, &blob) {
        Ok((footer, toc)) => {
            assert_eq!(
                footer.toc.start, offset,
                "the footer written here says another offset"
            );
            check_toc(&toc, &position, &footer).with(Feedback::new("json"))
        }
        Err(e) => {
            assert!(
                !matches!(
                    e,
                    TocError::DigestMismatch { .. }
                        | TocError::BadFooter { .. }
                        | TocError::Decompress { .. }
                ),
                "the blob was written here, with the JSON's digest: {e}"
            );
            if json.len() as u64 <= LIMIT / 2 {
                assert!(
                    !matches!(e, TocError::TooLarge { .. }),
                    "{} bytes of JSON are under the limit: {e}",
                    json.len()
                );
            }
            named(&e);
            Feedback::err("json", &e)
        }
    }
}

/// Mode `b`: a whole blob.
fn whole_blob(line: &[u8], blob: &[u8]) -> Feedback {
    let toc_digest = super::utf8(line)
        .and_then(|l| Digest::parse(l.trim()).ok())
        .unwrap_or_else(|| Algorithm::Sha256.digest(b"no table"));
    let position = EstargzPosition {
        blob: blob_digest(),
        size: blob.len() as u64,
        toc_digest,
    };
    // The footer alone, on the whole blob as its tail.
    match EstargzFooter::parse(position.blob, blob, position.size) {
        Ok(footer) => {
            assert!(
                matches!(footer.len, 47 | 51),
                "a footer of {} bytes",
                footer.len
            );
            assert!(
                footer.toc.start < footer.toc.end && footer.toc.end + footer.len == position.size,
                "the table {:?} is not between the blob's start and the footer",
                footer.toc
            );
        }
        Err(e) => {
            assert!(
                matches!(e, TocError::BadFooter { .. }),
                "not a BadFooter: {e}"
            );
            named(&e);
            return Feedback::err("footer", &e);
        }
    }
    match read(&position, blob) {
        Ok((footer, toc)) => {
            let json = toc
                .files()
                .last()
                .map(|f| f.digest)
                .unwrap_or_else(|| panic!("no table file in an accepted table"));
            assert_eq!(json, toc_digest, "the table file is not the annotated JSON");
            check_toc(&toc, &position, &footer).with(Feedback::new("blob"))
        }
        Err(e) => {
            named(&e);
            Feedback::err("blob", &e)
        }
    }
}

/// Mode `p`: the annotation, against a model.
fn annotation(value: &[u8]) -> Feedback {
    let Some(value) = super::utf8(value) else {
        return Feedback::new("annotation not UTF-8");
    };
    let blob = blob_digest();
    let get = |key: &str| (key == ESTARGZ_TOC_DIGEST_KEY).then_some(value);
    let expected = Digest::parse(value)
        .ok()
        .filter(|d| d.algorithm() == Algorithm::Sha256);
    match (EstargzPosition::from_annotations(blob, 42, get), expected) {
        (Some(Ok(p)), Some(digest)) => {
            assert_eq!((p.blob, p.size, p.toc_digest), (blob, 42, digest));
            assert_eq!(p.tail(), 0..42, "a small blob's tail is all of it");
            Feedback::new("annotation")
        }
        (Some(Err(e)), None) => {
            assert!(matches!(e, TocError::BadAnnotation { .. }), "{e}");
            named(&e);
            Feedback::err("annotation", &e)
        }
        (parsed, expected) => panic!("from_annotations gave {parsed:?}, the model {expected:?}"),
    }
    .with(
        match EstargzPosition::from_annotations(blob, 42, |_| None) {
            None => Feedback::new("none"),
            Some(r) => panic!("no annotation, but {r:?}"),
        },
    )
}

/// What a lazy reader does, through every step.
// The crate's own errors, as they come (they are large to name the layer).
#[allow(clippy::result_large_err)]
fn read(position: &EstargzPosition, blob: &[u8]) -> Result<(EstargzFooter, Toc), TocError> {
    let range = |r: std::ops::Range<u64>| {
        usize::try_from(r.start)
            .ok()
            .zip(usize::try_from(r.end).ok())
            .and_then(|(s, e)| blob.get(s..e))
            .unwrap_or_else(|| panic!("range {r:?} outside the {}-byte blob", blob.len()))
    };
    let tail = range(position.tail());
    let footer = position.footer(tail, LIMIT)?;
    let head = position
        .still_needed(&footer)
        .map(range)
        .unwrap_or_default();
    let toc_bytes = position.toc_bytes(&footer, head, tail)?;
    assert_eq!(
        &toc_bytes[..],
        range(footer.toc.clone()),
        "toc_bytes are not the blob's bytes the footer locates"
    );
    let toc = Toc::parse_estargz(position, &footer, &toc_bytes, LIMIT)?;
    Ok((footer, toc))
}

fn named(e: &TocError) {
    assert!(
        e.to_string().contains(&blob_digest().to_string()),
        "the error does not name the layer: {e}"
    );
}

/// Panics unless an accepted table keeps its promises.
fn check_toc(toc: &Toc, position: &EstargzPosition, footer: &EstargzFooter) -> Feedback {
    assert_eq!(toc.blob(), position.blob);
    let Some((table, files)) = toc.files().split_last() else {
        panic!("an accepted table without its own file");
    };
    assert_eq!(table.path.as_str(), TOC_PATH);
    assert_eq!(
        table.frames, footer.toc,
        "the table file is not the table's member"
    );
    for f in toc.files() {
        assert_eq!(f.codec, Codec::Gzip, "{}", f.path);
        assert!(f.size > 0, "{}: a file without content in files()", f.path);
        assert!(
            f.skip.checked_add(f.size).is_some(),
            "{}: skip + size overflow",
            f.path
        );
        assert_eq!(f.digest.algorithm(), Algorithm::Sha256, "{}", f.path);
    }
    for f in files {
        assert!(
            f.frames.start < f.frames.end && f.frames.end <= footer.toc.start,
            "{}: members {:?} not before the table at {}",
            f.path,
            f.frames,
            footer.toc.start
        );
        assert_ne!(f.path.as_str(), TOC_PATH, "a second table file");
    }

    let mut paths = HashSet::new();
    let mut with_content = 0;
    for e in toc.entries() {
        check_path(&e.path);
        assert!(paths.insert(&e.path), "{} appears twice", e.path);
        if e.kind == TarEntryKind::File && e.size > 0 {
            with_content += 1;
            let Some(f) = toc.file_at(e.offset) else {
                panic!("{}: no file at its offset {}", e.path, e.offset);
            };
            assert_eq!(&f.path, &e.path, "file_at({}) is another file", e.offset);
            assert_eq!(f.size, e.size, "{}: sizes differ", e.path);
        }
    }
    assert_eq!(with_content, toc.files().len());
    let feedback = Feedback::ok("toc", toc.entries().len())
        .and(super::size_class(with_content))
        .and(u64::from(files.iter().any(|f| f.skip > 0)));
    match toc.index() {
        Ok(index) => {
            for e in index.entries() {
                check_path(&e.path);
                if matches!(e.kind, TarEntryKind::File | TarEntryKind::Hardlink) && e.size > 0 {
                    let Some(f) = toc.file_at(e.offset) else {
                        panic!(
                            "{} in the index: no file at its offset {}",
                            e.path, e.offset
                        );
                    };
                    assert_eq!(f.size, e.size, "{}: the index says another size", e.path);
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
    assert!(text.starts_with('/') && !text.contains('\0'), "{text:?}");
    if text != "/" {
        for part in text.split('/').skip(1) {
            assert!(!matches!(part, "" | "." | ".."), "{text:?} has {part:?}");
        }
    }
    assert_eq!(VfsPath::new(text).ok().as_ref(), Some(path), "{text:?}");
}

/// `data`, then the table's tar entry (and end-of-archive) in a gzip member, then the
/// footer.
fn blob_with(data: &[u8], json: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(json.len() as u64);
    header.set_mode(0o644);
    tar.append_data(&mut header, "stargz.index.json", json)?;
    let mut member = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    member.write_all(&tar.into_inner()?)?;
    let mut blob = data.to_vec();
    blob.extend(member.finish()?);
    blob.extend([
        0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 255, 26, 0, b'S', b'G', 22, 0,
    ]);
    blob.extend(format!("{:016x}STARGZ", data.len()).as_bytes());
    blob.extend([1, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
    Ok(blob)
}

// --- Seeds -------------------------------------------------------------------------------

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    h
}

fn sample_tar(big: usize) -> std::io::Result<Vec<u8>> {
    use tar::EntryType as T;
    let mut b = tar::Builder::new(Vec::new());
    b.append_data(&mut header(T::Directory, 0o755, 0), "etc/", &[][..])?;
    let big: Vec<u8> = (0..big).map(|i| (i * 7 % 251) as u8).collect();
    for (name, data) in [
        ("etc/hello", &b"hello\n"[..]),
        ("etc/empty", &[][..]),
        ("big", &big[..]),
        ("usr/share/x", &b"deep\n"[..]),
    ] {
        b.append_data(
            &mut header(T::Regular, 0o644, data.len() as u64),
            name,
            data,
        )?;
    }
    b.append_link(&mut header(T::Symlink, 0o777, 0), "etc/link", "hello")?;
    b.append_link(&mut header(T::Link, 0o644, 0), "etc/hard", "etc/hello")?;
    b.into_inner()
}

fn estargz_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (big, chunk_size, min_chunk_size) in [(100, 4096, 0), (3000, 1024, 0), (3000, 1024, 4096)] {
        let Ok(tar) = sample_tar(big) else { continue };
        let options = EstargzOptions {
            chunk_size,
            min_chunk_size,
            level: 1,
        };
        let mut blob = Vec::new();
        let Ok(written) = write_estargz(&tar, &mut blob, &options) else {
            continue;
        };
        let mut seed = format!("b{}\n", written.toc_digest).into_bytes();
        seed.extend_from_slice(&blob);
        seeds.push(seed);
        // The same table as JSON, at the offset it had.
        if let Some(footer) = EstargzFooter::parse(blob_digest(), &blob, blob.len() as u64)
            .ok()
            .and_then(|f| json_of(blob.get(usize::try_from(f.toc.start).ok()?..)?).map(|j| (f, j)))
        {
            let mut seed = format!("j{}\n", footer.0.toc.start).into_bytes();
            seed.extend(footer.1);
            seeds.push(seed);
        }
    }
    let digest = |s: &str| Algorithm::Sha256.digest(s.as_bytes());
    seeds.push(
        format!(
            "j1000\n{{\"version\":1,\"entries\":[{{\"type\":\"dir\",\"name\":\"a/\"}},\
             {{\"type\":\"reg\",\"name\":\"a/x\",\"size\":5,\"offset\":10,\"innerOffset\":512,\
             \"digest\":\"{}\"}},{{\"type\":\"reg\",\"name\":\"a/y\",\"size\":5,\"offset\":10,\
             \"innerOffset\":1029,\"digest\":\"{}\"}},{{\"type\":\"reg\",\"name\":\"big\",\
             \"size\":30,\"offset\":200,\"chunkSize\":10,\"digest\":\"{}\"}},{{\"type\":\"chunk\",\
             \"name\":\"big\",\"offset\":200,\"innerOffset\":10,\"chunkOffset\":10,\"chunkSize\":10}},\
             {{\"type\":\"chunk\",\"name\":\"big\",\"offset\":500,\"chunkOffset\":20}},\
             {{\"type\":\"hardlink\",\"name\":\"h\",\"linkName\":\"a/x\"}}]}}",
            digest("x"),
            digest("y"),
            digest("big")
        )
        .into_bytes(),
    );
    seeds.push(format!("p\n{}", digest("t")).into_bytes());
    seeds.push(b"p\nsha256:short".to_vec());
    seeds
}

/// The JSON inside a table member.
fn json_of(member: &[u8]) -> Option<Vec<u8>> {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(member)
        .read_to_end(&mut tar)
        .ok()?;
    let mut archive = tar::Archive::new(&tar[..]);
    let mut entry = archive.entries().ok()?.next()?.ok()?;
    let mut json = Vec::new();
    entry.read_to_end(&mut json).ok()?;
    Some(json)
}

//! eStargz end to end in memory: a tar written as an eStargz layer is a tar.gz holding the
//! same files, its table is found the way a lazy reader finds it (tail, footer, maybe one
//! more range), lazy reads give every file's bytes, and tables and blobs that lie are
//! refused with errors naming the layer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::result_large_err
)]

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

mod common;

use bytes::Bytes;
use cache_core::{Algorithm, Digest};
use layer_toc::{
    Codec, ESTARGZ_TOC_DIGEST_KEY, EstargzFooter, EstargzOptions, EstargzPosition, LazyFiles, Toc,
    TocError, write_estargz,
};
use serde_json::{Value, json};
use vfs_overlay::{FileSystem, FileType, TarVolume, VfsError, VfsPath};

use common::{Fixture, MemRanges, fixture, header, noise, p, volume_of};

const BIG: usize = 300_000;
const CHUNK: u64 = 64 << 10;

/// Dirs, small files, an empty one, one of several chunks, one of exactly two, links.
fn sample_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = header(tar::EntryType::Directory, 0o755, 0);
    b.append_data(&mut dir, "etc/", &[][..]).unwrap();
    for (name, data) in [
        ("etc/hello.txt", b"hello world\n".to_vec()),
        ("etc/empty", Vec::new()),
        ("etc/other.txt", b"another small file\n".to_vec()),
        ("big.bin", noise(BIG)),
        ("two-chunks.bin", noise(2 * CHUNK as usize)),
        (
            "usr/share/doc/readme",
            b"deep file, parents implied\n".to_vec(),
        ),
    ] {
        let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    let mut h = header(tar::EntryType::Symlink, 0o777, 0);
    b.append_link(&mut h, "etc/link", "hello.txt").unwrap();
    let mut h = header(tar::EntryType::Link, 0o644, 0);
    b.append_link(&mut h, "etc/hard", "etc/hello.txt").unwrap();
    b.into_inner().unwrap()
}

fn options(min_chunk_size: u64) -> EstargzOptions {
    EstargzOptions {
        chunk_size: CHUNK,
        min_chunk_size,
        level: 6,
    }
}

struct Layer {
    blob: Bytes,
    position: EstargzPosition,
    diff_id: Digest,
}

fn estargz(tar: &[u8], options: &EstargzOptions) -> Layer {
    let mut out = Vec::new();
    let written = write_estargz(tar, &mut out, options).unwrap();
    assert_eq!(written.size, out.len() as u64);
    let digest = Algorithm::Sha256.digest(&out);
    let get = |key: &str| {
        written
            .annotations
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let position = EstargzPosition::from_annotations(digest, out.len() as u64, get)
        .unwrap()
        .unwrap();
    assert_eq!(position.toc_digest, written.toc_digest);
    Layer {
        blob: Bytes::from(out),
        position,
        diff_id: written.diff_id,
    }
}

fn gunzip(blob: &[u8]) -> Vec<u8> {
    let mut tar = Vec::new();
    flate2::read::MultiGzDecoder::new(blob)
        .read_to_end(&mut tar)
        .unwrap();
    tar
}

/// What a lazy reader does: the tail, the footer in it, the rest of the table if it starts
/// before the tail, then the table.
fn read_toc(position: &EstargzPosition, ranges: &MemRanges, limit: u64) -> Result<Toc, TocError> {
    let tail = ranges.get(position.tail());
    let footer = position.footer(&tail, limit)?;
    let head = match position.still_needed(&footer) {
        Some(range) => ranges.get(range),
        None => Bytes::new(),
    };
    let toc_bytes = position.toc_bytes(&footer, &head, &tail)?;
    Toc::parse_estargz(position, &footer, &toc_bytes, limit)
}

fn lazy_volume(f: &Fixture, toc: Toc, ranges: Arc<MemRanges>) -> TarVolume {
    volume_of(f, toc, ranges)
}

/// Walks both volumes: same listings, metadata, contents and link targets.
fn same_tree(lazy: &TarVolume, full: &TarVolume) -> usize {
    let mut dirs = vec![VfsPath::root()];
    let mut seen = 0;
    while let Some(dir) = dirs.pop() {
        let listed = lazy.read_dir(&dir).unwrap();
        assert_eq!(listed, full.read_dir(&dir).unwrap(), "{dir}");
        for entry in listed {
            let path = dir.join(&entry.name).unwrap();
            assert_eq!(
                lazy.symlink_metadata(&path).unwrap(),
                full.symlink_metadata(&path).unwrap(),
                "{path}"
            );
            seen += 1;
            match entry.kind {
                FileType::Dir => dirs.push(path),
                FileType::File => assert_eq!(
                    lazy.read_all(&path).unwrap(),
                    full.read_all(&path).unwrap(),
                    "{path}"
                ),
                FileType::Symlink => assert_eq!(
                    lazy.read_link(&path).unwrap(),
                    full.read_link(&path).unwrap()
                ),
                _ => {}
            }
        }
    }
    seen
}

#[test]
fn a_written_layer_is_a_tar_gz_of_the_same_files_with_the_table_last() {
    let tar = sample_tar();
    let layer = estargz(&tar, &options(0));
    let decoded = gunzip(&layer.blob);
    assert_eq!(Algorithm::Sha256.digest(&decoded), layer.diff_id);
    let mut names = Vec::new();
    let mut archive = tar::Archive::new(&decoded[..]);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        names.push((name, data));
    }
    let mut expected = Vec::new();
    let mut archive = tar::Archive::new(&tar[..]);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        expected.push((name, data));
    }
    let (toc_name, json) = names.pop().unwrap();
    assert_eq!(toc_name, "stargz.index.json");
    assert_eq!(Algorithm::Sha256.digest(&json), layer.position.toc_digest);
    assert_eq!(names, expected);
    // Everything before the table is the input tar's bytes, end-of-archive dropped.
    let entries_end = tar.len() - tar.iter().rev().take_while(|&&b| b == 0).count();
    assert_eq!(
        &decoded[..entries_end.next_multiple_of(512).min(tar.len())],
        &tar[..entries_end.next_multiple_of(512).min(tar.len())]
    );
}

#[test]
fn the_same_tar_and_options_give_the_same_bytes() {
    let tar = sample_tar();
    for min in [0, 4096] {
        let (a, b) = (estargz(&tar, &options(min)), estargz(&tar, &options(min)));
        assert_eq!(a.blob, b.blob);
        assert_eq!(a.diff_id, b.diff_id);
    }
    assert_ne!(
        estargz(&tar, &options(0)).blob,
        estargz(&tar, &options(4096)).blob
    );
}

#[test]
fn the_lazy_volume_is_the_tree_the_layer_holds() {
    // Every file in a member of its own, then small files sharing members (innerOffset).
    for min in [0, 4096] {
        let f = fixture();
        let layer = estargz(&sample_tar(), &options(min));
        let ranges = MemRanges::new(layer.blob.clone());
        let toc = read_toc(&layer.position, &ranges, 64 << 20).unwrap();
        assert_eq!(
            ranges.asked.lock().unwrap().len(),
            1,
            "the tail holds it all"
        );
        assert!(toc.files().iter().all(|f| f.codec == Codec::Gzip));
        let shared = toc.files().iter().any(|a| {
            a.skip > 0
                && toc
                    .files()
                    .iter()
                    .any(|b| b.path != a.path && b.frames.start == a.frames.start)
        });
        assert_eq!(shared, min > 0, "min_chunk_size {min}");
        ranges.asked.lock().unwrap().clear();

        let lazy = lazy_volume(&f, toc, ranges.clone());
        let full = TarVolume::new_layer(Bytes::from(gunzip(&layer.blob))).unwrap();
        // Listing and stat need no file data.
        lazy.read_dir(&p("/etc")).unwrap();
        assert_eq!(lazy.metadata(&p("/big.bin")).unwrap().size, BIG as u64);
        assert!(ranges.asked.lock().unwrap().is_empty());

        assert_eq!(
            lazy.read_all(&p("/etc/hello.txt")).unwrap(),
            "hello world\n"
        );
        let fetched: u64 = ranges
            .asked
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.end - r.start)
            .sum();
        // Its member, to the next a file starts: with shared members, that holds the
        // first chunk of big.bin too.
        let member = if min == 0 { 2000 } else { CHUNK + 4096 };
        assert!(fetched < member, "a member, not the layer: {fetched}");
        assert!(
            f.store
                .contains(&Algorithm::Sha256.digest(b"hello world\n"))
        );

        let seen = same_tree(&lazy, &full);
        assert!(seen >= 12, "walked {seen} entries");
        assert_eq!(
            lazy.node_id(&p("/etc/hard")),
            lazy.node_id(&p("/etc/hello.txt"))
        );
        assert_eq!(&lazy.read_all(&p("/big.bin")).unwrap()[..], &noise(BIG)[..]);
    }
}

#[test]
fn a_table_larger_than_the_tail_takes_a_second_range() {
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..16_000u32 {
        let data = format!("file number {i}\n");
        let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
        b.append_data(&mut h, format!("d{}/f{i}", i % 100), data.as_bytes())
            .unwrap();
    }
    let tar = b.into_inner().unwrap();
    let layer = estargz(
        &tar,
        &EstargzOptions {
            level: 1,
            ..EstargzOptions::default()
        },
    );
    let ranges = MemRanges::new(layer.blob.clone());
    let toc = read_toc(&layer.position, &ranges, 64 << 20).unwrap();
    let asked = ranges.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(asked[1].end, asked[0].start);
    assert_eq!(toc.files().len(), 16_001);

    let f = fixture();
    let lazy = lazy_volume(&f, toc, ranges);
    assert_eq!(
        lazy.read_all(&p("/d7/f1207")).unwrap(),
        "file number 1207\n"
    );
}

// ---- lies ----

/// A gzip member of `data` (level 6, no name, mtime 0).
fn member(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn footer(offset: u64) -> Vec<u8> {
    let mut bytes = vec![
        0x1f, 0x8b, 8, 0x04, 0, 0, 0, 0, 0, 255, 26, 0, b'S', b'G', 22, 0,
    ];
    bytes.extend_from_slice(format!("{offset:016x}STARGZ").as_bytes());
    bytes.extend_from_slice(&[1, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
    bytes
}

fn toc_member(json: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(json.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "stargz.index.json", json).unwrap();
    member(&b.into_inner().unwrap())
}

/// A blob of `data` (file members, whatever they hold), the table `json`, and the footer;
/// with its position (the annotation true to `json`).
fn blob_with(data: &[u8], json: &[u8]) -> (Bytes, EstargzPosition) {
    let mut blob = data.to_vec();
    blob.extend(toc_member(json));
    blob.extend(footer(data.len() as u64));
    let position = EstargzPosition {
        blob: Algorithm::Sha256.digest(&blob),
        size: blob.len() as u64,
        toc_digest: Algorithm::Sha256.digest(json),
    };
    (Bytes::from(blob), position)
}

fn parse_entries(entries: Vec<Value>) -> Result<Toc, TocError> {
    let data = vec![0u8; 4000];
    let json = serde_json::to_vec(&json!({"version": 1, "entries": entries})).unwrap();
    let (blob, position) = blob_with(&data, &json);
    read_toc(&position, &MemRanges::new(blob), 64 << 20)
}

fn file(name: &str, size: u64, offset: u64) -> Value {
    json!({"type": "reg", "name": name, "size": size, "offset": offset,
           "digest": Algorithm::Sha256.digest(name.as_bytes()).to_string()})
}

fn refused(entries: Vec<Value>, expect: &str) {
    let err = parse_entries(entries).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(expect), "{text}");
    assert!(text.contains("layer sha256:"), "{text}");
}

#[test]
fn an_honest_handmade_table_parses() {
    let toc = parse_entries(vec![
        json!({"type": "dir", "name": "a/", "mode": 0o755}),
        file("a/x", 10, 100),
        // Two small files in one member, the second after the first's bytes and a header.
        {
            let mut v = file("a/y", 5, 200);
            v["innerOffset"] = json!(7);
            v
        },
        {
            let mut v = file("a/z", 5, 200);
            v["innerOffset"] = json!(524);
            v
        },
        // A chunked file: the rest of its first member, then the next member.
        {
            let mut v = file("big", 30, 300);
            v["chunkSize"] = json!(10);
            v
        },
        json!({"type": "chunk", "name": "big", "offset": 300, "innerOffset": 10,
               "chunkOffset": 10, "chunkSize": 10}),
        json!({"type": "chunk", "name": "big", "offset": 400, "chunkOffset": 20}),
        json!({"type": "symlink", "name": "l", "linkName": "a/x"}),
    ])
    .unwrap();
    let files = toc.files();
    assert_eq!(files.len(), 5, "{files:?}");
    assert_eq!((files[0].frames.clone(), files[0].skip), (100..200, 0));
    assert_eq!((files[1].frames.clone(), files[1].skip), (200..300, 7));
    assert_eq!((files[2].frames.clone(), files[2].skip), (200..300, 524));
    assert_eq!(files[3].frames, 300..4000, "to the table");
    assert_eq!(files[4].path.as_str(), "/stargz.index.json");
    assert_eq!(files[4].frames.start, 4000);
    toc.index().unwrap();
}

#[test]
fn lies_in_the_table_are_refused() {
    let digest = |s: &str| Algorithm::Sha256.digest(s.as_bytes()).to_string();
    refused(vec![file("../etc/passwd", 1, 10)], "climbs out");
    refused(vec![file("a", 1, 10), file("./a", 1, 20)], "appears twice");
    refused(
        vec![file("stargz.index.json", 1, 10)],
        "name of the table of contents",
    );
    refused(vec![file("a", 1, 4000)], "not before the table of contents");
    refused(
        vec![file("a", 1, 90_000)],
        "not before the table of contents",
    );
    refused(
        vec![file("a", 1, u64::MAX / 2)],
        "not before the table of contents",
    );
    // Two chunks claiming the same decoded bytes of one member.
    refused(
        vec![file("a", 10, 100), file("b", 10, 100)],
        "overlaps one of /a",
    );
    {
        let mut b = file("b", 10, 100);
        b["innerOffset"] = json!(5);
        refused(vec![file("a", 10, 100), b], "overlaps");
    }
    // A chunk that skips a member, or does not start where the last one ended.
    {
        let mut big = file("big", 20, 100);
        big["chunkSize"] = json!(10);
        refused(
            vec![
                big.clone(),
                json!({"type": "chunk", "name": "big", "offset": 300, "chunkOffset": 10}),
                file("x", 1, 200),
            ],
            "does not continue",
        );
        refused(
            vec![
                big.clone(),
                json!({"type": "chunk", "name": "big", "offset": 100, "innerOffset": 11,
                       "chunkOffset": 10}),
            ],
            "does not continue",
        );
        refused(
            vec![
                big,
                json!({"type": "chunk", "name": "big", "offset": 200, "innerOffset": 3,
                       "chunkOffset": 10}),
            ],
            "does not continue",
        );
    }
    refused(
        vec![json!({"type": "reg", "name": "a", "size": 3, "offset": 10,
                    "digest": "md5:abc"})],
        "not a sha256 digest",
    );
    refused(
        vec![json!({"type": "reg", "name": "a", "size": 3, "offset": 10,
                    "innerOffset": -1, "digest": digest("a")})],
        "negative innerOffset",
    );
    let err = parse_json(&json!({"version": 2, "entries": []})).unwrap_err();
    assert!(matches!(err, TocError::Unsupported { .. }), "{err}");
}

fn parse_json(toc: &Value) -> Result<Toc, TocError> {
    let json = serde_json::to_vec(toc).unwrap();
    let (blob, position) = blob_with(&member(b"data"), &json);
    read_toc(&position, &MemRanges::new(blob), 64 << 20)
}

#[test]
fn the_table_must_be_the_annotated_one() {
    let layer = estargz(&sample_tar(), &options(0));
    let ranges = MemRanges::new(layer.blob.clone());
    let mut position = layer.position;
    position.toc_digest = Algorithm::Sha256.digest(b"another table");
    let err = read_toc(&position, &ranges, 64 << 20).unwrap_err();
    assert!(matches!(err, TocError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&layer.position.blob.to_string()));

    // No annotation: not read lazily; a malformed one is an error naming the key.
    assert!(EstargzPosition::from_annotations(position.blob, 10, |_| None).is_none());
    let err = EstargzPosition::from_annotations(position.blob, 10, |k| {
        (k == ESTARGZ_TOC_DIGEST_KEY).then_some("sha256:nothex")
    })
    .unwrap()
    .unwrap_err();
    assert!(matches!(err, TocError::BadAnnotation { .. }), "{err}");
}

#[test]
fn footers_that_lie_or_are_cut_are_refused() {
    let layer = estargz(&sample_tar(), &options(0));
    let blob = &layer.blob[..];
    let size = blob.len() as u64;
    let digest = layer.position.blob;
    let good = EstargzFooter::parse(digest, blob, size).unwrap();
    assert_eq!(good.len, 51);
    let bad = |tail: &[u8], size: u64| {
        let err = EstargzFooter::parse(digest, tail, size).unwrap_err();
        assert!(matches!(err, TocError::BadFooter { .. }), "{err}");
        assert!(err.to_string().contains(&digest.to_string()), "{err}");
    };
    // Truncated, or not the blob's end.
    bad(&blob[..blob.len() - 10], size);
    bad(&blob[blob.len() - 30..], size);
    // A damaged magic, hex digit or gzip trailer.
    for at in [
        blob.len() - 14,
        blob.len() - 30,
        blob.len() - 3,
        blob.len() - 51,
    ] {
        let mut damaged = blob.to_vec();
        damaged[at] ^= 0x01;
        bad(&damaged, size);
    }
    // The table at or past the footer, or past the blob.
    for offset in [size - 51, size, u64::MAX] {
        let mut lying = blob[..blob.len() - 51].to_vec();
        lying.extend(footer(offset));
        bad(&lying, size);
    }
    // A blob smaller than its footer.
    bad(&footer(0), 10);
    // The tail of a zstd:chunked layer.
    let mut zstd = Vec::new();
    layer_toc::write_zstd_chunked(&sample_tar(), 1, &mut zstd).unwrap();
    bad(&zstd, zstd.len() as u64);

    // The legacy stargz footer: the 22 bytes are the whole extra field.
    let mut legacy = blob[..blob.len() - 51].to_vec();
    legacy.extend([0x1f, 0x8b, 8, 0x04, 0, 0, 0, 0, 0, 255, 22, 0]);
    legacy.extend(format!("{:016x}STARGZ", good.toc.start).as_bytes());
    legacy.extend([1, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
    let footer = EstargzFooter::parse(digest, &legacy, legacy.len() as u64).unwrap();
    assert_eq!((footer.toc.start, footer.len), (good.toc.start, 47));

    // A tail that is not the length asked for.
    let err = layer.position.footer(&blob[1..], 64 << 20).unwrap_err();
    assert!(matches!(err, TocError::BadFooter { .. }), "{err}");
}

#[test]
fn a_table_over_the_limit_is_refused_without_decoding_it_whole() {
    // 8 MiB of spaces compress to a few KiB: the limit, not the compressed size, stops it.
    let mut json = b"{\"version\":1,\"entries\":[]".to_vec();
    json.resize(json.len() + (8 << 20), b' ');
    json.push(b'}');
    let (blob, position) = blob_with(&member(b"data"), &json);
    let err = read_toc(&position, &MemRanges::new(blob.clone()), 1 << 20).unwrap_err();
    assert!(
        matches!(
            err,
            TocError::TooLarge {
                what: "uncompressed",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&position.blob.to_string()));
    // Under a generous limit it parses.
    read_toc(&position, &MemRanges::new(blob), 64 << 20).unwrap();
    // A compressed table over the limit is refused before it is fetched.
    let layer = estargz(&sample_tar(), &options(0));
    let ranges = MemRanges::new(layer.blob.clone());
    let err = read_toc(&layer.position, &ranges, 100).unwrap_err();
    assert!(
        matches!(
            err,
            TocError::TooLarge {
                what: "compressed",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(ranges.asked.lock().unwrap().len(), 1, "only the tail");
}

#[test]
fn a_file_whose_gzip_data_is_wrong_fails_to_read_and_nothing_is_kept() {
    let f = fixture();
    let layer = estargz(&sample_tar(), &options(0));
    let toc = read_toc(
        &layer.position,
        &MemRanges::new(layer.blob.clone()),
        64 << 20,
    )
    .unwrap();
    for path in ["/etc/hello.txt", "/big.bin"] {
        let file = toc
            .files()
            .iter()
            .find(|f| f.path.as_str() == path)
            .unwrap()
            .clone();
        // Damage a byte of the file's first member: it decodes to other bytes, or not at
        // all, or fails its CRC; the store's sha256 check is there either way.
        let mut damaged = layer.blob.to_vec();
        damaged[file.frames.start as usize + 20] ^= 0x20;
        let lazy = lazy_volume(&f, toc.clone(), MemRanges::new(Bytes::from(damaged)));
        let err = lazy.read_all(&p(path)).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, VfsError::Io { .. }), "{err:?}");
        assert!(
            text.contains(path) && text.contains(&layer.position.blob.to_string()),
            "{text}"
        );
        assert!(!f.store.contains(&file.digest));
    }
    // A table that puts a file in another file's member: decoded, but not its bytes.
    let mut hello = toc.files()[0].clone();
    assert_eq!(hello.path.as_str(), "/etc/hello.txt");
    let other = toc
        .files()
        .iter()
        .find(|f| f.path.as_str() == "/etc/other.txt")
        .unwrap();
    hello.frames = other.frames.clone();
    let files = LazyFiles::new(
        Arc::new(toc.clone()),
        f.store.clone(),
        MemRanges::new(layer.blob.clone()),
        f.rt.handle().clone(),
        Duration::from_secs(10),
    );
    let err = f.rt.block_on(files.file(&hello)).unwrap_err();
    assert!(matches!(err, TocError::File { .. }), "{err}");
    assert!(!f.store.contains(&hello.digest));
}

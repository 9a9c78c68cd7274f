//! Tables of contents that lie are refused, each with an error naming the layer and what
//! is wrong, before any file is served.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::result_large_err
)]

use cache_core::{Algorithm, Digest};
use layer_toc::{Footer, Toc, TocError, TocPosition};
use serde_json::{Value, json};

/// Frames of file data end here in these made-up layers (the table starts 8 bytes later).
const DATA_END: u64 = 10_000;

fn blob() -> Digest {
    Algorithm::Sha256.digest(b"the layer")
}

fn parse_json(toc: &Value) -> Result<Toc, TocError> {
    let json = serde_json::to_vec(toc).unwrap();
    let compressed = zstd::bulk::compress(&json, 3).unwrap();
    let position = TocPosition {
        blob: blob(),
        offset: DATA_END + 8,
        compressed: compressed.len() as u64,
        uncompressed: json.len() as u64,
        digest: Algorithm::Sha256.digest(&compressed),
    };
    Toc::parse(&position, &compressed, 64 << 20)
}

fn file(name: &str, offset: u64, end: u64) -> Value {
    json!({"type": "reg", "name": name, "size": 10, "offset": offset, "endOffset": end,
           "digest": format!("sha256:{}", "ab".repeat(32)), "modtime": "2023-11-14T22:13:20Z"})
}

fn refused(entries: Vec<Value>, expect: &str) {
    let err = parse_json(&json!({"version": 1, "entries": entries})).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&blob().to_string()),
        "names the layer: {text}"
    );
    assert!(text.contains(expect), "expected {expect:?} in: {text}");
}

#[test]
fn an_honest_table_parses() {
    let toc = parse_json(&json!({"version": 1, "entries": [
        {"type": "dir", "name": "./a/", "mode": 493},
        file("a/x", 100, 200),
        {"type": "reg", "name": "a/big", "size": 30, "offset": 200, "endOffset": 400,
         "digest": format!("sha256:{}", "cd".repeat(32)), "chunkSize": 10},
        {"type": "chunk", "name": "a/big", "offset": 300, "chunkOffset": 10, "chunkSize": 20},
        {"type": "symlink", "name": "a/l", "linkName": "x"},
        {"type": "hardlink", "name": "a/h", "linkName": "a/x"},
    ]}))
    .unwrap();
    assert_eq!(toc.files().len(), 2);
    assert_eq!(toc.files()[1].frames, 200..400);
    let index = toc.index().unwrap();
    assert!(
        index
            .get(&vfs_overlay::VfsPath::new("/a/h").unwrap())
            .is_some()
    );
}

/// The legacy zstd:chunked layout (stargz-snapshotter's writer) gives no `endOffset`: a
/// frame runs to the next offset the table names, or to the end of the file data.
#[test]
fn a_legacy_table_without_end_offsets_parses_and_its_chunks_must_follow() {
    let digest = format!("sha256:{}", "cd".repeat(32));
    let toc = parse_json(&json!({"version": 1, "entries": [
        {"type": "dir", "name": "a/"},
        {"type": "reg", "name": "a/x", "size": 10, "offset": 100, "digest": digest},
        {"type": "reg", "name": "a/big", "size": 30, "offset": 200, "digest": digest,
         "chunkSize": 10},
        {"type": "chunk", "name": "a/big", "offset": 300, "chunkOffset": 10, "chunkSize": 20},
        {"type": "reg", "name": "a/last", "size": 10, "offset": 900, "digest": digest},
    ]}))
    .unwrap();
    let frames: Vec<_> = toc.files().iter().map(|f| f.frames.clone()).collect();
    assert_eq!(frames, [100..200, 200..900, 900..DATA_END]);

    // A chunk before its file's first frame.
    let back = parse_json(&json!({"version": 1, "entries": [
        {"type": "reg", "name": "big", "size": 30, "offset": 200, "digest": digest,
         "chunkSize": 10},
        {"type": "chunk", "name": "big", "offset": 100, "chunkOffset": 10, "chunkSize": 20},
    ]}))
    .unwrap_err();
    assert!(back.to_string().contains("not the frame after"), "{back}");
}

#[test]
fn lies_are_refused() {
    refused(vec![file("../etc/passwd", 0, 10)], "climbs out");
    refused(vec![file("a", 0, 10), file("./a", 20, 30)], "appears twice");
    refused(vec![file("a", 0, DATA_END + 1)], "not inside");
    refused(vec![file("a", 50, 50)], "not inside");
    refused(vec![file("a", 0, 100), file("b", 50, 150)], "overlap");
    refused(
        vec![
            json!({"type": "reg", "name": "a", "size": 10, "offset": 0, "endOffset": 10,
                    "digest": "md5:abc"}),
        ],
        "not a sha256 digest",
    );
    refused(
        vec![json!({"type": "reg", "name": "a", "size": -1})],
        "negative",
    );
    refused(vec![json!({"type": "dir", "name": "a\u{0}b"})], "NUL");
    refused(
        vec![json!({"type": "dir", "name": "a", "modtime": "yesterday"})],
        "RFC 3339",
    );
    // Chunks that do not add up, start elsewhere, or follow nothing.
    let big = |chunk: u64| {
        json!({"type": "reg", "name": "big", "size": 30, "offset": 0, "endOffset": 100,
               "digest": format!("sha256:{}", "cd".repeat(32)), "chunkSize": chunk})
    };
    refused(vec![big(10)], "cover 10 of its 30 bytes");
    refused(
        vec![
            big(10),
            json!({"type": "chunk", "name": "big", "offset": 50, "chunkOffset": 5, "chunkSize": 20}),
        ],
        "where 10 bytes were covered",
    );
    refused(
        vec![
            big(10),
            json!({"type": "chunk", "name": "big", "offset": 500, "chunkOffset": 10, "chunkSize": 20}),
        ],
        "inside the file's frames",
    );
    refused(
        vec![
            json!({"type": "chunk", "name": "big", "offset": 5, "chunkOffset": 0, "chunkSize": 20}),
        ],
        "follows no file",
    );
    // A hardlink to a directory is what a tar index refuses too.
    let err = parse_json(&json!({"version": 1, "entries": [
        {"type": "dir", "name": "d"}, {"type": "hardlink", "name": "h", "linkName": "d"}]}))
    .unwrap()
    .index()
    .unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");
}

#[test]
fn the_bytes_must_be_the_annotated_ones() {
    let json = br#"{"version":1,"entries":[]}"#;
    let compressed = zstd::bulk::compress(json, 3).unwrap();
    let mut position = TocPosition {
        blob: blob(),
        offset: 8,
        compressed: compressed.len() as u64,
        uncompressed: json.len() as u64,
        digest: Algorithm::Sha256.digest(b"other bytes"),
    };
    assert!(matches!(
        Toc::parse(&position, &compressed, 1 << 20),
        Err(TocError::DigestMismatch { .. })
    ));
    position.digest = Algorithm::Sha256.digest(&compressed);
    // A declared size the bytes do not decompress to.
    position.uncompressed += 1;
    assert!(matches!(
        Toc::parse(&position, &compressed, 1 << 20),
        Err(TocError::Decompress { .. })
    ));
    position.uncompressed -= 1;
    // The limit applies before decompressing, and to the position before fetching.
    assert!(matches!(
        Toc::parse(&position, &compressed, 4),
        Err(TocError::TooLarge { .. })
    ));
    assert!(matches!(
        position.check(1 << 20, 4),
        Err(TocError::TooLarge { .. })
    ));
    assert!(matches!(
        position.check(10, 1 << 20),
        Err(TocError::OutOfBlob { .. })
    ));
    // Not JSON; another version.
    for (text, what) in [
        (&b"not json"[..], "not valid"),
        (br#"{"version":2}"#, "version 2"),
    ] {
        let c = zstd::bulk::compress(text, 3).unwrap();
        let pos = TocPosition {
            compressed: c.len() as u64,
            uncompressed: text.len() as u64,
            digest: Algorithm::Sha256.digest(&c),
            ..position
        };
        let err = Toc::parse(&pos, &c, 1 << 20).unwrap_err();
        assert!(err.to_string().contains(what), "{err}");
    }
}

#[test]
fn annotations_and_footers_that_do_not_parse_are_refused() {
    let b = blob();
    let old_pos = "io.containers.zstd-chunked.manifest-position";
    let old_sum = "io.containers.zstd-chunked.manifest-checksum";
    let sum = format!("sha256:{}", "ab".repeat(32));
    let none = |_: &str| None;
    assert!(TocPosition::from_annotations(b, none).is_none());
    for (position, checksum) in [
        ("1:2:3", sum.as_str()),
        ("1:2:3:2", sum.as_str()),
        ("a:2:3:1", sum.as_str()),
        ("1:2:3:1", "sha512:00"),
    ] {
        let get = |k: &str| match k {
            k if k == old_pos => Some(position),
            k if k == old_sum => Some(checksum),
            _ => None,
        };
        let err = TocPosition::from_annotations(b, get).unwrap().unwrap_err();
        assert!(matches!(err, TocError::BadAnnotation { .. }), "{err}");
    }
    assert!(Footer::parse(b, b"short", 100).is_err());
    let mut tail = vec![0u8; 48];
    tail[..4].copy_from_slice(&[0x50, 0x2a, 0x4d, 0x18]);
    tail[4] = 40;
    tail[8..16].copy_from_slice(&1_000u64.to_le_bytes());
    tail[16..24].copy_from_slice(&10u64.to_le_bytes());
    tail[32..40].copy_from_slice(&1u64.to_le_bytes());
    tail[40..].copy_from_slice(b"GnUlInUx");
    assert!(Footer::parse(b, &tail, 2_000).is_ok());
    assert!(
        Footer::parse(b, &tail, 1_000).is_err(),
        "points past the blob"
    );
}

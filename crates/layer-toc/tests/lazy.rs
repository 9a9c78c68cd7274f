//! zstd:chunked end to end in memory: a tar written as a chunked layer decompresses to the
//! same tar, its table describes the same tree, and lazy reads fetch only a file's frames,
//! verify them, and keep the file in the store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

mod common;

use bytes::Bytes;
use cache_core::{Algorithm, Digest};
use layer_toc::{Footer, LazyFiles, Toc, TocPosition, write_zstd_chunked};
use vfs_overlay::{FileSystem, FileType, TarVolume, VfsError, VfsPath};

use common::{Fixture, MemRanges, fixture, header, noise, p, volume_of};

/// A layer with every kind of entry, a 3 MiB file of noise and a whiteout.
fn sample_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = header(tar::EntryType::Directory, 0o755, 0);
    b.append_data(&mut dir, "etc/", &[][..]).unwrap();
    for (name, data) in [
        ("etc/hello.txt", b"hello world\n".to_vec()),
        ("etc/empty", Vec::new()),
        ("big.bin", noise(3 << 20)),
        (
            "usr/share/doc/readme",
            b"deep file, parents implied\n".to_vec(),
        ),
        (".wh.gone", Vec::new()),
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

struct Layer {
    blob: Bytes,
    digest: Digest,
    position: TocPosition,
}

fn chunked(tar: &[u8]) -> Layer {
    let mut out = Vec::new();
    let annotations = write_zstd_chunked(tar, 3, &mut out).unwrap();
    let digest = Algorithm::Sha256.digest(&out);
    let get = |key: &str| {
        annotations
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let position = TocPosition::from_annotations(digest, get).unwrap().unwrap();
    Layer {
        blob: Bytes::from(out),
        digest,
        position,
    }
}

fn lazy_volume(f: &Fixture, layer: &Layer, ranges: Arc<MemRanges>) -> TarVolume {
    let toc_bytes =
        &layer.blob[layer.position.range().start as usize..layer.position.range().end as usize];
    let toc = Toc::parse(&layer.position, toc_bytes, 64 << 20).unwrap();
    volume_of(f, toc, ranges)
}

#[test]
fn the_frames_decompress_to_the_same_tar() {
    let tar = sample_tar();
    let layer = chunked(&tar);
    let decoded = zstd::stream::decode_all(&layer.blob[..]).unwrap();
    assert_eq!(decoded, tar, "a zstd:chunked layer keeps its diff_id");
    // The footer says what the annotations say.
    let tail = &layer.blob[layer.blob.len() - Footer::TAIL..];
    let footer = Footer::parse(layer.digest, tail, layer.blob.len() as u64).unwrap();
    assert_eq!(footer.offset, layer.position.offset);
    assert_eq!(footer.compressed, layer.position.compressed);
    assert_eq!(footer.uncompressed, layer.position.uncompressed);
    // Same tar, same bytes: packing stays reproducible.
    assert_eq!(chunked(&tar).blob, layer.blob);
}

#[test]
fn the_table_describes_the_tree_the_tar_holds() {
    let f = fixture();
    let tar = sample_tar();
    let layer = chunked(&tar);
    let ranges = Arc::new(MemRanges {
        blob: layer.blob.clone(),
        ..MemRanges::default()
    });
    let lazy = lazy_volume(&f, &layer, ranges.clone());
    let full = TarVolume::new_layer(Bytes::from(tar)).unwrap();
    let mut dirs = vec![VfsPath::root()];
    let mut seen = 0;
    while let Some(dir) = dirs.pop() {
        let listed = lazy.read_dir(&dir).unwrap();
        assert_eq!(listed, full.read_dir(&dir).unwrap(), "{dir}");
        for entry in listed {
            let path = dir.join(&entry.name).unwrap();
            let (a, b) = (
                lazy.symlink_metadata(&path).unwrap(),
                full.symlink_metadata(&path).unwrap(),
            );
            assert_eq!(a, b, "{path}");
            seen += 1;
            match entry.kind {
                FileType::Dir => dirs.push(path),
                FileType::File => {
                    assert_eq!(lazy.read_all(&path).unwrap(), full.read_all(&path).unwrap())
                }
                FileType::Symlink => assert_eq!(
                    lazy.read_link(&path).unwrap(),
                    full.read_link(&path).unwrap()
                ),
                _ => {}
            }
        }
    }
    assert!(seen >= 10, "walked {seen} entries");
    assert_eq!(
        lazy.node_id(&p("/etc/hard")),
        lazy.node_id(&p("/etc/hello.txt"))
    );
}

#[test]
fn a_read_fetches_only_that_files_frames_and_keeps_the_file() {
    let f = fixture();
    let layer = chunked(&sample_tar());
    let ranges = Arc::new(MemRanges {
        blob: layer.blob.clone(),
        ..MemRanges::default()
    });
    let lazy = lazy_volume(&f, &layer, ranges.clone());
    // Listing and stat need no file data.
    lazy.read_dir(&p("/etc")).unwrap();
    assert_eq!(lazy.metadata(&p("/big.bin")).unwrap().size, 3 << 20);
    assert!(ranges.asked.lock().unwrap().is_empty());

    assert_eq!(
        lazy.read_all(&p("/etc/hello.txt")).unwrap(),
        "hello world\n"
    );
    let asked = ranges.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    let fetched: u64 = asked.iter().map(|r| r.end - r.start).sum();
    assert!(fetched < 100, "one small frame, not the layer: {asked:?}");

    // Kept in the store under its own digest, so a second read (or another layer, or
    // process, holding the same content) fetches nothing.
    let digest = Algorithm::Sha256.digest(b"hello world\n");
    assert!(f.store.contains(&digest));
    assert_eq!(lazy.read_all(&p("/etc/hard")).unwrap(), "hello world\n");
    assert_eq!(ranges.asked.lock().unwrap().len(), 1);

    // A large file is fetched by windows and decoded without holding its frames at once.
    let big = lazy.read_all(&p("/big.bin")).unwrap();
    assert_eq!(&big[..], &noise(3 << 20)[..]);
    assert!(lazy.node_backing_file(&p("/big.bin")).unwrap().is_some());
}

#[test]
fn a_corrupt_frame_is_an_error_naming_the_file_and_nothing_is_kept() {
    let f = fixture();
    let layer = chunked(&sample_tar());
    let toc_bytes =
        &layer.blob[layer.position.range().start as usize..layer.position.range().end as usize];
    let toc = Toc::parse(&layer.position, toc_bytes, 64 << 20).unwrap();
    let file = toc
        .files()
        .iter()
        .find(|f| f.path.as_str() == "/etc/hello.txt")
        .unwrap()
        .clone();
    // Damage the last byte of the frame's compressed data: the frame still decodes (its
    // block is stored raw), to other bytes, or fails its checksum.
    let mut damaged = layer.blob.to_vec();
    damaged[file.frames.end as usize - 5] ^= 0x20;
    let ranges = Arc::new(MemRanges {
        blob: Bytes::from(damaged),
        ..MemRanges::default()
    });
    let lazy = lazy_volume(&f, &layer, ranges);
    let err = lazy.read_all(&p("/etc/hello.txt")).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, VfsError::Io { .. }), "{err:?}");
    assert!(
        text.contains("/etc/hello.txt") && text.contains(&layer.digest.to_string()),
        "{text}"
    );
    assert!(!f.store.contains(&file.digest));
}

#[test]
fn a_read_that_gets_no_answer_fails_at_its_deadline() {
    let f = fixture();
    let layer = chunked(&sample_tar());
    let ranges = Arc::new(MemRanges {
        blob: layer.blob.clone(),
        hang: AtomicBool::new(true),
        ..MemRanges::default()
    });
    let toc_bytes =
        &layer.blob[layer.position.range().start as usize..layer.position.range().end as usize];
    let toc = Toc::parse(&layer.position, toc_bytes, 64 << 20).unwrap();
    let lazy = Arc::new(LazyFiles::new(
        Arc::new(toc),
        f.store.clone(),
        ranges,
        f.rt.handle().clone(),
        Duration::from_millis(300),
    ))
    .volume()
    .unwrap();
    let started = std::time::Instant::now();
    let err = lazy.read_all(&p("/etc/hello.txt")).unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(err.to_string().contains("not fetched within"), "{err}");
}

#[test]
fn a_read_from_inside_a_tokio_task_does_not_stall_the_callers_runtime() {
    let f = fixture();
    let layer = chunked(&sample_tar());
    let ranges = Arc::new(MemRanges {
        blob: layer.blob.clone(),
        ..MemRanges::default()
    });
    let lazy = Arc::new(lazy_volume(&f, &layer, ranges));
    // The caller's runtime has one thread, and the read blocks it: the fetch must run
    // elsewhere (on the runtime the files were given) for this to finish.
    let caller = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let data = caller.block_on(async move { lazy.read_all(&p("/etc/hello.txt")) });
    assert_eq!(data.unwrap(), "hello world\n");
}

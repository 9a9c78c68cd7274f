//! `open_layer` / `open_image_layers`: layers put into a real `Store`, decompressed once,
//! indexed once, and refused when they are bombs, truncated or mislabeled.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use cache_core::{Algorithm, Begin, DerivedKind, Digest, Store};
use tar::{Builder, EntryType, Header};
use vfs_overlay::{
    Compression, FileSystem, FileType, LayerError, LayerLimits, LayerSpec, SMALL_TAR, TarIndex,
    TarVolume, VfsPath, open_image_layers, open_layer,
};

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

fn p(s: &str) -> VfsPath {
    VfsPath::new(s).unwrap()
}

fn sha256(data: &[u8]) -> Digest {
    Algorithm::Sha256.digest(data)
}

fn kind(name: &str) -> DerivedKind {
    DerivedKind::new(name).unwrap()
}

/// A tar with files, a directory, a symlink, a hardlink and a whiteout.
fn sample_tar(seed: u8) -> Vec<u8> {
    let mut b = Builder::new(Vec::new());
    let mut dir = Header::new_gnu();
    dir.set_entry_type(EntryType::Directory);
    dir.set_mode(0o750);
    dir.set_size(0);
    b.append_data(&mut dir, "etc/", &[][..]).unwrap();
    for i in 0..20u32 {
        let body: Vec<u8> = (0..(i * 997)).map(|j| (j as u8) ^ seed).collect();
        let mut h = Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        b.append_data(&mut h, format!("etc/file{i}"), &body[..])
            .unwrap();
    }
    let mut link = Header::new_gnu();
    link.set_entry_type(EntryType::Symlink);
    link.set_size(0);
    b.append_link(&mut link, "etc/link", "file3").unwrap();
    let mut hard = Header::new_gnu();
    hard.set_entry_type(EntryType::Link);
    hard.set_size(0);
    b.append_link(&mut hard, "etc/hard", "etc/file5").unwrap();
    let mut wh = Header::new_gnu();
    wh.set_size(0);
    b.append_data(&mut wh, "etc/.wh.gone", &[][..]).unwrap();
    // Large enough to be stored (a smaller tar is kept in memory only; see `small_tar`).
    let filler: Vec<u8> = (0..SMALL_TAR as u32)
        .map(|j| (j / 4096) as u8 ^ seed)
        .collect();
    let mut h = Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(filler.len() as u64);
    b.append_data(&mut h, "etc/filler", &filler[..]).unwrap();
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

async fn put(store: &Store, data: &[u8]) -> Digest {
    let digest = sha256(data);
    if let Begin::Write(mut ingest) = store.begin(digest, Some(data.len() as u64)).await.unwrap() {
        ingest.write_all(data).await.unwrap();
        ingest.commit().await.unwrap();
    }
    digest
}

/// Every entry of `fs` below `/`: path, kind, mode, size, content or link target.
fn snapshot(fs: &dyn FileSystem) -> Vec<(String, FileType, u32, u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![VfsPath::root()];
    while let Some(dir) = stack.pop() {
        for e in fs.read_dir(&dir).unwrap() {
            let path = dir.join(&e.name).unwrap();
            let m = fs.symlink_metadata(&path).unwrap();
            let content = match m.kind {
                FileType::File => fs.read_all(&path).unwrap().to_vec(),
                FileType::Symlink => fs.read_link(&path).unwrap().into_bytes(),
                FileType::Dir => {
                    stack.push(path.clone());
                    Vec::new()
                }
                _ => Vec::new(),
            };
            out.push((path.as_str().to_owned(), m.kind, m.mode, m.size, content));
        }
    }
    out.sort();
    out
}

/// Files under the store's blob directory, as (digest hex, size).
fn stored_blobs(root: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![root.join("v1/blobs")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push((
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().len(),
                ));
            }
        }
    }
    out.sort();
    out
}

fn ingest_files(root: &Path) -> Vec<String> {
    std::fs::read_dir(root.join("v1/ingest"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect()
}

#[test]
fn media_types() {
    use Compression as C;
    let cases = [
        (TAR, Some(C::None)),
        (GZIP, Some(C::Gzip)),
        (ZSTD, Some(C::Zstd)),
        (DOCKER_GZIP, Some(C::Gzip)),
        (
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            Some(C::Gzip),
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            Some(C::None),
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            Some(C::Gzip),
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
            Some(C::Zstd),
        ),
        ("application/vnd.oci.image.layer.v1.tar+bzip2", None),
        ("application/vnd.oci.image.layer.v1.tar+", None),
        ("application/wasm", None),
        ("application/vnd.oci.image.config.v1+json", None),
        ("", None),
    ];
    for (media_type, want) in cases {
        assert_eq!(Compression::of_media_type(media_type), want, "{media_type}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_gzip_and_zstd_layers_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let tar = sample_tar(7);
    let expected = snapshot(&TarVolume::new(tar.clone().into()).unwrap());
    assert!(expected.len() > 20);
    let diff_id = sha256(&tar);
    for (body, media_type) in [
        (tar.clone(), TAR),
        (gzip(&tar), GZIP),
        (gzip(&tar), DOCKER_GZIP),
        (zstd(&tar), ZSTD),
    ] {
        let digest = put(&store, &body).await;
        for spec in [
            LayerSpec::new(digest, media_type),
            LayerSpec::new(digest, media_type).with_diff_id(diff_id),
        ] {
            let volume = open_layer(&store, &spec, &LayerLimits::default())
                .await
                .unwrap();
            assert_eq!(snapshot(&volume), expected, "{media_type}");
            // The volume serves the stored, uncompressed tar (mapped, not a copy).
            assert_eq!(sha256(volume.data()), diff_id);
        }
    }
    assert!(store.contains(&diff_id));
    // The index was cached once, on the uncompressed digest.
    let index = store.get_derived(&diff_id, &kind("tarindex")).unwrap();
    assert!(TarIndex::from_bytes(&index.unwrap()).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_open_needs_neither_the_compressed_blob_nor_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let tar = sample_tar(1);
    let diff_id = sha256(&tar);
    let gz = gzip(&tar);
    let expected = snapshot(&TarVolume::new(tar.clone().into()).unwrap());
    let digest;
    {
        let store = Store::open(dir.path()).await.unwrap();
        digest = put(&store, &gz).await;
        let v = open_layer(
            &store,
            &LayerSpec::new(digest, GZIP),
            &LayerLimits::default(),
        )
        .await
        .unwrap();
        assert_eq!(snapshot(&v), expected);
        let recorded = store
            .get_derived(&digest, &kind("diffid"))
            .unwrap()
            .unwrap();
        assert_eq!(std::str::from_utf8(&recorded).unwrap(), diff_id.to_string());
        assert!(
            store
                .get_derived(&diff_id, &kind("tarindex"))
                .unwrap()
                .is_some()
        );
    }
    // Without the compressed blob, any decompression would fail with `Missing`; and an
    // index entry stamped read-only-by-time shows whether it was rewritten (a rescan would
    // rewrite it).
    std::fs::remove_file(Store::open(dir.path()).await.unwrap().blob_path(&digest)).unwrap();
    let index_path = dir
        .path()
        .join(format!("v1/derived/sha256/{}.tarindex", diff_id.hex()));
    assert!(index_path.is_file(), "{}", index_path.display());
    let before = std::fs::metadata(&index_path).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));

    let store = Store::open(dir.path()).await.unwrap();
    assert!(!store.contains(&digest));
    let v = open_layer(
        &store,
        &LayerSpec::new(digest, GZIP),
        &LayerLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(snapshot(&v), expected);
    let after = std::fs::metadata(&index_path).unwrap().modified().unwrap();
    assert_eq!(before, after, "a warm open must not rewrite the index");

    // Once the uncompressed tar is gone too, the layer really is missing.
    std::fs::remove_file(store.blob_path(&diff_id)).unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let err = open_layer(
        &store,
        &LayerSpec::new(digest, GZIP),
        &LayerLimits::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, LayerError::Missing { digest: d } if d == digest),
        "{err}"
    );
    assert!(err.to_string().contains(&digest.to_string()), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_derived_entries_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let tar = sample_tar(2);
    let diff_id = sha256(&tar);
    let expected = snapshot(&TarVolume::new(tar.clone().into()).unwrap());
    let digest = put(&store, &zstd(&tar)).await;
    let spec = LayerSpec::new(digest, ZSTD);
    open_layer(&store, &spec, &LayerLimits::default())
        .await
        .unwrap();

    // An index of some other tar: valid JSON of the right format, wrong length.
    let mut small = Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_size(3);
    small.append_data(&mut h, "x", &b"abc"[..]).unwrap();
    let other_index = TarVolume::new(small.into_inner().unwrap().into())
        .unwrap()
        .index()
        .to_bytes()
        .unwrap();
    // The right index with every file's offset one block late: it parses and fits the tar's
    // length, but the data no longer follows a header.
    let good = store
        .get_derived(&diff_id, &kind("tarindex"))
        .unwrap()
        .unwrap();
    let mut shifted: serde_json::Value = serde_json::from_slice(&good).unwrap();
    for e in shifted["entries"].as_array_mut().unwrap() {
        if e["kind"] == "file" || e["kind"] == "hardlink" {
            e["offset"] = (e["offset"].as_u64().unwrap() + 512).into();
        }
    }
    let shifted = serde_json::to_vec(&shifted).unwrap();
    let believable = TarIndex::from_bytes(&shifted).unwrap();
    assert!(TarVolume::with_index(tar.clone().into(), believable.into()).is_ok());
    let garbage: &[&[u8]] = &[
        b"not json at all",
        b"{\"format\":\"x\"}",
        &other_index,
        &shifted,
    ];
    for bad in garbage {
        store
            .put_derived(&diff_id, &kind("tarindex"), bad.to_vec())
            .await
            .unwrap();
        let v = open_layer(&store, &spec, &LayerLimits::default())
            .await
            .unwrap();
        assert_eq!(snapshot(&v), expected);
        let rebuilt = store
            .get_derived(&diff_id, &kind("tarindex"))
            .unwrap()
            .unwrap();
        let index = TarIndex::from_bytes(&rebuilt).unwrap();
        assert_eq!(index.tar_len(), tar.len() as u64);
    }

    // A diffid record that is garbage, or names a blob that is not stored, is redone.
    for bad in [
        "garbage".to_owned(),
        sha256(b"no such blob").to_string(),
        String::new(),
    ] {
        store
            .put_derived(&digest, &kind("diffid"), bad.into_bytes())
            .await
            .unwrap();
        let v = open_layer(&store, &spec, &LayerLimits::default())
            .await
            .unwrap();
        assert_eq!(snapshot(&v), expected);
        let recorded = store
            .get_derived(&digest, &kind("diffid"))
            .unwrap()
            .unwrap();
        assert_eq!(std::str::from_utf8(&recorded).unwrap(), diff_id.to_string());
    }

    // A record contradicting the config's diff_id is not believed either: pointing it at
    // another stored blob must not serve that blob.
    let decoy = put(&store, &sample_tar(9)).await;
    store
        .put_derived(&digest, &kind("diffid"), decoy.to_string().into_bytes())
        .await
        .unwrap();
    let v = open_layer(
        &store,
        &spec.clone().with_diff_id(diff_id),
        &LayerLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(snapshot(&v), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_diff_id_names_both_digests() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let tar = sample_tar(4);
    let actual = sha256(&tar);
    let claimed = sha256(b"what the config says");
    for (body, media_type) in [(gzip(&tar), GZIP), (zstd(&tar), ZSTD), (tar.clone(), TAR)] {
        let digest = put(&store, &body).await;
        let spec = LayerSpec::new(digest, media_type).with_diff_id(claimed);
        let err = open_layer(&store, &spec, &LayerLimits::default())
            .await
            .unwrap_err();
        let msg = err.to_string();
        match err {
            LayerError::DiffIdMismatch {
                digest: d,
                expected,
                actual: got,
            } => {
                assert_eq!(d, digest);
                assert_eq!(expected, claimed);
                // A plain layer is its own diff, so its "actual" is its digest.
                assert_eq!(got, if media_type == TAR { digest } else { actual });
            }
            other => panic!("{media_type}: expected DiffIdMismatch, got {other}"),
        }
        assert!(msg.contains(&claimed.to_string()), "{msg}");
        assert!(msg.contains(&digest.to_string()), "{msg}");
        assert!(
            store
                .get_derived(&digest, &kind("diffid"))
                .unwrap()
                .is_none()
        );
        if media_type != TAR {
            assert!(!store.contains(&actual), "{media_type}: output kept");
        }
    }
    assert!(!store.contains(&claimed));
    assert!(ingest_files(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_bomb_stops_at_the_limit_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let zeros = vec![0u8; 8 << 20];
    let gz = gzip(&zeros);
    let zs = zstd(&zeros);
    assert!(gz.len() < 64 << 10 && zs.len() < 64 << 10);
    let before = stored_blobs(dir.path());
    let gz_digest = put(&store, &gz).await;
    let zs_digest = put(&store, &zs).await;
    let cases = [
        (
            gz_digest,
            GZIP,
            gz.len(),
            LayerLimits {
                max_uncompressed: 1 << 20,
                max_ratio: None,
            },
        ),
        (
            zs_digest,
            ZSTD,
            zs.len(),
            LayerLimits {
                max_uncompressed: 1 << 20,
                max_ratio: None,
            },
        ),
        // The ratio alone: 100x the compressed size is far less than 8 MiB.
        (
            gz_digest,
            GZIP,
            gz.len(),
            LayerLimits {
                max_uncompressed: 1 << 40,
                max_ratio: Some(100),
            },
        ),
    ];
    for (digest, media_type, compressed, limits) in cases {
        for spec in [
            LayerSpec::new(digest, media_type),
            LayerSpec::new(digest, media_type).with_diff_id(sha256(&zeros)),
        ] {
            let err = open_layer(&store, &spec, &limits).await.unwrap_err();
            match err {
                LayerError::TooLarge {
                    digest: d,
                    limit,
                    compressed: c,
                } => {
                    assert_eq!(d, digest);
                    assert_eq!(limit, limits.limit_for(compressed as u64));
                    assert_eq!(c, compressed as u64);
                }
                other => panic!("expected TooLarge, got {other}"),
            }
        }
    }
    let mut expected = before;
    expected.push((gz_digest.hex(), gz.len() as u64));
    expected.push((zs_digest.hex(), zs.len() as u64));
    expected.sort();
    assert_eq!(stored_blobs(dir.path()), expected);
    assert!(ingest_files(dir.path()).is_empty());
    // Within the limit the same layer opens (as a tar it is all end-of-archive zeros).
    let v = open_layer(
        &store,
        &LayerSpec::new(gz_digest, GZIP),
        &LayerLimits::default(),
    )
    .await
    .unwrap();
    assert!(v.index().is_empty());
}

/// Peak resident memory of this process so far, from /proc.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_8_gib_gzip_bomb_stops_early_with_bounded_memory() {
    const EXPANDED: u64 = 8 << 30;
    const LIMIT: u64 = 512 << 20;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();

    // Compress 8 GiB of zeros straight into an ingest, a MiB at a time.
    let mut ingest = store.begin_anonymous(Algorithm::Sha256).await.unwrap();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..(EXPANDED >> 20) {
        encoder.write_all(&zeros).unwrap();
        let out = std::mem::take(encoder.get_mut());
        if !out.is_empty() {
            ingest.write_all(&out).await.unwrap();
        }
    }
    let tail = encoder.finish().unwrap();
    ingest.write_all(&tail).await.unwrap();
    let blob = ingest.commit().await.unwrap();
    let digest = *blob.digest();
    let compressed = blob.len();
    drop(blob);
    assert!(compressed < 16 << 20, "{compressed} bytes compressed");

    let blobs_before = stored_blobs(dir.path());
    let rss_before = peak_rss();
    let started = std::time::Instant::now();
    let limits = LayerLimits {
        max_uncompressed: LIMIT,
        max_ratio: None,
    };
    let err = open_layer(&store, &LayerSpec::new(digest, GZIP), &limits)
        .await
        .unwrap_err();
    assert!(
        matches!(err, LayerError::TooLarge { limit: LIMIT, .. }),
        "{err}"
    );
    let elapsed = started.elapsed();
    let grown = peak_rss().saturating_sub(rss_before);
    eprintln!(
        "8 GiB bomb ({compressed} bytes) refused after {elapsed:?}; peak RSS grew {} MiB",
        grown >> 20
    );
    // A decoder holding its output would need the whole limit; a stream needs a few chunks
    // (plus the compressed blob's mapped pages).
    assert!(grown < 128 << 20, "peak RSS grew by {grown} bytes");
    assert_eq!(stored_blobs(dir.path()), blobs_before);
    assert!(ingest_files(dir.path()).is_empty());
    assert!(
        store
            .get_derived(&digest, &kind("diffid"))
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_or_garbled_streams_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let tar = sample_tar(5);
    let gz = gzip(&tar);
    let zs = zstd(&tar);
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (gz[..gz.len() / 2].to_vec(), GZIP, "gzip"),
        // Only the 8-byte trailer (CRC and length) missing.
        (gz[..gz.len() - 8].to_vec(), GZIP, "gzip"),
        (zs[..zs.len() / 2].to_vec(), ZSTD, "zstd"),
        (zs[..zs.len() - 3].to_vec(), ZSTD, "zstd"),
        (b"this is not gzip at all".to_vec(), GZIP, "gzip"),
        (b"this is not zstd at all".to_vec(), ZSTD, "zstd"),
    ];
    for (body, media_type, name) in cases {
        let digest = put(&store, &body).await;
        for spec in [
            LayerSpec::new(digest, media_type),
            LayerSpec::new(digest, media_type).with_diff_id(sha256(&tar)),
        ] {
            let err = open_layer(&store, &spec, &LayerLimits::default())
                .await
                .unwrap_err();
            match &err {
                LayerError::Decompress {
                    digest: d,
                    compression,
                    ..
                } => {
                    assert_eq!(*d, digest);
                    assert_eq!(*compression, name);
                }
                other => panic!(
                    "{name} of {} bytes: expected Decompress, got {other}",
                    body.len()
                ),
            }
            assert!(err.to_string().contains(&digest.to_string()));
        }
    }
    assert!(!store.contains(&sha256(&tar)));
    assert!(ingest_files(dir.path()).is_empty());

    // A gzip that is whole but holds a truncated tar is the tar's problem, and the error
    // names the tar by its own digest (hashed only once it is known to be needed).
    let truncated = &tar[..tar.len() - 1024 - 100];
    let digest = put(&store, &gzip(truncated)).await;
    let err = open_layer(
        &store,
        &LayerSpec::new(digest, GZIP),
        &LayerLimits::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, LayerError::Tar { digest: d, tar: t, .. }
            if d == digest && t == sha256(truncated)),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_tar_media_types_and_missing_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let digest = put(&store, b"\0asm\x01\0\0\0").await;
    for media_type in [
        "application/wasm",
        "application/vnd.oci.image.layer.v1.tar+bzip2",
        "application/vnd.oci.image.config.v1+json",
    ] {
        let err = open_layer(
            &store,
            &LayerSpec::new(digest, media_type),
            &LayerLimits::default(),
        )
        .await
        .unwrap_err();
        match &err {
            LayerError::NotATar {
                digest: d,
                media_type: m,
            } => {
                assert_eq!(*d, digest);
                assert_eq!(m, media_type);
            }
            other => panic!("expected NotATar, got {other}"),
        }
        assert!(err.to_string().contains(media_type));
    }
    let absent = sha256(b"never stored");
    for media_type in [TAR, GZIP, ZSTD] {
        let err = open_layer(
            &store,
            &LayerSpec::new(absent, media_type),
            &LayerLimits::default(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, LayerError::Missing { digest } if digest == absent),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_opens_of_one_layer_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let tar = sample_tar(6);
    let diff_id = sha256(&tar);
    let expected = snapshot(&TarVolume::new(tar.clone().into()).unwrap());
    let setup = Store::open(dir.path()).await.unwrap();
    let gz = put(&setup, &gzip(&tar)).await;
    let zs = put(&setup, &zstd(&tar)).await;
    // Clones of one handle and separate handles on the same root alike take turns (the
    // turn is keyed by the store's root); other processes are the next test's business.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let store = if i % 3 == 0 {
            Store::open(dir.path()).await.unwrap()
        } else {
            setup.clone()
        };
        let spec = match i % 4 {
            0 => LayerSpec::new(gz, GZIP),
            1 => LayerSpec::new(gz, GZIP).with_diff_id(diff_id),
            2 => LayerSpec::new(zs, ZSTD),
            _ => LayerSpec::new(zs, ZSTD).with_diff_id(diff_id),
        };
        tasks.push(tokio::spawn(async move {
            open_layer(&store, &spec, &LayerLimits::default()).await
        }));
    }
    for t in tasks {
        let v = t.await.unwrap().unwrap();
        assert_eq!(snapshot(&v), expected);
    }
    assert!(setup.contains(&diff_id));
    assert!(ingest_files(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_layers_stack_in_manifest_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let layer = |files: &[(&str, &str)]| {
        let mut b = Builder::new(Vec::new());
        for (name, body) in files {
            let mut h = Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(body.len() as u64);
            b.append_data(&mut h, name, body.as_bytes()).unwrap();
        }
        b.into_inner().unwrap()
    };
    let base = layer(&[("a", "base a"), ("b", "base b"), ("d/x", "x")]);
    let mid = layer(&[
        ("a", "mid a"),
        (".wh.b", ""),
        ("d/.wh..wh..opq", ""),
        ("d/y", "y"),
    ]);
    let top = layer(&[("b", "top b")]);
    let specs = vec![
        LayerSpec::new(put(&store, &gzip(&base)).await, GZIP).with_diff_id(sha256(&base)),
        LayerSpec::new(put(&store, &zstd(&mid)).await, ZSTD),
        LayerSpec::new(put(&store, &top).await, TAR),
    ];
    let fs = open_image_layers(&store, &specs, &LayerLimits::default())
        .await
        .unwrap();
    assert_eq!(fs.read_all(&p("/a")).unwrap(), "mid a");
    assert_eq!(fs.read_all(&p("/b")).unwrap(), "top b");
    assert_eq!(fs.read_all(&p("/d/y")).unwrap(), "y");
    assert!(!fs.exists(&p("/d/x")));

    // One layer twice in an image (repeated empty layers are common) opens once per turn.
    let twice = [specs[0].clone(), specs[1].clone(), specs[0].clone()];
    let fs = open_image_layers(&store, &twice, &LayerLimits::default())
        .await
        .unwrap();
    assert_eq!(fs.read_all(&p("/a")).unwrap(), "base a");
    assert_eq!(fs.read_all(&p("/b")).unwrap(), "base b");
    assert_eq!(fs.read_all(&p("/d/x")).unwrap(), "x");
    assert_eq!(fs.read_all(&p("/d/y")).unwrap(), "y");

    // One bad layer fails the image, naming that layer.
    let mut bad = specs.clone();
    bad.push(LayerSpec::new(sha256(b"absent"), GZIP));
    let err = open_image_layers(&store, &bad, &LayerLimits::default())
        .await
        .unwrap_err();
    assert!(matches!(err, LayerError::Missing { .. }), "{err}");
}

const CHILD_ENV: &str = "PKGLOAD_LAYER_CHILD";

/// Run by `opens_in_several_processes_at_once` in child processes; ignored otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of opens_in_several_processes_at_once"]
async fn child_opens_the_layer() {
    let spec = std::env::var(CHILD_ENV).expect("run by its parent test");
    let [root, digest, media_type, diff_id] = spec.split('|').collect::<Vec<_>>()[..] else {
        panic!("bad {CHILD_ENV}: {spec}");
    };
    let store = Store::open(root).await.unwrap();
    let spec = LayerSpec::new(Digest::parse(digest).unwrap(), media_type);
    let volume = open_layer(&store, &spec, &LayerLimits::default())
        .await
        .unwrap();
    assert_eq!(sha256(volume.data()).to_string(), diff_id);
    // Every entry lists and every file reads back whole.
    assert!(!snapshot(&volume).is_empty());
}

/// Processes do not share the in-process turn taking: each may decompress, and every one
/// must still get a correct volume (the store's atomic commit settles the race).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_in_several_processes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let tar = sample_tar(8);
    let diff_id = sha256(&tar);
    // Large enough that the decompressions overlap.
    let mut big = Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    let body: Vec<u8> = (0..(32u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    h.set_size(body.len() as u64);
    big.append_data(&mut h, "big", &body[..]).unwrap();
    let big = big.into_inner().unwrap();
    let cases = [
        (put(&store, &gzip(&tar)).await, GZIP, diff_id),
        (put(&store, &zstd(&big)).await, ZSTD, sha256(&big)),
    ];
    let exe = std::env::current_exe().unwrap();
    for (digest, media_type, expected) in cases {
        let children: Vec<_> = (0..3)
            .map(|_| {
                Command::new(&exe)
                    .args(["--ignored", "--exact", "child_opens_the_layer", "--quiet"])
                    .env(
                        CHILD_ENV,
                        format!("{}|{digest}|{media_type}|{expected}", dir.path().display()),
                    )
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let here = open_layer(
            &store,
            &LayerSpec::new(digest, media_type),
            &LayerLimits::default(),
        )
        .await
        .unwrap();
        assert_eq!(sha256(here.data()), expected);
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "child failed: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
        }
    }
    assert!(ingest_files(dir.path()).is_empty());
}

/// A decompression interrupted earlier left a partial tar under the diff_id: the next open
/// continues from it, and if that prefix was not this layer's (another image claimed the
/// same diff_id), it starts over instead of blaming the config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_decompression_is_resumed_or_redone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let tar = sample_tar(10);
    let diff_id = sha256(&tar);
    let gz = put(&store, &gzip(&tar)).await;
    let garbage = vec![0xA5u8; tar.len() / 3];
    for prefix in [&tar[..tar.len() / 2], &garbage[..]] {
        let Begin::Write(mut partial) = store.begin(diff_id, None).await.unwrap() else {
            panic!("the tar is not stored yet");
        };
        partial.write_all(prefix).await.unwrap();
        drop(partial);
        // The dropped ingest hands its data to its writer, which keeps it for resuming.
        let mut kept = false;
        for _ in 0..200 {
            if !ingest_files(dir.path()).is_empty() {
                kept = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(kept, "no partial left to resume");

        let spec = LayerSpec::new(gz, GZIP).with_diff_id(diff_id);
        let v = open_layer(&store, &spec, &LayerLimits::default())
            .await
            .unwrap();
        assert_eq!(sha256(v.data()), diff_id);
        assert!(ingest_files(dir.path()).is_empty());
        // Forget the result so the next case starts without it.
        std::fs::remove_file(store.blob_path(&diff_id)).unwrap();
        std::fs::remove_file(
            dir.path()
                .join(format!("v1/derived/sha256/{}.diffid", gz.hex())),
        )
        .unwrap();
        store.memory().clear();
    }
}

/// A config's diff_id that names a tar already stored is taken at its word for that image
/// (diff_ids define an image's content), but it is never recorded for the compressed blob:
/// another image using the blob without a diff_id gets what the blob really holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diff_id_claim_is_not_recorded_for_a_blob_it_was_not_checked_against() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let claimed = sample_tar(11);
    let real = sample_tar(12);
    let claimed_id = put(&store, &claimed).await;
    let gz = put(&store, &gzip(&real)).await;

    let spec = LayerSpec::new(gz, GZIP).with_diff_id(claimed_id);
    let v = open_layer(&store, &spec, &LayerLimits::default())
        .await
        .unwrap();
    assert_eq!(sha256(v.data()), claimed_id);
    assert!(store.get_derived(&gz, &kind("diffid")).unwrap().is_none());

    let v = open_layer(&store, &LayerSpec::new(gz, GZIP), &LayerLimits::default())
        .await
        .unwrap();
    assert_eq!(sha256(v.data()), sha256(&real));
    let recorded = store.get_derived(&gz, &kind("diffid")).unwrap().unwrap();
    assert_eq!(
        std::str::from_utf8(&recorded).unwrap(),
        sha256(&real).to_string()
    );
}

/// A tar small enough to stay in memory: the first 20 files of `sample_tar` without the
/// filler.
fn small_tar(seed: u8) -> Vec<u8> {
    let mut b = Builder::new(Vec::new());
    for i in 0..20u32 {
        let body: Vec<u8> = (0..(i * 997)).map(|j| (j as u8) ^ seed).collect();
        let mut h = Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        b.append_data(&mut h, format!("etc/file{i}"), &body[..])
            .unwrap();
    }
    b.into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_layer_is_opened_in_memory_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let tar = small_tar(21);
    assert!((tar.len() as u64) < SMALL_TAR);
    let plain = TarVolume::new_layer(tar.clone().into()).unwrap();
    for (body, media_type) in [(gzip(&tar), GZIP), (zstd(&tar), ZSTD)] {
        let digest = put(&store, &body).await;
        let before = stored_blobs(dir.path());
        for diff_id in [None, Some(sha256(&tar))] {
            let mut spec = LayerSpec::new(digest, media_type);
            spec.diff_id = diff_id;
            let v = open_layer(&store, &spec, &LayerLimits::default())
                .await
                .unwrap();
            assert_eq!(snapshot(&v), snapshot(&plain), "{media_type}");
        }
        // No uncompressed blob, no derived entry.
        assert_eq!(stored_blobs(dir.path()), before, "{media_type}");
        assert_eq!(count_files(&dir.path().join("v1/derived")), 0);

        // Still checked against the config's diff_id, and still bounded by the limits.
        let claimed = sha256(b"another tar");
        let err = open_layer(
            &store,
            &LayerSpec::new(digest, media_type).with_diff_id(claimed),
            &LayerLimits::default(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, LayerError::DiffIdMismatch { expected, actual, .. }
                if expected == claimed && actual == sha256(&tar)),
            "{err}"
        );
        let tight = LayerLimits {
            max_uncompressed: 4096,
            ..LayerLimits::default()
        };
        let err = open_layer(&store, &LayerSpec::new(digest, media_type), &tight)
            .await
            .unwrap_err();
        assert!(
            matches!(err, LayerError::TooLarge { limit: 4096, .. }),
            "{err}"
        );
    }
}

/// Regular files below `dir` (0 when it does not exist).
fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).into_iter().flatten() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}

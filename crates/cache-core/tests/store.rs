//! Behaviour of one store in one process: ingest, read, resume, sharing, refs, derived
//! entries, maintenance, and the errors bad input gets.

// Test code: a panic is how a check fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cache_core::{
    Algorithm, Begin, DerivedKind, Digest, Error, GcOptions, LinkMode, Linked, ProblemKind, RefKey,
    Store, StoreOptions, VerifyMode,
};
use tokio::io::AsyncWriteExt;

fn body(len: usize, seed: u8) -> Vec<u8> {
    // Cheap pseudo-random content so different seeds give different digests.
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("cache")).await.unwrap();
    (dir, store)
}

async fn put(store: &Store, data: &[u8]) -> Digest {
    let digest = Algorithm::Sha256.digest(data);
    match store.begin(digest, Some(data.len() as u64)).await.unwrap() {
        Begin::Write(mut ingest) => {
            ingest.write_all(data).await.unwrap();
            ingest.commit().await.unwrap();
        }
        Begin::Present(_) => {}
    }
    digest
}

fn ingest_files(store: &Store) -> Vec<String> {
    std::fs::read_dir(store.root().join("v1/ingest"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn small_and_large_blobs_round_trip() {
    let (_d, store) = store().await;
    for (len, mapped) in [
        (0usize, false),
        (10, false),
        (64 * 1024, true),
        (3_000_000, true),
    ] {
        let data = body(len, len as u8);
        let digest = put(&store, &data).await;
        store.memory().clear();
        let blob = store.get(&digest).unwrap().unwrap();
        assert_eq!(&blob[..], &data[..], "len {len}");
        assert_eq!(blob.is_mapped(), mapped, "len {len}");
        let info = store.stat(&digest).unwrap().unwrap();
        assert_eq!(info.size, len as u64);
        assert!(store.contains(&digest));
        // The file is read-only and lives where the layout says.
        let path = store.blob_path(&digest);
        assert!(path.ends_with(format!("sha256/{}/{}", &digest.hex()[..2], digest.hex())));
        assert!(std::fs::metadata(&path).unwrap().permissions().readonly());
    }
    assert!(
        ingest_files(&store).is_empty(),
        "{:?}",
        ingest_files(&store)
    );
}

#[tokio::test]
async fn every_algorithm_and_the_async_write_interface() {
    let (_d, store) = store().await;
    let data = body(700_000, 3);
    for alg in Algorithm::ALL {
        let digest = alg.digest(&data);
        let Begin::Write(mut ingest) = store.begin(digest, None).await.unwrap() else {
            panic!("new store");
        };
        // AsyncWrite in odd-sized pieces.
        for piece in data.chunks(12_345) {
            ingest.write_all(piece).await.unwrap();
        }
        AsyncWriteExt::flush(&mut ingest).await.unwrap();
        let blob = ingest.commit().await.unwrap();
        assert_eq!(blob.digest(), &digest);
        assert_eq!(&blob[..], &data[..]);
    }
}

#[tokio::test]
async fn bodies_in_memory_are_stored_like_ingests() {
    let (_d, store) = store().await;
    for len in [0usize, 877, 64 * 1024, 700_000] {
        let data = body(len, 7);
        let digest = Algorithm::Sha256.digest(&data);
        let blob = store
            .put_bytes(digest, Bytes::from(data.clone()))
            .await
            .unwrap();
        assert_eq!(&blob[..], &data[..], "len {len}");
        store.memory().clear();
        assert_eq!(&store.get(&digest).unwrap().unwrap()[..], &data[..]);
        let path = store.blob_path(&digest);
        assert!(std::fs::metadata(&path).unwrap().permissions().readonly());
        // Stored already: the same call is a lookup, and an ingest finds it present.
        assert!(
            store
                .put_bytes(digest, Bytes::from(data.clone()))
                .await
                .is_ok()
        );
        assert!(matches!(
            store.begin(digest, Some(len as u64)).await.unwrap(),
            Begin::Present(_)
        ));
    }
    // Bytes that are not what they claim to be never reach the disk.
    let data = body(100_000, 8);
    let wrong = Algorithm::Sha256.digest(b"something else");
    match store.put_bytes(wrong, Bytes::from(data.clone())).await {
        Err(Error::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, Algorithm::Sha256.digest(&data));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!store.contains(&wrong));
    assert!(
        ingest_files(&store).is_empty(),
        "{:?}",
        ingest_files(&store)
    );
}

#[tokio::test]
async fn digest_mismatch_discards_everything() {
    let (_d, store) = store().await;
    let data = body(500_000, 1);
    let wrong = Algorithm::Sha256.digest(b"something else");
    let Begin::Write(mut ingest) = store.begin(wrong, None).await.unwrap() else {
        panic!()
    };
    ingest.write(Bytes::from(data.clone())).await.unwrap();
    let err = ingest.commit().await.unwrap_err();
    match &err {
        Error::DigestMismatch { expected, actual } => {
            assert_eq!(*expected, wrong);
            assert_eq!(*actual, Algorithm::Sha256.digest(&data));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.is_corrupt_transfer());
    assert!(err.to_string().contains(&wrong.to_string()));
    assert!(!store.contains(&wrong));
    assert!(!store.contains(&Algorithm::Sha256.digest(&data)));
    assert!(
        ingest_files(&store).is_empty(),
        "{:?}",
        ingest_files(&store)
    );
}

#[tokio::test]
async fn size_mismatch_short_and_long() {
    let (_d, store) = store().await;
    let data = body(100_000, 2);
    let digest = Algorithm::Sha256.digest(&data);

    // Short: detected at commit.
    let Begin::Write(mut ingest) = store.begin(digest, Some(100_000)).await.unwrap() else {
        panic!()
    };
    ingest.write_all(&data[..99_999]).await.unwrap();
    let err = ingest.commit().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::SizeMismatch {
                expected: 100_000,
                actual: 99_999,
                at_least: false,
                ..
            }
        ),
        "{err}"
    );

    // Long: cut off at the first byte past the declared size, before it is written.
    let Begin::Write(mut ingest) = store.begin(digest, Some(100_000)).await.unwrap() else {
        panic!()
    };
    ingest.write_all(&data).await.unwrap();
    let err = ingest.write_all(b"x").await.unwrap_err();
    assert!(
        matches!(err, Error::SizeMismatch { at_least: true, .. }),
        "{err}"
    );
    // The ingest stays failed.
    assert!(ingest.commit().await.is_err());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!store.contains(&digest));
    // The next ingest starts from scratch (the over-long partial was discarded).
    let Begin::Write(ingest) = store.begin(digest, Some(100_000)).await.unwrap() else {
        panic!()
    };
    assert_eq!(ingest.offset(), 0);
}

#[tokio::test]
async fn interrupted_ingest_resumes_at_its_offset() {
    let (_d, store) = store().await;
    let data = body(2_000_000, 4);
    let digest = Algorithm::Sha256.digest(&data);
    let Begin::Write(mut ingest) = store.begin(digest, Some(data.len() as u64)).await.unwrap()
    else {
        panic!()
    };
    ingest.write_all(&data[..1_234_567]).await.unwrap();
    drop(ingest); // interrupted: error, cancellation, …

    let Begin::Write(mut ingest) = store.begin(digest, Some(data.len() as u64)).await.unwrap()
    else {
        panic!()
    };
    // Everything handed to the writer survives; only the last unflushed chunk buffer
    // (at most 256 KiB) may be lost when the ingest is dropped mid-way.
    let offset = ingest.offset() as usize;
    assert!(
        (1_234_567 - 256 * 1024..=1_234_567).contains(&offset),
        "offset {offset}"
    );
    ingest.write_all(&data[offset..]).await.unwrap();
    let blob = ingest.commit().await.unwrap();
    assert_eq!(&blob[..], &data[..]);
}

/// A small blob of known size is buffered in memory rather than handed to a writer thread
/// (ingest.rs); dropped mid-way, it still leaves what it holds in the partial, exactly.
#[tokio::test]
async fn a_small_interrupted_ingest_keeps_every_byte_for_the_next() {
    let (_d, store) = store().await;
    let data = body(300_000, 9);
    let digest = Algorithm::Sha256.digest(&data);
    let size = Some(data.len() as u64);
    let Begin::Write(mut ingest) = store.begin(digest, size).await.unwrap() else {
        panic!()
    };
    ingest.write_all(&data[..123_456]).await.unwrap();
    ingest
        .write(Bytes::copy_from_slice(&data[123_456..200_000]))
        .await
        .unwrap();
    drop(ingest);

    let Begin::Write(mut ingest) = store.begin(digest, size).await.unwrap() else {
        panic!()
    };
    assert_eq!(ingest.offset(), 200_000);
    ingest.write_all(&data[200_000..]).await.unwrap();
    let blob = ingest.commit().await.unwrap();
    assert_eq!(&blob[..], &data[..]);
    assert!(
        ingest_files(&store).is_empty(),
        "{:?}",
        ingest_files(&store)
    );
}

#[tokio::test]
async fn garbage_prefix_fails_once_then_starts_over() {
    let (_d, store) = store().await;
    let data = body(300_000, 5);
    let digest = Algorithm::Sha256.digest(&data);
    let Begin::Write(mut ingest) = store.begin(digest, None).await.unwrap() else {
        panic!()
    };
    ingest.write_all(&vec![0xAA; 1000]).await.unwrap();
    drop(ingest);
    let Begin::Write(mut ingest) = store.begin(digest, None).await.unwrap() else {
        panic!()
    };
    assert_eq!(ingest.offset(), 1000);
    ingest.write_all(&data[1000..]).await.unwrap();
    assert!(matches!(
        ingest.commit().await,
        Err(Error::DigestMismatch { .. })
    ));
    let Begin::Write(mut ingest) = store.begin(digest, None).await.unwrap() else {
        panic!()
    };
    assert_eq!(ingest.offset(), 0);
    ingest.write_all(&data).await.unwrap();
    ingest.commit().await.unwrap();
}

#[tokio::test]
async fn restart_discards_the_prefix() {
    let (_d, store) = store().await;
    let data = body(400_000, 6);
    let digest = Algorithm::Sha256.digest(&data);
    let Begin::Write(mut ingest) = store.begin(digest, None).await.unwrap() else {
        panic!()
    };
    ingest.write_all(&data[..1000]).await.unwrap();
    drop(ingest);
    let Begin::Write(ingest) = store.begin(digest, None).await.unwrap() else {
        panic!()
    };
    assert_eq!(ingest.offset(), 1000);
    // e.g. the server ignored our Range request and sends the whole body.
    let mut ingest = ingest.restart().await.unwrap();
    assert_eq!(ingest.offset(), 0);
    ingest.write_all(&data).await.unwrap();
    assert_eq!(&ingest.commit().await.unwrap()[..], &data[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_fill() {
    let (_d, store) = store().await;
    let data = Bytes::from(body(1_500_000, 7));
    let digest = Algorithm::Sha256.digest(&data);
    let fills = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (store, data, fills) = (store.clone(), data.clone(), fills.clone());
        tasks.push(tokio::spawn(async move {
            store
                .get_or_ingest(
                    digest,
                    Some(data.len() as u64),
                    move |mut ingest| async move {
                        fills.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        for c in data.chunks(100_000) {
                            ingest.write(Bytes::copy_from_slice(c)).await?;
                        }
                        Ok::<_, Error>(ingest)
                    },
                )
                .await
        }));
    }
    for t in tasks {
        let blob = t.await.unwrap().unwrap();
        assert_eq!(blob.len(), data.len() as u64);
    }
    assert_eq!(fills.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fill_is_shared_then_retried() {
    let (_d, store) = store().await;
    let digest = Algorithm::Sha256.digest(b"payload");
    let calls = Arc::new(AtomicUsize::new(0));
    let run = |store: Store, calls: Arc<AtomicUsize>| async move {
        store
            .get_or_ingest(digest, Some(7), move |ingest| async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                drop(ingest);
                Err::<cache_core::Ingest, _>(std::io::Error::other("registry said 503"))
            })
            .await
    };
    let a = tokio::spawn(run(store.clone(), calls.clone()));
    let b = tokio::spawn(run(store.clone(), calls.clone()));
    for r in [a.await.unwrap(), b.await.unwrap()] {
        let err = r.unwrap_err();
        assert!(matches!(err, Error::Source { .. }), "{err}");
        assert!(err.to_string().contains("registry said 503"), "{err}");
        assert!(err.to_string().contains(&digest.to_string()), "{err}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Nothing sticks: a later call tries again and can succeed.
    let blob = store
        .get_or_ingest(digest, Some(7), |mut ingest| async move {
            ingest.write_all(b"payload").await?;
            Ok::<_, Error>(ingest)
        })
        .await
        .unwrap();
    assert_eq!(&blob[..], b"payload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn giving_up_on_a_fill_releases_its_lock_and_keeps_the_partial() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let data = body(100_000, 30);
    let digest = Algorithm::Sha256.digest(&data);
    let head = data[..40_000].to_vec();
    let stalled = store.get_or_ingest(digest, Some(100_000), move |mut ingest| async move {
        ingest.write_all(&head).await?;
        std::future::pending::<()>().await; // a source that never finishes
        Ok::<_, Error>(ingest)
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(200), stalled)
            .await
            .is_err()
    );
    // Another writer (here: another handle, as another process would be) gets the lock
    // promptly and resumes where the abandoned fill stopped.
    let other = Store::open_with(
        dir.path(),
        StoreOptions {
            lock_timeout: Duration::from_secs(2),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let Begin::Write(mut ingest) = other.begin(digest, Some(100_000)).await.unwrap() else {
        panic!()
    };
    assert_eq!(ingest.offset(), 40_000);
    ingest.write_all(&data[40_000..]).await.unwrap();
    ingest.commit().await.unwrap();
    // The first handle sees the blob, and its in-flight map holds nothing stale.
    let blob = store
        .get_or_ingest(digest, Some(100_000), |_| async {
            Err::<cache_core::Ingest, _>(std::io::Error::other("must not be called"))
        })
        .await
        .unwrap();
    assert_eq!(&blob[..], &data[..]);
}

#[tokio::test]
async fn a_held_digest_lock_times_out_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path()).await.unwrap();
    let b = Store::open_with(
        dir.path(),
        StoreOptions {
            lock_timeout: Duration::from_millis(200),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let digest = Algorithm::Sha256.digest(b"x");
    let Begin::Write(held) = a.begin(digest, None).await.unwrap() else {
        panic!()
    };
    let err = b.begin(digest, None).await.unwrap_err();
    assert!(matches!(err, Error::LockTimeout { .. }), "{err}");
    assert!(err.to_string().contains(&digest.to_string()), "{err}");
    drop(held);
    // The lock is released once the writer drains.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(
        b.begin(digest, None).await.unwrap(),
        Begin::Write(_)
    ));
}

#[tokio::test]
async fn import_and_link() {
    let (dir, store) = store().await;
    let src = dir.path().join("input.bin");
    let data = body(200_000, 8);
    std::fs::write(&src, &data).unwrap();
    let blob = store.import_file(&src, Algorithm::Blake3).await.unwrap();
    assert_eq!(blob.digest(), &Algorithm::Blake3.digest(&data));
    for (i, mode) in [LinkMode::Auto, LinkMode::Hardlink, LinkMode::Copy]
        .into_iter()
        .enumerate()
    {
        let dest = dir.path().join(format!("out{i}"));
        let how = store.link_to(blob.digest(), &dest, mode).await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        match mode {
            LinkMode::Hardlink => assert_eq!(how, Linked::Hardlink),
            LinkMode::Copy => assert_eq!(how, Linked::Copy),
            _ => {}
        }
        // Never overwrites.
        assert!(store.link_to(blob.digest(), &dest, mode).await.is_err());
    }
    let missing = Algorithm::Sha256.digest(b"missing");
    let err = store
        .link_to(&missing, dir.path().join("nope"), LinkMode::Auto)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    let err = store
        .import_file(dir.path().join("does-not-exist"), Algorithm::Sha256)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does-not-exist"), "{err}");
    assert!(ingest_files(&store).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_keeps_its_tags_in_one_file_and_no_update_is_lost() {
    let (dir, store) = store().await;
    let registry = "127.0.0.1:5000";
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let key = RefKey::new(registry, "acme/app", &format!("1.0.{i}")).unwrap();
                let digest = Algorithm::Sha256.digest(format!("m{i}").as_bytes());
                store.set_ref(&key, &digest).await.unwrap();
                if i % 10 == 0 {
                    let tags: Vec<String> = (0..=i).map(|t| format!("1.0.{t}")).collect();
                    store
                        .set_tag_list(registry, "acme/app", &tags)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for i in 0..40 {
        let key = RefKey::new(registry, "acme/app", &format!("1.0.{i}")).unwrap();
        let entry = store.get_ref(&key).unwrap().expect("every update kept");
        assert_eq!(
            entry.digest,
            Algorithm::Sha256.digest(format!("m{i}").as_bytes())
        );
    }
    assert!(store.get_tag_list(registry, "acme/app").unwrap().is_some());
    let files: Vec<_> = std::fs::read_dir(dir.path().join("cache/v1/refs").join(registry))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, vec![std::ffi::OsString::from("acme+app")]);

    // A torn file (a power cut before the data reached the disk) is forgotten, not an error.
    let path = dir
        .path()
        .join("cache/v1/refs")
        .join(registry)
        .join("acme+app");
    let text = std::fs::read(&path).unwrap();
    std::fs::write(&path, &text[..text.len() - 3]).unwrap();
    let key = RefKey::new(registry, "acme/app", "1.0.0").unwrap();
    assert!(store.get_ref(&key).unwrap().is_none());
    assert!(store.get_tag_list(registry, "acme/app").unwrap().is_none());
    assert!(store.refs().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_torn_small_blob_reads_as_absent_and_is_fetched_again() {
    use std::os::unix::fs::PermissionsExt;
    let (_d, store) = store().await;
    let small = b"{\"schemaVersion\":2}".repeat(10);
    let digest = put(&store, &small).await;
    let path = store.blob_path(&digest);
    // What a power cut can leave of a blob committed without fsync: a prefix, or nothing.
    for torn in [&small[..small.len() / 2], &[][..]] {
        store.memory().clear();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&path, torn).unwrap();
        assert!(
            store.get(&digest).unwrap().is_none(),
            "a torn blob was served"
        );
        assert!(!path.exists(), "the torn file is removed");
        // The next writer stores it again.
        assert_eq!(put(&store, &small).await, digest);
        assert_eq!(&store.get(&digest).unwrap().unwrap()[..], &small[..]);
    }
}

#[tokio::test]
async fn refs_and_derived_entries() {
    let (_d, store) = store().await;
    let key = RefKey::new("127.0.0.1:5000", "team/acme/app", "1.0.0").unwrap();
    let nested = RefKey::new("127.0.0.1:5000", "team/acme/app/1.0.0", "latest").unwrap();
    assert!(store.get_ref(&key).unwrap().is_none());
    let d1 = Algorithm::Sha256.digest(b"m1");
    let d2 = Algorithm::Sha256.digest(b"m2");
    store.set_ref(&key, &d1).await.unwrap();
    store.set_ref(&nested, &d2).await.unwrap();
    store.set_ref(&key, &d2).await.unwrap();
    let entry = store.get_ref(&key).unwrap().unwrap();
    assert_eq!(entry.digest, d2);
    assert!(entry.age() < Duration::from_secs(60));
    assert!(entry.is_fresh(Duration::from_secs(60)));
    assert!(!entry.is_fresh(Duration::ZERO));
    let all = store.refs().await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.contains(&(nested.clone(), store.get_ref(&nested).unwrap().unwrap())));
    store.remove_ref(&key).await.unwrap();
    assert!(store.get_ref(&key).unwrap().is_none());

    // Tag lists live beside the refs without being mistaken for one.
    let tag_list = |repository: &str| store.get_tag_list("127.0.0.1:5000", repository).unwrap();
    assert!(tag_list("team/acme/app").is_none());
    let tags = vec!["1.0.0".to_owned(), "latest".to_owned()];
    store
        .set_tag_list("127.0.0.1:5000", "team/acme/app", &tags)
        .await
        .unwrap();
    let list = tag_list("team/acme/app").unwrap();
    assert_eq!(list.tags, tags);
    assert!(list.is_fresh(Duration::from_secs(60)));
    assert!(!list.is_fresh(Duration::ZERO));
    assert!(store.get_tag_list("127.0.0.1:5000", "../etc").is_err());
    assert_eq!(store.refs().await.unwrap().len(), 1);

    // A tag list and a tag's digest remembered in one write; invalid tags are dropped.
    let other = RefKey::new("127.0.0.1:5000", "team/acme/lib", "2.0.0").unwrap();
    store
        .set_tags_and_ref(
            &other,
            Some(vec!["2.0.0".to_owned(), "../bad".to_owned()]),
            &d1,
        )
        .await
        .unwrap();
    let list = tag_list("team/acme/lib").unwrap();
    assert_eq!(list.tags, ["2.0.0"]);
    assert_eq!(store.get_ref(&other).unwrap().unwrap().digest, d1);
    // Without a tag list, the one already remembered stays.
    let latest = RefKey::new("127.0.0.1:5000", "team/acme/lib", "latest").unwrap();
    store.set_tags_and_ref(&latest, None, &d1).await.unwrap();
    let list = tag_list("team/acme/lib").unwrap();
    assert_eq!(list.tags, ["2.0.0"]);
    assert_eq!(store.get_ref(&latest).unwrap().unwrap().digest, d1);

    let kind = DerivedKind::new("tar-index").unwrap();
    assert!(DerivedKind::new("../x").is_err());
    assert!(store.get_derived(&d1, &kind).unwrap().is_none());
    store
        .put_derived(&d1, &kind, b"index v1".to_vec())
        .await
        .unwrap();
    store
        .put_derived(&d1, &kind, b"index v2".to_vec())
        .await
        .unwrap();
    assert_eq!(
        &store.get_derived(&d1, &kind).unwrap().unwrap()[..],
        b"index v2"
    );
}

#[tokio::test]
async fn corruption_is_found_and_pruned() {
    let (_d, store) = store().await;
    let good = put(&store, &body(100_000, 9)).await;
    let bad = put(&store, &body(150_000, 10)).await;
    let truncated = put(&store, &body(70_000, 11)).await;
    let path = store.blob_path(&bad);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[77_777] ^= 0x01;
    make_writable_and_write(&path, &bytes);
    let tpath = store.blob_path(&truncated);
    let tbytes = std::fs::read(&tpath).unwrap();
    make_writable_and_write(&tpath, &tbytes[..1000]);

    let report = store.verify(VerifyMode::Warn).await.unwrap();
    assert_eq!(report.checked, 3);
    let mut found: Vec<Digest> = report.problems.iter().filter_map(|p| p.digest).collect();
    found.sort();
    let mut expected = vec![bad, truncated];
    expected.sort();
    assert_eq!(found, expected);
    assert!(
        report
            .problems
            .iter()
            .all(|p| matches!(p.kind, ProblemKind::Mismatch { .. }))
    );
    assert!(store.contains(&bad), "warn mode keeps files");

    let report = store.verify(VerifyMode::Prune).await.unwrap();
    assert_eq!(report.pruned, 2);
    assert!(store.get(&bad).unwrap().is_none());
    assert!(store.get(&truncated).unwrap().is_none());
    assert!(store.get(&good).unwrap().is_some());
    assert!(
        store
            .verify(VerifyMode::Warn)
            .await
            .unwrap()
            .problems
            .is_empty()
    );
}

fn make_writable_and_write(path: &std::path::Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).unwrap();
}

#[tokio::test]
async fn gc_marks_from_roots_refs_and_children_then_trims() {
    let (_d, store) = store().await;
    let layer = put(&store, &body(100_000, 20)).await;
    let manifest_body = format!("manifest -> {layer}");
    let manifest = put(&store, manifest_body.as_bytes()).await;
    let pinned = put(&store, &body(50_000, 21)).await;
    let garbage = put(&store, &body(80_000, 22)).await;
    let old = put(&store, &body(60_000, 23)).await;
    let kind = DerivedKind::new("index").unwrap();
    store
        .put_derived(&garbage, &kind, b"derived".to_vec())
        .await
        .unwrap();
    store
        .set_ref(&RefKey::new("r.example", "a/b", "v1").unwrap(), &manifest)
        .await
        .unwrap();
    store
        .set_ref(&RefKey::new("r.example", "a/old", "v1").unwrap(), &old)
        .await
        .unwrap();
    // `old` was used long ago.
    let when = std::time::SystemTime::now() - Duration::from_secs(30 * 24 * 3600);
    std::fs::File::open(store.blob_path(&old))
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_accessed(when))
        .unwrap();
    assert!(store.get(&garbage).unwrap().is_some()); // now in the memory tier

    let children = Arc::new(|_d: &Digest, data: &[u8]| -> Vec<Digest> {
        let text = String::from_utf8_lossy(data);
        text.strip_prefix("manifest -> ")
            .and_then(|d| d.parse().ok())
            .into_iter()
            .collect()
    });
    let report = store
        .gc(GcOptions {
            roots: vec![pinned],
            // Room for everything but the oldest blob.
            max_size: Some(100_000 + manifest_body.len() as u64 + 50_000),
            children: Some(children),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut removed = report.removed.clone();
    removed.sort();
    let mut expected = vec![garbage, old];
    expected.sort();
    assert_eq!(removed, expected);
    assert_eq!(report.kept, 3);
    assert!(!report.over_budget);
    assert!(
        store.get(&garbage).unwrap().is_none(),
        "gc evicts the memory tier"
    );
    assert!(store.get_derived(&garbage, &kind).unwrap().is_none());
    for d in [layer, manifest, pinned] {
        assert!(store.get(&d).unwrap().is_some());
    }

    // A budget below the pinned root cannot be met: report it, keep the root.
    let report = store
        .gc(GcOptions {
            roots: vec![pinned],
            keep_refs: false,
            max_size: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(report.over_budget);
    assert_eq!(report.kept, 1);
    assert!(store.contains(&pinned));
}

#[tokio::test]
async fn gc_waits_for_other_users_of_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        lock_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let a = Store::open_with(dir.path(), opts.clone()).await.unwrap();
    let other = Store::open_with(dir.path(), opts).await.unwrap();
    let err = a.gc(GcOptions::default()).await.unwrap_err();
    assert!(matches!(err, Error::LockTimeout { .. }), "{err}");
    assert!(err.to_string().contains(".lock"), "{err}");
    // `a` still works after the failed upgrade.
    put(&a, b"still usable").await;
    drop(other);
    a.gc(GcOptions::default()).await.unwrap();
    a.clean().await.unwrap();
    assert!(a.scan().await.unwrap().is_empty());
}

#[tokio::test]
async fn stray_files_are_reported() {
    let (_d, store) = store().await;
    put(&store, b"real").await;
    let stray = store.root().join("v1/blobs/sha256/zz/notadigest");
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::write(&stray, b"?").unwrap();
    let report = store.verify(VerifyMode::Prune).await.unwrap();
    assert_eq!(report.checked, 1);
    assert!(matches!(report.problems[..], [ref p] if matches!(p.kind, ProblemKind::Stray)));
    assert!(!stray.exists());
}

#[tokio::test]
async fn unusable_root_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let err = Store::open(file.join("cache")).await.unwrap_err();
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever the chunking, ingest then get gives back identical bytes.
        #[test]
        fn ingest_then_get_is_identity(
            len in 0usize..600_000,
            seed in any::<u8>(),
            cuts in prop::collection::vec(any::<usize>(), 0..8),
            as_bytes in any::<bool>(),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let (_d, store) = store().await;
                let data = body(len, seed);
                let digest = Algorithm::Sha256.digest(&data);
                let Begin::Write(mut ingest) = store.begin(digest, Some(len as u64)).await.unwrap() else {
                    panic!()
                };
                let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (len + 1)).collect();
                cuts.sort_unstable();
                let mut start = 0;
                for cut in cuts.into_iter().chain([len]) {
                    let piece = &data[start..cut];
                    if as_bytes {
                        ingest.write(Bytes::copy_from_slice(piece)).await.unwrap();
                    } else {
                        ingest.write_all(piece).await.unwrap();
                    }
                    start = cut;
                }
                ingest.commit().await.unwrap();
                store.memory().clear();
                let blob = store.get(&digest).unwrap().unwrap();
                assert_eq!(&blob[..], &data[..]);
            });
        }
    }
}

#[tokio::test]
async fn the_root_is_tagged_as_a_cache_for_backup_tools() {
    let (dir, store) = store().await;
    let data = body(70_000, 31);
    put(&store, &data).await;
    let tag = store.root().join("CACHEDIR.TAG");
    let text = std::fs::read_to_string(&tag).unwrap();
    assert_eq!(
        text.lines().next(),
        Some("Signature: 8a477f597d28d172789f06886806bc55"),
        "{text}"
    );
    // The tag is what `tar --exclude-caches` looks for: the archive keeps the tag and
    // leaves out everything else under the root, blobs included.
    let listing = std::process::Command::new("tar")
        .args(["--exclude-caches", "-cf", "-", "cache"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(listing.status.success(), "{listing:?}");
    let names = std::process::Command::new("tar")
        .arg("-t")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&listing.stdout)?;
            child.wait_with_output()
        })
        .unwrap();
    let names = String::from_utf8(names.stdout).unwrap();
    assert!(names.lines().any(|n| n == "cache/CACHEDIR.TAG"), "{names}");
    assert!(!names.contains("blobs"), "{names}");

    // A tag the user edited is theirs: reopening does not rewrite it.
    drop(store);
    std::fs::write(
        &tag,
        "Signature: 8a477f597d28d172789f06886806bc55\n# mine\n",
    )
    .unwrap();
    let _store = Store::open(dir.path().join("cache")).await.unwrap();
    assert!(std::fs::read_to_string(&tag).unwrap().ends_with("# mine\n"));
    assert!(
        ingest_files(&_store).is_empty(),
        "no temporary file left behind"
    );
}

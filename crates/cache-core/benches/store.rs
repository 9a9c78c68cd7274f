//! Store benchmarks: ingest throughput against `sha256sum` and `cp` of the same file on the
//! same disk, `get`/`stat` cost on a large cached blob, and peak RSS during a large ingest.
//!
//! `PKGLOAD_BENCH_BYTES` sets the blob size (default 1 GiB). Run with `cargo xtask bench`
//! or `cargo bench -p cache-core --bench store`.

// Test code: a panic is how a check fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::hint::black_box;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use cache_core::{Algorithm, Begin, Digest, Store, StoreOptions};
use criterion::{Criterion, SamplingMode, Throughput};

const CHUNK: usize = 1 << 20;

fn bench_bytes() -> u64 {
    std::env::var("PKGLOAD_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30)
}

struct Fixture {
    _dir: tempfile::TempDir,
    source: PathBuf,
    store_dir: PathBuf,
    len: u64,
}

/// A file of incompressible bytes in a temp dir on the same disk as the store.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir_in(
        std::env::var_os("PKGLOAD_BENCH_DIR").unwrap_or_else(|| env!("CARGO_TARGET_TMPDIR").into()),
    )
    .expect("temp dir");
    let source = dir.path().join("source.bin");
    let len = bench_bytes();
    let mut file = std::io::BufWriter::new(std::fs::File::create(&source).expect("create"));
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut block = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(CHUNK as u64) as usize;
        std::io::Write::write_all(&mut file, &block[..n]).expect("write");
        left -= n as u64;
    }
    drop(file);
    let store_dir = dir.path().join("store");
    Fixture {
        _dir: dir,
        source,
        store_dir,
        len,
    }
}

/// Stream `path` into the store under `algorithm` and return the digest (computed by a
/// separate pass only once, outside the timed loop).
async fn ingest_file(store: &Store, path: &Path, digest: Digest, len: u64) -> Digest {
    let Begin::Write(mut ingest) = store.begin(digest, Some(len)).await.expect("begin") else {
        panic!("blob should have been removed between iterations");
    };
    let mut file = std::fs::File::open(path).expect("open");
    loop {
        let mut buf = vec![0u8; CHUNK];
        let n = file.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        buf.truncate(n);
        ingest.write(Bytes::from(buf)).await.expect("write");
    }
    *ingest.commit().await.expect("commit").digest()
}

fn remove(store: &Store, digest: &Digest) {
    store.memory().evict(digest);
    std::fs::remove_file(store.blob_path(digest)).expect("remove blob");
}

/// The file's digest, streamed (a 1 GiB fixture is never held in memory at once).
fn digest_of(path: &Path, algorithm: Algorithm) -> Digest {
    let mut hasher = cache_core::Hasher::new(algorithm);
    let mut file = std::fs::File::open(path).expect("open");
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hasher.finalize()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A store without a memory tier, so every `get` takes the disk path.
fn uncached_store(rt: &tokio::runtime::Runtime, dir: &Path) -> Store {
    rt.block_on(Store::open_with(
        dir,
        StoreOptions {
            memory_budget: 0,
            ..Default::default()
        },
    ))
    .expect("store")
}

fn run(cmd: &mut Command) {
    let status = cmd.status().expect("spawn");
    assert!(status.success(), "{cmd:?} failed");
}

fn ingest(c: &mut Criterion, fx: &Fixture) {
    let rt = runtime();
    let store = uncached_store(&rt, &fx.store_dir);
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Bytes(fx.len));
    // Seconds per iteration: flat sampling, ten iterations per variant.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("sha256sum", |b| {
        b.iter(|| {
            run(Command::new("sha256sum")
                .arg(&fx.source)
                .stdout(std::process::Stdio::null()))
        })
    });
    let copy = fx.store_dir.with_file_name("copy.bin");
    group.bench_function("cp", |b| {
        b.iter(|| {
            run(Command::new("cp").arg(&fx.source).arg(&copy));
            std::fs::remove_file(&copy).expect("rm");
        })
    });
    for alg in [Algorithm::Sha256, Algorithm::Blake3] {
        let digest = digest_of(&fx.source, alg);
        group.bench_function(format!("store_{alg}"), |b| {
            b.iter(|| {
                let d = rt.block_on(ingest_file(&store, &fx.source, digest, fx.len));
                remove(&store, &d);
            })
        });
    }
    group.finish();
}

fn lookups(c: &mut Criterion, fx: &Fixture) {
    let rt = runtime();
    let cold = uncached_store(&rt, &fx.store_dir);
    let digest = rt.block_on(async {
        let blob = cold
            .import_file(&fx.source, Algorithm::Sha256)
            .await
            .expect("import");
        *blob.digest()
    });
    let warm = rt.block_on(Store::open(&fx.store_dir)).expect("store");
    let mut group = c.benchmark_group(format!("lookup_{}MiB_blob", fx.len >> 20));
    group.bench_function("stat", |b| {
        b.iter(|| black_box(cold.stat(&digest).expect("stat")))
    });
    group.bench_function("get_mmap", |b| {
        b.iter(|| black_box(cold.get(&digest).expect("get")))
    });
    // With the default 256 MiB budget, a blob above half of it is never kept in the tier
    // (see MemoryTier): at the default 1 GiB this is the mmap path again.
    group.bench_function("get_default_store", |b| {
        b.iter(|| black_box(warm.get(&digest).expect("get")))
    });
    group.finish();
    let small = vec![1u8; 1 << 20];
    let small_digest = Algorithm::Sha256.digest(&small);
    rt.block_on(async {
        if let Begin::Write(mut ingest) = warm.begin(small_digest, None).await.expect("begin") {
            ingest.write_all(&small).await.expect("write");
            ingest.commit().await.expect("commit");
        }
    });
    let mut group = c.benchmark_group("lookup_1MiB_blob");
    group.bench_function("get_memory_tier", |b| {
        b.iter(|| black_box(warm.get(&small_digest).expect("get")))
    });
    group.finish();
    remove(&warm, &small_digest);
    remove(&cold, &digest);
}

/// Child mode: ingest once and print the peak RSS (VmHWM) in KiB.
fn rss_child(source: &Path, store_dir: &Path) {
    let len = std::fs::metadata(source).expect("stat").len();
    let rt = runtime();
    // Streamed, so this pass does not inflate the peak either.
    let digest = digest_of(source, Algorithm::Sha256);
    rt.block_on(async {
        let store = Store::open(store_dir).await.expect("store");
        ingest_file(&store, source, digest, len).await;
        remove(&store, &digest);
    });
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .map(|v| v.trim().trim_end_matches(" kB").trim().to_owned())
        .unwrap_or_default();
    println!("{hwm}");
}

fn peak_rss(fx: &Fixture) {
    let out = Command::new(std::env::current_exe().expect("exe"))
        .env("PKGLOAD_BENCH_RSS_CHILD", "1")
        .env("PKGLOAD_BENCH_SOURCE", &fx.source)
        .env("PKGLOAD_BENCH_STORE", &fx.store_dir)
        .output()
        .expect("child");
    let kib: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    println!(
        "peak RSS ingesting {} MiB (sha256): {:.1} MiB (goal <= 32 MiB)",
        fx.len >> 20,
        kib as f64 / 1024.0
    );
}

fn main() {
    if std::env::var_os("PKGLOAD_BENCH_RSS_CHILD").is_some() {
        let source = PathBuf::from(std::env::var_os("PKGLOAD_BENCH_SOURCE").expect("source"));
        let store = PathBuf::from(std::env::var_os("PKGLOAD_BENCH_STORE").expect("store"));
        rss_child(&source, &store);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    let fx = fixture();
    ingest(&mut c, &fx);
    lookups(&mut c, &fx);
    c.final_summary();
    peak_rss(&fx);
}

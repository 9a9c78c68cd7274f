//! A 16-layer gzip image opened through the store against `umoci unpack --rootless` of the
//! same OCI layout:
//!
//! - `cold_open`: only the compressed blobs stored; decompress, index and stack every
//!   layer, then list the whole tree (`lstat` of every entry);
//! - `warm_open`: the same with the derived entries (diffid, tar index) already present;
//! - `umoci_unpack`: the peer doing the equivalent work, into a fresh bundle;
//! - `list_vfs` / `list_umoci`: the listing alone (`lstat` of every entry), of the open VFS
//!   and of umoci's rootfs, to tell opening from walking;
//! - `read_vfs` / `read_umoci`: every file's bytes, through the VFS and from umoci's rootfs.
//!
//! `PKGLOAD_BENCH_BYTES` sets the image's uncompressed size (default 512 MiB, 4,000 files of
//! incompressible data). Ratios against umoci are printed at the end. Run with
//! `cargo bench -p vfs-overlay --bench image`; `umoci` must be installed.

// Bench code: a panic is how a check fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cache_core::{Algorithm, Digest, Store};
use criterion::{Criterion, SamplingMode};
use serde_json::json;
use tar::{Builder, Header};
use vfs_overlay::{
    FileSystem, FileType, LayerLimits, LayerSpec, Overlay, VfsPath, open_image_layers,
};

const LAYERS: usize = 16;
const FILES: usize = 4000;
const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TAG: &str = "bench";

fn bench_bytes() -> u64 {
    std::env::var("PKGLOAD_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512 << 20)
}

struct Fixture {
    dir: tempfile::TempDir,
    layout: PathBuf,
    /// (compressed digest, its file in the layout) per layer, lowest first.
    blobs: Vec<(Digest, PathBuf)>,
    specs: Vec<LayerSpec>,
    files: usize,
    bytes: u64,
}

/// Incompressible bytes from a xorshift generator (cheap, and gzip cannot shrink them).
fn noise(state: &mut u64, out: &mut [u8]) {
    for word in out.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let bytes = state.to_le_bytes();
        word.copy_from_slice(&bytes[..word.len()]);
    }
}

/// Layer `i` holds files `i, i+16, …`, spread over 16 shared directories (so the overlay
/// merges directories), and rewrites `/etc/config` (so upper layers replace lower files).
fn fixture() -> Fixture {
    let dir = tempfile::tempdir_in(
        std::env::var_os("PKGLOAD_BENCH_DIR").unwrap_or_else(|| env!("CARGO_TARGET_TMPDIR").into()),
    )
    .unwrap();
    let layout = dir.path().join("image");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let file_size = (bench_bytes() / FILES as u64).max(1) as usize;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut body = vec![0u8; file_size];
    let mut blobs = Vec::new();
    let mut specs = Vec::new();
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for layer in 0..LAYERS {
        let mut tar = Builder::new(Vec::with_capacity(file_size * FILES / LAYERS + (1 << 20)));
        for n in (layer..FILES).step_by(LAYERS) {
            noise(&mut state, &mut body);
            let mut h = Header::new_ustar();
            h.set_mode(0o644);
            h.set_size(body.len() as u64);
            h.set_mtime(1_600_000_000);
            tar.append_data(
                &mut h,
                format!("usr/share/d{:02}/file{n:05}", n % 16),
                &body[..],
            )
            .unwrap();
        }
        let config = format!("layer {layer}\n");
        let mut h = Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(config.len() as u64);
        tar.append_data(&mut h, "etc/config", config.as_bytes())
            .unwrap();
        let tar = tar.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(tar.len() + tar.len() / 64),
            flate2::Compression::fast(),
        );
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let digest = Algorithm::Sha256.digest(&gz);
        let diff_id = Algorithm::Sha256.digest(&tar);
        let path = layout.join("blobs/sha256").join(digest.hex());
        std::fs::write(&path, &gz).unwrap();
        descriptors
            .push(json!({"mediaType": GZIP, "digest": digest.to_string(), "size": gz.len()}));
        diff_ids.push(diff_id.to_string());
        specs.push(LayerSpec::new(digest, GZIP).with_diff_id(diff_id));
        blobs.push((digest, path));
    }
    let write_json = |value: serde_json::Value| {
        let data = serde_json::to_vec(&value).unwrap();
        let digest = Algorithm::Sha256.digest(&data);
        std::fs::write(layout.join("blobs/sha256").join(digest.hex()), &data).unwrap();
        (digest, data.len())
    };
    let (config, config_size) = write_json(json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }));
    let (manifest, manifest_size) = write_json(json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config.to_string(), "size": config_size},
        "layers": descriptors,
    }));
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest.to_string(), "size": manifest_size,
        "annotations": {"org.opencontainers.image.ref.name": TAG},
    }]});
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    Fixture {
        dir,
        layout,
        blobs,
        specs,
        files: FILES,
        bytes: file_size as u64 * FILES as u64,
    }
}

/// A new store holding only the compressed layers (hardlinked from the layout: the store
/// treats its blobs as read-only, and so does umoci).
async fn cold_store(fixture: &Fixture, root: &Path) -> Store {
    let _ = std::fs::remove_dir_all(root);
    let store = Store::open(root).await.unwrap();
    for (digest, path) in &fixture.blobs {
        let dest = store.blob_path(digest);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::hard_link(path, &dest).unwrap();
    }
    store
}

/// `lstat` of every entry; returns (entries, files).
fn list(fs: &dyn FileSystem) -> (usize, usize) {
    let (mut entries, mut files) = (0, 0);
    let mut stack = vec![VfsPath::root()];
    while let Some(dir) = stack.pop() {
        for e in fs.read_dir(&dir).unwrap() {
            let path = dir.join(&e.name).unwrap();
            let meta = fs.symlink_metadata(&path).unwrap();
            entries += 1;
            match meta.kind {
                FileType::Dir => stack.push(path),
                FileType::File => files += 1,
                _ => {}
            }
        }
    }
    (entries, files)
}

/// Folds every byte into a checksum, so a read really touches the data.
fn fold(data: &[u8]) -> u64 {
    data.chunks(8).fold(0u64, |acc, c| {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        acc.rotate_left(5) ^ u64::from_le_bytes(w)
    })
}

fn read_vfs(fs: &Overlay) -> (u64, u64) {
    let (mut bytes, mut sum) = (0u64, 0u64);
    let mut stack = vec![VfsPath::root()];
    while let Some(dir) = stack.pop() {
        for e in fs.read_dir(&dir).unwrap() {
            let path = dir.join(&e.name).unwrap();
            match e.kind {
                FileType::Dir => stack.push(path),
                FileType::File => {
                    let data = fs.read_all(&path).unwrap();
                    bytes += data.len() as u64;
                    sum ^= fold(&data);
                }
                _ => {}
            }
        }
    }
    (bytes, sum)
}

fn list_host(root: &Path) -> (usize, usize) {
    let (mut entries, mut files) = (0, 0);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            entries += 1;
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                files += 1;
            }
        }
    }
    (entries, files)
}

fn read_host(root: &Path) -> (u64, u64) {
    let (mut bytes, mut sum) = (0u64, 0u64);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                let data = std::fs::read(e.path()).unwrap();
                bytes += data.len() as u64;
                sum ^= fold(&data);
            }
        }
    }
    (bytes, sum)
}

fn umoci_unpack(layout: &Path, bundle: &Path) {
    let _ = std::fs::remove_dir_all(bundle);
    let out = Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:{TAG}", layout.display()))
        .arg(bundle)
        .output()
        .expect("umoci is the peer of this benchmark: apt-get install umoci");
    assert!(
        out.status.success(),
        "umoci unpack: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Mean time per iteration of each benchmark, as measured inside `iter_custom`.
#[derive(Default)]
struct Means(RefCell<BTreeMap<&'static str, (Duration, u64)>>);

impl Means {
    fn record(&self, name: &'static str, elapsed: Duration, iters: u64) {
        let mut map = self.0.borrow_mut();
        let e = map.entry(name).or_default();
        e.0 += elapsed;
        e.1 += iters;
    }
    fn mean(&self, name: &str) -> Option<Duration> {
        let map = self.0.borrow();
        let (total, n) = map.get(name)?;
        (*n > 0).then(|| *total / u32::try_from(*n).unwrap_or(u32::MAX))
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let fx = fixture();
    let compressed: u64 = fx
        .blobs
        .iter()
        .map(|(_, p)| std::fs::metadata(p).unwrap().len())
        .sum();
    eprintln!(
        "fixture: {LAYERS} gzip layers, {} files, {} MiB of content ({} MiB compressed), built in {:.1?}",
        fx.files,
        fx.bytes >> 20,
        compressed >> 20,
        started.elapsed()
    );
    let limits = LayerLimits::default();
    let means = Means::default();
    let cold_root = fx.dir.path().join("cold-store");
    let warm_root = fx.dir.path().join("warm-store");
    let bundle = fx.dir.path().join("bundle");

    // Checks before timing: both sides hold the same files and bytes.
    let warm = rt.block_on(async {
        let store = cold_store(&fx, &warm_root).await;
        open_image_layers(&store, &fx.specs, &limits).await.unwrap()
    });
    umoci_unpack(&fx.layout, &bundle);
    let rootfs = bundle.join("rootfs");
    let (_, files) = list(&warm);
    assert_eq!(files, fx.files + 1, "every file and /etc/config");
    assert_eq!(
        list(&warm),
        list_host(&rootfs),
        "VFS and umoci list differently"
    );
    assert_eq!(
        read_vfs(&warm),
        read_host(&rootfs),
        "VFS and umoci disagree"
    );

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(5));
    let mut g = c.benchmark_group("image");
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function("cold_open", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let store = rt.block_on(cold_store(&fx, &cold_root));
                let t = Instant::now();
                let fs = rt
                    .block_on(open_image_layers(&store, &fx.specs, &limits))
                    .unwrap();
                black_box(list(&fs));
                total += t.elapsed();
            }
            means.record("cold_open", total, iters);
            total
        });
    });
    g.bench_function("warm_open", |b| {
        let store = rt.block_on(Store::open(&warm_root)).unwrap();
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let fs = rt
                    .block_on(open_image_layers(&store, &fx.specs, &limits))
                    .unwrap();
                black_box(list(&fs));
            }
            let total = t.elapsed();
            means.record("warm_open", total, iters);
            total
        });
    });
    g.bench_function("umoci_unpack", |b| {
        let scratch = fx.dir.path().join("bundle-bench");
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let _ = std::fs::remove_dir_all(&scratch);
                let t = Instant::now();
                umoci_unpack(&fx.layout, &scratch);
                total += t.elapsed();
            }
            means.record("umoci_unpack", total, iters);
            total
        });
    });
    g.bench_function("list_vfs", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(list(&warm));
            }
            let total = t.elapsed();
            means.record("list_vfs", total, iters);
            total
        });
    });
    g.bench_function("list_umoci", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(list_host(&rootfs));
            }
            let total = t.elapsed();
            means.record("list_umoci", total, iters);
            total
        });
    });
    g.bench_function("read_vfs", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(read_vfs(&warm));
            }
            let total = t.elapsed();
            means.record("read_vfs", total, iters);
            total
        });
    });
    g.bench_function("read_umoci", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(read_host(&rootfs));
            }
            let total = t.elapsed();
            means.record("read_umoci", total, iters);
            total
        });
    });
    g.finish();
    c.final_summary();

    let ratio = |ours: &str, theirs: &str| match (means.mean(ours), means.mean(theirs)) {
        (Some(a), Some(b)) if !a.is_zero() => {
            eprintln!(
                "{ours:>10} {a:>12.2?} vs {theirs:<12} {b:>12.2?}: {:.2}x {}",
                b.as_secs_f64() / a.as_secs_f64(),
                if a <= b {
                    "faster"
                } else {
                    "slower (ratio < 1)"
                }
            );
        }
        _ => {}
    };
    eprintln!("--- {} MiB image, mean per iteration ---", fx.bytes >> 20);
    ratio("cold_open", "umoci_unpack");
    ratio("warm_open", "umoci_unpack");
    ratio("list_vfs", "list_umoci");
    ratio("read_vfs", "read_umoci");
}

//! A hostile corpus through the real binary: every case exits 0 or with a clear error
//! (exit 1), never a panic or a signal; nothing is written outside the target directory;
//! the peak RSS of every `pkgload` run stays under 512 MiB, and under 64 MiB to unpack or
//! `cat` a single 2 GiB file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Output;

use common::{finish_layout, image_layout, peak_child_rss_kib, pkgload, sha256, write_blob};
use serde_json::json;

const RSS_LIMIT_KIB: i64 = 512 * 1024;

/// A tar entry written with raw header fields: the `tar` crate's builder refuses hostile
/// names, which is exactly what these tests need to write.
struct Raw<'a> {
    name: &'a [u8],
    kind: tar::EntryType,
    link: &'a [u8],
    data: &'a [u8],
    mode: u32,
}

fn raw(name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) -> Vec<u8> {
    raw_entry(&Raw {
        name,
        kind,
        link,
        data,
        mode: 0o644,
    })
}

fn raw_entry(e: &Raw<'_>) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        old.name[..e.name.len()].copy_from_slice(e.name);
        old.linkname[..e.link.len()].copy_from_slice(e.link);
    }
    h.set_mode(e.mode);
    h.set_size(e.data.len() as u64);
    h.set_entry_type(e.kind);
    h.set_mtime(0);
    if matches!(e.kind, tar::EntryType::Char | tar::EntryType::Block) {
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
    }
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(e.data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn tar_of(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = entries.concat();
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn plain(tar: Vec<u8>) -> (Vec<u8>, &'static str) {
    (tar, "application/vnd.oci.image.layer.v1.tar")
}

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("outside")).unwrap();
        Sandbox { dir }
    }
    fn path(&self, p: &str) -> std::path::PathBuf {
        self.dir.path().join(p)
    }
    /// Run pkgload; assert it exited 0 or 1 without a panic, under the memory limit.
    fn pkgload(&self, args: &[&str]) -> Output {
        let out = pkgload(&self.path("cache")).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{args:?}: exit {:?} (a signal?)\n{stderr}",
            out.status
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        if out.status.code() == Some(1) {
            assert!(
                stderr.starts_with("error: "),
                "{args:?}: unclear error: {stderr}"
            );
        }
        assert!(
            peak_child_rss_kib() < RSS_LIMIT_KIB,
            "{args:?}: memory over 512 MiB"
        );
        out
    }
    /// Nothing may appear next to the target.
    fn assert_outside_untouched(&self) {
        let outside: Vec<_> = std::fs::read_dir(self.path("outside")).unwrap().collect();
        assert!(
            outside.is_empty(),
            "something was written outside: {outside:?}"
        );
    }
}

/// Unpack an image made of `layers` into `target`, and list (when `list`) and read it
/// through the VFS.
fn unpack_case(name: &str, layers: Vec<(Vec<u8>, &'static str)>, list: bool) -> (Sandbox, Output) {
    let sandbox = Sandbox::new();
    let layout = sandbox.path("layout");
    image_layout(&layout, &layers, &[]);
    let reference = format!("oci:{}:v1", layout.display());
    let target = sandbox.path("target");
    let out = sandbox.pkgload(&["unpack", &reference, target.to_str().unwrap()]);
    if list {
        sandbox.pkgload(&["ls", "-R", "-l", &reference]);
    }
    sandbox.pkgload(&["cat", &reference, "/etc/passwd"]);
    sandbox.assert_outside_untouched();
    eprintln!("{name}: exit {:?}", out.status.code());
    (sandbox, out)
}

#[test]
fn hostile_archives() {
    use tar::EntryType::{Char, Directory, Fifo, Link, Regular, Symlink};
    let probe = Sandbox::new();
    let outside = probe.path("outside");
    let outside_abs = outside.to_str().unwrap().as_bytes().to_vec();
    drop(probe);

    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "dot-dot names",
            vec![
                raw(b"../../escape", Regular, b"", b"x"),
                raw(b"a/../../b", Regular, b"", b"x"),
            ],
        ),
        (
            "absolute names",
            vec![raw(b"/etc/passwd", Regular, b"", b"root")],
        ),
        (
            "symlink escape then write through",
            vec![
                raw(b"evil", Symlink, &outside_abs, b""),
                raw(b"evil/pwned", Regular, b"", b"gotcha"),
                raw(b"rel", Symlink, b"../../../../../../outside", b""),
                raw(b"rel/pwned2", Regular, b"", b"gotcha"),
            ],
        ),
        (
            "hardlink escapes",
            vec![
                raw(b"h1", Link, b"../../etc/passwd", b""),
                raw(b"s", Symlink, b"/etc", b""),
                raw(b"h2", Link, b"s/passwd", b""),
            ],
        ),
        ("bare whiteout", vec![raw(b"dir/.wh.", Regular, b"", b"")]),
        (
            "whiteout with dot-dot",
            vec![
                raw(b".wh...", Regular, b"", b""),
                raw(b"x/.wh.../y", Regular, b"", b""),
            ],
        ),
        (
            "duplicate entries",
            vec![
                raw(b"etc/", Directory, b"", b""),
                raw(b"etc/passwd", Regular, b"", b"first"),
                raw(b"etc/passwd", Regular, b"", b"second"),
                raw(b"etc/passwd", Directory, b"", b""),
            ],
        ),
        (
            "device nodes",
            vec![
                raw(b"dev/null", Char, b"", b""),
                raw(b"fifo", Fifo, b"", b""),
            ],
        ),
        (
            "symlink loop",
            vec![
                raw(b"etc", Symlink, b"loop", b""),
                raw(b"loop", Symlink, b"etc", b""),
                raw(b"self", Symlink, b"self", b""),
            ],
        ),
    ];
    for (name, entries) in cases {
        let (sandbox, out) = unpack_case(name, vec![plain(tar_of(&entries))], true);
        // Whatever got written stayed in the target (checked above); an exit 1 explained
        // itself. Spot checks on what must not exist:
        assert!(
            !sandbox.path("escape").exists() && !sandbox.path("b").exists(),
            "{name}"
        );
        let _ = out;
    }

    // 3,000 nested directories (long GNU names): no stack overflow anywhere.
    let mut deep = tar::Builder::new(Vec::new());
    let mut path = String::new();
    for _ in 0..3000 {
        path.push_str("d/");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(Directory);
        h.set_mode(0o755);
        h.set_size(0);
        deep.append_data(&mut h, &path, std::io::empty()).unwrap();
    }
    // Not listed recursively: every lookup re-resolves its path from `/`, so a full `ls -R`
    // of 3,000 levels is quadratic in depth per directory (seconds in a release build,
    // minutes in a debug one). Bounded, but slow: see docs/ARCHITECTURE.md, known gaps.
    let (_s, out) = unpack_case(
        "3000 nested directories",
        vec![plain(deep.into_inner().unwrap())],
        false,
    );
    assert!(matches!(out.status.code(), Some(0 | 1)));

    // A gzip bomb: 16 gzip members of 64 MiB of zeros each (1 GiB) in a ~1 MiB blob, with
    // the layer limit at 256 MiB.
    let zeros = vec![0u8; 64 << 20];
    let member = {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&zeros).unwrap();
        enc.finish().unwrap()
    };
    let bomb: Vec<u8> = std::iter::repeat_n(member.as_slice(), 16)
        .flatten()
        .copied()
        .collect();
    assert!(bomb.len() < 2 << 20);
    let sandbox = Sandbox::new();
    let layout = sandbox.path("layout");
    image_layout(
        &layout,
        &[(bomb, "application/vnd.oci.image.layer.v1.tar+gzip")],
        &[],
    );
    let reference = format!("oci:{}:v1", layout.display());
    let out = sandbox.pkgload(&["--max-layer-size", "256M", "load", &reference]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("decompresses to more than"), "{stderr}");
    let cached = dir_size(&sandbox.path("cache"));
    assert!(
        cached < 300 << 20,
        "the bomb left {cached} bytes in the cache"
    );
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

#[test]
fn hostile_manifests_and_configs() {
    let sandbox = Sandbox::new();
    // A package config with an unknown alias, and one with a mount path climbing out.
    for (name, config, expected) in [
        (
            "unknown-alias",
            json!({"schemaVersion": 1, "name": "acme/bad", "version": "1.0.0",
                   "commands": {"run": {"runner": "wasi", "atom": "x", "dependency": "nope"}}}),
            "nope",
        ),
        (
            "dotdot-mount",
            json!({"schemaVersion": 1, "name": "acme/bad", "version": "1.0.0",
                   "fs": [{"volume": "v", "mount": "/../../x"}]}),
            "/../../x",
        ),
    ] {
        let layout = sandbox.path(name);
        let config = serde_json::to_vec(&config).unwrap();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.pkgload.package.v1",
            "config": {"mediaType": "application/vnd.pkgload.package.config.v1+json",
                       "digest": write_blob(&layout, &config), "size": config.len()},
            "layers": [],
        }))
        .unwrap();
        finish_layout(&layout, &manifest, Some("v1"));
        let out = sandbox.pkgload(&["load", &format!("oci:{}:v1", layout.display())]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(expected) && stderr.contains("acme/bad"),
            "{name}: {stderr}"
        );
    }

    // A manifest over 4 MiB.
    let layout = sandbox.path("huge");
    let mut manifest = Vec::new();
    write!(manifest, r#"{{"schemaVersion":2,"annotations":{{"pad":""#).unwrap();
    manifest.extend(std::iter::repeat_n(b'x', 5 << 20));
    write!(manifest, r#""}},"layers":[]}}"#).unwrap();
    finish_layout(&layout, &manifest, Some("v1"));
    let out = sandbox.pkgload(&["load", &format!("oci:{}:v1", layout.display())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("limit"), "{stderr}");
    assert_eq!(sha256(b"").len(), 71);
    sandbox.assert_outside_untouched();
}

/// Peak RSS allowed to unpack or `cat` a 2 GiB file: memory must not grow with file size.
const LARGE_FILE_RSS_LIMIT_KIB: i64 = 64 * 1024;

#[test]
fn a_two_gib_file_unpacks_and_cats_in_bounded_memory() {
    const SIZE: u64 = 2 << 30;
    const MIB: usize = 1 << 20;
    let zeros = vec![0u8; MIB];
    // The layer as gzip members: the header, then 2,048 members of 1 MiB of zeros (the same
    // bytes each time), then the end of the archive: ~2 MiB, written in no time.
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(SIZE);
    h.set_mtime(0);
    h.set_path("big.bin").unwrap();
    h.set_cksum();
    let zero_member = {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&zeros).unwrap();
        enc.finish().unwrap()
    };
    let mut layer = common::gzip(h.as_bytes());
    let mut diff_id = cache_core::Hasher::new(cache_core::Algorithm::Sha256);
    diff_id.update(h.as_bytes());
    for _ in 0..SIZE / MIB as u64 {
        layer.extend_from_slice(&zero_member);
        diff_id.update(&zeros);
    }
    layer.extend_from_slice(&common::gzip(&[0u8; 1024]));
    diff_id.update(&[0u8; 1024]);
    assert!(layer.len() < 4 << 20, "{}", layer.len());

    let sandbox = Sandbox::new();
    let layout = sandbox.path("layout");
    image_layout(
        &layout,
        &[(layer, "application/vnd.oci.image.layer.v1.tar+gzip")],
        &[diff_id.finalize().to_string()],
    );
    let reference = format!("oci:{}:v1", layout.display());

    // The layer limit still refuses it.
    let out = sandbox.pkgload(&["--max-layer-size", "1G", "unpack", &reference, "refused"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("decompresses to more than"), "{stderr}");

    // Unpack: cold, so this run also decompresses and indexes the layer.
    let target = sandbox.path("target");
    let (out, rss) = common::run_measured(
        pkgload(&sandbox.path("cache"))
            .args(["--max-layer-size", "3G", "unpack", &reference])
            .arg(&target)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("unpack peak RSS: {} MiB", rss / 1024);
    assert!(
        rss < LARGE_FILE_RSS_LIMIT_KIB,
        "unpack peaked at {} MiB",
        rss / 1024
    );
    assert_all_zeros(
        &mut std::fs::File::open(target.join("big.bin")).unwrap(),
        SIZE,
    );

    // Cat, into a file (not this process's memory).
    let cat_out = sandbox.path("cat.out");
    let (out, rss) = common::run_measured(
        pkgload(&sandbox.path("cache"))
            .args(["--max-layer-size", "3G", "cat", &reference, "/big.bin"])
            .stdout(std::fs::File::create(&cat_out).unwrap())
            .stderr(std::process::Stdio::piped()),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("cat peak RSS: {} MiB", rss / 1024);
    assert!(
        rss < LARGE_FILE_RSS_LIMIT_KIB,
        "cat peaked at {} MiB",
        rss / 1024
    );
    assert_all_zeros(&mut std::fs::File::open(&cat_out).unwrap(), SIZE);
    sandbox.assert_outside_untouched();
}

/// The file holds exactly `len` zero bytes (compared a chunk at a time with `memcmp`).
fn assert_all_zeros(file: &mut std::fs::File, len: u64) {
    use std::io::Read;
    assert_eq!(file.metadata().unwrap().len(), len);
    let zeros = vec![0u8; 1 << 20];
    let mut buf = vec![0u8; 1 << 20];
    let mut seen = 0u64;
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert!(buf[..n] == zeros[..n], "a non-zero byte near offset {seen}");
        seen += n as u64;
    }
    assert_eq!(seen, len);
}

//! Helpers shared by the binary's integration tests: running `pkgload`, building OCI
//! image layouts from tar entries, and snapshotting a real directory tree.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

pub fn sha256(data: &[u8]) -> String {
    cache_core::Algorithm::Sha256.digest(data).to_string()
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn pkgload(cache: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pkgload"));
    c.arg("--cache-dir")
        .arg(cache)
        .env_remove("RUST_LOG")
        // The developer's Docker config (and its credential helpers) stays out of tests.
        .env("DOCKER_CONFIG", cache.join("no-docker-config"))
        // Nor does the machine's host configuration (mirrors, CAs).
        .env("PKGLOAD_HOSTS_DIR", cache.join("no-hosts-dir"));
    c
}

pub enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, &'a [u8]),
    Link(&'a str, &'a str),
    Hard(&'a str, &'a str),
}

pub fn layer(entries: &[E<'_>]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        match e {
            E::Dir(p, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                tar.append_data(&mut h, p, std::io::empty()).unwrap();
            }
            E::File(p, mode, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                tar.append_data(&mut h, p, *data).unwrap();
            }
            E::Link(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                tar.append_link(&mut h, p, target).unwrap();
            }
            E::Hard(p, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_size(0);
                tar.append_link(&mut h, p, target).unwrap();
            }
        }
    }
    tar.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

pub fn write_blob(layout: &Path, data: &[u8]) -> String {
    let digest = sha256(data);
    let hex = digest.trim_start_matches("sha256:");
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(hex), data).unwrap();
    digest
}

/// An OCI layout holding one image tagged `v1`, built from tar layers (gzip-compressed).
pub fn gzip_layout(dir: &Path, layers: &[Vec<u8>]) {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    let blobs: Vec<(Vec<u8>, &str)> = layers
        .iter()
        .map(|l| (gzip(l), "application/vnd.oci.image.layer.v1.tar+gzip"))
        .collect();
    image_layout(dir, &blobs, &diff_ids);
}

/// An OCI layout holding one image tagged `v1` whose layers are the given blobs, already
/// encoded, with their media types; `diff_ids` go into the image config as they are.
pub fn image_layout(dir: &Path, layers: &[(Vec<u8>, &str)], diff_ids: &[String]) {
    let layers: Vec<AnnotatedLayer<'_>> = layers
        .iter()
        .map(|(blob, media)| (blob.clone(), *media, Vec::new()))
        .collect();
    annotated_layout(dir, &layers, diff_ids);
}

/// A layer blob, its media type and its annotations.
pub type AnnotatedLayer<'a> = (Vec<u8>, &'a str, Vec<(String, String)>);

/// [`image_layout`] with annotations on the layers' descriptors.
pub fn annotated_layout(dir: &Path, layers: &[AnnotatedLayer<'_>], diff_ids: &[String]) {
    let descriptors: Vec<Value> = layers
        .iter()
        .map(|(blob, media, annotations)| {
            let mut d =
                json!({"mediaType": media, "digest": write_blob(dir, blob), "size": blob.len()});
            if !annotations.is_empty() {
                let annotations: serde_json::Map<String, Value> = annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                    .collect();
                d["annotations"] = Value::Object(annotations);
            }
            d
        })
        .collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": write_blob(dir, &config),
            "size": config.len(),
        },
        "layers": descriptors,
    }))
    .unwrap();
    finish_layout(dir, &manifest, Some("v1"));
}

/// Make `dir` an OCI layout whose only manifest is `manifest` (tagged `tag` when given):
/// the `oci-layout` marker, the manifest as a blob, and `index.json`.
pub fn finish_layout(dir: &Path, manifest: &[u8], tag: Option<&str>) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut entry = json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": write_blob(dir, manifest),
        "size": manifest.len(),
    });
    if let Some(tag) = tag {
        entry["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Path → (type, permission bits, size, content digest or link target) of a real tree.
pub fn snapshot(root: &Path) -> BTreeMap<String, (char, u32, u64, String)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let mode = meta.permissions().mode() & 0o7777;
            let entry = if meta.is_dir() {
                stack.push(path.clone());
                ('d', mode, 0, String::new())
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                ('l', 0, 0, target.display().to_string())
            } else {
                (
                    'f',
                    mode,
                    meta.size(),
                    sha256(&std::fs::read(&path).unwrap()),
                )
            };
            out.insert(rel, entry);
        }
    }
    out
}

/// Where two [`snapshot`]s differ, one line per path ("umoci" is the reference tree).
pub fn differences(
    theirs: &BTreeMap<String, (char, u32, u64, String)>,
    mine: &BTreeMap<String, (char, u32, u64, String)>,
) -> Vec<String> {
    theirs
        .keys()
        .chain(mine.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| theirs.get(*k) != mine.get(*k))
        .map(|k| format!("{k}: umoci {:?}, pkgload {:?}", theirs.get(k), mine.get(k)))
        .collect()
}

/// Runs `cmd` to the end, capturing what `Stdio` it was not given, and returns its output
/// with its own peak RSS in KiB (`wait4`), unaffected by other tests of the same process.
// The child is reaped by `wait4` below, which std's `Child` cannot see.
#[allow(clippy::zombie_processes)]
pub fn run_measured(cmd: &mut Command) -> (Output, i64) {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt as _;
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut data = Vec::new();
            if let Some(mut pipe) = pipe {
                pipe.read_to_end(&mut data).unwrap();
            }
            data
        })
    };
    let stdout = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let pid = i32::try_from(child.id()).unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; writes only into the two values we own.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid);
    let output = Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    (output, usage.ru_maxrss)
}

/// The largest peak RSS of any child this test process has waited for, in KiB.
pub fn peak_child_rss_kib() -> i64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes into the struct we own.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0);
    usage.ru_maxrss
}

/// `name@version` of each package a `--json` answer lists, in its order.
pub fn package_names(json: &serde_json::Value) -> Vec<String> {
    json["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}@{}",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap()
            )
        })
        .collect()
}

/// Asserts that `pkgload cache verify` finds every blob in `cache` whole and named right.
pub fn verify_clean(cache: &Path) {
    let out = pkgload(cache).args(["cache", "verify"]).output().unwrap();
    assert!(
        out.status.success(),
        "cache verify found damage:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `wasm` under Node's WASI (`node:wasi`) with `args` (the first is the program's
/// name) and `root` preopened as `/`, as preview0 (`wasi_unstable`, what older packages
/// such as Wasmer's cowsay import) or preview1; asserts it succeeded and returns its
/// stdout. `tag` names the run's files under `work` and its failure.
pub fn run_wasi(work: &Path, tag: &str, wasm: &[u8], root: &Path, args: &[&str]) -> String {
    const RUNNER: &str = r#"
const { readFileSync } = require('node:fs');
const { WASI } = require('node:wasi');
const [wasmPath, root, ...args] = process.argv.slice(2);
const compiled = new WebAssembly.Module(readFileSync(wasmPath));
const unstable = WebAssembly.Module.imports(compiled).some((i) => i.module === 'wasi_unstable');
const version = unstable ? 'unstable' : 'preview1';
const wasi = new WASI({ version, args, env: {}, preopens: { '/': root }, returnOnExit: true });
const instance = new WebAssembly.Instance(compiled, wasi.getImportObject());
process.exitCode = wasi.start(instance);
"#;
    let module = work.join(format!("{tag}.wasm"));
    std::fs::write(&module, wasm).unwrap();
    let runner = work.join("run-wasi.cjs");
    std::fs::write(&runner, RUNNER).unwrap();
    let out = Command::new("node")
        .arg(&runner)
        .arg(&module)
        .arg(root)
        .args(args)
        .output()
        .expect("node (cargo xtask test installs nodejs)");
    assert!(
        out.status.success(),
        "{tag}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

//! The correctness oracle for layer stacking: images built here are unpacked by the real
//! `umoci unpack --rootless`, and its `rootfs` must equal what `open_image_layers` serves,
//! path for path (type, permission bits, size, content, symlink target).
//!
//! Each image is also written out with [`materialize`], and that directory must equal
//! umoci's rootfs the same way (and link the same names together).
//!
//! `umoci` must be installed (`cargo xtask test` installs it; so does
//! `apt-get install umoci`): without it these tests fail, they never skip.
//!
//! Where the oracle and the OCI spec's wording could be read differently, umoci wins; the
//! cases found so far are noted at the tests that exercise them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cache_core::{Algorithm, Begin, Digest, Store};
use serde_json::json;
use tar::{Builder, EntryType, Header};
use vfs_overlay::{
    FileSystem, FileType, LayerError, LayerLimits, LayerSpec, MaterializeOptions, VfsError,
    VfsPath, materialize, open_image_layers,
};

const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const MTIME: u64 = 1_600_000_000;

fn sha256(data: &[u8]) -> Digest {
    Algorithm::Sha256.digest(data)
}

/// One layer's tar, entries in exactly the order they are added.
struct Layer(Builder<Vec<u8>>);

impl Layer {
    fn new() -> Self {
        Layer(Builder::new(Vec::new()))
    }

    fn header(kind: EntryType, mode: u32, size: u64) -> Header {
        let mut h = Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(MTIME);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = Self::header(EntryType::Directory, mode, 0);
        self.0
            .append_data(&mut h, format!("{path}/"), &[][..])
            .unwrap();
        self
    }

    fn file(mut self, path: &str, body: &[u8], mode: u32) -> Self {
        let mut h = Self::header(EntryType::Regular, mode, body.len() as u64);
        self.0.append_data(&mut h, path, body).unwrap();
        self
    }

    /// A file whose name travels in a PAX `path` record (the ustar name is a stand-in).
    fn pax_file(mut self, path: &str, body: &[u8], mode: u32) -> Self {
        self.0
            .append_pax_extensions([("path", path.as_bytes())])
            .unwrap();
        let mut h = Self::header(EntryType::Regular, mode, body.len() as u64);
        h.set_path("pax-placeholder").unwrap();
        h.set_cksum();
        self.0.append(&h, body).unwrap();
        self
    }

    fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(EntryType::Symlink, 0o777, 0);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(EntryType::Link, 0o644, 0);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    fn whiteout(self, path: &str) -> Self {
        self.file(path, b"", 0o644)
    }

    fn finish(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn compress(tar: &[u8], media_type: &str) -> Vec<u8> {
    match media_type {
        GZIP => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        ZSTD => zstd::encode_all(tar, 1).unwrap(),
        _ => tar.to_vec(),
    }
}

/// An OCI image layout on disk (for umoci) and the same blobs in a store (for the VFS).
struct Image {
    _dir: tempfile::TempDir,
    layout: PathBuf,
    bundle: PathBuf,
    store: Store,
    specs: Vec<LayerSpec>,
}

const TAG: &str = "test";

fn write_blob(layout: &Path, data: &[u8]) -> (Digest, u64) {
    let digest = sha256(data);
    let path = layout.join("blobs/sha256").join(digest.hex());
    std::fs::write(path, data).unwrap();
    (digest, data.len() as u64)
}

async fn put(store: &Store, data: &[u8]) {
    let digest = sha256(data);
    if let Begin::Write(mut ingest) = store.begin(digest, Some(data.len() as u64)).await.unwrap() {
        ingest.write_all(data).await.unwrap();
        ingest.commit().await.unwrap();
    }
}

async fn build_image(layers: Vec<(Vec<u8>, &str)>) -> Image {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("image");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let store = Store::open(dir.path().join("store")).await.unwrap();
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    let mut specs = Vec::new();
    for (tar, media_type) in &layers {
        let blob = compress(tar, media_type);
        put(&store, &blob).await;
        let diff_id = sha256(tar);
        specs.push(LayerSpec::new(sha256(&blob), *media_type).with_diff_id(diff_id));
        // umoci 0.4.7 (Debian's) refuses zstd layers: it gets the same tar gzipped, which
        // is the same layer as far as the image's content (diff_ids) goes.
        let (umoci_type, umoci_blob) = if *media_type == ZSTD {
            (GZIP, compress(tar, GZIP))
        } else {
            (*media_type, blob)
        };
        let (digest, size) = write_blob(&layout, &umoci_blob);
        descriptors.push(json!({
            "mediaType": umoci_type, "digest": digest.to_string(), "size": size,
        }));
        diff_ids.push(diff_id.to_string());
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
    .unwrap();
    let (config_digest, config_size) = write_blob(&layout, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest.to_string(),
            "size": config_size,
        },
        "layers": descriptors,
    }))
    .unwrap();
    let (manifest_digest, manifest_size) = write_blob(&layout, &manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest.to_string(),
            "size": manifest_size,
            "annotations": { "org.opencontainers.image.ref.name": TAG },
        }],
    });
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
    let bundle = dir.path().join("bundle");
    Image {
        _dir: dir,
        layout,
        bundle,
        store,
        specs,
    }
}

/// `umoci unpack --rootless`; returns the rootfs. Panics (fails the test) when umoci is
/// missing or refuses the image.
fn umoci_unpack(layout: &Path, bundle: &Path) -> PathBuf {
    let out = Command::new("umoci")
        .arg("unpack")
        .arg("--rootless")
        .arg("--image")
        .arg(format!("{}:{TAG}", layout.display()))
        .arg(bundle)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `umoci` ({e}): it is the oracle for these tests; install it \
                 with `cargo xtask test` or `apt-get install umoci`"
            )
        });
    assert!(
        out.status.success(),
        "umoci unpack failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    bundle.join("rootfs")
}

/// What is compared for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    File {
        mode: u32,
        size: u64,
        sha256: String,
    },
    Dir {
        mode: u32,
    },
    /// Symlink permission bits mean nothing on Linux, so only the target is compared.
    Symlink {
        target: String,
    },
    Other,
}

type Tree = BTreeMap<String, Node>;

fn host_tree(root: &Path) -> (Tree, Vec<Vec<String>>) {
    let mut tree = Tree::new();
    let mut inodes: HashMap<(u64, u64), Vec<String>> = HashMap::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let path = entry.path();
            let vpath = format!("{rel}/{name}");
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let ft = meta.file_type();
            let node = if ft.is_dir() {
                stack.push((path.clone(), vpath.clone()));
                Node::Dir {
                    mode: meta.mode() & 0o7777,
                }
            } else if ft.is_symlink() {
                Node::Symlink {
                    target: std::fs::read_link(&path)
                        .unwrap()
                        .into_os_string()
                        .into_string()
                        .unwrap(),
                }
            } else if ft.is_file() {
                if meta.nlink() > 1 {
                    inodes
                        .entry((meta.dev(), meta.ino()))
                        .or_default()
                        .push(vpath.clone());
                }
                Node::File {
                    mode: meta.mode() & 0o7777,
                    size: meta.len(),
                    sha256: sha256(&std::fs::read(&path).unwrap()).hex(),
                }
            } else {
                Node::Other
            };
            tree.insert(vpath, node);
        }
    }
    let mut groups: Vec<Vec<String>> = inodes.into_values().collect();
    for g in &mut groups {
        g.sort();
    }
    groups.sort();
    (tree, groups)
}

fn vfs_tree(fs: &dyn FileSystem) -> Tree {
    let mut tree = Tree::new();
    let mut stack = vec![VfsPath::root()];
    while let Some(dir) = stack.pop() {
        for entry in fs.read_dir(&dir).unwrap() {
            let path = dir.join(&entry.name).unwrap();
            let meta = fs.symlink_metadata(&path).unwrap();
            let node = match meta.kind {
                FileType::Dir => {
                    stack.push(path.clone());
                    Node::Dir { mode: meta.mode }
                }
                FileType::Symlink => Node::Symlink {
                    target: fs.read_link(&path).unwrap(),
                },
                FileType::File => {
                    let data = fs.read_all(&path).unwrap();
                    assert_eq!(data.len() as u64, meta.size, "{path}: size vs content");
                    Node::File {
                        mode: meta.mode,
                        size: meta.size,
                        sha256: sha256(&data).hex(),
                    }
                }
                _ => Node::Other,
            };
            tree.insert(path.as_str().to_owned(), node);
        }
    }
    tree
}

/// Every disagreement between the oracle and the VFS, one line each.
fn differences(oracle: &Tree, ours: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    for (path, want) in oracle {
        match ours.get(path) {
            None => out.push(format!("{path}: umoci has {want:?}, the VFS has nothing")),
            Some(got) if got != want => {
                out.push(format!("{path}: umoci has {want:?}, the VFS has {got:?}"));
            }
            Some(_) => {}
        }
    }
    for (path, got) in ours {
        if !oracle.contains_key(path) {
            out.push(format!("{path}: umoci has nothing, the VFS has {got:?}"));
        }
    }
    out
}

/// Unpacks with umoci, opens with the VFS, and fails listing every difference.
async fn assert_same_as_umoci(image: &Image) -> (Tree, Vec<Vec<String>>) {
    let rootfs = umoci_unpack(&image.layout, &image.bundle);
    let (oracle, hardlinks) = host_tree(&rootfs);
    let fs = open_image_layers(&image.store, &image.specs, &LayerLimits::default())
        .await
        .unwrap();
    let ours = vfs_tree(&fs);
    let diffs = differences(&oracle, &ours);
    assert!(
        diffs.is_empty(),
        "{} differences between `umoci unpack` and the VFS:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    // Names umoci gives one inode must read the same content through the VFS too (the
    // trees already compared equal, so this checks umoci linked what the VFS shares).
    for group in &hardlinks {
        let first = &ours[&group[0]];
        for other in &group[1..] {
            assert_eq!(&ours[other], first, "hardlinks {group:?}");
        }
    }

    // The same tree written out by `materialize` must be umoci's too, hardlinks included.
    let out = image.bundle.with_file_name("materialized");
    materialize(&fs, &out, MaterializeOptions::default()).unwrap();
    let (written, written_links) = host_tree(&out);
    let diffs = differences(&oracle, &written);
    assert!(
        diffs.is_empty(),
        "{} differences between `umoci unpack` and `materialize` (\"the VFS\" below):\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    assert_eq!(
        written_links, hardlinks,
        "hardlink groups: materialize vs umoci"
    );
    (oracle, hardlinks)
}

fn long_names() -> (String, String) {
    let over_100 = format!("long/{}/file-over-100", "d".repeat(90));
    let over_255 = format!("long/{}/{}/file-over-255", "e".repeat(200), "f".repeat(120));
    assert!(over_100.len() > 100 && over_100.len() < 255);
    assert!(over_255.len() > 255);
    (over_100, over_255)
}

fn base_layer() -> Vec<u8> {
    let (over_100, over_255) = long_names();
    let mut l = Layer::new()
        .dir("etc", 0o755)
        .file("etc/conf", b"conf v1\n", 0o644)
        .file("etc/shadow", b"root:*:\n", 0o600)
        .dir("bin", 0o755)
        .file("bin/su", b"\x7fELF su", 0o4755)
        .file("bin/sg", b"\x7fELF sg", 0o2711)
        .dir("tmp", 0o1777)
        .dir("data", 0o750)
        .file("data/old", b"old data", 0o640)
        // Whiteouts in the next layer remove these.
        .dir("wh", 0o755)
        .file("wh/keep", b"keep", 0o644)
        .file("wh/drop", b"drop", 0o644)
        .dir("wh/dropdir", 0o755)
        .file("wh/dropdir/inner", b"inner", 0o644)
        // Made opaque by the next layer.
        .dir("opq", 0o755)
        .file("opq/a", b"a", 0o644)
        .dir("opq/sub", 0o755)
        .file("opq/sub/c", b"c", 0o644)
        // Whited out in layer 2, recreated in layer 3.
        .dir("gone", 0o700)
        .file("gone/x", b"x", 0o644)
        // Whited out and recreated by one layer.
        .dir("same", 0o755)
        .file("same/old", b"old", 0o644)
        // Type changes in the next layer.
        .file("file2dir", b"i was a file", 0o644)
        .dir("dir2file", 0o755)
        .file("dir2file/child", b"child", 0o644)
        .symlink("sym2dir", "etc")
        // Hardlinks: one whose target is replaced later, one left alone.
        .dir("hl", 0o755)
        .file("hl/target", b"content as of layer 1", 0o644)
        .hardlink("hl/link", "hl/target")
        .file("hl/stable", b"stable", 0o600)
        .hardlink("hl/stable-link", "hl/stable")
        // Symlink chains, relative and absolute, and one dangling.
        .dir("links", 0o755)
        .symlink("links/rel", "../etc/conf")
        .symlink("links/abs", "/etc/conf")
        .symlink("links/chain1", "chain2")
        .symlink("links/chain2", "/links/rel")
        .symlink("links/dir", "../data")
        .symlink("links/dangling", "/nowhere/at/all")
        .file(&over_100, b"a name over 100 bytes (GNU long name)", 0o644)
        .pax_file(&over_255, b"a name over 255 bytes (PAX path)", 0o644)
        .dir("many", 0o755);
    for i in 0..1000u32 {
        let body = format!("file number {i}\n").repeat((i % 7) as usize + 1);
        l = l.file(&format!("many/f{i:04}"), body.as_bytes(), 0o644);
    }
    l.finish()
}

fn middle_layer() -> Vec<u8> {
    Layer::new()
        // A directory over a directory takes the new attributes.
        .dir("etc", 0o700)
        .file("etc/conf", b"conf v2, longer than before\n", 0o640)
        // No entry for data/: an implied parent keeps the lower attributes.
        .file("data/new", b"new data", 0o644)
        .whiteout("wh/.wh.drop")
        .whiteout("wh/.wh.dropdir")
        // The opaque marker comes after a sibling the layer adds: that sibling stays.
        .file("opq/new", b"new in opaque dir", 0o644)
        .whiteout("opq/.wh..wh..opq")
        .whiteout(".wh.gone")
        .whiteout(".wh.same")
        .dir("same", 0o711)
        .file("same/new", b"recreated", 0o644)
        .dir("file2dir", 0o755)
        .file("file2dir/inner", b"now a directory", 0o644)
        .file("dir2file", b"now a file", 0o600)
        .dir("sym2dir", 0o755)
        .file("sym2dir/real", b"a real directory now", 0o644)
        .file("hl/target", b"replaced in layer 2", 0o644)
        .finish()
}

fn top_layer() -> Vec<u8> {
    Layer::new()
        .dir("gone", 0o755)
        .file("gone/y", b"y", 0o644)
        .symlink("links/chain2", "/etc/shadow")
        // Parents no entry describes, absent below: created 0755.
        .file("implied/deep/file", b"deep", 0o644)
        .file("bin/su", b"\x7fELF su v2", 0o4750)
        .finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stacked_layers_match_umoci_unpack() {
    let image = build_image(vec![
        (base_layer(), GZIP),
        (middle_layer(), GZIP),
        (top_layer(), TAR),
    ])
    .await;
    let (oracle, hardlinks) = assert_same_as_umoci(&image).await;

    // The comparison only means something if the cases really are in the image: spot-check
    // the oracle's own result.
    let file = |p: &str| match oracle.get(p) {
        Some(Node::File { sha256, .. }) => sha256.clone(),
        other => panic!("{p}: {other:?}"),
    };
    assert_eq!(file("/hl/link"), sha256(b"content as of layer 1").hex());
    assert_eq!(file("/hl/target"), sha256(b"replaced in layer 2").hex());
    assert!(
        hardlinks.contains(&vec!["/hl/stable".to_owned(), "/hl/stable-link".to_owned()]),
        "{hardlinks:?}"
    );
    assert_eq!(
        oracle.get("/bin/su"),
        Some(&Node::File {
            mode: 0o4750,
            size: 10,
            sha256: sha256(b"\x7fELF su v2").hex()
        })
    );
    assert_eq!(oracle.get("/etc"), Some(&Node::Dir { mode: 0o700 }));
    assert_eq!(oracle.get("/data"), Some(&Node::Dir { mode: 0o750 }));
    assert_eq!(oracle.get("/tmp"), Some(&Node::Dir { mode: 0o1777 }));
    for gone in [
        "/wh/drop",
        "/wh/dropdir",
        "/opq/a",
        "/opq/sub",
        "/gone/x",
        "/same/old",
    ] {
        assert!(!oracle.contains_key(gone), "{gone}");
    }
    for kept in [
        "/wh/keep",
        "/opq/new",
        "/gone/y",
        "/same/new",
        "/file2dir/inner",
    ] {
        assert!(oracle.contains_key(kept), "{kept}");
    }
    let (over_100, over_255) = long_names();
    assert!(oracle.contains_key(&format!("/{over_100}")));
    assert!(oracle.contains_key(&format!("/{over_255}")));
    assert_eq!(
        oracle.keys().filter(|p| p.starts_with("/many/")).count(),
        1000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_and_plain_layers_match_umoci_unpack() {
    let image = build_image(vec![
        (base_layer(), TAR),
        (middle_layer(), ZSTD),
        (top_layer(), GZIP),
    ])
    .await;
    assert_same_as_umoci(&image).await;
}

/// The opaque marker first, last and alone in its directory all hide the same lower
/// entries; whiteouts of names that never existed are harmless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_markers_anywhere_in_the_tar_match_umoci() {
    let lower = Layer::new()
        .dir("a", 0o755)
        .file("a/one", b"1", 0o644)
        .dir("a/deep", 0o755)
        .file("a/deep/two", b"2", 0o644)
        .dir("b", 0o755)
        .file("b/one", b"1", 0o644)
        .dir("c", 0o755)
        .file("c/one", b"1", 0o644)
        .finish();
    let upper = Layer::new()
        .dir("a", 0o755)
        .whiteout("a/.wh..wh..opq")
        .file("a/fresh", b"f", 0o644)
        .dir("b", 0o700)
        .file("b/fresh", b"f", 0o644)
        .dir("b/deep", 0o755)
        .file("b/deep/x", b"x", 0o644)
        .whiteout("b/.wh..wh..opq")
        .whiteout("c/.wh..wh..opq")
        .whiteout(".wh.never-existed")
        .finish();
    let image = build_image(vec![(lower, GZIP), (upper, GZIP)]).await;
    let (oracle, _) = assert_same_as_umoci(&image).await;
    assert!(oracle.contains_key("/b/deep/x"));
    assert!(oracle.contains_key("/c"));
    assert!(!oracle.contains_key("/c/one"));
}

/// A whiteout hides lower entries only, even when it comes after the same layer's new
/// entries of that name (umoci agrees with the OCI wording here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whiteouts_after_same_layer_entries_hide_only_lower_ones() {
    let lower = Layer::new()
        .dir("s", 0o755)
        .file("s/old", b"lower", 0o644)
        .file("f", b"lower", 0o644)
        .finish();
    let upper = Layer::new()
        .dir("s", 0o700)
        .file("s/new", b"upper", 0o644)
        .whiteout(".wh.s")
        .file("f", b"upper", 0o600)
        .whiteout(".wh.f")
        .finish();
    let image = build_image(vec![(lower, GZIP), (upper, ZSTD)]).await;
    let (oracle, _) = assert_same_as_umoci(&image).await;
    let names: Vec<&str> = oracle.keys().map(String::as_str).collect();
    assert_eq!(names, ["/f", "/s", "/s/new"]);
}

/// A bare `.wh.` names nothing: umoci fails on it (after removing the parent directory, so
/// its output is unusable), and the VFS refuses the image with a typed error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_whiteout_is_refused_by_both() {
    let lower = Layer::new()
        .dir("d", 0o755)
        .file("d/x", b"x", 0o644)
        .finish();
    let upper = Layer::new().whiteout("d/.wh.").finish();
    let image = build_image(vec![(lower, GZIP), (upper, GZIP)]).await;
    let out = Command::new("umoci")
        .arg("unpack")
        .arg("--rootless")
        .arg("--image")
        .arg(format!("{}:{TAG}", image.layout.display()))
        .arg(&image.bundle)
        .output()
        .expect("umoci is required; install it with `cargo xtask test` or apt-get");
    assert!(!out.status.success(), "umoci accepted a bare whiteout");
    let err = open_image_layers(&image.store, &image.specs, &LayerLimits::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LayerError::Overlay(VfsError::BadWhiteout(p)) if p.as_str() == "/d/.wh."),
        "{err}"
    );
}

/// A hardlink to a file of a *lower* layer: umoci links whatever the rootfs holds at that
/// name, and so does the overlay (the layer's index leaves the target to it). Also a link
/// to such a link, a link in a directory the layer creates, and a link whose target the
/// same layer deletes afterwards (the link keeps the file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardlinks_into_lower_layers_match_umoci() {
    let lower = Layer::new()
        .dir("bin", 0o755)
        .file("bin/tool", b"the lower tool", 0o755)
        .file("app.conf", b"conf", 0o600)
        .finish();
    let middle = Layer::new().hardlink("bin/alias", "bin/tool").finish();
    let upper = Layer::new()
        .dir("opt", 0o750)
        .hardlink("opt/again", "bin/alias")
        .hardlink("conf-link", "app.conf")
        .whiteout(".wh.app.conf")
        .finish();
    let image = build_image(vec![(lower, GZIP), (middle, ZSTD), (upper, GZIP)]).await;
    let (oracle, hardlinks) = assert_same_as_umoci(&image).await;
    assert_eq!(hardlinks, [["/bin/alias", "/bin/tool", "/opt/again"]]);
    assert!(oracle.contains_key("/conf-link") && !oracle.contains_key("/app.conf"));
}

/// A link into the layers below that names nothing there, or a directory, is refused with
/// both paths named (umoci fails on such a layer too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hardlink_to_nothing_below_is_refused() {
    for (target, reason) in [("missing", "does not exist"), ("d", "is a directory")] {
        let lower = Layer::new().dir("d", 0o755).finish();
        let upper = Layer::new().hardlink("cross", target).finish();
        let image = build_image(vec![(lower, GZIP), (upper, GZIP)]).await;
        let err = open_image_layers(&image.store, &image.specs, &LayerLimits::default())
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(&err, LayerError::Overlay(VfsError::BadLowerHardlink { .. })),
            "{msg}"
        );
        assert!(
            msg.contains("/cross") && msg.contains(&format!("/{target}")) && msg.contains(reason),
            "{msg}"
        );
    }
}

/// The harness itself: a VFS missing the top layer must be reported, path by path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_comparison_reports_each_difference() {
    let image = build_image(vec![
        (base_layer(), GZIP),
        (middle_layer(), GZIP),
        (top_layer(), TAR),
    ])
    .await;
    let (oracle, _) = host_tree(&umoci_unpack(&image.layout, &image.bundle));
    let fs = open_image_layers(&image.store, &image.specs[..2], &LayerLimits::default())
        .await
        .unwrap();
    let diffs = differences(&oracle, &vfs_tree(&fs));
    let has = |needle: &str| diffs.iter().any(|d| d.starts_with(needle));
    assert!(
        has("/gone: umoci has Dir { mode: 493 }, the VFS has nothing"),
        "{diffs:#?}"
    );
    assert!(has("/links/chain2: umoci has Symlink"), "{diffs:#?}");
    assert!(has("/bin/su: umoci has File { mode: 2536"), "{diffs:#?}");
    assert!(has("/implied/deep/file: umoci has"), "{diffs:#?}");
}

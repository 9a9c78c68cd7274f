//! `TarVolume`: tars built here with `tar::Builder` (and raw headers for hostile names),
//! read back through the `FileSystem` API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::{names, p};
use tar::{Builder, EntryType, Header};
use vfs_overlay::{
    FileSystem, FileType, MountPolicy, Overlay, SubFs, TarEntryKind, TarError, TarIndex, TarVolume,
    Union, VfsError,
};

const MTIME: u64 = 1_700_000_000;

fn header(kind: EntryType, size: u64, mode: u32) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(MTIME);
    h.set_uid(1000);
    h.set_gid(100);
    h
}

struct Tar(Builder<Vec<u8>>);

impl Tar {
    fn new() -> Self {
        Tar(Builder::new(Vec::new()))
    }
    fn file(mut self, path: &str, data: &[u8], mode: u32) -> Self {
        let mut h = header(EntryType::Regular, data.len() as u64, mode);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }
    fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = header(EntryType::Directory, 0, mode);
        self.0.append_data(&mut h, path, &[][..]).unwrap();
        self
    }
    fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(EntryType::Symlink, 0, 0o777);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }
    fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(EntryType::Link, 0, 0o644);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }
    /// An entry whose name (and link name) bytes go straight into the header, bypassing
    /// the builder's checks.
    fn raw(mut self, kind: EntryType, name: &[u8], link: &[u8], data: &[u8]) -> Self {
        let mut h = Header::new_old();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(MTIME);
        h.set_uid(0);
        h.set_gid(0);
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }
    fn pax(mut self, kv: &[(&str, &[u8])]) -> Self {
        self.0.append_pax_extensions(kv.iter().copied()).unwrap();
        self
    }
    fn bytes(self) -> Bytes {
        Bytes::from(self.0.into_inner().unwrap())
    }
    fn volume(self) -> TarVolume {
        TarVolume::new(self.bytes()).unwrap()
    }
}

fn sample() -> Tar {
    Tar::new()
        .dir("etc", 0o755)
        .file("etc/passwd", b"root:x:0:0\n", 0o644)
        .file("etc/shadow", b"secret", 0o600)
        .file("usr/bin/su", b"\x7fELF su", 0o4755)
        .symlink("bin", "usr/bin")
        .symlink("usr/bin/sh", "/usr/bin/busybox")
        .file("usr/bin/busybox", b"\x7fELF busybox", 0o755)
        .hardlink("usr/bin/ls", "usr/bin/busybox")
        .symlink("etc/abs", "/etc/passwd")
        .symlink("etc/rel", "../etc/passwd")
}

#[test]
fn files_dirs_and_attributes() {
    let v = sample().volume();
    assert_eq!(names(&v, "/"), ["bin", "etc", "usr"]);
    assert_eq!(names(&v, "/etc"), ["abs", "passwd", "rel", "shadow"]);
    assert_eq!(names(&v, "/usr/bin"), ["busybox", "ls", "sh", "su"]);

    let m = v.metadata(&p("/etc/shadow")).unwrap();
    assert_eq!(
        (m.kind, m.mode, m.uid, m.gid, m.size),
        (FileType::File, 0o600, 1000, 100, 6)
    );
    assert_eq!(m.mtime, SystemTime::UNIX_EPOCH + Duration::from_secs(MTIME));
    assert_eq!(v.metadata(&p("/usr/bin/su")).unwrap().mode, 0o4755);

    // `usr` and `usr/bin` have no entry of their own: implied, 0755.
    let usr = v.metadata(&p("/usr")).unwrap();
    assert_eq!((usr.kind, usr.mode, usr.uid), (FileType::Dir, 0o755, 0));
    assert_eq!(usr.nlink, 3);
    assert_eq!(v.metadata(&p("/etc")).unwrap().uid, 1000);

    assert_eq!(v.read_all(&p("/etc/passwd")).unwrap(), "root:x:0:0\n");
    assert!(matches!(
        v.read_all(&p("/etc")),
        Err(VfsError::IsADirectory(_))
    ));
    assert!(matches!(
        v.read_dir(&p("/etc/passwd")),
        Err(VfsError::NotADirectory(_))
    ));
    assert!(matches!(
        v.metadata(&p("/nope")),
        Err(VfsError::NotFound(_))
    ));
    assert!(matches!(
        v.write_file(&p("/etc/passwd"), Bytes::new()),
        Err(VfsError::ReadOnly(_))
    ));
}

#[test]
fn reads_are_slices_of_the_tar() {
    let v = sample().volume();
    let data = v.data().clone();
    let file = v.read_all(&p("/usr/bin/busybox")).unwrap();
    let base = data.as_ptr() as usize;
    let at = file.as_ptr() as usize;
    assert!(at >= base && at + file.len() <= base + data.len());
    let mut s = String::new();
    std::io::Read::read_to_string(&mut v.open(&p("/etc/passwd")).unwrap(), &mut s).unwrap();
    assert_eq!(s, "root:x:0:0\n");
}

#[test]
fn symlinks_resolve_inside_the_volume() {
    let v = sample().volume();
    assert_eq!(v.read_link(&p("/bin")).unwrap(), "usr/bin");
    assert_eq!(v.read_link(&p("/etc/rel")).unwrap(), "../etc/passwd");
    assert!(v.symlink_metadata(&p("/bin")).unwrap().is_symlink());
    assert_eq!(v.symlink_metadata(&p("/bin")).unwrap().size, 7);
    assert!(v.metadata(&p("/bin")).unwrap().is_dir());
    assert_eq!(v.read_all(&p("/bin/sh")).unwrap(), "\x7fELF busybox");
    assert_eq!(v.read_all(&p("/etc/abs")).unwrap(), "root:x:0:0\n");
    assert_eq!(v.read_all(&p("/etc/rel")).unwrap(), "root:x:0:0\n");
    assert_eq!(
        v.canonicalize(&p("/bin/sh")).unwrap(),
        p("/usr/bin/busybox")
    );
    assert!(matches!(
        v.read_link(&p("/etc/passwd")),
        Err(VfsError::NotASymlink(_))
    ));
}

#[test]
fn hardlinks_share_the_targets_data() {
    let v = sample().volume();
    let a = v.read_all(&p("/usr/bin/busybox")).unwrap();
    let b = v.read_all(&p("/usr/bin/ls")).unwrap();
    assert_eq!(a.as_ptr(), b.as_ptr());
    let m = v.metadata(&p("/usr/bin/ls")).unwrap();
    assert_eq!((m.kind, m.mode, m.nlink), (FileType::File, 0o755, 2));
    assert_eq!(v.metadata(&p("/etc/passwd")).unwrap().nlink, 1);
    let e = v.index().get(&p("/usr/bin/ls")).unwrap();
    assert_eq!(e.kind, TarEntryKind::Hardlink);
    assert_eq!(e.link.as_deref(), Some("/usr/bin/busybox"));
}

#[test]
fn hardlink_to_a_symlink_is_a_symlink() {
    let v = Tar::new()
        .symlink("out", "../../etc/passwd")
        .hardlink("out2", "out")
        .volume();
    assert_eq!(v.read_link(&p("/out2")).unwrap(), "../../etc/passwd");
    // Resolved inside the volume: there is no /etc/passwd in it.
    assert!(matches!(
        v.read_all(&p("/out2")),
        Err(VfsError::NotFound(_))
    ));
}

#[test]
fn long_names_gnu_and_pax() {
    let long_dir = "d".repeat(120);
    let long = format!("{long_dir}/{}", "f".repeat(150));
    let pax_name = format!("pax/{}", "p".repeat(200));
    let pax_target = format!("/{}", "t".repeat(180));
    let v = Tar::new()
        // GNU long name and long link name through the builder.
        .file(&long, b"gnu", 0o644)
        .symlink("gnulink", &format!("/{long}"))
        .hardlink("gnuhard", &long)
        // PAX path / linkpath overriding short header names.
        .pax(&[("path", pax_name.as_bytes())])
        .file("short", b"pax", 0o644)
        .pax(&[("linkpath", pax_target.as_bytes())])
        .symlink("paxlink", "x")
        .volume();
    assert_eq!(v.read_all(&p(&long)).unwrap(), "gnu");
    assert_eq!(v.read_all(&p("/gnulink")).unwrap(), "gnu");
    assert_eq!(v.read_all(&p("/gnuhard")).unwrap(), "gnu");
    assert_eq!(v.read_all(&p(&pax_name)).unwrap(), "pax");
    assert!(!v.exists(&p("/short")));
    assert_eq!(v.read_link(&p("/paxlink")).unwrap(), pax_target);
}

#[test]
fn pax_overrides_owner_and_mtime() {
    let v = Tar::new()
        .pax(&[
            ("uid", b"3000000000"),
            ("gid", b"5000000000"),
            ("mtime", b"1800000000.75"),
        ])
        .file("big-ids", b"x", 0o640)
        .pax(&[("mtime", b"-5"), ("uid", b"not a number")])
        .file("old", b"y", 0o644)
        .volume();
    let m = v.metadata(&p("/big-ids")).unwrap();
    assert_eq!((m.uid, m.gid, m.mode), (3_000_000_000, u32::MAX, 0o640));
    assert_eq!(
        m.mtime,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    );
    let m = v.metadata(&p("/old")).unwrap();
    assert_eq!((m.uid, m.mtime), (1000, SystemTime::UNIX_EPOCH));
}

#[test]
fn empty_numeric_fields_read_as_zero() {
    let mut t = Tar::new();
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_size(2);
    h.set_mode(0o644);
    // uid, gid and mtime left all NUL, as `Header::new_gnu` makes them.
    t.0.append_data(&mut h, "f", &b"ok"[..]).unwrap();
    let v = t.volume();
    let m = v.metadata(&p("/f")).unwrap();
    assert_eq!((m.uid, m.gid, m.mtime), (0, 0, SystemTime::UNIX_EPOCH));
    // A field with garbage in it is an error.
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_size(0);
    h.set_mode(0o644);
    h.as_old_mut().uid.copy_from_slice(b"zz\0\0\0\0\0\0");
    let mut t = Tar::new();
    t.0.append_data(&mut h, "g", &b""[..]).unwrap();
    assert!(matches!(
        TarVolume::new(t.bytes()),
        Err(TarError::Malformed { .. })
    ));
}

#[test]
fn thousand_files() {
    let mut t = Tar::new().dir("many", 0o755);
    for i in 0..1000 {
        t = t.file(&format!("many/f{i:04}"), format!("{i}").as_bytes(), 0o644);
    }
    let v = t.volume();
    let list = names(&v, "/many");
    assert_eq!(list.len(), 1000);
    assert!(list.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(v.read_all(&p("/many/f0999")).unwrap(), "999");
    assert_eq!(v.index().len(), 1002);
    assert_eq!(v.index().content_bytes(), (10 + 90 * 2 + 900 * 3) as u64);
}

#[test]
fn devices_and_fifos_are_listed_not_read() {
    let mut t = Tar::new();
    let mut h = header(EntryType::Char, 0, 0o666);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    t.0.append_data(&mut h, "dev/null", &[][..]).unwrap();
    let mut h = header(EntryType::Fifo, 0, 0o600);
    t.0.append_data(&mut h, "fifo", &[][..]).unwrap();
    let v = t.volume();
    assert_eq!(
        v.symlink_metadata(&p("/dev/null")).unwrap().kind,
        FileType::Other
    );
    assert_eq!(v.metadata(&p("/fifo")).unwrap().mode, 0o600);
    assert!(v.read_all(&p("/dev/null")).is_err());
}

// ---- hostile input ----

#[test]
fn dotdot_and_absolute_names_stay_inside() {
    let v = Tar::new()
        .raw(EntryType::Regular, b"../../etc/x", b"", b"dotdot")
        .raw(EntryType::Regular, b"/abs/y", b"", b"abs")
        .raw(EntryType::Regular, b"a/../../../b", b"", b"b")
        .raw(EntryType::Link, b"../hl", b"../../../etc/x", b"")
        .volume();
    // `../../etc/x` is `/etc/x` inside the volume, never outside it.
    assert_eq!(v.read_all(&p("/etc/x")).unwrap(), "dotdot");
    assert_eq!(v.read_all(&p("/abs/y")).unwrap(), "abs");
    assert_eq!(v.read_all(&p("/b")).unwrap(), "b");
    assert_eq!(v.read_all(&p("/hl")).unwrap(), "dotdot");
    assert_eq!(names(&v, "/"), ["abs", "b", "etc", "hl"]);
}

#[test]
fn nul_in_a_name_refuses_the_archive() {
    let t = Tar::new()
        .pax(&[("path", b"evil\0name")])
        .file("x", b"", 0o644);
    assert!(matches!(
        TarVolume::new(t.bytes()),
        Err(TarError::BadName { .. })
    ));
    let t = Tar::new().pax(&[("linkpath", b"a\0b")]).symlink("s", "x");
    assert!(matches!(
        TarVolume::new(t.bytes()),
        Err(TarError::BadEntry { .. })
    ));
}

#[test]
fn duplicates_later_wins() {
    let v = Tar::new()
        .file("a", b"first", 0o644)
        .file("a", b"second", 0o600)
        .dir("d", 0o700)
        .file("d/child", b"c", 0o644)
        .dir("d", 0o750)
        .dir("gone", 0o755)
        .file("gone/child", b"c", 0o644)
        .file("gone", b"now a file", 0o644)
        .file("f/x", b"x", 0o644)
        .symlink("link", "/etc")
        .file("link/passwd", b"inside", 0o644)
        .volume();
    assert_eq!(v.read_all(&p("/a")).unwrap(), "second");
    assert_eq!(v.metadata(&p("/a")).unwrap().mode, 0o600);
    // A directory over a directory keeps the children, takes the new attributes.
    assert_eq!(v.metadata(&p("/d")).unwrap().mode, 0o750);
    assert_eq!(names(&v, "/d"), ["child"]);
    // A file over a directory replaces the subtree.
    assert_eq!(v.read_all(&p("/gone")).unwrap(), "now a file");
    assert!(!v.exists(&p("/gone/child")));
    // An entry below a symlink replaces the link with a directory; nothing is followed.
    assert!(v.symlink_metadata(&p("/link")).unwrap().is_dir());
    assert_eq!(v.read_all(&p("/link/passwd")).unwrap(), "inside");
    assert!(!v.exists(&p("/etc")));
}

#[test]
fn hardlink_keeps_content_as_of_its_position() {
    let v = Tar::new()
        .file("a", b"old", 0o644)
        .hardlink("b", "a")
        .file("a", b"new", 0o644)
        .volume();
    assert_eq!(v.read_all(&p("/a")).unwrap(), "new");
    assert_eq!(v.read_all(&p("/b")).unwrap(), "old");
    assert_eq!(v.metadata(&p("/b")).unwrap().nlink, 1);
}

#[test]
fn truncated_tar_is_an_error() {
    let full = Tar::new()
        .file("small", b"ok", 0o644)
        .file("big", &[7u8; 5000], 0o644)
        .bytes();
    // Cut inside a file's data or its padding.
    for (cut, name) in [
        (600, "/small"),
        (1536 + 100, "/big"),
        (1536 + 4999, "/big"),
        (1536 + 5000, "/big"),
    ] {
        let r = TarVolume::new(full.slice(..cut));
        assert!(
            matches!(r, Err(TarError::Truncated { ref path, .. }) if *path == p(name)),
            "cut at {cut}: {r:?}"
        );
    }
    // Ended at an entry boundary, without the end-of-archive blocks: the entries so far,
    // as GNU tar and Go's archive/tar read it (stargz-snapshotter's zstd:chunked tars end so).
    for (cut, names) in [
        (1024, &["/small"][..]),
        (1536 + 5120, &["/small", "/big"][..]),
    ] {
        let volume = TarVolume::new(full.slice(..cut)).unwrap();
        for name in ["/small", "/big"] {
            assert_eq!(
                volume.metadata(&p(name)).is_ok(),
                names.contains(&name),
                "cut at {cut}: {name}"
            );
        }
    }
    // Cut inside a header.
    assert!(matches!(
        TarVolume::new(full.slice(..1100)),
        Err(TarError::Malformed { .. })
    ));
    // The whole tar, and an empty buffer, are fine.
    assert_eq!(TarVolume::new(full.clone()).unwrap().index().len(), 3);
    assert!(TarVolume::new(Bytes::new()).unwrap().index().is_empty());
    // Cut inside a header: an error or a shorter volume, never a panic.
    for cut in 0..full.len() {
        let _ = TarVolume::new(full.slice(..cut));
    }
    // Garbage: never a panic.
    let mut junk = full.to_vec();
    for (i, b) in junk.iter_mut().enumerate().step_by(7) {
        *b = (i as u8).wrapping_mul(31);
    }
    let _ = TarVolume::new(Bytes::from(junk));
}

#[test]
fn bad_hardlinks_are_errors() {
    let t = Tar::new().hardlink("h", "missing");
    assert!(matches!(
        TarVolume::new(t.bytes()),
        Err(TarError::BadHardlink { ref target, .. }) if *target == p("/missing")
    ));
    // Target only later in the archive: missing at the link's position.
    let t = Tar::new().hardlink("h", "later").file("later", b"", 0o644);
    assert!(matches!(
        TarVolume::new(t.bytes()),
        Err(TarError::BadHardlink { .. })
    ));
    let t = Tar::new().dir("d", 0o755).hardlink("h", "d");
    let err = TarVolume::new(t.bytes()).unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");
}

#[test]
fn hardlinks_out_of_a_layer_are_left_for_the_layers_below() {
    let t = Tar::new()
        .hardlink("a/h", "lower/f")
        .hardlink("a/h2", "a/h")
        .hardlink("gone", "lower/g")
        .file("gone", b"replaced", 0o644)
        .hardlink("dir-now", "lower/x")
        .file("dir-now/inside", b"", 0o644)
        .file("f", b"data", 0o644)
        .hardlink("in-archive", "f");
    let bytes = t.bytes();
    // On its own, a volume refuses a link it cannot serve.
    assert!(matches!(
        TarVolume::new(bytes.clone()),
        Err(TarError::BadHardlink { ref target, .. }) if target.as_str().starts_with("/lower/")
    ));
    // As a layer, the links out stay out of the tree and are listed; a link to such a link
    // names the lower file; a later entry at the same path (or below it) wins.
    let layer = TarVolume::new_layer(bytes.clone()).unwrap();
    let lower: Vec<(&str, &str)> = layer
        .lower_links()
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    assert_eq!(lower, [("/a/h", "/lower/f"), ("/a/h2", "/lower/f")]);
    assert!(!layer.exists(&p("/a/h")));
    assert!(layer.metadata(&p("/a")).unwrap().is_dir());
    assert_eq!(&layer.read_all(&p("/gone")).unwrap()[..], b"replaced");
    assert!(layer.metadata(&p("/dir-now")).unwrap().is_dir());
    assert_eq!(&layer.read_all(&p("/in-archive")).unwrap()[..], b"data");

    // The links survive the index's round trip, and a hostile index is refused.
    let index = vfs_overlay::TarIndex::from_bytes(&layer.index().to_bytes().unwrap()).unwrap();
    assert_eq!(index.lower_links(), layer.lower_links());
    let wire = String::from_utf8(layer.index().to_bytes().unwrap()).unwrap();
    for (from, to) in [
        (r#""path":"/a/h""#, r#""path":"/f""#),
        (r#""path":"/a/h""#, r#""path":"/nowhere/h""#),
        (r#""path":"/a/h""#, r#""path":"/a//h""#),
    ] {
        let hostile = wire.replacen(from, to, 1);
        assert_ne!(hostile, wire);
        assert!(
            vfs_overlay::TarIndex::from_bytes(hostile.as_bytes()).is_err(),
            "{hostile}"
        );
    }
}

/// Found by the `overlay` fuzzer: a hardlink out of the archive whose name is a whiteout
/// is a whiteout (OCI goes by the name, whatever the entry type), not a file.
#[test]
fn a_link_out_named_like_a_whiteout_is_a_whiteout() {
    let lower = Tar::new()
        .file("x", b"lower", 0o644)
        .dir("d", 0o755)
        .file("d/old", b"old", 0o644)
        .bytes();
    let upper = Tar::new()
        .hardlink(".wh.x", "nowhere")
        .hardlink("d/.wh..wh..opq", "nowhere")
        .file("d/new", b"new", 0o644)
        .bytes();
    let layers: Vec<Arc<dyn FileSystem>> = [lower, upper]
        .into_iter()
        .map(|t| Arc::new(TarVolume::new_layer(t).unwrap()) as Arc<dyn FileSystem>)
        .collect();
    let overlay = Overlay::new(layers).unwrap();
    assert_eq!(names(&overlay, "/"), ["d"]);
    assert_eq!(names(&overlay, "/d"), ["new"]);
}

#[test]
fn deeply_nested_directories() {
    // 3,000 levels: a 6,000-character path through GNU long names, indexed without
    // recursion and without quadratic work.
    let mut t = Tar::new();
    let mut path = String::new();
    for _ in 0..3000 {
        path.push_str("d/");
        t = t.dir(&path, 0o755);
    }
    let deepest = format!("{path}leaf");
    let v = t.file(&deepest, b"deep", 0o644).volume();
    assert_eq!(v.index().len(), 3002);
    assert_eq!(v.read_all(&p(&deepest)).unwrap(), "deep");
    // Only the leaf, with every parent implied.
    let v = Tar::new().file(&deepest, b"deep", 0o644).volume();
    assert_eq!(v.index().len(), 3002);
    assert_eq!(names(&v, &path), ["leaf"]);
}

#[test]
fn root_entry() {
    let v = Tar::new()
        .dir("./", 0o700)
        .file("./x", b"x", 0o644)
        .volume();
    assert_eq!(v.metadata(&p("/")).unwrap().mode, 0o700);
    assert_eq!(names(&v, "/"), ["x"]);
    let t = Tar::new().raw(EntryType::Symlink, b"/", b"x", b"");
    assert!(matches!(
        TarVolume::new(t.bytes()),
        Err(TarError::BadEntry { .. })
    ));
}

// ---- the serialized index ----

#[test]
fn index_roundtrip() {
    let data = sample().bytes();
    let v = TarVolume::new(data.clone()).unwrap();
    let bytes = v.index().to_bytes().unwrap();
    let back = TarIndex::from_bytes(&bytes).unwrap();
    assert_eq!(back.entries(), v.index().entries());
    let w = TarVolume::with_index(data.clone(), Arc::new(back)).unwrap();
    assert_eq!(w.read_all(&p("/bin/sh")).unwrap(), "\x7fELF busybox");
    assert_eq!(w.metadata(&p("/usr/bin/ls")).unwrap().nlink, 2);
    assert_eq!(names(&w, "/usr/bin"), names(&v, "/usr/bin"));

    // Made for another tar.
    let short = TarIndex::from_bytes(&bytes).unwrap();
    assert!(matches!(
        TarVolume::with_index(data.slice(..512), Arc::new(short)),
        Err(TarError::BadIndex(_))
    ));
}

fn tampered(edit: impl FnOnce(&mut serde_json::Value)) -> Result<TarIndex, TarError> {
    let v = sample().volume();
    let mut json: serde_json::Value =
        serde_json::from_slice(&v.index().to_bytes().unwrap()).unwrap();
    edit(&mut json);
    TarIndex::from_bytes(&serde_json::to_vec(&json).unwrap())
}

fn entry_mut<'a>(json: &'a mut serde_json::Value, path: &str) -> &'a mut serde_json::Value {
    json["entries"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["path"] == path)
        .unwrap()
}

#[test]
fn index_is_validated() {
    assert!(tampered(|_| {}).is_ok());
    type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
    let cases: Vec<Edit> = vec![
        Box::new(|j| j["version"] = 2.into()),
        Box::new(|j| j["format"] = "other".into()),
        Box::new(|j| entry_mut(j, "/etc/passwd")["offset"] = u64::MAX.into()),
        Box::new(|j| entry_mut(j, "/etc/passwd")["size"] = 1_000_000.into()),
        Box::new(|j| entry_mut(j, "/etc/passwd")["path"] = "/etc/../passwd".into()),
        Box::new(|j| entry_mut(j, "/etc/passwd")["path"] = "/nodir/passwd".into()),
        Box::new(|j| entry_mut(j, "/etc/passwd")["path"] = "/etc/shadow".into()),
        Box::new(|j| entry_mut(j, "/etc/passwd")["path"] = "/bin/passwd".into()),
        Box::new(|j| entry_mut(j, "/etc/passwd")["mode"] = 0o170000.into()),
        Box::new(|j| entry_mut(j, "/bin")["link"] = serde_json::Value::Null),
        Box::new(|j| entry_mut(j, "/bin")["link"] = "a\0b".into()),
        Box::new(|j| entry_mut(j, "/")["kind"] = "file".into()),
        Box::new(|j| {
            j["entries"].as_array_mut().unwrap().remove(0);
        }),
        Box::new(|j| *j = serde_json::json!("garbage")),
    ];
    for (i, edit) in cases.into_iter().enumerate() {
        assert!(
            matches!(tampered(edit), Err(TarError::BadIndex(_))),
            "case {i} accepted"
        );
    }
    assert!(TarIndex::from_bytes(b"\xff\x00not json").is_err());
}

// ---- in a union and an overlay ----

#[test]
fn mounted_in_a_union() {
    let root = Union::new();
    root.mount(
        &p("/opt/pkg"),
        Arc::new(sample().volume()),
        MountPolicy::Fail,
    )
    .unwrap();
    let assets = Tar::new().file("logo.png", b"png", 0o644).volume();
    root.mount(
        &p("/opt/pkg/usr/share"),
        Arc::new(assets),
        MountPolicy::Fail,
    )
    .unwrap();
    assert_eq!(
        root.read_all(&p("/opt/pkg/bin/ls")).unwrap(),
        "\x7fELF busybox"
    );
    assert_eq!(names(&root, "/opt/pkg/usr"), ["bin", "share"]);
    assert_eq!(
        root.read_all(&p("/opt/pkg/usr/share/logo.png")).unwrap(),
        "png"
    );
    // An absolute link inside the volume resolves from the union's root.
    for abs in ["/opt/pkg/etc/abs", "/opt/pkg/bin/sh"] {
        assert!(matches!(root.read_all(&p(abs)), Err(VfsError::NotFound(_))));
    }
    assert_eq!(
        root.read_all(&p("/opt/pkg/etc/rel")).unwrap(),
        "root:x:0:0\n"
    );
}

#[test]
fn layers_of_an_overlay() {
    let base = Tar::new()
        .file("etc/os-release", b"base", 0o644)
        .file("etc/remove-me", b"x", 0o644)
        .file("opt/a", b"a", 0o644)
        .file("opt/b", b"b", 0o644)
        .file("keep/k", b"k", 0o644)
        .volume();
    let top = Tar::new()
        .file("etc/.wh.remove-me", b"", 0o644)
        .file("etc/os-release", b"top", 0o644)
        .file("opt/.wh..wh..opq", b"", 0o644)
        .file("opt/c", b"c", 0o644)
        .hardlink("keep/k2", "opt/c")
        .volume();
    let o = Overlay::new(vec![Arc::new(base), Arc::new(top)]).unwrap();
    assert_eq!(names(&o, "/etc"), ["os-release"]);
    assert_eq!(o.read_all(&p("/etc/os-release")).unwrap(), "top");
    assert_eq!(names(&o, "/opt"), ["c"]);
    assert_eq!(names(&o, "/keep"), ["k", "k2"]);
    assert_eq!(o.read_all(&p("/keep/k2")).unwrap(), "c");

    let bad = Tar::new().file("etc/.wh.", b"", 0o644).volume();
    assert!(matches!(
        Overlay::new(vec![Arc::new(bad)]),
        Err(VfsError::BadWhiteout(_))
    ));
}

#[test]
fn overlay_recreated_dir_and_layered_hardlinks() {
    let l1 = Tar::new()
        .file("app/old", b"old", 0o644)
        .file("lib/libc.so", b"libc v1", 0o755)
        .hardlink("lib/libc.so.6", "lib/libc.so")
        .volume();
    // The directory is whited out and recreated in the same layer (entry order is
    // irrelevant); the file gets new content here, the hardlink stays from layer 1.
    let l2 = Tar::new()
        .dir("app", 0o700)
        .file("app/new", b"new", 0o644)
        .file(".wh.app", b"", 0o644)
        .file("lib/libc.so", b"libc v2", 0o755)
        .volume();
    let l3 = Tar::new().file("app/.wh.new", b"", 0o644).volume();
    let o = Overlay::new(vec![Arc::new(l1), Arc::new(l2), Arc::new(l3)]).unwrap();
    assert!(o.read_dir(&p("/app")).unwrap().is_empty());
    assert_eq!(o.metadata(&p("/app")).unwrap().mode, 0o700);
    assert_eq!(o.read_all(&p("/lib/libc.so")).unwrap(), "libc v2");
    assert_eq!(o.read_all(&p("/lib/libc.so.6")).unwrap(), "libc v1");
}

#[test]
fn sub_path_of_a_volume() {
    let v: Arc<dyn FileSystem> = Arc::new(sample().volume());
    let root = Union::new();
    root.mount(
        &p("/tools"),
        Arc::new(SubFs::new(v, &p("/usr/bin")).unwrap()),
        MountPolicy::Fail,
    )
    .unwrap();
    assert_eq!(names(&root, "/tools"), ["busybox", "ls", "sh", "su"]);
    assert_eq!(root.read_all(&p("/tools/ls")).unwrap(), "\x7fELF busybox");

    // A sub-path still says which directories its tar only implies.
    let t: Arc<dyn FileSystem> = Arc::new(Tar::new().file("pkg/a/b", b"", 0o644).volume());
    let sub = SubFs::new(t, &p("/pkg")).unwrap();
    assert!(sub.node_is_implied_dir(&p("/a")));
    assert!(!sub.node_is_implied_dir(&p("/a/b")));
    let explicit = Tar::new().dir("a", 0o700).volume();
    assert!(!explicit.node_is_implied_dir(&p("/a")));
    assert!(explicit.node_is_implied_dir(&p("/")));
}

#[test]
fn from_a_store_blob() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("layer.tar");
    std::fs::write(&src, sample().bytes()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (blob, index_bytes) = rt.block_on(async {
        let store = cache_core::Store::open(dir.path().join("store"))
            .await
            .unwrap();
        let blob = store
            .import_file(&src, cache_core::Algorithm::Sha256)
            .await
            .unwrap();
        let v = TarVolume::from_blob(&blob).unwrap();
        assert_eq!(v.read_all(&p("/etc/shadow")).unwrap(), "secret");
        // The index as a derived entry, read back for a warm load.
        let kind = cache_core::DerivedKind::new("tar-index").unwrap();
        store
            .put_derived(blob.digest(), &kind, v.index().to_bytes().unwrap())
            .await
            .unwrap();
        let stored = store.get_derived(blob.digest(), &kind).unwrap().unwrap();
        (blob, stored)
    });
    let index = TarIndex::from_bytes(&index_bytes).unwrap();
    let v = TarVolume::with_index(blob.bytes().clone(), Arc::new(index)).unwrap();
    assert_eq!(v.read_all(&p("/usr/bin/su")).unwrap(), "\x7fELF su");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

    /// Corrupting bytes of a valid tar never panics; when it still indexes, every file
    /// reads and every directory lists.
    #[test]
    fn corrupted_tars_never_panic(
        edits in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 1..8),
        cut in proptest::option::of(0usize..4096),
    ) {
        let mut bytes = sample().bytes().to_vec();
        for (at, b) in edits {
            let n = bytes.len();
            bytes[at % n] = b;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.min(bytes.len()));
        }
        if let Ok(v) = TarVolume::new(Bytes::from(bytes)) {
            for e in v.index().entries() {
                match e.kind {
                    TarEntryKind::File | TarEntryKind::Hardlink => {
                        proptest::prop_assert_eq!(
                            v.node_read_all(&e.path).unwrap().len() as u64,
                            e.size
                        );
                    }
                    TarEntryKind::Dir => {
                        v.node_read_dir(&e.path).unwrap();
                    }
                    _ => {}
                }
                let _ = v.read_all(&e.path);
            }
            let again = TarIndex::from_bytes(&v.index().to_bytes().unwrap()).unwrap();
            proptest::prop_assert_eq!(again.entries(), v.index().entries());
        }
    }
}

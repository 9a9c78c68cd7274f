//! `materialize` into real temporary directories, compared path for path with the VFS it
//! came from, plus hostile trees that try to write outside the target; and `footprint`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use proptest::prelude::*;
use tar::{Builder, EntryType, Header};
use vfs_overlay::{
    Devices, DirEntry, DirVolume, FileSystem, FileType, Footprint, LinkMode, MaterializeError,
    MaterializeOptions, MaterializeReport, MemFs, Metadata, MountPolicy, Overlay, TarVolume, Union,
    VfsError, VfsPath, materialize,
};

fn p(s: &str) -> VfsPath {
    VfsPath::new(s).unwrap()
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// A scratch area: `target` to materialize into, `outside` a sibling that must stay empty.
struct Area {
    tmp: tempfile::TempDir,
}

impl Area {
    fn new() -> Area {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("outside")).unwrap();
        fs::create_dir(tmp.path().join("work")).unwrap();
        Area { tmp }
    }
    fn target(&self) -> PathBuf {
        self.tmp.path().join("work/target")
    }
    fn outside(&self) -> PathBuf {
        self.tmp.path().join("outside")
    }
    fn assert_outside_untouched(&self) {
        let left: Vec<_> = fs::read_dir(self.outside()).unwrap().collect();
        assert!(left.is_empty(), "something was written outside: {left:?}");
        let work: Vec<_> = fs::read_dir(self.tmp.path().join("work"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(work.iter().all(|n| n == "target"), "{work:?}");
    }
}

impl Drop for Area {
    /// Read-only directories would make the temporary directory unremovable for a
    /// non-root user; open them up again first.
    fn drop(&mut self) {
        let mut stack = vec![self.tmp.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            let _ = fs::set_permissions(&d, fs::Permissions::from_mode(0o700));
            if let Ok(rd) = fs::read_dir(&d) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(e.path());
                    }
                }
            }
        }
    }
}

/// Every entry of `fs` exists in `dir` with the same type, permission bits, size, content,
/// link target and mtime, and `dir` holds nothing else.
fn assert_same(fs: &dyn FileSystem, dir: &Path) {
    let root = fs.node_metadata(&VfsPath::root()).unwrap();
    assert_entry(&VfsPath::root(), &root, fs, dir);
    let mut stack = vec![(VfsPath::root(), dir.to_path_buf())];
    while let Some((vdir, hdir)) = stack.pop() {
        let listing: Vec<DirEntry> = fs.node_read_dir(&vdir).unwrap();
        let mut host: Vec<String> = fs::read_dir(&hdir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        host.sort();
        let names: Vec<String> = listing
            .iter()
            .filter(|e| e.kind != FileType::Other)
            .map(|e| e.name.clone())
            .collect();
        assert_eq!(host, names, "listing of {vdir}");
        for e in listing.iter().filter(|e| e.kind != FileType::Other) {
            let vpath = vdir.join(&e.name).unwrap();
            let hpath = hdir.join(&e.name);
            let meta = fs.node_metadata(&vpath).unwrap();
            assert_entry(&vpath, &meta, fs, &hpath);
            if meta.is_dir() {
                stack.push((vpath, hpath));
            }
        }
    }
}

fn assert_entry(vpath: &VfsPath, meta: &Metadata, fs: &dyn FileSystem, host: &Path) {
    let h = fs::symlink_metadata(host).unwrap();
    let kind = if h.file_type().is_symlink() {
        FileType::Symlink
    } else if h.is_dir() {
        FileType::Dir
    } else if h.is_file() {
        FileType::File
    } else {
        FileType::Other
    };
    assert_eq!(kind, meta.kind, "type of {vpath}");
    assert_eq!(h.modified().unwrap(), meta.mtime, "mtime of {vpath}");
    match meta.kind {
        FileType::File => {
            assert_eq!(h.mode() & 0o7777, meta.mode, "mode of {vpath}");
            assert_eq!(h.len(), meta.size, "size of {vpath}");
            assert_eq!(
                fs::read(host).unwrap(),
                fs.node_read_all(vpath).unwrap(),
                "{vpath}"
            );
        }
        FileType::Dir => assert_eq!(h.mode() & 0o7777, meta.mode, "mode of {vpath}"),
        FileType::Symlink => {
            let target = fs::read_link(host).unwrap();
            assert_eq!(target.to_str().unwrap(), fs.node_read_link(vpath).unwrap());
        }
        _ => unreachable!("{vpath}: no other kind is materialized"),
    }
}

/// A small tree with everything materialize must preserve.
fn sample_memfs() -> MemFs {
    let fs = MemFs::new();
    fs.create_dir_all(&p("/bin")).unwrap();
    fs.create_dir_all(&p("/locked/inner")).unwrap();
    fs.create_dir_all(&p("/empty")).unwrap();
    fs.write_file(&p("/bin/tool"), Bytes::from_static(b"#!/bin/sh\necho hi\n"))
        .unwrap();
    fs.set_mode(&p("/bin/tool"), 0o4755).unwrap();
    fs.write_file(&p("/locked/inner/secret"), Bytes::from_static(b"s3cret"))
        .unwrap();
    fs.set_mode(&p("/locked/inner/secret"), 0o600).unwrap();
    fs.write_file(&p("/locked/ro"), Bytes::from_static(b"read only"))
        .unwrap();
    fs.set_mode(&p("/locked/ro"), 0o400).unwrap();
    fs.write_file(&p("/empty-file"), Bytes::new()).unwrap();
    fs.hard_link(&p("/bin/tool"), &p("/tool-again")).unwrap();
    fs.symlink("bin/tool", &p("/run")).unwrap();
    fs.symlink("/locked/../bin", &p("/bin-abs")).unwrap();
    fs.symlink("../../nowhere", &p("/dangling")).unwrap();
    // Children are written before the directories close: 0500 and 0700 with setgid.
    fs.set_mode(&p("/locked/inner"), 0o500).unwrap();
    fs.set_mode(&p("/locked"), 0o2700).unwrap();
    fs.set_mode(&p("/"), 0o750).unwrap();
    let mut t = 1_600_000_000;
    for path in [
        "/bin/tool",
        "/locked/inner/secret",
        "/locked/ro",
        "/empty-file",
        "/run",
        "/bin-abs",
        "/dangling",
        "/bin",
        "/locked/inner",
        "/locked",
        "/empty",
        "/",
    ] {
        t += 1000;
        fs.set_mtime(&p(path), at(t)).unwrap();
    }
    fs
}

#[test]
fn memfs_tree_round_trips() {
    let area = Area::new();
    let fs = sample_memfs();
    let report = materialize(&fs, &area.target(), MaterializeOptions::default()).unwrap();
    assert_same(&fs, &area.target());
    area.assert_outside_untouched();
    let t = area.target();
    let a = fs::metadata(t.join("bin/tool")).unwrap();
    let b = fs::metadata(t.join("tool-again")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hardlinks stay hardlinks");
    assert_eq!(a.nlink(), 2);
    assert_eq!(
        report,
        MaterializeReport {
            files: 5,
            dirs: 5,
            symlinks: 3,
            hardlinks: 1,
            bytes: 18 + 6 + 9,
            reflinked: 0,
            hardlinked: 0,
            copied: 4,
            link_fallbacks: 0,
            skipped_devices: vec![],
        }
    );
    let fp = fs.footprint().unwrap();
    assert_eq!(
        (fp.files, fp.dirs, fp.symlinks, fp.bytes),
        (report.files, report.dirs, report.symlinks, report.bytes)
    );
}

#[test]
fn single_thread_and_copy_mode_give_the_same_tree() {
    let area = Area::new();
    let fs = sample_memfs();
    let options = MaterializeOptions::new()
        .threads(1)
        .link_mode(LinkMode::Copy);
    materialize(&fs, &area.target(), options).unwrap();
    assert_same(&fs, &area.target());
}

// ---- tars ----

const MTIME: u64 = 1_650_000_000;

struct Tar(Builder<Vec<u8>>);

impl Tar {
    fn new() -> Self {
        Tar(Builder::new(Vec::new()))
    }
    fn header(kind: EntryType, size: u64, mode: u32) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(MTIME);
        h
    }
    fn file(mut self, path: &str, data: &[u8], mode: u32) -> Self {
        let mut h = Self::header(EntryType::Regular, data.len() as u64, mode);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }
    fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = Self::header(EntryType::Directory, 0, mode);
        self.0.append_data(&mut h, path, &[][..]).unwrap();
        self
    }
    fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(EntryType::Symlink, 0, 0o777);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }
    fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(EntryType::Link, 0, 0o644);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }
    fn device(mut self, path: &str, kind: EntryType) -> Self {
        let mut h = Self::header(kind, 0, 0o600);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        self.0.append_data(&mut h, path, &[][..]).unwrap();
        self
    }
    fn volume(self) -> TarVolume {
        TarVolume::new(Bytes::from(self.0.into_inner().unwrap())).unwrap()
    }
}

fn sample_tar() -> TarVolume {
    Tar::new()
        .dir("usr/", 0o755)
        .dir("usr/bin/", 0o555)
        .file("usr/bin/app", b"binary", 0o6755)
        .hardlink("usr/bin/app-link", "usr/bin/app")
        .file("etc/conf", b"key=value\n", 0o640)
        .symlink("etc/app", "../usr/bin/app")
        .symlink("etc/escape", "../../../../outside")
        .file("implied/deep/file", b"", 0o644)
        .volume()
}

#[test]
fn tar_volume_round_trips_and_footprint_matches_a_walk() {
    let area = Area::new();
    let vol = sample_tar();
    let report = materialize(&vol, &area.target(), MaterializeOptions::default()).unwrap();
    assert_same(&vol, &area.target());
    area.assert_outside_untouched();
    let t = area.target();
    assert_eq!(
        fs::metadata(t.join("usr/bin/app")).unwrap().ino(),
        fs::metadata(t.join("usr/bin/app-link")).unwrap().ino()
    );
    assert_eq!((report.files, report.hardlinks, report.symlinks), (4, 1, 2));
    let fp = vol.footprint().unwrap();
    assert_eq!(fp, Footprint::walk(&vol).unwrap());
    assert_eq!(
        fp,
        Footprint {
            files: 4,
            dirs: 6,
            symlinks: 2,
            others: 0,
            bytes: 16,
        }
    );
    assert_eq!((report.dirs, report.bytes), (fp.dirs, fp.bytes));
}

#[test]
fn a_tar_backed_by_its_host_file_is_copied_and_read_by_range() {
    let vol = sample_tar();
    let mut host = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut host, vol.data()).unwrap();
    // A file of another length is not the tar's: refused.
    let short = tempfile::tempfile().unwrap();
    assert!(vol.clone().with_host_file(short).is_err());
    let backed = vol
        .clone()
        .with_host_file(fs::File::open(host.path()).unwrap())
        .unwrap();

    // Ranges name the member inside the host file; reads by range agree with the map.
    let range = backed.node_host_range(&p("/etc/conf")).unwrap().unwrap();
    assert_eq!(range.len, 10);
    let mut buf = [0u8; 4];
    assert_eq!(backed.read_at(&p("/etc/conf"), 4, &mut buf).unwrap(), 4);
    assert_eq!(&buf, b"valu");
    assert_eq!(backed.read_at(&p("/etc/conf"), 8, &mut buf).unwrap(), 2);
    assert_eq!(backed.read_at(&p("/etc/conf"), 10, &mut buf).unwrap(), 0);
    // Through a symlink and an open handle too.
    let mut all = Vec::new();
    std::io::Read::read_to_end(&mut backed.open(&p("/etc/app")).unwrap(), &mut all).unwrap();
    assert_eq!(all, b"binary");
    assert!(matches!(
        backed.read_at(&p("/usr"), 0, &mut buf),
        Err(VfsError::IsADirectory(_))
    ));

    // Materialized from the host file (copy_file_range): the same tree as from the map.
    let area = Area::new();
    materialize(&backed, &area.target(), MaterializeOptions::default()).unwrap();
    assert_same(&vol, &area.target());
    area.assert_outside_untouched();
}

fn sample_overlay() -> Overlay {
    let lower = Tar::new()
        .dir("app/", 0o755)
        .file("app/keep", b"lower keep", 0o644)
        .file("app/gone", b"lower gone", 0o644)
        .file("app/shared", b"shared bytes", 0o600)
        .hardlink("app/shared2", "app/shared")
        .dir("opaque/", 0o700)
        .file("opaque/old", b"old", 0o644)
        .volume();
    let upper = Tar::new()
        .file("app/.wh.gone", b"", 0o644)
        .file("app/new", b"upper new", 0o755)
        .dir("opaque/", 0o750)
        .file("opaque/.wh..wh..opq", b"", 0o644)
        .file("opaque/fresh", b"fresh", 0o644)
        .symlink("app/link", "/opaque/fresh")
        .volume();
    Overlay::new(vec![Arc::new(lower), Arc::new(upper)]).unwrap()
}

#[test]
fn overlay_round_trips_and_footprint_matches_a_walk() {
    let area = Area::new();
    let ov = sample_overlay();
    let report = materialize(&ov, &area.target(), MaterializeOptions::default()).unwrap();
    assert_same(&ov, &area.target());
    let t = area.target();
    assert!(!t.join("app/gone").exists());
    assert!(!t.join("opaque/old").exists());
    assert_eq!(
        fs::read(t.join("app/link")).unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
    assert_eq!(
        fs::metadata(t.join("app/shared")).unwrap().ino(),
        fs::metadata(t.join("app/shared2")).unwrap().ino()
    );
    assert_eq!(report.hardlinks, 1);
    let fp = ov.footprint().unwrap();
    assert_eq!(fp, Footprint::walk(&ov).unwrap());
    assert_eq!(fp.bytes, 10 + 12 + 9 + 5);
    assert_eq!((fp.files, fp.bytes), (report.files, report.bytes));
}

#[test]
fn union_of_volumes_round_trips() {
    let area = Area::new();
    let u = Union::new();
    u.mount(&p("/"), Arc::new(sample_memfs()), MountPolicy::Fail)
        .unwrap();
    u.mount(&p("/opt/tar"), Arc::new(sample_tar()), MountPolicy::Fail)
        .unwrap();
    u.mount(&p("/opt/ov"), Arc::new(sample_overlay()), MountPolicy::Fail)
        .unwrap();
    // The same volume twice: its hardlinks must not join across the two mounts.
    let tar = Arc::new(sample_tar());
    u.mount(&p("/a"), tar.clone(), MountPolicy::Fail).unwrap();
    u.mount(&p("/b"), tar, MountPolicy::Fail).unwrap();
    let report = materialize(&u, &area.target(), MaterializeOptions::default()).unwrap();
    assert_same(&u, &area.target());
    let t = area.target();
    let ino = |s: &str| fs::metadata(t.join(s)).unwrap().ino();
    assert_eq!(ino("a/usr/bin/app"), ino("a/usr/bin/app-link"));
    assert_ne!(ino("a/usr/bin/app"), ino("b/usr/bin/app"));
    assert_eq!(report.hardlinks, 1 + 1 + 1 + 1 + 1);
    assert_eq!(u.footprint().unwrap().bytes, report.bytes);
}

// ---- hostile trees and targets ----

#[test]
fn a_symlink_out_and_a_file_through_it_stay_inside() {
    let area = Area::new();
    let fs = MemFs::new();
    fs.symlink("../../outside", &p("/evil")).unwrap();
    fs.create_dir(&p("/outside")).unwrap();
    // Written through the link: the VFS resolves it inside its own root.
    fs.write_file(&p("/evil/x"), Bytes::from_static(b"through"))
        .unwrap();
    fs.symlink("/../../../outside/y", &p("/abs-evil")).unwrap();
    materialize(&fs, &area.target(), MaterializeOptions::default()).unwrap();
    assert_same(&fs, &area.target());
    let t = area.target();
    assert_eq!(fs::read(t.join("outside/x")).unwrap(), b"through");
    assert!(fs::symlink_metadata(t.join("evil")).unwrap().is_symlink());
    area.assert_outside_untouched();
}

#[test]
fn tar_symlink_then_entry_below_it_stays_inside() {
    let area = Area::new();
    let vol = Tar::new()
        .symlink("evil", "../../outside")
        .file("evil/x", b"below", 0o644)
        .symlink("evil2", "/tmp")
        .volume();
    materialize(&vol, &area.target(), MaterializeOptions::default()).unwrap();
    assert_same(&vol, &area.target());
    // The index made `evil` a directory for `evil/x`; the link it replaced is gone.
    assert_eq!(fs::read(area.target().join("evil/x")).unwrap(), b"below");
    area.assert_outside_untouched();
}

/// A filesystem that lies: it lists names no real directory can hold, or one name twice
/// with different kinds.
#[derive(Debug)]
struct Hostile {
    names: Vec<&'static str>,
    calls: AtomicUsize,
}

impl FileSystem for Hostile {
    fn node_metadata(&self, path: &VfsPath) -> vfs_overlay::Result<Metadata> {
        let kind = match path.as_str() {
            "/" => FileType::Dir,
            // First a symlink, then a directory: a tree where `evil` is both.
            "/evil" if self.calls.fetch_add(1, Ordering::SeqCst) == 0 => FileType::Symlink,
            "/evil" => FileType::Dir,
            _ => FileType::File,
        };
        Ok(Metadata {
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: at(0),
            size: 1,
            nlink: 1,
        })
    }
    fn node_read_dir(&self, path: &VfsPath) -> vfs_overlay::Result<Vec<DirEntry>> {
        Ok(match path.as_str() {
            "/" => self
                .names
                .iter()
                .map(|n| DirEntry {
                    name: (*n).to_owned(),
                    kind: FileType::File,
                })
                .collect(),
            _ => vec![DirEntry {
                name: "x".to_owned(),
                kind: FileType::File,
            }],
        })
    }
    fn node_read_link(&self, _path: &VfsPath) -> vfs_overlay::Result<String> {
        Ok("../../outside".to_owned())
    }
    fn node_read_all(&self, _path: &VfsPath) -> vfs_overlay::Result<Bytes> {
        Ok(Bytes::from_static(b"x"))
    }
}

#[test]
fn names_that_are_not_one_component_are_refused() {
    for bad in ["..", "../outside", "a/b", "", ".", "nul\0"] {
        let area = Area::new();
        let fs = Hostile {
            names: vec!["fine", bad],
            calls: AtomicUsize::new(0),
        };
        let err = materialize(&fs, &area.target(), MaterializeOptions::default()).unwrap_err();
        match err {
            MaterializeError::BadName { dir, name } => {
                assert_eq!(dir, VfsPath::root());
                assert_eq!(name, bad);
            }
            e => panic!("{bad:?}: {e}"),
        }
        // Refused while listing, before the target was even created.
        assert!(!area.target().exists());
        area.assert_outside_untouched();
    }
}

#[test]
fn one_name_as_symlink_and_directory_fails_inside() {
    let area = Area::new();
    let fs = Hostile {
        names: vec!["evil", "evil"],
        calls: AtomicUsize::new(0),
    };
    let err = materialize(&fs, &area.target(), MaterializeOptions::default()).unwrap_err();
    match &err {
        MaterializeError::Io { path, .. } => assert_eq!(path, &p("/evil")),
        e => panic!("{e}"),
    }
    assert!(err.to_string().contains("/evil"), "{err}");
    // The directory was made first; the symlink could not replace it, and `x` went into
    // the directory or nowhere, never through a link.
    assert!(
        fs::symlink_metadata(area.target().join("evil"))
            .unwrap()
            .is_dir()
    );
    area.assert_outside_untouched();
}

#[test]
fn the_target_must_be_empty_and_a_real_directory() {
    let fs = sample_memfs();
    // A symlink already in the target.
    let area = Area::new();
    fs::create_dir(area.target()).unwrap();
    symlink(area.outside(), area.target().join("bin")).unwrap();
    let err = materialize(&fs, &area.target(), MaterializeOptions::default()).unwrap_err();
    assert!(
        matches!(&err, MaterializeError::TargetNotEmpty { dir } if dir == &area.target()),
        "{err}"
    );
    area.assert_outside_untouched();

    // The target itself a symlink to somewhere else.
    let area = Area::new();
    symlink(area.outside(), area.target()).unwrap();
    let err = materialize(&fs, &area.target(), MaterializeOptions::default()).unwrap_err();
    assert!(
        matches!(&err, MaterializeError::TargetNotADirectory { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("target"), "{err}");
    assert!(fs::read_dir(area.outside()).unwrap().next().is_none());

    // A file.
    let area = Area::new();
    fs::write(area.target(), b"x").unwrap();
    let err = materialize(&fs, &area.target(), MaterializeOptions::default()).unwrap_err();
    assert!(matches!(err, MaterializeError::TargetNotADirectory { .. }));

    // An existing empty directory is fine, and missing parents are created.
    let area = Area::new();
    fs::create_dir(area.target()).unwrap();
    materialize(&fs, &area.target(), MaterializeOptions::default()).unwrap();
    assert_same(&fs, &area.target());
    let area = Area::new();
    let nested = area.tmp.path().join("work/a/b/c");
    materialize(&fs, &nested, MaterializeOptions::default()).unwrap();
    assert_same(&fs, &nested);
}

#[test]
fn device_nodes_are_refused_or_skipped() {
    let vol = Tar::new()
        .file("ok", b"fine", 0o644)
        .dir("dev/", 0o755)
        .device("dev/null", EntryType::Char)
        .device("dev/fifo", EntryType::Fifo)
        .volume();
    let area = Area::new();
    let err = materialize(&vol, &area.target(), MaterializeOptions::default()).unwrap_err();
    match &err {
        MaterializeError::Device { path } => assert_eq!(path, &p("/dev/fifo")),
        e => panic!("{e}"),
    }
    assert!(err.to_string().contains("/dev/fifo"));
    assert!(!area.target().exists(), "refused before writing anything");

    let area = Area::new();
    let options = MaterializeOptions::new().devices(Devices::Skip);
    let report = materialize(&vol, &area.target(), options).unwrap();
    assert_eq!(report.skipped_devices, vec![p("/dev/fifo"), p("/dev/null")]);
    assert_same(&vol, &area.target());
    assert_eq!(fs::read(area.target().join("ok")).unwrap(), b"fine");
    assert!(
        fs::read_dir(area.target().join("dev"))
            .unwrap()
            .next()
            .is_none()
    );
    assert_eq!(vol.footprint().unwrap().others, 2);
}

// ---- size and shape ----

#[test]
fn three_thousand_nested_directories() {
    const DEPTH: usize = 3000;
    let fs = MemFs::new();
    let deep = VfsPath::new(&vec!["d"; DEPTH].join("/")).unwrap();
    fs.create_dir_all(&deep).unwrap();
    fs.write_file(&deep.join("bottom").unwrap(), Bytes::from_static(b"bottom"))
        .unwrap();
    fs.write_file(&p("/d/d/top"), Bytes::from_static(b"top"))
        .unwrap();
    fs.set_mode(&p("/d/d"), 0o500).unwrap();
    let area = Area::new();
    let report = materialize(&fs, &area.target(), MaterializeOptions::default()).unwrap();
    assert_eq!(report.dirs, DEPTH as u64 + 1);
    assert_eq!(report.files, 2);
    // Paths this deep exceed PATH_MAX: check by walking down with handles.
    use rustix::fs::{Mode, OFlags, openat};
    let mut fd = rustix::fs::open(area.target().as_path(), OFlags::RDONLY, Mode::empty()).unwrap();
    for _ in 0..DEPTH {
        fd = openat(
            &fd,
            "d",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .unwrap();
    }
    let bottom = openat(
        &fd,
        "bottom",
        OFlags::RDONLY | OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .unwrap();
    let mut s = String::new();
    std::io::Read::read_to_string(&mut fs::File::from(bottom), &mut s).unwrap();
    assert_eq!(s, "bottom");
    assert_eq!(fs::read(area.target().join("d/d/top")).unwrap(), b"top");
    assert_eq!(
        fs::metadata(area.target().join("d/d")).unwrap().mode() & 0o7777,
        0o500
    );
    assert_eq!(Footprint::walk(&fs).unwrap().dirs, DEPTH as u64 + 1);
}

#[test]
fn a_thousand_files_in_one_directory() {
    let fs = MemFs::new();
    fs.create_dir(&p("/many")).unwrap();
    for i in 0..1000 {
        let path = p(&format!("/many/f{i:04}"));
        fs.write_file(&path, Bytes::from(format!("content {i}").repeat(i % 7 + 1)))
            .unwrap();
        fs.set_mode(&path, 0o600 + (i as u32 % 2) * 0o44).unwrap();
        fs.set_mtime(&path, at(1_000_000 + i as u64)).unwrap();
    }
    let area = Area::new();
    let report = materialize(&fs, &area.target(), MaterializeOptions::new().threads(4)).unwrap();
    assert_eq!(report.files, 1000);
    assert_eq!(report.copied, 1000);
    assert_same(&fs, &area.target());
}

// ---- host directories and link modes ----

/// A host package directory with hostile links and a hardlink, next to a sentinel.
fn host_package(area: &Area) -> PathBuf {
    let src = area.tmp.path().join("src");
    fs::create_dir_all(src.join("lib")).unwrap();
    fs::write(src.join("lib/a.so"), b"shared object").unwrap();
    fs::set_permissions(src.join("lib/a.so"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(src.join("readme"), b"hello").unwrap();
    fs::hard_link(src.join("readme"), src.join("readme-again")).unwrap();
    symlink("/etc", src.join("etc")).unwrap();
    symlink("../", src.join("up")).unwrap();
    src
}

#[test]
fn dir_volume_with_links_to_etc_and_up_materializes_inside() {
    let area = Area::new();
    let src = host_package(&area);
    let vol = DirVolume::open(&src).unwrap();
    // Reads through the links stay inside the volume: `/etc` there is the link itself,
    // which points at itself, never at the host's `/etc`.
    assert!(matches!(
        vol.read_all(&p("/etc/passwd")),
        Err(VfsError::TooManyLinks(_))
    ));
    assert_eq!(vol.read_all(&p("/up/up/readme")).unwrap(), "hello");
    let report = materialize(&vol, &area.target(), MaterializeOptions::default()).unwrap();
    assert_same(&vol, &area.target());
    area.assert_outside_untouched();
    let t = area.target();
    assert_eq!(fs::read_link(t.join("etc")).unwrap(), Path::new("/etc"));
    assert_eq!(report.hardlinks, 1);
    // Source and copy are distinct files under Auto: a reflink shares blocks, not the inode.
    assert_ne!(
        fs::metadata(t.join("readme")).unwrap().ino(),
        fs::metadata(src.join("readme")).unwrap().ino()
    );
    assert_eq!(report.reflinked + report.copied, 2);
    assert_eq!(report.link_fallbacks, 0, "Auto falls back silently");
}

#[test]
fn link_modes_on_backed_files() {
    let area = Area::new();
    let src = host_package(&area);
    let vol = DirVolume::open(&src).unwrap();

    let out = area.tmp.path().join("work/target");
    let report = materialize(
        &vol,
        &out,
        MaterializeOptions::new().link_mode(LinkMode::Hardlink),
    )
    .unwrap();
    assert_eq!(report.hardlinked, 2, "{report:?}");
    assert_eq!(report.copied, 0);
    assert_eq!(
        fs::metadata(out.join("lib/a.so")).unwrap().ino(),
        fs::metadata(src.join("lib/a.so")).unwrap().ino()
    );
    assert_eq!(fs::read(out.join("readme-again")).unwrap(), b"hello");

    let out = area.tmp.path().join("work/reflink");
    let report = materialize(
        &vol,
        &out,
        MaterializeOptions::new().link_mode(LinkMode::Reflink),
    )
    .unwrap();
    // Whether the filesystem under the temporary directory can reflink is not ours to
    // choose; each backed file is either reflinked or copied and counted as a fallback.
    assert_eq!(report.reflinked + report.link_fallbacks, 2, "{report:?}");
    assert_eq!(report.copied, report.link_fallbacks);
    assert_same(&vol, &out);

    let out = area.tmp.path().join("work/copy");
    let report = materialize(
        &vol,
        &out,
        MaterializeOptions::new().link_mode(LinkMode::Copy),
    )
    .unwrap();
    assert_eq!(
        (report.copied, report.reflinked, report.link_fallbacks),
        (2, 0, 0)
    );
    assert_same(&vol, &out);

    // Files without a backing host file are simply copied, not counted as fallbacks.
    let mem = MemFs::new();
    mem.write_file(&p("/f"), Bytes::from_static(b"mem"))
        .unwrap();
    let out = area.tmp.path().join("work/mem");
    let report = materialize(
        &mem,
        &out,
        MaterializeOptions::new().link_mode(LinkMode::Hardlink),
    )
    .unwrap();
    assert_eq!(
        (report.copied, report.hardlinked, report.link_fallbacks),
        (1, 0, 0)
    );
}

// ---- random trees ----

#[derive(Debug, Clone)]
enum Op {
    Dir(String, u32),
    File(String, Vec<u8>, u32, u64),
    Symlink(String, String),
    Hardlink(String, String),
}

fn op() -> impl Strategy<Value = Op> {
    let path = "[ab]{1,2}(/[ab]{1,2}){0,2}";
    prop_oneof![
        (path, 0o500u32..0o1000).prop_map(|(p, m)| Op::Dir(p, m | 0o700)),
        (
            path,
            prop::collection::vec(any::<u8>(), 0..64),
            0u32..0o10000,
            0u64..2_000_000_000
        )
            .prop_map(|(p, d, m, t)| Op::File(p, d, m | 0o400, t)),
        (path, "(\\.\\./)*[ab./]{1,6}").prop_map(|(p, t)| Op::Symlink(p, t)),
        (path, path).prop_map(|(a, b)| Op::Hardlink(a, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn random_trees_round_trip(ops in prop::collection::vec(op(), 1..24)) {
        let fs = MemFs::new();
        for op in ops {
            // Operations that make no sense for the tree so far simply fail; what is left
            // is some valid tree.
            let _ = match op {
                Op::Dir(path, mode) => fs
                    .create_dir_all(&p(&path))
                    .and_then(|()| fs.set_mode(&p(&path), mode)),
                Op::File(path, data, mode, t) => fs
                    .write_file(&p(&path), Bytes::from(data))
                    .and_then(|()| fs.set_mode(&p(&path), mode))
                    .and_then(|()| fs.set_mtime(&p(&path), at(t))),
                Op::Symlink(path, target) => fs.symlink(&target, &p(&path)),
                Op::Hardlink(a, b) => fs.hard_link(&p(&a), &p(&b)),
            };
        }
        let area = Area::new();
        let report = materialize(&fs, &area.target(), MaterializeOptions::default()).unwrap();
        assert_same(&fs, &area.target());
        area.assert_outside_untouched();
        let fp = fs.footprint().unwrap();
        prop_assert_eq!((fp.files, fp.dirs, fp.symlinks, fp.bytes),
            (report.files, report.dirs, report.symlinks, report.bytes));
    }
}

// ---- identities through the composing filesystems ----

#[test]
fn node_ids_are_kept_apart_by_scope() {
    use vfs_overlay::NodeId;
    let a = NodeId::new(&[1]);
    assert_eq!(a, NodeId::new(&[1]));
    assert_ne!(a, NodeId::new(&[1, 0]));
    assert_ne!(a.scoped("x"), a.scoped("y"));
    assert_ne!(a.scoped("x"), a);
    // Length prefixes: a scope cannot absorb the start of the inner id.
    assert_ne!(a.scoped("ab").scoped("c"), a.scoped("a").scoped("bc"));
    assert_eq!(a.scoped("ab"), NodeId::new(&[1]).scoped("ab"));
}

#[test]
fn hardlinks_survive_sub_and_writable_overlays() {
    use vfs_overlay::{SubFs, WritableOverlay};
    let sub = SubFs::new(Arc::new(sample_tar()), &p("/usr")).unwrap();
    assert_eq!(
        sub.node_id(&p("/bin/app")),
        sub.node_id(&p("/bin/app-link"))
    );
    let area = Area::new();
    let report = materialize(&sub, &area.target(), MaterializeOptions::default()).unwrap();
    assert_same(&sub, &area.target());
    assert_eq!(report.hardlinks, 1);

    let w = WritableOverlay::new(sample_overlay());
    w.write_file(&p("/up"), Bytes::from_static(b"upper"))
        .unwrap();
    w.hard_link(&p("/up"), &p("/up2")).unwrap();
    // Writing one lower name copies it up: it is no longer the other name's file.
    w.write_file(&p("/app/keep"), Bytes::from_static(b"changed"))
        .unwrap();
    assert_ne!(w.node_id(&p("/up")), w.node_id(&p("/app/shared")));
    let area = Area::new();
    let report = materialize(&w, &area.target(), MaterializeOptions::default()).unwrap();
    assert_same(&w, &area.target());
    let t = area.target();
    let ino = |s: &str| fs::metadata(t.join(s)).unwrap().ino();
    assert_eq!(ino("up"), ino("up2"));
    assert_eq!(ino("app/shared"), ino("app/shared2"));
    assert_eq!(report.hardlinks, 2);
    assert_eq!(fs::read(t.join("app/keep")).unwrap(), b"changed");
    assert_eq!(w.footprint().unwrap().bytes, report.bytes);
}

#[test]
fn owners_are_preserved_on_request() {
    let area = Area::new();
    let probe = area.tmp.path().join("probe");
    fs::write(&probe, b"").unwrap();
    if fs::metadata(&probe).unwrap().uid() != 0 {
        eprintln!("not root: chown cannot be exercised here");
        return;
    }
    let fs = sample_memfs();
    fs.set_owner(&p("/bin/tool"), 1234, 5678).unwrap();
    fs.set_owner(&p("/run"), 42, 43).unwrap();
    fs.set_owner(&p("/locked"), 7, 8).unwrap();
    materialize(
        &fs,
        &area.target(),
        MaterializeOptions::new().preserve_owners(true),
    )
    .unwrap();
    let t = area.target();
    let own = |s: &str| {
        let m = fs::symlink_metadata(t.join(s)).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(own("bin/tool"), (1234, 5678));
    assert_eq!(own("tool-again"), (1234, 5678));
    assert_eq!(own("run"), (42, 43));
    assert_eq!(own("locked"), (7, 8));
    assert_eq!(own("empty"), (0, 0));
    // chown clears setuid; the mode is applied after it.
    assert_eq!(
        fs::metadata(t.join("bin/tool")).unwrap().mode() & 0o7777,
        0o4755
    );
    assert_same(&fs, &t);
}

#[test]
fn a_directory_swapped_for_a_symlink_mid_write_leads_nowhere() {
    // Someone with access to the target replaces a directory being filled with a symlink
    // to the outside. Handles already open keep pointing at the moved directory (inside the
    // target), and reopening by name refuses the symlink: either way nothing lands outside.
    let fs = MemFs::new();
    for d in 0..40 {
        fs.create_dir_all(&p(&format!("/a/d{d}"))).unwrap();
        for f in 0..25 {
            fs.write_file(&p(&format!("/a/d{d}/f{f}")), Bytes::from(vec![b'x'; 4096]))
                .unwrap();
        }
    }
    for _ in 0..3 {
        let area = Area::new();
        let target = area.target();
        let outside = area.outside();
        let attacker = std::thread::spawn(move || {
            let a = target.join("a");
            for _ in 0..2_000_000 {
                if fs::symlink_metadata(&a).is_ok_and(|m| m.is_dir())
                    && fs::rename(&a, target.join("moved")).is_ok()
                {
                    symlink(&outside, &a).unwrap();
                    return true;
                }
                std::hint::spin_loop();
            }
            false
        });
        let result = materialize(&fs, &area.target(), MaterializeOptions::default());
        let swapped = attacker.join().unwrap();
        area.assert_outside_untouched();
        if swapped {
            // The moved directory holds whatever was written through open handles.
            assert!(area.target().join("moved").is_dir());
        }
        if let Err(e) = result {
            assert!(matches!(e, MaterializeError::Io { .. }), "{e}");
        }
    }
}

//! `DirVolume` over real temporary directories: listing, reading, attributes, and above all
//! that host symlinks never lead out of the directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::sync::Arc;

use bytes::Bytes;
use vfs_overlay::{
    DirVolume, FileSystem, FileType, Footprint, MemFs, MountPolicy, Union, VfsError, VfsPath,
};

fn p(s: &str) -> VfsPath {
    VfsPath::new(s).unwrap()
}

/// A host tree: `root/` with files, a subdirectory and hostile links, next to a sibling
/// `outside/` holding a secret that must never be readable through the volume.
struct Fixture {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("secret"), b"outside secret").unwrap();
    fs::write(root.join("etc/passwd"), b"inside passwd").unwrap();
    fs::write(root.join("secret"), b"inside secret").unwrap();
    fs::write(root.join("sub/file.txt"), b"hello").unwrap();
    fs::write(root.join("sub/deeper/x"), b"deep").unwrap();
    fs::set_permissions(
        root.join("sub/file.txt"),
        fs::Permissions::from_mode(0o4751),
    )
    .unwrap();
    fs::hard_link(root.join("sub/file.txt"), root.join("hard")).unwrap();
    symlink("/etc", root.join("etc_abs")).unwrap();
    symlink("../", root.join("up")).unwrap();
    symlink("../outside/secret", root.join("sub/escape")).unwrap();
    symlink(&outside, root.join("outside_abs")).unwrap();
    symlink("sub/file.txt", root.join("rel")).unwrap();
    Fixture { _tmp: tmp, root }
}

#[test]
fn lists_and_reads() {
    let f = fixture();
    let vol = DirVolume::open(&f.root).unwrap();
    let names: Vec<_> = vol
        .read_dir(&p("/"))
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.kind))
        .collect();
    assert_eq!(
        names,
        vec![
            ("etc".to_owned(), FileType::Dir),
            ("etc_abs".to_owned(), FileType::Symlink),
            ("hard".to_owned(), FileType::File),
            ("outside_abs".to_owned(), FileType::Symlink),
            ("rel".to_owned(), FileType::Symlink),
            ("secret".to_owned(), FileType::File),
            ("sub".to_owned(), FileType::Dir),
            ("up".to_owned(), FileType::Symlink),
        ]
    );
    assert_eq!(vol.read_all(&p("/sub/file.txt")).unwrap(), "hello");
    assert_eq!(vol.read_all(&p("/rel")).unwrap(), "hello");
    assert_eq!(vol.read_all(&p("/sub/deeper/x")).unwrap(), "deep");
    let mut s = String::new();
    std::io::Read::read_to_string(&mut vol.open(&p("/sub/deeper/x")).unwrap(), &mut s).unwrap();
    assert_eq!(s, "deep");

    let meta = vol.metadata(&p("/sub/file.txt")).unwrap();
    assert_eq!(meta.kind, FileType::File);
    assert_eq!(meta.mode, 0o4751);
    assert_eq!(meta.size, 5);
    assert_eq!(meta.nlink, 2);
    let host = fs::metadata(f.root.join("sub/file.txt")).unwrap();
    assert_eq!(meta.mtime, host.modified().unwrap());
    assert_eq!(vol.read_link(&p("/etc_abs")).unwrap(), "/etc");
    assert_eq!(vol.read_link(&p("/up")).unwrap(), "../");
    assert_eq!(vol.symlink_metadata(&p("/up")).unwrap().size, 3);
    assert!(matches!(
        vol.read_link(&p("/secret")),
        Err(VfsError::NotASymlink(_))
    ));
    assert!(matches!(
        vol.read_all(&p("/missing")),
        Err(VfsError::NotFound(_))
    ));
    assert!(matches!(
        vol.read_all(&p("/sub")),
        Err(VfsError::IsADirectory(_))
    ));
    assert!(matches!(
        vol.read_dir(&p("/secret")),
        Err(VfsError::NotADirectory(_))
    ));
}

#[test]
fn host_symlinks_stay_inside_the_root() {
    let f = fixture();
    let vol = DirVolume::open(&f.root).unwrap();
    // `/etc` in a link means the volume's `/etc`, not the host's.
    assert_eq!(
        vol.read_all(&p("/etc_abs/passwd")).unwrap(),
        "inside passwd"
    );
    assert_eq!(
        vol.canonicalize(&p("/etc_abs/passwd")).unwrap(),
        p("/etc/passwd")
    );
    // `..` stops at the volume's root, however often it is repeated.
    assert_eq!(vol.read_all(&p("/up/secret")).unwrap(), "inside secret");
    assert_eq!(
        vol.read_all(&p("/up/up/up/up/secret")).unwrap(),
        "inside secret"
    );
    assert_eq!(
        vol.read_all(&p("/sub/escape")).unwrap_err(),
        VfsError::NotFound(p("/outside"))
    );
    // An absolute link to the real sibling directory lands inside the volume too, where
    // no such path exists.
    assert!(matches!(
        vol.read_all(&p("/outside_abs/secret")),
        Err(VfsError::NotFound(_))
    ));
    assert!(
        vol.read_dir(&p("/up"))
            .unwrap()
            .iter()
            .any(|e| e.name == "sub")
    );
    assert!(!vol.exists(&p("/etc_abs/hostname")));
}

#[test]
fn node_calls_never_follow_host_symlinks() {
    // Even the primitives, given a path through a symlink (which the resolver would never
    // hand them), refuse instead of following it on the host.
    let f = fixture();
    let vol = DirVolume::open(&f.root).unwrap();
    assert!(matches!(
        vol.node_read_all(&p("/outside_abs/secret")),
        Err(VfsError::NotADirectory(_))
    ));
    assert!(matches!(
        vol.node_read_dir(&p("/up")),
        Err(VfsError::NotADirectory(_) | VfsError::InvalidOperation { .. })
    ));
    assert!(vol.node_read_all(&p("/sub/escape")).is_err());
    assert!(vol.node_metadata(&p("/up")).unwrap().is_symlink());
}

#[test]
fn is_read_only() {
    let f = fixture();
    let vol = DirVolume::open(&f.root).unwrap();
    let ro = |r: Result<(), VfsError>| assert!(matches!(r, Err(VfsError::ReadOnly(_))), "{r:?}");
    ro(vol.write_file(&p("/new"), Bytes::from_static(b"x")));
    ro(vol.create_dir(&p("/newdir")));
    ro(vol.remove(&p("/secret")));
    ro(vol.set_mode(&p("/secret"), 0o777));
    ro(vol.symlink("x", &p("/l")));
    assert_eq!(fs::read(f.root.join("secret")).unwrap(), b"inside secret");
    assert!(!f.root.join("new").exists());
}

#[test]
fn hardlinks_share_an_id_and_count_once() {
    let f = fixture();
    let vol = DirVolume::open(&f.root).unwrap();
    let a = vol.node_id(&p("/hard")).unwrap();
    assert_eq!(vol.node_id(&p("/sub/file.txt")), Some(a));
    assert_ne!(vol.node_id(&p("/secret")), vol.node_id(&p("/hard")));
    assert_eq!(vol.node_id(&p("/sub")), None);
    let fp = vol.footprint().unwrap();
    assert_eq!(
        fp,
        Footprint {
            files: 5,
            dirs: 4,
            symlinks: 5,
            others: 0,
            bytes: (5 + 4 + 13 + 13) as u64,
        }
    );
}

#[test]
fn mounts_in_a_union() {
    let f = fixture();
    let vol = DirVolume::open(&f.root).unwrap();
    let u = Union::new();
    let base = MemFs::new();
    base.write_file(&p("/secret"), Bytes::from_static(b"union root"))
        .unwrap();
    u.mount(&p("/"), Arc::new(base), MountPolicy::Fail).unwrap();
    u.mount(&p("/dev/pkg"), Arc::new(vol), MountPolicy::Fail)
        .unwrap();
    // Inside a union a link is resolved against the union, as any VFS link is: `..` climbs
    // to the mount's parent, `/etc` is the union's, and nothing reaches the host's.
    assert_eq!(u.read_all(&p("/dev/pkg/sub/file.txt")).unwrap(), "hello");
    assert_eq!(u.canonicalize(&p("/dev/pkg/up")).unwrap(), p("/dev"));
    assert_eq!(
        u.read_all(&p("/dev/pkg/up/pkg/secret")).unwrap(),
        "inside secret"
    );
    assert_eq!(
        u.read_all(&p("/dev/pkg/up/up/up/secret")).unwrap_err(),
        VfsError::NotFound(p("/dev/up"))
    );
    assert_eq!(
        u.read_all(&p("/dev/pkg/etc_abs/passwd")).unwrap_err(),
        VfsError::NotFound(p("/etc"))
    );
}

#[test]
fn open_errors_name_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let err = DirVolume::open(&missing).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn rejects_non_utf8_names() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    fs::write(
        tmp.path().join(std::ffi::OsStr::from_bytes(b"bad\xff")),
        b"x",
    )
    .unwrap();
    let vol = DirVolume::open(tmp.path()).unwrap();
    assert!(matches!(
        vol.read_dir(&p("/")),
        Err(VfsError::InvalidPath { .. })
    ));
}

#[test]
fn a_fifo_is_listed_never_opened() {
    use rustix::fs::{CWD, FileType as HostType, Mode, mknodat};
    let tmp = tempfile::tempdir().unwrap();
    mknodat(
        CWD,
        tmp.path().join("pipe").as_path(),
        HostType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let vol = DirVolume::open(tmp.path()).unwrap();
    assert_eq!(vol.read_dir(&p("/")).unwrap()[0].kind, FileType::Other);
    assert_eq!(vol.metadata(&p("/pipe")).unwrap().kind, FileType::Other);
    // Opening it for reading would block forever without O_NONBLOCK.
    assert!(matches!(
        vol.read_all(&p("/pipe")),
        Err(VfsError::InvalidOperation { .. })
    ));
    assert!(vol.open(&p("/pipe")).is_err());
    assert_eq!(vol.footprint().unwrap().others, 1);
}

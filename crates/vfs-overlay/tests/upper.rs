//! `WritableOverlay`: copy-up, deletes hiding lower subtrees, opaque recreation.

// Helpers outside `#[test]` functions panic on purpose too: a failed setup is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::{names, p};
use vfs_overlay::{FileSystem, MemFs, Overlay, VfsError, VfsPath, WritableOverlay};

fn base() -> (Arc<MemFs>, WritableOverlay) {
    let lower = MemFs::new();
    for (path, content) in [
        ("/etc/conf", "lower"),
        ("/usr/lib/a", "a"),
        ("/usr/lib/b", "b"),
    ] {
        let path = p(path);
        lower.create_dir_all(&path.parent().unwrap()).unwrap();
        lower
            .write_file(&path, Bytes::copy_from_slice(content.as_bytes()))
            .unwrap();
    }
    lower.set_mode(&p("/etc/conf"), 0o600).unwrap();
    lower.set_owner(&p("/etc/conf"), 7, 8).unwrap();
    lower
        .set_mtime(
            &p("/etc/conf"),
            SystemTime::UNIX_EPOCH + Duration::from_secs(99),
        )
        .unwrap();
    lower.set_mode(&p("/etc"), 0o750).unwrap();
    lower.symlink("usr/lib", &p("/lib")).unwrap();
    let lower = Arc::new(lower);
    let overlay = Overlay::new(vec![lower.clone() as Arc<dyn FileSystem>]).unwrap();
    (lower, WritableOverlay::new(overlay))
}

#[test]
fn reads_fall_through_and_writes_copy_up() {
    let (lower, o) = base();
    assert_eq!(o.read_all(&p("/lib/a")).unwrap(), "a");
    o.write_file(&p("/etc/conf"), Bytes::from_static(b"upper"))
        .unwrap();
    assert_eq!(o.read_all(&p("/etc/conf")).unwrap(), "upper");
    assert_eq!(lower.read_all(&p("/etc/conf")).unwrap(), "lower");
    // Attributes of the file and of its copied-up parent survive.
    let m = o.metadata(&p("/etc/conf")).unwrap();
    assert_eq!((m.mode, m.uid, m.gid), (0o600, 7, 8));
    assert_eq!(o.metadata(&p("/etc")).unwrap().mode, 0o750);
    assert_eq!(o.upper().metadata(&p("/etc")).unwrap().mode, 0o750);
    // Writing through a lower symlink copies the directory it leads to.
    o.write_file(&p("/lib/c"), Bytes::from_static(b"c"))
        .unwrap();
    assert_eq!(names(&o, "/usr/lib"), ["a", "b", "c"]);
    assert!(!lower.exists(&p("/usr/lib/c")));
}

#[test]
fn attribute_changes_copy_up() {
    let (lower, o) = base();
    o.set_mode(&p("/usr/lib/a"), 0o755).unwrap();
    assert_eq!(o.metadata(&p("/usr/lib/a")).unwrap().mode, 0o755);
    assert_eq!(lower.metadata(&p("/usr/lib/a")).unwrap().mode, 0o644);
    assert_eq!(o.read_all(&p("/usr/lib/a")).unwrap(), "a");
    o.set_len(&p("/usr/lib/b"), 0).unwrap();
    assert_eq!(o.read_all(&p("/usr/lib/b")).unwrap(), "");
}

#[test]
fn deletes_hide_lower_subtrees_and_recreated_dirs_are_opaque() {
    let (lower, o) = base();
    o.remove(&p("/usr/lib/a")).unwrap();
    assert_eq!(names(&o, "/usr/lib"), ["b"]);
    assert_eq!(
        o.remove(&p("/usr")),
        Err(VfsError::DirectoryNotEmpty(p("/usr")))
    );
    o.remove_dir_all(&p("/usr")).unwrap();
    assert!(!o.exists(&p("/usr/lib/b")));
    assert_eq!(names(&o, "/"), ["etc", "lib"]);
    // The symlink now dangles.
    assert_eq!(o.read_all(&p("/lib/b")), Err(VfsError::NotFound(p("/usr"))));
    o.create_dir_all(&p("/usr/lib")).unwrap();
    assert_eq!(names(&o, "/usr/lib"), Vec::<String>::new());
    assert_eq!(lower.read_all(&p("/usr/lib/b")).unwrap(), "b");
    o.write_file(&p("/usr/lib/a"), Bytes::from_static(b"new"))
        .unwrap();
    assert_eq!(names(&o, "/usr/lib"), ["a"]);
}

#[test]
fn renames() {
    let (_lower, o) = base();
    o.rename(&p("/usr/lib/a"), &p("/etc/a")).unwrap();
    assert_eq!(o.read_all(&p("/etc/a")).unwrap(), "a");
    assert!(!o.exists(&p("/usr/lib/a")));
    // A file over a lower file replaces it.
    o.rename(&p("/etc/a"), &p("/usr/lib/b")).unwrap();
    assert_eq!(o.read_all(&p("/usr/lib/b")).unwrap(), "a");
    assert_eq!(names(&o, "/usr/lib"), ["b"]);
    // Directories with lower content cannot move; upper-only ones can.
    assert!(matches!(
        o.rename(&p("/usr"), &p("/u")),
        Err(VfsError::CrossDevice { .. })
    ));
    o.create_dir(&p("/new")).unwrap();
    o.write_file(&p("/new/f"), Bytes::from_static(b"f"))
        .unwrap();
    o.rename(&p("/new"), &p("/moved")).unwrap();
    assert_eq!(o.read_all(&p("/moved/f")).unwrap(), "f");
    assert_eq!(
        o.rename(&p("/moved"), &p("/etc")),
        Err(VfsError::DirectoryNotEmpty(p("/etc")))
    );
}

#[test]
fn creation_conflicts() {
    let (_lower, o) = base();
    assert_eq!(
        o.create_dir(&p("/etc")),
        Err(VfsError::AlreadyExists(p("/etc")))
    );
    assert_eq!(
        o.symlink("x", &p("/etc/conf")),
        Err(VfsError::AlreadyExists(p("/etc/conf")))
    );
    assert_eq!(
        o.write_file(&p("/usr"), Bytes::new()),
        Err(VfsError::IsADirectory(p("/usr")))
    );
    assert_eq!(
        o.write_file(&p("/nope/f"), Bytes::new()),
        Err(VfsError::NotFound(p("/nope")))
    );
    o.hard_link(&p("/etc/conf"), &p("/etc/conf2")).unwrap();
    o.write_file(&p("/etc/conf2"), Bytes::from_static(b"shared"))
        .unwrap();
    assert_eq!(o.read_all(&p("/etc/conf")).unwrap(), "shared");
}

mod model {
    //! A writable overlay must behave like a plain `MemFs` holding the merged tree, except
    //! that renaming a directory with lower contents is refused as cross-device.

    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use vfs_overlay::FileType;

    use super::*;

    type Tree = BTreeMap<VfsPath, (FileType, u32, Bytes)>;

    fn walk(fs: &dyn FileSystem) -> Tree {
        let mut out = Tree::new();
        let mut dirs = vec![VfsPath::root()];
        while let Some(dir) = dirs.pop() {
            for e in fs.read_dir(&dir).unwrap() {
                let path = dir.join(&e.name).unwrap();
                let meta = fs.symlink_metadata(&path).unwrap();
                let content = match e.kind {
                    FileType::File => fs.read_all(&path).unwrap(),
                    FileType::Symlink => Bytes::from(fs.read_link(&path).unwrap()),
                    _ => Bytes::new(),
                };
                if e.kind == FileType::Dir {
                    dirs.push(path.clone());
                }
                out.insert(path, (e.kind, meta.mode, content));
            }
        }
        out
    }

    fn copy_of(tree: &Tree) -> MemFs {
        let fs = MemFs::new();
        for (path, (kind, mode, content)) in tree {
            match kind {
                FileType::Dir => fs.create_dir(path).unwrap(),
                FileType::Symlink => {
                    fs.symlink(std::str::from_utf8(content).unwrap(), path)
                        .unwrap();
                }
                _ => fs.write_file(path, content.clone()).unwrap(),
            }
            if *kind != FileType::Symlink {
                fs.set_mode(path, *mode).unwrap();
            }
        }
        fs
    }

    fn lower() -> Arc<dyn FileSystem> {
        let fs = MemFs::new();
        for dir in ["/a", "/a/b", "/b", "/b/a"] {
            fs.create_dir(&p(dir)).unwrap();
        }
        for file in ["/a/a", "/a/b/a", "/b/b", "/l/x"] {
            let _ = fs.write_file(&p(file), Bytes::from_static(b"lower"));
        }
        fs.symlink("b", &p("/l")).unwrap();
        fs.symlink("../b/a", &p("/a/l")).unwrap();
        Arc::new(fs)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn behaves_like_a_plain_filesystem(ops in prop::collection::vec(common::op(0..0o1000), 0..12)) {
            let o = WritableOverlay::new(Overlay::new(vec![lower()]).unwrap());
            let reference = copy_of(&walk(&o));
            for op in &ops {
                let got = common::apply(&o, op);
                if matches!(got, Err(VfsError::CrossDevice { .. })) {
                    continue;
                }
                let want = common::apply(&reference, op);
                prop_assert_eq!(&got, &want, "{:?}", op);
                prop_assert_eq!(walk(&o), walk(&reference), "after {:?}", op);
            }
        }
    }
}

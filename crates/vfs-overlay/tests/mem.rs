//! `MemFs` and the shared symlink resolver, through the public API.

// Helpers outside `#[test]` functions panic on purpose too: a failed setup is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Seek, SeekFrom};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::p;
use vfs_overlay::{DirEntry, FileSystem, FileType, MAX_SYMLINK_HOPS, MemFs, VfsError, VfsPath};

fn fs_with(files: &[(&str, &str)]) -> MemFs {
    let fs = MemFs::new();
    for (path, content) in files {
        let path = p(path);
        fs.create_dir_all(&path.parent().unwrap()).unwrap();
        fs.write_file(&path, Bytes::copy_from_slice(content.as_bytes()))
            .unwrap();
    }
    fs
}

#[test]
fn write_read_and_metadata() {
    let fs = fs_with(&[("/a/b/c.txt", "hello")]);
    assert_eq!(fs.read_all(&p("/a/b/c.txt")).unwrap(), "hello");
    let m = fs.metadata(&p("/a/b/c.txt")).unwrap();
    assert_eq!(
        (m.kind, m.mode, m.size, m.nlink),
        (FileType::File, 0o644, 5, 1)
    );
    let d = fs.metadata(&p("/a")).unwrap();
    assert_eq!((d.kind, d.mode, d.nlink), (FileType::Dir, 0o755, 3));
    assert_eq!(fs.metadata(&p("/")).unwrap().kind, FileType::Dir);

    let mut r = fs.open(&p("/a/b/c.txt")).unwrap();
    r.seek(SeekFrom::Start(1)).unwrap();
    let mut s = String::new();
    r.read_to_string(&mut s).unwrap();
    assert_eq!(s, "ello");
}

#[test]
fn read_all_is_zero_copy() {
    let fs = MemFs::new();
    let data = Bytes::from(vec![7u8; 4096]);
    fs.write_file(&p("/f"), data.clone()).unwrap();
    let back = fs.read_all(&p("/f")).unwrap();
    assert_eq!(back.as_ptr(), data.as_ptr());
}

#[test]
fn errors_name_the_path() {
    let fs = fs_with(&[("/dir/file", "x")]);
    assert_eq!(
        fs.metadata(&p("/nope")),
        Err(VfsError::NotFound(p("/nope")))
    );
    assert_eq!(
        fs.read_all(&p("/dir")),
        Err(VfsError::IsADirectory(p("/dir")))
    );
    assert_eq!(
        fs.read_dir(&p("/dir/file")),
        Err(VfsError::NotADirectory(p("/dir/file")))
    );
    assert_eq!(
        fs.metadata(&p("/dir/file/x")),
        Err(VfsError::NotADirectory(p("/dir/file")))
    );
    assert_eq!(
        fs.read_link(&p("/dir")),
        Err(VfsError::NotASymlink(p("/dir")))
    );
    assert_eq!(
        fs.create_dir(&p("/dir")),
        Err(VfsError::AlreadyExists(p("/dir")))
    );
    assert_eq!(fs.create_dir(&p("/x/y")), Err(VfsError::NotFound(p("/x"))));
    assert_eq!(
        fs.remove(&p("/dir")),
        Err(VfsError::DirectoryNotEmpty(p("/dir")))
    );
    assert!(matches!(
        fs.remove(&p("/")),
        Err(VfsError::InvalidOperation { .. })
    ));
    assert!(
        fs.read_all(&p("/nope"))
            .unwrap_err()
            .to_string()
            .contains("/nope")
    );
}

#[test]
fn read_dir_is_sorted_with_kinds() {
    let fs = fs_with(&[("/d/b", ""), ("/d/a", ""), ("/d/c/x", "")]);
    fs.symlink("a", &p("/d/0link")).unwrap();
    let names: Vec<DirEntry> = fs.read_dir(&p("/d")).unwrap();
    let got: Vec<(&str, FileType)> = names.iter().map(|e| (e.name.as_str(), e.kind)).collect();
    assert_eq!(
        got,
        [
            ("0link", FileType::Symlink),
            ("a", FileType::File),
            ("b", FileType::File),
            ("c", FileType::Dir)
        ]
    );
}

#[test]
fn truncate_and_extend() {
    let fs = fs_with(&[("/f", "abcdef")]);
    fs.set_len(&p("/f"), 3).unwrap();
    assert_eq!(fs.read_all(&p("/f")).unwrap(), "abc");
    fs.set_len(&p("/f"), 5).unwrap();
    assert_eq!(fs.read_all(&p("/f")).unwrap(), &b"abc\0\0"[..]);
    assert!(matches!(
        fs.set_len(&p("/f"), u64::MAX),
        Err(VfsError::InvalidOperation { .. })
    ));
    assert_eq!(fs.read_all(&p("/f")).unwrap().len(), 5);
}

#[test]
fn remove_and_remove_dir_all() {
    let fs = fs_with(&[("/a/b/c", "1"), ("/a/d", "2"), ("/e", "3")]);
    fs.remove(&p("/e")).unwrap();
    assert!(!fs.exists(&p("/e")));
    fs.remove_dir_all(&p("/a")).unwrap();
    assert!(!fs.exists(&p("/a/b/c")));
    assert_eq!(fs.read_dir(&p("/")).unwrap(), []);
    fs.create_dir(&p("/empty")).unwrap();
    fs.remove(&p("/empty")).unwrap();
    assert_eq!(
        fs.remove(&p("/empty")),
        Err(VfsError::NotFound(p("/empty")))
    );
}

#[test]
fn rename_rules() {
    let fs = fs_with(&[("/a/f", "1"), ("/b/g", "2"), ("/c/x", "3")]);
    fs.create_dir(&p("/empty")).unwrap();
    // File over file replaces.
    fs.rename(&p("/a/f"), &p("/b/g")).unwrap();
    assert_eq!(fs.read_all(&p("/b/g")).unwrap(), "1");
    assert!(!fs.exists(&p("/a/f")));
    // Directory over an empty directory replaces it; over a non-empty one it fails.
    fs.rename(&p("/a"), &p("/empty")).unwrap();
    assert!(!fs.exists(&p("/a")));
    assert_eq!(
        fs.rename(&p("/empty"), &p("/c")),
        Err(VfsError::DirectoryNotEmpty(p("/c")))
    );
    // Kind mismatches.
    assert_eq!(
        fs.rename(&p("/b/g"), &p("/c")),
        Err(VfsError::IsADirectory(p("/c")))
    );
    assert_eq!(
        fs.rename(&p("/c"), &p("/b/g")),
        Err(VfsError::NotADirectory(p("/b/g")))
    );
    // Into itself.
    assert!(matches!(
        fs.rename(&p("/c"), &p("/c/sub")),
        Err(VfsError::InvalidOperation { .. })
    ));
    // Missing destination parent leaves the source in place.
    assert_eq!(
        fs.rename(&p("/c/x"), &p("/nope/x")),
        Err(VfsError::NotFound(p("/nope")))
    );
    assert_eq!(fs.read_all(&p("/c/x")).unwrap(), "3");
    // Whole subtree moves.
    fs.rename(&p("/c"), &p("/moved")).unwrap();
    assert_eq!(fs.read_all(&p("/moved/x")).unwrap(), "3");
}

#[test]
fn hardlinks_share_content_and_attributes() {
    let fs = fs_with(&[("/f", "one")]);
    fs.hard_link(&p("/f"), &p("/g")).unwrap();
    assert_eq!(fs.metadata(&p("/g")).unwrap().nlink, 2);
    fs.write_file(&p("/g"), Bytes::from_static(b"two")).unwrap();
    assert_eq!(fs.read_all(&p("/f")).unwrap(), "two");
    fs.set_mode(&p("/f"), 0o4755).unwrap();
    assert_eq!(fs.metadata(&p("/g")).unwrap().mode, 0o4755);
    // Renaming one name onto the other is a no-op; removing one keeps the other.
    fs.rename(&p("/f"), &p("/g")).unwrap();
    assert!(fs.exists(&p("/f")));
    fs.remove(&p("/f")).unwrap();
    assert_eq!(fs.read_all(&p("/g")).unwrap(), "two");
    assert_eq!(fs.metadata(&p("/g")).unwrap().nlink, 1);
    fs.create_dir(&p("/d")).unwrap();
    assert!(matches!(
        fs.hard_link(&p("/d"), &p("/d2")),
        Err(VfsError::InvalidOperation { .. })
    ));
    assert_eq!(
        fs.hard_link(&p("/g"), &p("/d")),
        Err(VfsError::AlreadyExists(p("/d")))
    );
}

#[test]
fn attributes() {
    let fs = fs_with(&[("/f", "")]);
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    fs.set_mode(&p("/f"), 0o170_600).unwrap();
    fs.set_owner(&p("/f"), 1000, 100).unwrap();
    fs.set_mtime(&p("/f"), t).unwrap();
    let m = fs.metadata(&p("/f")).unwrap();
    assert_eq!((m.mode, m.uid, m.gid, m.mtime), (0o600, 1000, 100, t));
}

#[test]
fn symlinks_relative_absolute_and_chains() {
    let fs = fs_with(&[("/usr/lib/libz.so.1.3", "zlib"), ("/etc/conf", "c")]);
    fs.symlink("libz.so.1.3", &p("/usr/lib/libz.so.1")).unwrap();
    fs.symlink("/usr/lib/libz.so.1", &p("/usr/lib/libz.so"))
        .unwrap();
    fs.symlink("usr/lib", &p("/lib")).unwrap();
    fs.symlink("../../etc", &p("/usr/lib/etc")).unwrap();

    assert_eq!(fs.read_all(&p("/lib/libz.so")).unwrap(), "zlib");
    assert_eq!(
        fs.read_link(&p("/lib/libz.so")).unwrap(),
        "/usr/lib/libz.so.1"
    );
    assert_eq!(
        fs.symlink_metadata(&p("/lib/libz.so")).unwrap().kind,
        FileType::Symlink
    );
    assert_eq!(fs.symlink_metadata(&p("/lib/libz.so")).unwrap().size, 18);
    assert_eq!(fs.metadata(&p("/lib/libz.so")).unwrap().size, 4);
    assert_eq!(
        fs.canonicalize(&p("/lib/libz.so")).unwrap(),
        p("/usr/lib/libz.so.1.3")
    );
    assert_eq!(fs.read_all(&p("/lib/etc/conf")).unwrap(), "c");
    assert_eq!(fs.read_dir(&p("/lib")).unwrap().len(), 4);
}

#[test]
fn symlinks_never_escape_root() {
    let fs = fs_with(&[("/etc/passwd", "inside")]);
    fs.create_dir(&p("/a")).unwrap();
    fs.symlink("../../../../../etc/passwd", &p("/a/up"))
        .unwrap();
    fs.symlink("/../../etc", &p("/a/abs")).unwrap();
    assert_eq!(fs.read_all(&p("/a/up")).unwrap(), "inside");
    assert_eq!(fs.read_all(&p("/a/abs/passwd")).unwrap(), "inside");
    assert_eq!(fs.canonicalize(&p("/a/up")).unwrap(), p("/etc/passwd"));
}

#[test]
fn symlink_loops_and_limits() {
    let fs = MemFs::new();
    fs.symlink("b", &p("/a")).unwrap();
    fs.symlink("a", &p("/b")).unwrap();
    assert_eq!(fs.read_all(&p("/a")), Err(VfsError::TooManyLinks(p("/a"))));
    fs.symlink(".", &p("/self")).unwrap();
    let deep = format!("/{}", vec!["self"; 60].join("/"));
    assert_eq!(
        fs.metadata(&p(&deep)),
        Err(VfsError::TooManyLinks(p(&deep)))
    );

    // Exactly the limit is fine, one more is not.
    fs.write_file(&p("/t0"), Bytes::from_static(b"end"))
        .unwrap();
    for i in 1..=MAX_SYMLINK_HOPS + 1 {
        fs.symlink(&format!("t{}", i - 1), &p(&format!("/t{i}")))
            .unwrap();
    }
    assert_eq!(
        fs.read_all(&p(&format!("/t{MAX_SYMLINK_HOPS}"))).unwrap(),
        "end"
    );
    let over = p(&format!("/t{}", MAX_SYMLINK_HOPS + 1));
    assert_eq!(
        fs.read_all(&over),
        Err(VfsError::TooManyLinks(over.clone()))
    );
    // lstat does not follow the final link, so it still works.
    assert_eq!(fs.symlink_metadata(&over).unwrap().kind, FileType::Symlink);
}

#[test]
fn final_symlink_handling() {
    let fs = fs_with(&[("/target", "t")]);
    fs.symlink("target", &p("/link")).unwrap();
    fs.symlink("missing", &p("/dangling")).unwrap();
    // Writing through a dangling link creates its target, like open(O_CREAT).
    fs.write_file(&p("/dangling"), Bytes::from_static(b"new"))
        .unwrap();
    assert_eq!(fs.read_all(&p("/missing")).unwrap(), "new");
    // remove and rename act on the link itself.
    fs.rename(&p("/link"), &p("/link2")).unwrap();
    assert_eq!(fs.read_link(&p("/link2")).unwrap(), "target");
    fs.remove(&p("/link2")).unwrap();
    assert_eq!(fs.read_all(&p("/target")).unwrap(), "t");
    // A symlink to a file used as a directory.
    fs.symlink("target", &p("/flink")).unwrap();
    assert_eq!(
        fs.metadata(&p("/flink/x")),
        Err(VfsError::NotADirectory(p("/target")))
    );
    // Invalid targets.
    assert!(matches!(
        fs.symlink("", &p("/e")),
        Err(VfsError::InvalidPath { .. })
    ));
    assert!(matches!(
        fs.symlink("a\0b", &p("/e")),
        Err(VfsError::InvalidPath { .. })
    ));
}

#[test]
fn deep_tree_does_not_overflow() {
    let fs = MemFs::new();
    let mut path = VfsPath::root();
    for _ in 0..3000 {
        path = path.join("d").unwrap();
    }
    fs.create_dir_all(&path).unwrap();
    fs.write_file(&path.join("f").unwrap(), Bytes::from_static(b"deep"))
        .unwrap();
    assert_eq!(fs.read_all(&path.join("f").unwrap()).unwrap(), "deep");
    fs.remove_dir_all(&p("/d")).unwrap();
}

#[test]
fn shared_across_threads() {
    let fs = std::sync::Arc::new(fs_with(&[("/f", "x")]));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let fs = fs.clone();
            std::thread::spawn(move || {
                let path = p(&format!("/t{i}"));
                fs.write_file(&path, Bytes::from(vec![i as u8; 10]))
                    .unwrap();
                fs.read_all(&p("/f")).unwrap()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), "x");
    }
    assert_eq!(fs.read_dir(&p("/")).unwrap().len(), 5);
}

#[test]
fn nul_in_a_stored_target_is_an_error_not_a_panic() {
    // Only reachable through the primitive, which does not validate, like a raw archive.
    let fs = MemFs::new();
    fs.node_symlink("a\0b", &p("/l")).unwrap();
    assert!(matches!(
        fs.metadata(&p("/l")),
        Err(VfsError::InvalidPath { .. })
    ));
}

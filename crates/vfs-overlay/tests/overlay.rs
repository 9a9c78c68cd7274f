//! `Overlay`: OCI layer semantics (whiteouts, opaque directories, replacement, merging).

// Helpers outside `#[test]` functions panic on purpose too: a failed setup is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use bytes::Bytes;
use vfs_overlay::{FileSystem, FileType, MemFs, Overlay, VfsError, VfsPath};

fn p(s: &str) -> VfsPath {
    VfsPath::new(s).unwrap()
}

/// A layer from `(path, content)`; a content of `"/"` makes a directory, `"->x"` a symlink.
fn layer(entries: &[(&str, &str)]) -> Arc<dyn FileSystem> {
    let fs = MemFs::new();
    for (path, content) in entries {
        let path = p(path);
        fs.create_dir_all(&path.parent().unwrap()).unwrap();
        if *content == "/" {
            fs.create_dir_all(&path).unwrap();
        } else if let Some(target) = content.strip_prefix("->") {
            fs.symlink(target, &path).unwrap();
        } else {
            fs.write_file(&path, Bytes::copy_from_slice(content.as_bytes()))
                .unwrap();
        }
    }
    Arc::new(fs)
}

fn names(fs: &dyn FileSystem, dir: &str) -> Vec<String> {
    fs.read_dir(&p(dir))
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect()
}

#[test]
fn upper_files_replace_and_directories_merge() {
    let o = Overlay::new(vec![
        layer(&[("/etc/a", "lower-a"), ("/etc/b", "lower-b")]),
        layer(&[("/etc/b", "upper-b"), ("/etc/c", "upper-c")]),
    ])
    .unwrap();
    assert_eq!(names(&o, "/etc"), ["a", "b", "c"]);
    assert_eq!(o.read_all(&p("/etc/a")).unwrap(), "lower-a");
    assert_eq!(o.read_all(&p("/etc/b")).unwrap(), "upper-b");
}

#[test]
fn directory_attributes_come_from_the_upper_layer() {
    let lower = layer(&[("/d/f", "x")]);
    let upper = layer(&[("/d", "/")]);
    upper.set_mode(&p("/d"), 0o700).unwrap();
    let o = Overlay::new(vec![lower, upper]).unwrap();
    assert_eq!(o.metadata(&p("/d")).unwrap().mode, 0o700);
    assert_eq!(names(&o, "/d"), ["f"]);
}

#[test]
fn whiteout_hides_lower_only() {
    let o = Overlay::new(vec![
        layer(&[("/a/gone", "x"), ("/a/dir/deep", "y"), ("/a/keep", "k")]),
        // The same layer both whites out `gone` and recreates it: its own entry stays.
        layer(&[("/a/.wh.gone", ""), ("/a/gone", "new"), ("/a/.wh.dir", "")]),
    ])
    .unwrap();
    assert_eq!(names(&o, "/a"), ["gone", "keep"]);
    assert_eq!(o.read_all(&p("/a/gone")).unwrap(), "new");
    assert_eq!(
        o.metadata(&p("/a/dir/deep")),
        Err(VfsError::NotFound(p("/a/dir")))
    );
}

#[test]
fn whiteout_then_recreate_in_a_later_layer() {
    let o = Overlay::new(vec![
        layer(&[("/d/old", "1")]),
        layer(&[("/.wh.d", "")]),
        layer(&[("/d/new", "2")]),
    ])
    .unwrap();
    assert_eq!(names(&o, "/d"), ["new"]);
}

#[test]
fn opaque_directory_hides_all_lower_children() {
    let o = Overlay::new(vec![
        layer(&[("/d/a", "1"), ("/d/sub/b", "2"), ("/other", "o")]),
        layer(&[("/d/.wh..wh..opq", ""), ("/d/c", "3")]),
    ])
    .unwrap();
    assert_eq!(names(&o, "/d"), ["c"]);
    assert_eq!(names(&o, "/"), ["d", "other"]);
    assert!(!o.exists(&p("/d/sub/b")));
    assert_eq!(o.len(), 4);
}

#[test]
fn non_directory_replaces_a_directory_and_vice_versa() {
    let o = Overlay::new(vec![
        layer(&[("/x/inner", "i"), ("/y", "file")]),
        layer(&[("/x", "->y"), ("/y/z", "in-dir")]),
    ])
    .unwrap();
    assert_eq!(
        o.symlink_metadata(&p("/x")).unwrap().kind,
        FileType::Symlink
    );
    // The lower directory's contents went with it; /x now leads to the new directory /y.
    assert_eq!(
        o.symlink_metadata(&p("/x/inner")),
        Err(VfsError::NotFound(p("/y/inner")))
    );
    assert_eq!(o.read_all(&p("/x/z")).unwrap(), "in-dir");
    assert_eq!(names(&o, "/y"), ["z"]);
}

#[test]
fn symlinks_resolve_across_layers() {
    let o = Overlay::new(vec![
        layer(&[("/usr/lib/libz.so.1", "zlib")]),
        layer(&[
            ("/lib", "->usr/lib"),
            ("/usr/lib/libz.so", "->/../../lib/libz.so.1"),
        ]),
    ])
    .unwrap();
    assert_eq!(o.read_all(&p("/lib/libz.so")).unwrap(), "zlib");
    assert_eq!(o.read_link(&p("/lib")).unwrap(), "usr/lib");
}

#[test]
fn reads_are_zero_copy_from_the_providing_layer() {
    let lower = MemFs::new();
    let data = Bytes::from(vec![1u8; 1024]);
    lower.write_file(&p("/f"), data.clone()).unwrap();
    let o = Overlay::new(vec![Arc::new(lower), layer(&[("/g", "")])]).unwrap();
    assert_eq!(o.read_all(&p("/f")).unwrap().as_ptr(), data.as_ptr());
}

#[test]
fn malformed_whiteouts_are_errors() {
    for bad in ["/d/.wh.", "/d/.wh..", "/d/.wh..."] {
        let err = Overlay::new(vec![layer(&[(bad, "")])]).unwrap_err();
        assert_eq!(err, VfsError::BadWhiteout(p(bad)), "{bad}");
    }
}

#[test]
fn read_only_and_empty() {
    let o = Overlay::new(Vec::new()).unwrap();
    assert!(o.is_empty());
    assert_eq!(o.read_dir(&p("/")).unwrap(), []);
    assert_eq!(
        o.write_file(&p("/f"), Bytes::new()),
        Err(VfsError::ReadOnly(p("/f")))
    );
}

#[test]
fn many_layers_deep_tree() {
    let mut layers = Vec::new();
    for i in 0..16 {
        let entries: Vec<(String, String)> = (0..50)
            .map(|j| (format!("/d{}/f{j}", j % 5), format!("{i}")))
            .collect();
        let refs: Vec<(&str, &str)> = entries
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        layers.push(layer(&refs));
    }
    let o = Overlay::new(layers).unwrap();
    assert_eq!(o.read_all(&p("/d3/f13")).unwrap(), "15");
    assert_eq!(o.len(), 1 + 5 + 50);
}

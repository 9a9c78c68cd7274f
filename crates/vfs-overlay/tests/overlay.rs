//! `Overlay`: OCI layer semantics (whiteouts, opaque directories, replacement, merging).

// Helpers outside `#[test]` functions panic on purpose too: a failed setup is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{names, p};
use vfs_overlay::{FileSystem, FileType, MemFs, Overlay, VfsError, VfsPath};

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

mod model {
    //! The overlay against a deliberately naive model: a flat map rewritten with prefix
    //! scans, layer by layer.

    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    type Tree = BTreeMap<VfsPath, (FileType, Bytes)>;

    /// Every entry of `fs` except `/`, by walking it.
    fn walk(fs: &dyn FileSystem) -> Tree {
        let mut out = Tree::new();
        let mut dirs = vec![VfsPath::root()];
        while let Some(dir) = dirs.pop() {
            for e in fs.read_dir(&dir).unwrap() {
                let path = dir.join(&e.name).unwrap();
                let content = match e.kind {
                    FileType::File => fs.read_all(&path).unwrap(),
                    FileType::Symlink => Bytes::from(fs.read_link(&path).unwrap()),
                    _ => Bytes::new(),
                };
                if e.kind == FileType::Dir {
                    dirs.push(path.clone());
                }
                out.insert(path, (e.kind, content));
            }
        }
        out
    }

    fn remove_under(tree: &mut Tree, root: &VfsPath, keep_root: bool) {
        tree.retain(|p, _| !(p.starts_with(root) && !(keep_root && p == root)));
    }

    fn apply(tree: &mut Tree, layer: &Tree) {
        for (path, _) in layer.iter() {
            let name = path.file_name().unwrap();
            let parent = path.parent().unwrap();
            if name == ".wh..wh..opq" {
                remove_under(tree, &parent, true);
            } else if let Some(hidden) = name.strip_prefix(".wh.") {
                remove_under(tree, &parent.join(hidden).unwrap(), false);
            }
        }
        for (path, (kind, content)) in layer {
            if path.file_name().unwrap().starts_with(".wh.") {
                continue;
            }
            let dir_over_dir =
                *kind == FileType::Dir && tree.get(path).is_some_and(|(k, _)| *k == FileType::Dir);
            if !dir_over_dir {
                remove_under(tree, path, false);
            }
            tree.insert(path.clone(), (*kind, content.clone()));
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        File(String, u8),
        Dir(String),
        Link(String),
        Whiteout(String),
        Opaque(String),
    }

    fn op() -> impl Strategy<Value = Op> {
        let path = prop::collection::vec("[ab]", 1..4).prop_map(|v| v.join("/"));
        prop_oneof![
            (path.clone(), any::<u8>()).prop_map(|(p, c)| Op::File(p, c)),
            path.clone().prop_map(Op::Dir),
            path.clone().prop_map(Op::Link),
            path.clone().prop_map(Op::Whiteout),
            path.prop_map(Op::Opaque),
        ]
    }

    fn build(ops: &[Op]) -> Arc<dyn FileSystem> {
        let fs = MemFs::new();
        for op in ops {
            // Conflicting ops (a file where a directory is needed) just fail and are skipped.
            let _ = match op {
                Op::File(path, c) => {
                    let path = p(path);
                    fs.create_dir_all(&path.parent().unwrap())
                        .and_then(|()| fs.write_file(&path, Bytes::from(vec![*c])))
                }
                Op::Dir(path) => fs.create_dir_all(&p(path)),
                Op::Link(path) => {
                    let path = p(path);
                    fs.create_dir_all(&path.parent().unwrap())
                        .and_then(|()| fs.symlink("a", &path))
                }
                Op::Whiteout(path) => {
                    let path = p(path);
                    let wh = path
                        .parent()
                        .unwrap()
                        .join(&format!(".wh.{}", path.file_name().unwrap()))
                        .unwrap();
                    fs.create_dir_all(&path.parent().unwrap())
                        .and_then(|()| fs.write_file(&wh, Bytes::new()))
                }
                Op::Opaque(path) => {
                    let path = p(path);
                    fs.create_dir_all(&path).and_then(|()| {
                        fs.write_file(&path.join(".wh..wh..opq").unwrap(), Bytes::new())
                    })
                }
            };
        }
        Arc::new(fs)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn overlay_matches_naive_model(
            layers in prop::collection::vec(prop::collection::vec(op(), 0..8), 1..5),
        ) {
            let layers: Vec<Arc<dyn FileSystem>> = layers.iter().map(|ops| build(ops)).collect();
            let mut expected = Tree::new();
            for layer in &layers {
                apply(&mut expected, &walk(layer.as_ref()));
            }
            let overlay = Overlay::new(layers).unwrap();
            prop_assert_eq!(walk(&overlay), expected);
            prop_assert_eq!(overlay.len(), walk(&overlay).len() + 1);
        }
    }
}

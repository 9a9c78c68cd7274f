//! The one-probe resolution shortcut ([`FileSystem::node_lookup`]) against the component
//! walk: random tars full of symlinks (relative, absolute, with `..`, `.`, trailing `/`,
//! dangling, looping), served by a `TarVolume`, an `Overlay` of two of them and a `Union`
//! with nested mounts, must resolve every path exactly as the same filesystem hidden behind
//! a wrapper that offers no shortcut.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use tar::{Builder, EntryType, Header};
use vfs_overlay::{
    DirEntry, FileSystem, Follow, Metadata, MountPolicy, Overlay, SubFs, TarVolume, Union, VfsPath,
    resolve,
};

/// Forwards the read side, but never offers the shortcut: the resolver walks.
#[derive(Debug)]
struct Walk<'a>(&'a dyn FileSystem);

impl FileSystem for Walk<'_> {
    fn node_metadata(&self, path: &VfsPath) -> vfs_overlay::Result<Metadata> {
        self.0.node_metadata(path)
    }
    fn node_read_dir(&self, path: &VfsPath) -> vfs_overlay::Result<Vec<DirEntry>> {
        self.0.node_read_dir(path)
    }
    fn node_read_link(&self, path: &VfsPath) -> vfs_overlay::Result<String> {
        self.0.node_read_link(path)
    }
    fn node_read_all(&self, path: &VfsPath) -> vfs_overlay::Result<Bytes> {
        self.0.node_read_all(path)
    }
}

#[derive(Debug, Clone)]
enum Entry {
    Dir(String),
    File(String),
    Link(String, String),
}

fn name() -> impl Strategy<Value = String> {
    prop::collection::vec("[abc]", 1..4).prop_map(|v| v.join("/"))
}

fn target() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop::collection::vec(
            prop_oneof![
                4 => "[abc]",
                2 => Just("..".to_owned()),
                1 => Just(".".to_owned()),
                1 => Just(String::new()),
            ],
            1..5,
        ),
    )
        .prop_map(|(abs, parts)| {
            let t = parts.join("/");
            let t = if abs { format!("/{t}") } else { t };
            if t.is_empty() { ".".to_owned() } else { t }
        })
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        2 => name().prop_map(Entry::Dir),
        2 => name().prop_map(Entry::File),
        3 => (name(), target()).prop_map(|(n, t)| Entry::Link(n, t)),
    ]
}

fn tar(entries: &[Entry]) -> TarVolume {
    let mut b = Builder::new(Vec::new());
    for e in entries {
        let mut h = Header::new_gnu();
        h.set_mode(0o755);
        h.set_size(0);
        match e {
            Entry::Dir(n) => {
                h.set_entry_type(EntryType::Directory);
                b.append_data(&mut h, format!("{n}/"), &[][..]).unwrap();
            }
            Entry::File(n) => {
                h.set_entry_type(EntryType::Regular);
                h.set_size(n.len() as u64);
                b.append_data(&mut h, n, n.as_bytes()).unwrap();
            }
            Entry::Link(n, t) => {
                h.set_entry_type(EntryType::Symlink);
                b.append_link(&mut h, n, t).unwrap();
            }
        }
    }
    TarVolume::new(Bytes::from(b.into_inner().unwrap())).unwrap()
}

fn query() -> impl Strategy<Value = VfsPath> {
    prop::collection::vec(prop_oneof!["[abc]", Just("d".to_owned())], 1..6)
        .prop_map(|v| VfsPath::new(&v.join("/")).unwrap())
}

/// Resolution, `stat`, `lstat` and listing of `path` through both; errors compared by text.
fn same(fast: &dyn FileSystem, slow: &dyn FileSystem, path: &VfsPath) {
    let show = |r: vfs_overlay::Result<VfsPath>| r.map_err(|e| e.to_string());
    for follow in [Follow::All, Follow::Parents] {
        assert_eq!(
            show(resolve(fast, path, follow)),
            show(resolve(slow, path, follow)),
            "resolve({path}, {follow:?})"
        );
    }
    let meta = |fs: &dyn FileSystem, all: bool| {
        if all {
            fs.metadata(path)
        } else {
            fs.symlink_metadata(path)
        }
        .map_err(|e| e.to_string())
    };
    assert_eq!(meta(fast, true), meta(slow, true), "stat {path}");
    assert_eq!(meta(fast, false), meta(slow, false), "lstat {path}");
    assert_eq!(
        fast.read_dir(path).map_err(|e| e.to_string()),
        slow.read_dir(path).map_err(|e| e.to_string()),
        "read_dir {path}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn shortcut_resolves_as_the_walk(
        lower in prop::collection::vec(entry(), 0..14),
        upper in prop::collection::vec(entry(), 0..8),
        queries in prop::collection::vec(query(), 1..24),
    ) {
        let lo = tar(&lower);
        let up = tar(&upper);
        let overlay = Arc::new(
            Overlay::new(vec![Arc::new(lo.clone()), Arc::new(up.clone())]).unwrap(),
        );
        let union = Union::new();
        union.mount(&VfsPath::root(), overlay.clone(), MountPolicy::Fail).unwrap();
        union.mount(&VfsPath::new("/a/b").unwrap(), Arc::new(up.clone()), MountPolicy::Fail)
            .unwrap();
        union.mount(&VfsPath::new("/c").unwrap(), Arc::new(lo.clone()), MountPolicy::Fail)
            .unwrap();
        if let Ok(sub) = SubFs::new(Arc::new(lo.clone()), &VfsPath::new("/a").unwrap()) {
            union.mount(&VfsPath::new("/c/d").unwrap(), Arc::new(sub), MountPolicy::Fail)
                .unwrap();
        }
        let walk_lo = Walk(&lo);
        let walk_overlay = Walk(overlay.as_ref());
        let walk_union = Walk(&union);
        for q in &queries {
            same(&lo, &walk_lo, q);
            same(overlay.as_ref(), &walk_overlay, q);
            same(&union, &walk_union, q);
        }
    }
}

//! Helpers shared by the integration tests: short path construction, directory listings,
//! and the random filesystem operations the model-checking proptests replay.

// Each test binary uses a different subset.
#![allow(dead_code, clippy::unwrap_used)]

use std::ops::Range;

use bytes::Bytes;
use proptest::prelude::*;
use vfs_overlay::{FileSystem, VfsError, VfsPath};

pub fn p(s: &str) -> VfsPath {
    VfsPath::new(s).unwrap()
}

/// The names in `dir`, in the filesystem's (sorted) order.
pub fn names(fs: &dyn FileSystem, dir: &str) -> Vec<String> {
    fs.read_dir(&p(dir))
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect()
}

/// One mutation, on relative paths over a tiny alphabet so that operations collide often.
#[derive(Debug, Clone)]
pub enum Op {
    Write(String, u8),
    Mkdir(String),
    Remove(String),
    RemoveAll(String),
    Rename(String, String),
    Symlink(String, String),
    Chmod(String, u32),
    Truncate(String, u8),
    HardLink(String, String),
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec("[abl]", 1..4).prop_map(|v| v.join("/"))
}

/// Random operations; `modes` bounds what `Chmod` sets.
pub fn op(modes: Range<u32>) -> impl Strategy<Value = Op> {
    prop_oneof![
        (path(), any::<u8>()).prop_map(|(p, c)| Op::Write(p, c)),
        path().prop_map(Op::Mkdir),
        path().prop_map(Op::Remove),
        path().prop_map(Op::RemoveAll),
        (path(), path()).prop_map(|(a, b)| Op::Rename(a, b)),
        (path(), path()).prop_map(|(t, l)| Op::Symlink(t, l)),
        (path(), modes).prop_map(|(p, m)| Op::Chmod(p, m)),
        (path(), 0u8..4).prop_map(|(p, n)| Op::Truncate(p, n)),
        (path(), path()).prop_map(|(a, b)| Op::HardLink(a, b)),
    ]
}

/// Apply `op` through the `FileSystem` API.
pub fn apply(fs: &dyn FileSystem, op: &Op) -> Result<(), VfsError> {
    match op {
        Op::Write(path, c) => fs.write_file(&p(path), Bytes::from(vec![*c])),
        Op::Mkdir(path) => fs.create_dir(&p(path)),
        Op::Remove(path) => fs.remove(&p(path)),
        Op::RemoveAll(path) => fs.remove_dir_all(&p(path)),
        Op::Rename(a, b) => fs.rename(&p(a), &p(b)),
        Op::Symlink(target, link) => fs.symlink(target, &p(link)),
        Op::Chmod(path, mode) => fs.set_mode(&p(path), *mode),
        Op::Truncate(path, len) => fs.set_len(&p(path), u64::from(*len)),
        Op::HardLink(a, b) => fs.hard_link(&p(a), &p(b)),
    }
}

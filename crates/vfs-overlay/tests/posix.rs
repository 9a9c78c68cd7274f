//! `MemFs` against the real thing: the same operations on a temporary directory of the
//! host filesystem must succeed or fail alike (same errno) and leave the same tree.
//!
//! Symlink targets are generated relative and without `..`, so nothing done to the real
//! directory can reach outside it.

#![allow(clippy::unwrap_used)]

mod common;

/// Modes where the owner keeps rwx, so the tree stays walkable without privileges.
const OWNER_KEEPS_RWX: std::ops::Range<u32> = 0o700..0o1000;

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{Op, apply, op};
use proptest::prelude::*;
use vfs_overlay::{FileSystem, FileType, MemFs, VfsError, VfsPath};

/// The errno a `VfsError` stands for, to compare with the host's.
fn errno(e: &VfsError) -> i32 {
    match e {
        VfsError::NotFound(_) => 2,
        VfsError::AlreadyExists(_) => 17,
        VfsError::NotADirectory(_) => 20,
        VfsError::IsADirectory(_) => 21,
        VfsError::InvalidOperation { .. } | VfsError::NotASymlink(_) => 22,
        VfsError::DirectoryNotEmpty(_) => 39,
        VfsError::TooManyLinks(_) => 40,
        other => panic!("unexpected {other:?}"),
    }
}

fn run_mem(fs: &MemFs, op: &Op) -> Result<(), i32> {
    apply(fs, op).map_err(|e| match (op, e) {
        // Linux refuses hard links to directories with EPERM.
        (Op::HardLink(..), VfsError::InvalidOperation { .. }) => 1,
        (_, e) => errno(&e),
    })
}

fn run_host(root: &Path, op: &Op) -> Result<(), i32> {
    let r: io::Result<()> = match op {
        Op::Write(path, c) => std::fs::write(root.join(path), [*c]),
        Op::Mkdir(path) => std::fs::create_dir(root.join(path)),
        Op::Remove(path) => {
            let full = root.join(path);
            match std::fs::symlink_metadata(&full) {
                Ok(m) if m.is_dir() => std::fs::remove_dir(&full),
                _ => std::fs::remove_file(&full),
            }
        }
        Op::RemoveAll(path) => {
            let full = root.join(path);
            match std::fs::symlink_metadata(&full) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&full),
                _ => std::fs::remove_file(&full),
            }
        }
        Op::Rename(a, b) => std::fs::rename(root.join(a), root.join(b)),
        Op::Symlink(target, link) => std::os::unix::fs::symlink(target, root.join(link)),
        Op::Chmod(path, mode) => {
            std::fs::set_permissions(root.join(path), std::fs::Permissions::from_mode(*mode))
        }
        // Truncating opens for writing, like `truncate(2)`: a directory is EISDIR.
        Op::Truncate(path, len) => std::fs::OpenOptions::new()
            .write(true)
            .open(root.join(path))
            .and_then(|f| f.set_len(u64::from(*len))),
        Op::HardLink(a, b) => std::fs::hard_link(root.join(a), root.join(b)),
    };
    r.map_err(|e| e.raw_os_error().unwrap_or(-1))
}

type Tree = BTreeMap<String, (FileType, Vec<u8>)>;

fn walk_mem(fs: &MemFs) -> Tree {
    let mut out = Tree::new();
    let mut dirs = vec![VfsPath::root()];
    while let Some(dir) = dirs.pop() {
        for e in fs.read_dir(&dir).unwrap() {
            let path = dir.join(&e.name).unwrap();
            let content = match e.kind {
                FileType::File => fs.read_all(&path).unwrap().to_vec(),
                FileType::Symlink => fs.read_link(&path).unwrap().into_bytes(),
                _ => Vec::new(),
            };
            if e.kind == FileType::Dir {
                dirs.push(path.clone());
            }
            out.insert(path.as_str().to_owned(), (e.kind, content));
        }
    }
    out
}

fn walk_host(root: &Path) -> Tree {
    let mut out = Tree::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(root.join(&dir)).unwrap() {
            let e = e.unwrap();
            let rel = dir.join(e.file_name());
            let full = root.join(&rel);
            let ft = e.file_type().unwrap();
            let (kind, content) = if ft.is_symlink() {
                let t = std::fs::read_link(&full).unwrap();
                (FileType::Symlink, t.to_str().unwrap().as_bytes().to_vec())
            } else if ft.is_dir() {
                dirs.push(rel.clone());
                (FileType::Dir, Vec::new())
            } else {
                (FileType::File, std::fs::read(&full).unwrap())
            };
            out.insert(format!("/{}", rel.to_str().unwrap()), (kind, content));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn memfs_matches_the_host_filesystem(ops in prop::collection::vec(op(OWNER_KEEPS_RWX), 0..16)) {
        let dir = tempfile::tempdir().unwrap();
        let mem = MemFs::new();
        for op in &ops {
            let want = run_host(dir.path(), op);
            let got = run_mem(&mem, op);
            prop_assert_eq!(got, want, "{:?}", op);
            prop_assert_eq!(walk_mem(&mem), walk_host(dir.path()), "after {:?}", op);
        }
    }
}

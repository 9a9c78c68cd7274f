//! Path resolution on very deep trees: `ls -R` of 3,000 nested directories through a
//! `TarVolume`, an `Overlay` of it and a `Union` mounting it must stay fast (linear-ish per
//! directory, not a re-resolution of every prefix from `/`).
//!
//! `deep_ls_timing` (ignored) prints timings: run it in release with
//! `cargo test --release -p vfs-overlay --test deep -- --ignored --nocapture`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tar::{Builder, EntryType, Header};
use vfs_overlay::{FileSystem, FileType, MountPolicy, Overlay, TarVolume, Union, VfsPath};

/// `d/d/…/d` (`depth` levels), each level holding a file `f` and the deepest a symlink
/// `up` to `..`.
fn deep_tar(depth: usize) -> Bytes {
    let mut b = Builder::new(Vec::new());
    let mut path = String::new();
    for _ in 0..depth {
        if !path.is_empty() {
            path.push('/');
        }
        path.push('d');
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, format!("{path}/"), &[][..]).unwrap();
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(1);
        b.append_data(&mut h, format!("{path}/f"), &b"x"[..])
            .unwrap();
    }
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    b.append_link(&mut h, format!("{path}/up"), "..").unwrap();
    Bytes::from(b.into_inner().unwrap())
}

/// `ls -lR /`: lists every directory and `lstat`s every entry; returns (dirs, files, links).
fn ls_r(fs: &dyn FileSystem) -> (usize, usize, usize) {
    let (mut dirs, mut files, mut links) = (0, 0, 0);
    let mut stack = vec![VfsPath::root()];
    while let Some(dir) = stack.pop() {
        for e in fs.read_dir(&dir).unwrap() {
            let path = dir.join(&e.name).unwrap();
            match fs.symlink_metadata(&path).unwrap().kind {
                FileType::Dir => {
                    dirs += 1;
                    stack.push(path);
                }
                FileType::File => files += 1,
                FileType::Symlink => links += 1,
                _ => {}
            }
        }
    }
    (dirs, files, links)
}

fn check(fs: &dyn FileSystem, depth: usize) {
    assert_eq!(ls_r(fs), (depth, depth, 1));
    let bottom = VfsPath::new(&vec!["d"; depth].join("/")).unwrap();
    // Through the link at the bottom: `up` is the parent of the deepest directory.
    let via_link = bottom.join("up/f").unwrap();
    assert_eq!(fs.read_all(&via_link).unwrap(), "x");
    assert_eq!(
        fs.canonicalize(&bottom.join("up").unwrap()).unwrap(),
        bottom.parent().unwrap()
    );
}

#[test]
fn deep_tree_listing_through_every_layer() {
    const DEPTH: usize = 3000;
    let vol = TarVolume::new(deep_tar(DEPTH)).unwrap();
    check(&vol, DEPTH);
    let overlay = Overlay::new(vec![Arc::new(vol.clone())]).unwrap();
    check(&overlay, DEPTH);
    let union = Union::new();
    union
        .mount(&VfsPath::root(), Arc::new(overlay), MountPolicy::Fail)
        .unwrap();
    check(&union, DEPTH);
}

#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn deep_ls_timing() {
    let depth: usize = std::env::var("PKGLOAD_DEEP_LEVELS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let vol = TarVolume::new(deep_tar(depth)).unwrap();
    let overlay = Arc::new(Overlay::new(vec![Arc::new(vol.clone())]).unwrap());
    let union = Union::new();
    union
        .mount(
            &VfsPath::new("/mnt").unwrap(),
            overlay.clone(),
            MountPolicy::Fail,
        )
        .unwrap();
    let t = Instant::now();
    assert_eq!(ls_r(&vol), (depth, depth, 1));
    eprintln!("ls -R, {depth} levels, TarVolume: {:.2?}", t.elapsed());
    let t = Instant::now();
    assert_eq!(ls_r(overlay.as_ref()), (depth, depth, 1));
    eprintln!("ls -R, {depth} levels, Overlay:   {:.2?}", t.elapsed());
    let t = Instant::now();
    assert_eq!(ls_r(&union), (depth + 1, depth, 1));
    eprintln!("ls -R, {depth} levels, Union:     {:.2?}", t.elapsed());
}

//! Tar volumes, their serialized index, OCI overlays of several layers and union mounts.
//!
//! `tar_index` takes raw tar bytes (checksums repaired before parsing, so mutations reach
//! past the header check). `overlay` and `union` take a small line-based description of
//! tar entries, which is turned into real tars: mutating a description moves whole entries,
//! whiteouts and mount points around, which raw tar bytes would not.
//!
//! The description, one entry per line:
//!
//! ```text
//! ---                 starts the next layer (overlay)
//! @/mount/point [f|k|r]  starts the next volume, mounted there with policy Fail, Keep or
//!                     Replace (union; Fail by default)
//! ? /path             a path to look up (union)
//! f[MODE] PATH DATA   regular file, DATA is the rest of the line
//! d[MODE] PATH        directory
//! l PATH TARGET       symlink
//! h PATH TARGET       hardlink
//! p PATH              fifo
//! ```
//!
//! PATH and TARGET are written into the header's 100-byte fields verbatim, `..`, `/` and
//! all, which is the point.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use vfs_overlay::{
    FileSystem, FileType, MountOutcome, MountPolicy, Overlay, TarEntryKind, TarError, TarIndex,
    TarVolume, Union, VfsPath,
};

use super::{Feedback, Target};

/// Walks at most this many paths of a built filesystem.
const WALK_LIMIT: usize = 512;

const DESCRIPTION_TOKENS: &[&[u8]] = &[
    b"\n---\n",
    b"\nf ",
    b"\nf755 ",
    b"\nd ",
    b"\nd700 ",
    b"\nl ",
    b"\nh ",
    b"\np ",
    b".wh.",
    b".wh..wh..opq",
    b"../",
    b"/",
    b"./",
    b" ",
    b"a/",
    b"b",
    b"\n@/",
    b"\n@/a r",
    b"\n@/a k",
    b"\n? /",
    b"\0",
];

/// Writes one tar header, with its name and link fields copied verbatim.
fn header(kind: tar::EntryType, path: &[u8], link: &[u8], mode: u32, size: u64) -> [u8; 512] {
    let mut h = tar::Header::new_ustar();
    {
        let old = h.as_old_mut();
        for (dst, src) in old.name.iter_mut().zip(path) {
            *dst = *src;
        }
        for (dst, src) in old.linkname.iter_mut().zip(link) {
            *dst = *src;
        }
    }
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h.set_cksum();
    let mut out = [0u8; 512];
    out.copy_from_slice(h.as_bytes());
    out
}

/// One description line as tar bytes appended to `tar`; unknown lines are skipped.
fn append_entry(tar: &mut Vec<u8>, line: &[u8]) {
    let Some((&kind, rest)) = line.split_first() else {
        return;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let (mode_text, rest) = rest.split_at(digits.min(rest.len()));
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    let (path, arg) = match rest.iter().position(|&b| b == b' ') {
        Some(i) => (
            rest.get(..i).unwrap_or_default(),
            rest.get(i + 1..).unwrap_or_default(),
        ),
        None => (rest, &[][..]),
    };
    let mode_of = |default: u32| {
        std::str::from_utf8(mode_text)
            .ok()
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .map_or(default, |m| m & 0o7777)
    };
    let (entry_type, link, data, mode): (_, &[u8], &[u8], u32) = match kind {
        b'f' => (tar::EntryType::Regular, b"", arg, mode_of(0o644)),
        b'd' => (tar::EntryType::Directory, b"", b"", mode_of(0o755)),
        b'l' => (tar::EntryType::Symlink, arg, b"", 0o777),
        b'h' => (tar::EntryType::Link, arg, b"", mode_of(0o644)),
        b'p' => (tar::EntryType::Fifo, b"", b"", mode_of(0o644)),
        _ => return,
    };
    tar.extend_from_slice(&header(entry_type, path, link, mode, data.len() as u64));
    tar.extend_from_slice(data);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
}

/// The tar of description lines.
fn build_tar<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut tar = Vec::new();
    for line in lines.into_iter().take(64) {
        append_entry(&mut tar, line);
    }
    tar.resize(tar.len() + 1024, 0);
    tar
}

/// Repairs the checksum of every header a tar reader would visit, so that mutated headers
/// are parsed instead of all failing the checksum test.
fn fix_checksums(data: &mut [u8]) {
    let mut offset = 0usize;
    for _ in 0..4096 {
        let Some(block) = data.get_mut(offset..offset + 512) else {
            return;
        };
        if block.iter().all(|&b| b == 0) {
            offset += 512;
            continue;
        }
        let mut sum: u32 = 0;
        for (i, b) in block.iter().enumerate() {
            sum += if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(*b)
            };
        }
        let text = format!("{sum:06o}\0 ");
        if let Some(field) = block.get_mut(148..156) {
            field.copy_from_slice(text.as_bytes());
        }
        let size = block
            .get(124..136)
            .and_then(|f| {
                let f: Vec<u8> = f
                    .iter()
                    .copied()
                    .filter(|b| (b'0'..=b'7').contains(b))
                    .collect();
                u64::from_str_radix(std::str::from_utf8(&f).ok()?, 8).ok()
            })
            .unwrap_or(0);
        let Ok(size) = usize::try_from(size.div_ceil(512).saturating_mul(512)) else {
            return;
        };
        offset = offset.saturating_add(512).saturating_add(size);
    }
}

/// Panics unless `fs` and `index` agree on every indexed entry.
fn check_volume_against_index(volume: &TarVolume, index: &TarIndex, tar: &[u8]) {
    for entry in index.entries() {
        let path = &entry.path;
        let meta = volume
            .symlink_metadata(path)
            .unwrap_or_else(|e| panic!("indexed {path:?} has no metadata: {e}"));
        let expected = match entry.kind {
            TarEntryKind::File | TarEntryKind::Hardlink => FileType::File,
            TarEntryKind::Dir => FileType::Dir,
            TarEntryKind::Symlink => FileType::Symlink,
            TarEntryKind::Other => FileType::Other,
        };
        assert_eq!(meta.kind, expected, "{path:?}");
        if let Some(parent) = path.parent() {
            let parent_entry = index
                .get(&parent)
                .unwrap_or_else(|| panic!("{path:?} has no parent entry"));
            assert_eq!(parent_entry.kind, TarEntryKind::Dir, "parent of {path:?}");
        }
        match entry.kind {
            TarEntryKind::File | TarEntryKind::Hardlink => {
                let end = entry.offset.checked_add(entry.size);
                assert!(
                    end.is_some_and(|end| end <= index.tar_len()),
                    "{path:?}: data {}+{} outside the tar ({})",
                    entry.offset,
                    entry.size,
                    index.tar_len()
                );
                let data = volume
                    .read_all(path)
                    .unwrap_or_else(|e| panic!("{path:?} cannot be read: {e}"));
                let start = usize::try_from(entry.offset).unwrap_or(usize::MAX);
                let len = usize::try_from(entry.size).unwrap_or(usize::MAX);
                assert_eq!(
                    Some(data.as_ref()),
                    tar.get(start..start.saturating_add(len)),
                    "{path:?} reads other bytes than its data range"
                );
                assert_eq!(meta.size, entry.size, "{path:?}");
            }
            TarEntryKind::Dir => {
                let listed: BTreeSet<String> = volume
                    .read_dir(path)
                    .unwrap_or_else(|e| panic!("{path:?} cannot be listed: {e}"))
                    .into_iter()
                    .map(|d| d.name)
                    .collect();
                let children: BTreeSet<String> = index
                    .entries()
                    .into_iter()
                    .filter(|e| e.path.parent().as_ref() == Some(path))
                    .filter_map(|e| e.path.file_name().map(str::to_owned))
                    .collect();
                assert_eq!(listed, children, "listing of {path:?}");
            }
            TarEntryKind::Symlink => {
                let target = volume
                    .read_link(path)
                    .unwrap_or_else(|e| panic!("{path:?} has no target: {e}"));
                assert_eq!(Some(&target), entry.link.as_ref(), "{path:?}");
            }
            TarEntryKind::Other => {}
        }
    }
}

pub(super) const TAR_INDEX: Target = Target {
    name: "tar_index",
    about: "vfs_overlay::TarIndex::scan on raw tar bytes (checksums repaired first) and \
            TarVolume reads: entries match their data ranges and listings, the index \
            serializes and deserializes equal",
    run: tar_index,
    seeds: tar_index_seeds,
    dictionary: &[
        b"ustar\0",
        b"ustar  \0",
        b"././@LongLink",
        b"00000000000",
        b"0000644\0",
        b"../",
        b".wh.",
        b".wh..wh..opq",
        b"/",
        b"0",
        b"1",
        b"2",
        b"5",
        b"L",
        b"K",
        b"x",
        b"g",
        b"path=",
        b"linkpath=",
        b"size=",
        b"mtime=-1.5",
        b"30 path=a/b/c\n",
    ],
    max_len: 16384,
};

fn tar_index(data: &[u8]) -> Feedback {
    let mut tar = data.to_vec();
    fix_checksums(&mut tar);
    let index = match TarIndex::scan(&tar) {
        Ok(index) => index,
        Err(e) => return Feedback::err("scan", &e),
    };
    assert_eq!(index.tar_len(), tar.len() as u64);
    let root = index
        .get(&VfsPath::root())
        .unwrap_or_else(|| panic!("no root entry"));
    assert_eq!(root.kind, TarEntryKind::Dir);
    assert!(index.content_bytes() <= index.tar_len());
    let entries = index.entries();
    assert!(
        entries
            .windows(2)
            .all(|w| matches!(w, [a, b] if a.path < b.path))
    );
    assert_eq!(entries.len(), index.len());

    let bytes = index
        .to_bytes()
        .unwrap_or_else(|e| panic!("a scanned index does not serialize: {e}"));
    let again = TarIndex::from_bytes(&bytes)
        .unwrap_or_else(|e| panic!("a serialized index does not deserialize: {e}"));
    assert_eq!(again.entries(), entries, "index round trip");
    assert_eq!(
        again.lower_links(),
        index.lower_links(),
        "lower links round trip"
    );
    assert_eq!(
        again.to_bytes().ok(),
        Some(bytes),
        "serializing is deterministic"
    );

    let data = Bytes::from(tar.clone());
    let volume = TarVolume::with_index(data.clone(), Arc::new(again))
        .unwrap_or_else(|e| panic!("a volume refuses its own index: {e}"));
    check_volume_against_index(&volume, &index, &tar);
    for path in index.lower_links().keys() {
        assert!(
            !volume.exists(path),
            "link out {path:?} shows in the volume"
        );
        let parent = path.parent().and_then(|p| index.get(&p).map(|e| e.kind));
        assert_eq!(
            parent,
            Some(TarEntryKind::Dir),
            "parent of link out {path:?}"
        );
    }
    // A layer keeps links out of the archive for the layers below; a volume of its own
    // refuses exactly those tars, naming the first such link.
    let layer = TarVolume::new_layer(data.clone())
        .unwrap_or_else(|e| panic!("TarVolume::new_layer refuses a tar scan took: {e}"));
    assert_eq!(layer.index().entries(), entries);
    assert_eq!(layer.lower_links(), index.lower_links());
    match (TarVolume::new(data), index.lower_links().iter().next()) {
        (Ok(fresh), None) => assert_eq!(fresh.index().entries(), entries),
        (Err(TarError::BadHardlink { path, target, .. }), Some((p, t))) => {
            assert_eq!((&path, &target), (p, t), "the first link out is named");
        }
        (other, first) => panic!(
            "TarVolume::new gave {:?} for a tar whose first link out is {first:?}",
            other.map(|_| ())
        ),
    }
    let kinds: u64 = entries
        .iter()
        .map(|e| 1u64 << (e.kind as u64 * 2 + u64::from(e.implied)))
        .fold(0, |a, b| a | b);
    Feedback::ok("index", entries.len()).and(kinds)
}

fn tar_index_seeds() -> Vec<Vec<u8>> {
    vec![
        build_tar([
            &b"d usr"[..],
            b"d usr/bin",
            b"f755 usr/bin/sh #!/bin/sh",
            b"h usr/bin/bash usr/bin/sh",
            b"l usr/bin/python ../lib/python3",
            b"f deep/implied/file data",
            b"p dev/fifo",
        ]),
        build_tar([
            &b"f ../../etc/passwd root"[..],
            b"f /abs/file x",
            b"f dup same",
            b"f dup other",
            b"l up ../../../../tmp",
            b"f up/through-the-link x",
        ]),
        build_tar([&b"h link-to-nowhere missing"[..]]),
        build_tar([&b"f a/.wh.b"[..], b"f a/.wh..wh..opq"]),
        Vec::new(),
    ]
}

pub(super) const TAR_INDEX_JSON: Target = Target {
    name: "tar_index_json",
    about: "vfs_overlay::TarIndex::from_bytes on arbitrary JSON (a cached index is outside \
            data too): what it accepts is consistent and serializes back to a fixpoint",
    run: tar_index_json,
    seeds: tar_index_json_seeds,
    dictionary: &[
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b":",
        b",",
        b"\"path\":",
        b"\"kind\":",
        b"\"file\"",
        b"\"dir\"",
        b"\"symlink\"",
        b"\"hardlink\"",
        b"\"other\"",
        b"\"offset\":",
        b"\"size\":",
        b"\"link\":",
        b"\"implied\":true",
        b"\"tar_len\":",
        b"\"/\"",
        b"\"/a/../b\"",
        b"18446744073709551615",
        b"\\u0000",
    ],
    max_len: 8192,
};

fn tar_index_json(data: &[u8]) -> Feedback {
    let index = match TarIndex::from_bytes(data) {
        Ok(index) => index,
        Err(e) => return Feedback::err("from_bytes", &e),
    };
    let entries = index.entries();
    assert!(
        entries
            .iter()
            .any(|e| e.path.is_root() && e.kind == TarEntryKind::Dir)
    );
    for e in &entries {
        if matches!(e.kind, TarEntryKind::File | TarEntryKind::Hardlink) {
            assert!(
                e.offset
                    .checked_add(e.size)
                    .is_some_and(|end| end <= index.tar_len()),
                "{:?}: data outside tar_len",
                e.path
            );
        }
        if let Some(parent) = e.path.parent() {
            assert!(
                index
                    .get(&parent)
                    .is_some_and(|p| p.kind == TarEntryKind::Dir),
                "{:?} has no parent directory",
                e.path
            );
        }
        assert!(!e.link.as_deref().unwrap_or_default().contains('\0'));
    }
    let bytes = index
        .to_bytes()
        .unwrap_or_else(|e| panic!("an accepted index does not serialize: {e}"));
    let again = TarIndex::from_bytes(&bytes)
        .unwrap_or_else(|e| panic!("a re-serialized index does not deserialize: {e}"));
    assert_eq!(again.entries(), entries);
    let _ = index.content_bytes();
    Feedback::ok("index", entries.len())
}

fn tar_index_json_seeds() -> Vec<Vec<u8>> {
    tar_index_seeds()
        .iter()
        .filter_map(|tar| TarIndex::scan(tar).ok()?.to_bytes().ok())
        .collect()
}

/// The description split into sections: at `---` (overlay) or `@` lines (union).
fn sections(data: &[u8], union: bool) -> Vec<(Vec<u8>, Vec<&[u8]>)> {
    let mut out: Vec<(Vec<u8>, Vec<&[u8]>)> = vec![(b"/".to_vec(), Vec::new())];
    for line in data.split(|&b| b == b'\n') {
        let starts = if union {
            line.first() == Some(&b'@')
        } else {
            line == b"---"
        };
        if starts {
            if out.len() >= 8 {
                break;
            }
            out.push((line.get(1..).unwrap_or_default().to_vec(), Vec::new()));
        } else if let Some((_, lines)) = out.last_mut() {
            lines.push(line);
        }
    }
    out
}

/// Every path of `fs` reachable by listing from `/`, at most [`WALK_LIMIT`].
fn walk(fs: &dyn FileSystem) -> Vec<VfsPath> {
    let mut out = vec![VfsPath::root()];
    let mut i = 0;
    while let Some(dir) = out.get(i).cloned() {
        i += 1;
        if out.len() >= WALK_LIMIT {
            break;
        }
        let Ok(meta) = fs.symlink_metadata(&dir) else {
            continue;
        };
        if meta.kind != FileType::Dir {
            continue;
        }
        let listing = fs
            .read_dir(&dir)
            .unwrap_or_else(|e| panic!("directory {dir:?} cannot be listed: {e}"));
        let names: BTreeSet<&str> = listing.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names.len(), listing.len(), "duplicate names in {dir:?}");
        for entry in &listing {
            assert!(
                !entry.name.is_empty()
                    && !entry.name.contains('/')
                    && entry.name != "."
                    && entry.name != "..",
                "bad name {:?} in {dir:?}",
                entry.name
            );
            let child = dir
                .join(&entry.name)
                .unwrap_or_else(|e| panic!("{dir:?}/{:?}: {e}", entry.name));
            let meta = fs
                .symlink_metadata(&child)
                .unwrap_or_else(|e| panic!("listed {child:?} has no metadata: {e}"));
            assert_eq!(
                meta.kind, entry.kind,
                "{child:?}: listing and metadata disagree"
            );
            out.push(child);
        }
    }
    out
}

pub(super) const OVERLAY: Target = Target {
    name: "overlay",
    about: "vfs_overlay::Overlay of up to 8 tar layers built from a line description: no \
            whiteout is visible, each visible path comes from the highest layer that has it, \
            whiteouts, opaque markers and replaced parents hide what they must, and a \
            hardlink into the layers below reads what the layers below it hold at its target",
    run: overlay,
    seeds: overlay_seeds,
    dictionary: DESCRIPTION_TOKENS,
    max_len: 4096,
};

fn is_whiteout_name(name: &str) -> bool {
    name.starts_with(".wh.")
}

/// The layers of an overlay description and their overlay, or the feedback of the error.
fn build_overlay(data: &[u8]) -> Result<(Vec<Arc<TarVolume>>, Overlay), Feedback> {
    let mut volumes: Vec<Arc<TarVolume>> = Vec::new();
    for (_, lines) in sections(data, false) {
        let tar = build_tar(lines);
        match TarVolume::new_layer(Bytes::from(tar)) {
            Ok(volume) => volumes.push(Arc::new(volume)),
            Err(e) => return Err(Feedback::err("layer", &e)),
        }
    }
    match stack(&volumes) {
        Ok(overlay) => Ok((volumes, overlay)),
        Err(e) => Err(Feedback::err("overlay", &e)),
    }
}

fn stack(volumes: &[Arc<TarVolume>]) -> vfs_overlay::Result<Overlay> {
    Overlay::new(
        volumes
            .iter()
            .map(|v| Arc::clone(v) as Arc<dyn FileSystem>)
            .collect(),
    )
}

fn overlay(data: &[u8]) -> Feedback {
    let (volumes, overlay) = match build_overlay(data) {
        Ok(built) => built,
        Err(feedback) => return feedback,
    };
    let visible = walk(&overlay);
    let has = |layer: &TarVolume, path: &VfsPath| {
        layer.index().get(path).is_some() || layer.lower_links().contains_key(path)
    };
    let mut links_out = 0u64;
    for path in &visible {
        assert!(
            !path.components().any(is_whiteout_name),
            "whiteout {path:?} is visible"
        );
        if path.is_root() {
            continue;
        }
        let meta = overlay
            .symlink_metadata(path)
            .unwrap_or_else(|e| panic!("visible {path:?}: {e}"));
        // The highest layer with an entry at `path` is where it comes from.
        let source = volumes
            .iter()
            .rposition(|v| has(v, path))
            .unwrap_or_else(|| panic!("visible {path:?} is in no layer"));
        let layer = volumes.get(source).map(Arc::as_ref);
        let layer = layer.unwrap_or_else(|| panic!("layer {source}"));
        if let Some(target) = layer.lower_links().get(path) {
            // A link into the layers below: what the layers under `source` hold at the
            // target, the same file (same id) as there.
            links_out += 1;
            let below = stack(volumes.get(..source).unwrap_or_default())
                .unwrap_or_else(|e| panic!("the layers under {source} stack alone: {e}"));
            let there = below
                .symlink_metadata(target)
                .unwrap_or_else(|e| panic!("{path:?} links to {target:?}, absent below: {e}"));
            assert_eq!(meta.kind, there.kind, "{path:?} must be {target:?} below");
            assert_ne!(meta.kind, FileType::Dir, "{path:?} links to a directory");
            if meta.kind == FileType::File {
                assert_eq!(
                    overlay.read_all(path).ok(),
                    below.read_all(target).ok(),
                    "{path:?} must read as {target:?} below layer {source}"
                );
                assert_eq!(
                    overlay.node_id(path),
                    below.node_id(target),
                    "{path:?} and {target:?} below are one file"
                );
            }
        } else {
            let own = layer
                .symlink_metadata(path)
                .unwrap_or_else(|e| panic!("{path:?} in layer {source}: {e}"));
            assert_eq!(meta.kind, own.kind, "{path:?} must be as in layer {source}");
            if meta.kind == FileType::File {
                assert_eq!(
                    overlay.read_all(path).ok(),
                    layer.read_all(path).ok(),
                    "{path:?} must read as in layer {source}"
                );
            }
        }
        // Nothing at or above `path` was deleted or replaced above the source layer.
        for (i, v) in volumes.iter().enumerate().skip(source) {
            let Some(parent) = path.parent() else {
                continue;
            };
            let mut ancestor = Some(parent);
            while let Some(dir) = ancestor {
                if i > source {
                    let hidden = dir.join(".wh..wh..opq").ok().is_some_and(|p| has(v, &p));
                    assert!(
                        !hidden,
                        "{path:?} from layer {source} shows through an opaque {dir:?} in layer {i}"
                    );
                    let replaced = v
                        .index()
                        .get(&dir)
                        .is_some_and(|e| e.kind != TarEntryKind::Dir)
                        || v.lower_links().contains_key(&dir);
                    assert!(
                        !replaced,
                        "{path:?} from layer {source} shows under {dir:?}, a non-directory in layer {i}"
                    );
                }
                ancestor = dir.parent();
            }
            if i > source
                && let (Some(dir), Some(name)) = (path.parent(), path.file_name())
            {
                let whiteout = dir.join(&format!(".wh.{name}")).ok();
                assert!(
                    !whiteout.is_some_and(|w| has(v, &w)),
                    "{path:?} from layer {source} shows through a whiteout in layer {i}"
                );
            }
        }
    }
    // Everything in the top layer is visible (unless it is a whiteout or under one).
    if let Some(top) = volumes.last() {
        let paths = top.index().entries().into_iter().map(|e| &e.path);
        for path in paths.chain(top.lower_links().keys()) {
            let under_non_dir = {
                let mut up = path.parent();
                let mut found = false;
                while let Some(dir) = up {
                    found |= top
                        .index()
                        .get(&dir)
                        .is_some_and(|e| e.kind != TarEntryKind::Dir);
                    up = dir.parent();
                }
                found
            };
            if path.components().any(is_whiteout_name) || under_non_dir {
                continue;
            }
            assert!(
                overlay.symlink_metadata(path).is_ok(),
                "{path:?} of the top layer is not visible"
            );
        }
    }
    Feedback::ok("overlay", visible.len())
        .and(volumes.len() as u64)
        .and(links_out.min(3) << 8)
}

fn overlay_seeds() -> Vec<Vec<u8>> {
    [
        "d etc\nf etc/passwd root\nf etc/hosts localhost\nd var/lib\nf var/lib/db x\n---\nf etc/.wh.hosts\nf var/.wh..wh..opq\nf var/new y\n---\nf etc/hosts again",
        "f a/b/c deep\n---\nf a b-is-now-a-file\n---\nd a\nf a/d new",
        "f x 1\nh y x\n---\nf x 2\n---\nl z ../../x",
        "f a/.wh.\n---\nf .wh..wh..opq",
        "d700 dir\n---\nd755 dir\np dir/fifo",
        "d bin\nf755 bin/tool t\nf conf c\n---\nh bin/alias bin/tool\n---\nh opt/again bin/alias\nh keep conf\nf .wh.conf",
        "d a\nf a/f x\n---\nh a b\n---\nh c a/f",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

pub(super) const UNION: Target = Target {
    name: "union",
    about: "vfs_overlay::Union of tar volumes mounted at paths from the input (with Fail, \
            Keep and Replace policies), and lookups: mount outcomes, mount_point_of and \
            metadata follow a simple model of deepest-mount-wins",
    run: union,
    seeds: union_seeds,
    dictionary: DESCRIPTION_TOKENS,
    max_len: 4096,
};

fn union(data: &[u8]) -> Feedback {
    let union = Union::new();
    let mut model: BTreeMap<VfsPath, Arc<dyn FileSystem>> = BTreeMap::new();
    let mut queries: Vec<VfsPath> = vec![VfsPath::root()];
    let mut outcomes = 0u64;
    for (i, (head, lines)) in sections(data, true).into_iter().enumerate() {
        let head = String::from_utf8_lossy(&head).into_owned();
        let (at, policy) = match head.rsplit_once(' ') {
            Some((at, "k")) => (at, MountPolicy::KeepExisting),
            Some((at, "r")) => (at, MountPolicy::Replace),
            Some((at, "f")) => (at, MountPolicy::Fail),
            _ => (head.as_str(), MountPolicy::Fail),
        };
        let Ok(at) = VfsPath::new(at) else {
            continue;
        };
        for line in &lines {
            if let Some(q) = line.strip_prefix(b"? ")
                && let Ok(q) = VfsPath::new(&String::from_utf8_lossy(q))
            {
                queries.push(q);
            }
        }
        let tar = build_tar(lines.iter().copied().filter(|l| !l.starts_with(b"?")));
        let volume: Arc<dyn FileSystem> = match TarVolume::new(Bytes::from(tar)) {
            Ok(volume) => Arc::new(volume),
            Err(e) => return Feedback::err("volume", &e),
        };
        // The first section is a volume at / only when it has entries.
        if i == 0 && lines.is_empty() {
            continue;
        }
        for entry in walk(volume.as_ref()) {
            if let Ok(q) = at.join(entry.as_str().trim_start_matches('/')) {
                queries.push(q);
            }
        }
        queries.push(at.clone());
        let outcome = union.mount(&at, Arc::clone(&volume), policy);
        let existed = model.contains_key(&at);
        match (existed, policy, &outcome) {
            (false, _, Ok(MountOutcome::Mounted)) => {
                model.insert(at.clone(), volume);
            }
            (true, MountPolicy::Fail, Err(_))
            | (true, MountPolicy::KeepExisting, Ok(MountOutcome::KeptExisting)) => {}
            (true, MountPolicy::Replace, Ok(MountOutcome::Replaced(_))) => {
                model.insert(at.clone(), volume);
            }
            _ => panic!("mount at {at:?} ({policy:?}, mounted before: {existed}) gave {outcome:?}"),
        }
        outcomes |= 1 << (u64::from(existed) * 3 + policy as u64);
    }
    let mounts: BTreeSet<VfsPath> = union.mounts().into_iter().collect();
    assert_eq!(
        mounts,
        model.keys().cloned().collect::<BTreeSet<_>>(),
        "the mount table"
    );
    for q in queries.iter().take(256) {
        let deepest = model
            .iter()
            .filter(|(m, _)| q.starts_with(m))
            .max_by_key(|(m, _)| m.as_str().len());
        assert_eq!(
            union.mount_point_of(q),
            deepest.map(|(m, _)| m.clone()),
            "mount point of {q:?}"
        );
        let above_a_mount = model.keys().any(|m| m != q && m.starts_with(q));
        let got = union.symlink_metadata(q);
        if (above_a_mount || q.is_root()) && !model.contains_key(q) {
            let meta = got.unwrap_or_else(|e| panic!("{q:?} leads to a mount but fails: {e}"));
            assert_eq!(meta.kind, FileType::Dir, "{q:?} leads to a mount");
        } else if let Some((m, fs)) = deepest {
            let inner = q
                .strip_prefix(m)
                .unwrap_or_else(|| panic!("{q:?} is under {m:?}"));
            let want = fs.symlink_metadata(&inner);
            if !(above_a_mount && want.as_ref().is_ok_and(|w| w.kind != FileType::Dir)) {
                assert_eq!(
                    got.as_ref().map(|g| g.kind).ok(),
                    want.as_ref().map(|w| w.kind).ok(),
                    "{q:?} must look like {inner:?} in the volume at {m:?}"
                );
            }
        } else {
            assert!(got.is_err(), "{q:?} is under no mount but exists: {got:?}");
        }
        if let Ok(listing) = union.read_dir(q) {
            let names: BTreeSet<&str> = listing.iter().map(|d| d.name.as_str()).collect();
            assert_eq!(names.len(), listing.len(), "duplicate names in {q:?}");
            for m in model.keys() {
                if m.parent().as_ref() == Some(q) {
                    let name = m.file_name().unwrap_or_default();
                    assert!(
                        names.contains(name),
                        "mount {m:?} missing from the listing of {q:?}"
                    );
                }
            }
        }
        if let Ok(canonical) = union.canonicalize(q) {
            assert_eq!(
                VfsPath::new(canonical.as_str()).ok(),
                Some(canonical.clone())
            );
        }
    }
    walk(&union);
    Feedback::ok("union", model.len())
        .and(outcomes)
        .and(super::size_class(queries.len()))
}

fn union_seeds() -> Vec<Vec<u8>> {
    [
        "d bin\nf bin/sh x\n@/app\nf main.py print()\nd data\n@/app/data\nf db.sqlite y\n? /app/data/db.sqlite\n? /app/../..",
        "@/opt/python\nl lib ../../../etc\n? /opt/python/lib\n@/opt/python r\nf lib z\n@/opt/python k\nf other q",
        "@/a\nf b 1\n@/a/b\nf c 2\n? /a/b/c\n@/a f\n",
        "@/\nf x y\n@/x\nd z\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

pub(super) const MATERIALIZE: Target = Target {
    name: "materialize",
    about: "vfs_overlay::materialize of an overlay built like `overlay`'s into a temp dir: \
            nothing is written outside the target (symlinks to `../outside` are never \
            followed), and the host tree equals the VFS path for path (kind, content, link)",
    run: materialize,
    seeds: materialize_seeds,
    dictionary: DESCRIPTION_TOKENS,
    max_len: 2048,
};

thread_local! {
    static SANDBOX: std::path::PathBuf = std::env::temp_dir().join(
        format!(
            "pkgload-fuzz-materialize-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        )
        .replace(['(', ')'], ""),
    );
}

/// Removes `dir`, first making everything in it writable (a materialized tree may hold
/// directories without write permission).
fn remove_tree(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
        return;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700));
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
    if let Err(e) = std::fs::remove_dir_all(dir) {
        panic!("cannot clean {}: {e}", dir.display());
    }
}

/// Every path under `root`, relative, without following symlinks.
fn host_tree(root: &std::path::Path) -> BTreeMap<String, std::fs::Metadata> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let child_rel = format!("{rel}/{name}");
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if meta.is_dir() {
                stack.push((entry.path(), child_rel.clone()));
            }
            out.insert(child_rel, meta);
        }
    }
    out
}

fn materialize(data: &[u8]) -> Feedback {
    use vfs_overlay::{Devices, LinkMode, MaterializeOptions};
    let (_, overlay) = match build_overlay(data) {
        Ok(built) => built,
        Err(feedback) => return feedback,
    };
    SANDBOX.with(|sandbox| {
        remove_tree(sandbox);
        let out = sandbox.join("out");
        let outside = sandbox.join("outside");
        if let Err(e) = std::fs::create_dir_all(&outside) {
            panic!("cannot create {}: {e}", outside.display());
        }
        let options = MaterializeOptions::new()
            .threads(1)
            .devices(Devices::Skip)
            .link_mode(LinkMode::Copy);
        let result = vfs_overlay::materialize(&overlay, &out, options);
        let escaped: Vec<String> = host_tree(&outside).into_keys().collect();
        assert!(
            escaped.is_empty(),
            "materialize wrote outside its target: {escaped:?}"
        );
        let siblings: Vec<String> = std::fs::read_dir(sandbox)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "out" && n != "outside")
            .collect();
        assert!(
            siblings.is_empty(),
            "materialize wrote next to its target: {siblings:?}"
        );
        let feedback = match &result {
            Err(e) => Feedback::err("materialize", e),
            Ok(report) => {
                let visible = walk(&overlay);
                let host = host_tree(&out);
                let mut expected = 0;
                for path in visible.iter().filter(|p| !p.is_root()) {
                    let meta = overlay
                        .symlink_metadata(path)
                        .unwrap_or_else(|e| panic!("visible {path:?}: {e}"));
                    if meta.kind == FileType::Other {
                        continue;
                    }
                    expected += 1;
                    let on_host = host
                        .get(path.as_str())
                        .unwrap_or_else(|| panic!("{path:?} was not materialized"));
                    let host_path = out.join(path.as_str().trim_start_matches('/'));
                    match meta.kind {
                        FileType::File => {
                            assert!(on_host.is_file(), "{path:?} is not a file on the host");
                            let want = overlay
                                .read_all(path)
                                .unwrap_or_else(|e| panic!("{path:?}: {e}"));
                            let got = std::fs::read(&host_path)
                                .unwrap_or_else(|e| panic!("{}: {e}", host_path.display()));
                            assert_eq!(got, want.as_ref(), "content of {path:?}");
                        }
                        FileType::Dir => assert!(on_host.is_dir(), "{path:?} is not a directory"),
                        FileType::Symlink => {
                            assert!(
                                on_host.file_type().is_symlink(),
                                "{path:?} is not a symlink"
                            );
                            let want = overlay
                                .read_link(path)
                                .unwrap_or_else(|e| panic!("{path:?}: {e}"));
                            let got = std::fs::read_link(&host_path)
                                .unwrap_or_else(|e| panic!("{}: {e}", host_path.display()));
                            assert_eq!(got.to_string_lossy(), want, "target of {path:?}");
                        }
                        _ => {}
                    }
                }
                if visible.len() < WALK_LIMIT {
                    assert_eq!(
                        host.len(),
                        expected,
                        "the host tree has other paths than the VFS: {:?}",
                        host.keys().collect::<Vec<_>>()
                    );
                }
                let _ = report;
                Feedback::ok("materialized", expected)
            }
        };
        remove_tree(sandbox);
        feedback
    })
}

fn materialize_seeds() -> Vec<Vec<u8>> {
    [
        "l escape ../outside\n---\nf escape/x written-through-a-symlink?",
        "l a ../../outside/f\n---\nf a overwrite-through-the-link?\nh b a",
        "d etc\nf etc/passwd root\nl etc/link /etc/passwd\nh etc/hard etc/passwd\n---\nf etc/.wh.passwd\n---\nf700 etc/passwd new",
        "f ../../outside/x dotdot\nf /outside/y absolute",
        "d000 locked\nf locked/inner x\np fifo",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

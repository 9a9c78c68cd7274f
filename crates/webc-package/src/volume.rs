//! A webc volume as a `vfs-overlay` filesystem.
//!
//! The volume's tree is walked once through the `webc` crate and written into the same
//! path table tar volumes use ([`TarIndex::from_entries`]), with each file's data range
//! pointing into the container's own bytes: reads are zero-copy slices of the memory map,
//! and everything `vfs-overlay` does with a tar volume (unions, overlays, `materialize`,
//! reads by range) works unchanged.
//!
//! Checked while walking, so a volume that opens is whole:
//! - names are single components (no `..`, no `/`, no NUL);
//! - every file's bytes lie inside the container;
//! - v3 files carry a sha256 each, and each is checked here, before anything is served;
//! - a relative symlink may not climb above the volume's root (an absolute one is left to
//!   the tree it is mounted in, which resolves it inside the package tree).
//!
//! webc stores no permissions or owners: files are 0644, directories 0755, owned by 0:0;
//! v3 modification times are kept (v1 and v2 have none).

use bytes::Bytes;
use vfs_overlay::{TarEntry, TarEntryKind, TarIndex, TarVolume, VfsPath};
use webc::Metadata as WebcMetadata;

use crate::container::{WebcContainer, guarded};
use crate::error::WebcError;

const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;
/// Longer paths cannot be unpacked on Linux, so no volume needs them.
const PATH_MAX: usize = 4096;
/// Deeper trees are refused: real packages (`node_modules` included) stay far below, and
/// the `webc` crate's lookups cost the depth on every call.
const MAX_DEPTH: usize = 256;

/// Indexes `volume` (named `name` in `container`); see the module docs.
pub(crate) fn index(
    container: &WebcContainer,
    name: &str,
    volume: &webc::Volume,
    check_hashes: bool,
) -> Result<TarVolume, WebcError> {
    let err = |message: String| WebcError::Volume {
        origin: container.origin().to_owned(),
        volume: name.to_owned(),
        message,
    };
    let entries = guarded(|| walk(container, name, volume, check_hashes))
        .map_err(|panic| err(format!("the webc parser failed: {panic}")))??;
    let bytes: &Bytes = container.bytes();
    let index =
        TarIndex::from_entries(bytes.len() as u64, entries).map_err(|e| err(e.to_string()))?;
    TarVolume::with_index(bytes.clone(), std::sync::Arc::new(index)).map_err(|e| err(e.to_string()))
}

fn walk(
    container: &WebcContainer,
    name: &str,
    volume: &webc::Volume,
    check_hashes: bool,
) -> Result<Vec<TarEntry>, WebcError> {
    let origin = container.origin();
    let err = |message: String| WebcError::Volume {
        origin: origin.to_owned(),
        volume: name.to_owned(),
        message,
    };
    let mut entries = Vec::new();
    let mut pending = vec![VfsPath::root()];
    // Every entry takes bytes of the volume's header, so a volume cannot honestly list more
    // entries than the container has bytes. A header whose directories point back at their
    // ancestors (or share subtrees) would otherwise unfold without end.
    let most = container.bytes().len();
    // The `webc` crate finds a directory by walking down from the root, so listing one
    // costs its depth: the walk's whole cost is bounded the same way, by the file's size.
    let mut budget = most.saturating_mul(2).saturating_add(4096);
    while let Some(dir) = pending.pop() {
        let depth = dir.as_str().matches('/').count();
        if depth > MAX_DEPTH {
            return Err(err(format!(
                "directories nest deeper than {MAX_DEPTH} levels (at {dir})"
            )));
        }
        budget = budget.checked_sub(depth + 1).ok_or_else(|| {
            err(format!(
                "its directories nest deeper than its size allows (at {dir})"
            ))
        })?;
        let listing = volume
            .read_dir(dir.as_str())
            .ok_or_else(|| err(format!("directory {dir} cannot be listed")))?;
        if entries.len() + listing.len() > most {
            return Err(err(format!(
                "it lists more entries than its {most} bytes can hold (at {dir}): its \
                 directories point back at each other"
            )));
        }
        for (segment, hash, meta) in listing {
            let child = segment.as_str();
            if child.is_empty() || child == "." || child == ".." || child.contains(['/', '\0']) {
                return Err(err(format!("{dir} holds an entry named {child:?}")));
            }
            let path = dir
                .join(child)
                .map_err(|e| err(format!("{dir}/{child}: {e}")))?;
            if path.as_str().len() > PATH_MAX {
                return Err(err(format!(
                    "a path under {dir} is longer than {PATH_MAX} bytes"
                )));
            }
            let mtime = meta
                .timestamps()
                .map_or(0, |t| t.modified() / 1_000_000_000);
            let mut entry = TarEntry {
                path: path.clone(),
                kind: TarEntryKind::Dir,
                mode: DIR_MODE,
                uid: 0,
                gid: 0,
                mtime,
                size: 0,
                offset: 0,
                link: None,
                implied: false,
            };
            match meta {
                WebcMetadata::Dir { .. } => pending.push(path),
                WebcMetadata::File { .. } => {
                    let (data, _) = volume
                        .read_file(path.as_str())
                        .ok_or_else(|| err(format!("file {path} cannot be read")))?;
                    let offset = container
                        .offset_of(&data)
                        .ok_or_else(|| err(format!("file {path} does not lie inside the file")))?;
                    if check_hashes
                        && let Some(expected) = hash
                        && container.sha256_of(&data) != expected
                    {
                        return Err(WebcError::FileHash {
                            origin: origin.to_owned(),
                            volume: name.to_owned(),
                            path,
                        });
                    }
                    entry.kind = TarEntryKind::File;
                    entry.mode = FILE_MODE;
                    entry.size = data.len() as u64;
                    entry.offset = offset;
                }
                WebcMetadata::Symlink { .. } => {
                    let (target, _) = volume
                        .read_link(path.as_str())
                        .ok_or_else(|| err(format!("symlink {path} cannot be read")))?;
                    if climbs_out(&dir, &target) {
                        return Err(WebcError::SymlinkEscapes {
                            origin: origin.to_owned(),
                            volume: name.to_owned(),
                            path,
                            target,
                        });
                    }
                    entry.kind = TarEntryKind::Symlink;
                    entry.mode = 0o777;
                    entry.link = Some(target);
                }
            }
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// Whether the relative `target` of a link in `dir` climbs above the root.
fn climbs_out(dir: &VfsPath, target: &str) -> bool {
    if target.starts_with('/') || target.contains('\0') {
        return target.contains('\0');
    }
    let mut depth = dir.as_str().split('/').filter(|c| !c.is_empty()).count();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." if depth == 0 => return true,
            ".." => depth -= 1,
            _ => depth += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_that_climb_out_are_found() {
        let root = VfsPath::root();
        let deep = VfsPath::new("/a/b").unwrap();
        assert!(climbs_out(&root, "../x"));
        assert!(climbs_out(&deep, "../../../etc/passwd"));
        assert!(climbs_out(&deep, "c/../../../../x"));
        assert!(!climbs_out(&deep, "../../x"));
        assert!(!climbs_out(&deep, "./c/../d"));
        assert!(!climbs_out(&root, "/etc/passwd"));
        assert!(climbs_out(&root, "a\0b"));
    }
}

//! `TarVolume`: a read-only filesystem over an uncompressed tar held in memory (in
//! production, a memory-mapped [`cache_core::Blob`]).
//!
//! The headers are scanned once into a [`TarIndex`]: path → kind, attributes and the byte
//! range of the data inside the tar. File reads are then `Bytes::slice`s of the archive, so
//! no byte of content is copied. The index serializes ([`TarIndex::to_bytes`]) so that it
//! can be kept as a derived store entry and a warm load does not scan again;
//! [`TarIndex::from_bytes`] checks everything it is given.
//!
//! Hostile archives, and what the index makes of them:
//! - **Names are normalized with [`VfsPath`]**: absolute names and `..` stay inside the
//!   volume's `/`. `../../etc/x` and `/etc/x` both become `/etc/x` *inside the volume*;
//!   nothing can name a path above its root.
//! - **A NUL byte in a name** (possible through PAX or GNU long names) refuses the whole
//!   archive with [`TarError::BadName`]: such a name cannot exist on any filesystem and
//!   truncating it would make it alias another entry.
//! - **Names that are not UTF-8** are converted lossily (invalid bytes become U+FFFD).
//! - **Duplicate entries**: the later one wins, as extraction does. A directory over a
//!   directory only updates the attributes; anything else replaces the earlier entry and
//!   everything below it.
//! - **An entry below a non-directory** (`a` a file or a symlink, then `a/b`): `a` is
//!   replaced by an implied directory. Symlinks are never followed while indexing, so a
//!   symlink to `/etc` followed by `link/passwd` puts `passwd` under the volume's own `/link`.
//! - **Implied directories** (parents no entry names) exist with mode 0755, uid/gid 0 and
//!   mtime 0, and say so ([`FileSystem::node_is_implied_dir`]): in an [`crate::Overlay`] a
//!   lower layer's directory keeps its attributes under them, as unpacking a layer that
//!   only creates missing parents does.
//! - **Hardlinks** to an entry that came earlier in the archive share the target's data
//!   range (same bytes, same attributes, counted in `nlink`); a hardlink to a symlink or a
//!   device is a copy of that entry (as `link(2)` without `AT_SYMLINK_FOLLOW` does). A
//!   hardlink to a directory refuses the archive ([`TarError::BadHardlink`]). The target is
//!   looked up literally, never through symlinks. A hardlink whose target is not earlier in
//!   the archive names a file of the layers below, as unpacking an image layer over its
//!   parents links whatever the rootfs holds at that name: the index keeps it apart
//!   ([`TarIndex::lower_links`]) for an [`crate::Overlay`] to resolve, and a volume used on
//!   its own refuses it ([`TarVolume::new`]) or leaves it out ([`TarVolume::new_layer`]).
//! - **Data past the end of the buffer** (a truncated tar, including a cut inside the
//!   padding that rounds data up to 512 bytes) is [`TarError::Truncated`]. A tar that ends
//!   right after an entry, without the end-of-archive zero blocks, is complete, as GNU tar,
//!   Go's `archive/tar` and containerd read it: the legacy zstd:chunked layers of
//!   stargz-snapshotter's writer end that way, and a blob cut in transit never gets here
//!   (the loader indexes blobs only after checking their digest).
//!   An empty buffer is an empty volume.
//! - **Sparse files** are refused ([`TarError::Unsupported`]): their data is not one range.
//!   PAX global headers and unknown entry types are skipped.
//! - A symlink target is kept verbatim (a NUL in it is [`TarError::BadEntry`]); it is
//!   resolved later inside the VFS root, like any other.
//! - uid, gid and mtime come from the entry's PAX header when it has them (mtime in whole
//!   seconds, negative → 0), else from the ustar/GNU header fields; a uid or gid above
//!   `u32::MAX` is clamped to it. PAX global headers are not applied.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Result, VfsError};
use crate::fs::{DirEntry, FileSystem, FileType, Footprint, Metadata, NodeId};
use crate::host::HostRange;
use crate::path::VfsPath;

/// Magic string and version of the serialized index.
const INDEX_FORMAT: &str = "pkgload-tar-index";
const INDEX_VERSION: u32 = 1;

/// Mode of directories that no entry describes.
const IMPLIED_DIR_MODE: u32 = 0o755;

/// Why an archive (or a serialized index) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TarError {
    /// The tar structure itself could not be read (bad checksum, bad number field, …).
    #[error("tar is malformed near byte {at}: {message}")]
    Malformed {
        /// Byte offset of the last header read successfully (0 before the first).
        at: u64,
        /// What the tar reader reported.
        message: String,
    },
    /// An entry's name holds a NUL byte.
    #[error("tar entry name {name:?} contains a NUL byte; the archive is refused")]
    BadName {
        /// The name, lossily decoded.
        name: String,
    },
    /// An entry that cannot be represented (a non-directory named `/`, a symlink target
    /// with a NUL byte).
    #[error("tar entry {path}: {reason}")]
    BadEntry {
        /// The entry's normalized path.
        path: VfsPath,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A hardlink whose target is missing (or comes later in the archive) or is a directory.
    #[error("tar entry {path}: hardlink to {target}, which {reason}")]
    BadHardlink {
        /// The hardlink's path.
        path: VfsPath,
        /// The target it names.
        target: VfsPath,
        /// "does not exist (earlier in the archive)" or "is a directory".
        reason: &'static str,
    },
    /// A file's data runs past the end of the buffer: the tar is truncated.
    #[error(
        "tar entry {path}: data at byte {offset} of {size} bytes runs past the end of the \
         {len}-byte archive (truncated download?)"
    )]
    Truncated {
        /// The file's path.
        path: VfsPath,
        /// Start of its data.
        offset: u64,
        /// Its size.
        size: u64,
        /// Length of the archive.
        len: u64,
    },
    /// An entry kind whose data cannot be served as one slice.
    #[error("tar entry {path}: {kind} entries are not supported")]
    Unsupported {
        /// The entry's path.
        path: VfsPath,
        /// What it is.
        kind: &'static str,
    },
    /// A serialized index that is unreadable, of another version, inconsistent, or made for
    /// another archive. Re-index the tar.
    #[error("invalid tar index: {0}; rebuild it from the tar")]
    BadIndex(String),
}

/// What a tar entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TarEntryKind {
    /// A regular file.
    File,
    /// A directory (listed in the tar, or implied by deeper entries).
    Dir,
    /// A symbolic link; `link` is its target, verbatim.
    Symlink,
    /// A hardlink to an earlier regular file; `link` is the target's path and the data range
    /// is the target's.
    Hardlink,
    /// A device node or fifo: listed, never read.
    Other,
}

/// One indexed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    /// Normalized path inside the volume.
    pub path: VfsPath,
    /// What it is.
    pub kind: TarEntryKind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// Bytes of data (files and hardlinks; 0 otherwise).
    pub size: u64,
    /// Offset of the data in the tar (files and hardlinks; 0 otherwise).
    pub offset: u64,
    /// Symlink target (verbatim) or hardlink target (normalized path).
    pub link: Option<String>,
    /// A directory no entry describes, there only because deeper entries need it.
    pub implied: bool,
}

impl TarEntry {
    fn has_data(&self) -> bool {
        matches!(self.kind, TarEntryKind::File | TarEntryKind::Hardlink)
    }

    fn implied_dir(path: VfsPath) -> TarEntry {
        TarEntry {
            path,
            kind: TarEntryKind::Dir,
            mode: IMPLIED_DIR_MODE,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            offset: 0,
            link: None,
            implied: true,
        }
    }
}

impl TarEntryKind {
    fn file_type(self) -> FileType {
        match self {
            TarEntryKind::File | TarEntryKind::Hardlink => FileType::File,
            TarEntryKind::Dir => FileType::Dir,
            TarEntryKind::Symlink => FileType::Symlink,
            TarEntryKind::Other => FileType::Other,
        }
    }
}

#[derive(Debug, Clone)]
struct Node {
    entry: TarEntry,
    /// Child names with their kinds, so a listing needs no lookup per child.
    children: BTreeMap<String, FileType>,
    /// `nlink` as `lstat` reports it, computed once the index is complete
    /// ([`TarIndex::finish`]): names sharing the data range, or 2 + subdirectories.
    nlink: u64,
}

impl Node {
    fn new(entry: TarEntry) -> Node {
        Node {
            entry,
            children: BTreeMap::new(),
            nlink: 1,
        }
    }
}

/// The headers of one tar: a path table with each file's data range.
#[derive(Clone)]
pub struct TarIndex {
    tar_len: u64,
    nodes: HashMap<VfsPath, Node>,
    /// Hardlinks to files this archive does not hold (path → target): files of the layers
    /// below, resolved by an [`crate::Overlay`].
    lower: BTreeMap<VfsPath, VfsPath>,
    /// Whether two names with one data range are one file (a tar: only a hardlink shares a
    /// range). Formats that store identical contents once ([`TarIndex::from_entries`])
    /// still mean separate files.
    shared_range_is_link: bool,
}

impl fmt::Debug for TarIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TarIndex")
            .field("tar_len", &self.tar_len)
            .field("entries", &self.nodes.len())
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct WireIndex {
    format: String,
    version: u32,
    tar_len: u64,
    entries: Vec<WireEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    lower_links: Vec<WireLowerLink>,
    /// Set for an index made by [`TarIndex::from_entries`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    separate_files: bool,
}

#[derive(Serialize, Deserialize)]
struct WireLowerLink {
    path: String,
    target: String,
}

#[derive(Serialize, Deserialize)]
struct WireEntry {
    path: String,
    kind: TarEntryKind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    offset: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    link: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    implied: bool,
}

fn malformed(at: u64, e: &std::io::Error) -> TarError {
    TarError::Malformed {
        at,
        message: e.to_string(),
    }
}

/// uid, gid and mtime from an entry's PAX extended header, where it has them.
#[derive(Default)]
struct PaxAttrs {
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<u64>,
}

/// Reads the PAX values that override header fields (`path`/`linkpath`/`size` are applied
/// by the tar reader itself). Values that do not parse are ignored, leaving the header's.
fn pax_attrs<R: std::io::Read>(
    entry: &mut ::tar::Entry<'_, R>,
    at: u64,
) -> Result<PaxAttrs, TarError> {
    let mut out = PaxAttrs::default();
    let Some(exts) = entry.pax_extensions().map_err(|e| malformed(at, &e))? else {
        return Ok(out);
    };
    for ext in exts {
        let ext = ext.map_err(|e| malformed(at, &e))?;
        let Ok(value) = ext.value() else { continue };
        let value = value.trim();
        match ext.key_bytes() {
            b"uid" => out.uid = value.parse().ok().or(out.uid),
            b"gid" => out.gid = value.parse().ok().or(out.gid),
            // Seconds, possibly fractional or negative: whole seconds, clamped at the epoch.
            b"mtime" => {
                let whole = value.split('.').next().unwrap_or_default();
                out.mtime = if whole.starts_with('-') {
                    Some(0)
                } else {
                    whole.parse().ok().or(out.mtime)
                };
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A numeric header field: an empty one (all NUL or spaces, as some writers leave uid, gid
/// or mtime) reads as 0; anything else that does not parse is [`TarError::Malformed`].
fn header_num<T: Default>(at: u64, raw: &[u8], r: std::io::Result<T>) -> Result<T, TarError> {
    match r {
        Ok(v) => Ok(v),
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(T::default()),
        Err(e) => Err(malformed(at, &e)),
    }
}

impl TarIndex {
    fn empty(tar_len: u64) -> TarIndex {
        let mut nodes = HashMap::new();
        nodes.insert(
            VfsPath::root(),
            Node::new(TarEntry::implied_dir(VfsPath::root())),
        );
        TarIndex {
            tar_len,
            nodes,
            lower: BTreeMap::new(),
            shared_range_is_link: true,
        }
    }

    /// An index of a volume another format describes (a webc volume, say): each file's data
    /// is the range `offset..offset + size` of a buffer `len` bytes long. Missing parents
    /// are implied; two files may share a range and stay separate files (no hardlinks).
    ///
    /// # Errors
    /// [`TarError::Truncated`] for a range past `len`, [`TarError::BadEntry`] for a second
    /// entry at one path, a hardlink, or a root that is not a directory.
    pub fn from_entries(
        len: u64,
        entries: impl IntoIterator<Item = TarEntry>,
    ) -> Result<TarIndex, TarError> {
        let mut index = TarIndex::empty(len);
        index.shared_range_is_link = false;
        for mut entry in entries {
            if entry.kind == TarEntryKind::Hardlink {
                return Err(TarError::BadEntry {
                    path: entry.path,
                    reason: "a separate file cannot be a hardlink",
                });
            }
            if entry.has_data() {
                check_range(&entry, len)?;
            } else {
                (entry.offset, entry.size) = (0, 0);
            }
            let explicit = index
                .nodes
                .get(&entry.path)
                .is_some_and(|n| !n.entry.implied && !entry.path.is_root());
            if explicit {
                return Err(TarError::BadEntry {
                    path: entry.path,
                    reason: "appears twice",
                });
            }
            index.insert(entry)?;
        }
        index.finish();
        Ok(index)
    }

    /// An index of an archive another format describes entry by entry, in archive order (a
    /// table of contents of a compressed layer, say), with the rules [`TarIndex::scan`]
    /// applies: a later entry replaces an earlier one, a hardlink (`link` = its target's
    /// path) shares an earlier file's range and attributes, a hardlink to nothing earlier is
    /// a link into the layers below. Each file's data is `offset..offset + size` of a
    /// buffer `len` bytes long; there a file's range only has to be its own.
    ///
    /// # Errors
    /// [`TarError::Truncated`] for a range past `len`; [`TarError::BadHardlink`] for a link
    /// to a directory or without a target path; [`TarError::BadEntry`] for a root that is
    /// not a directory.
    pub fn from_archive(
        len: u64,
        entries: impl IntoIterator<Item = TarEntry>,
    ) -> Result<TarIndex, TarError> {
        let mut index = TarIndex::empty(len);
        for mut entry in entries {
            match entry.kind {
                TarEntryKind::File => check_range(&entry, len)?,
                TarEntryKind::Hardlink => {
                    let target = entry
                        .link
                        .as_deref()
                        .and_then(|t| VfsPath::new(t).ok())
                        .ok_or_else(|| TarError::BadHardlink {
                            path: entry.path.clone(),
                            target: VfsPath::root(),
                            reason: "has no target path",
                        })?;
                    match index.resolve_hardlink(entry, target)? {
                        Some(resolved) => entry = resolved,
                        None => continue,
                    }
                }
                TarEntryKind::Dir | TarEntryKind::Symlink | TarEntryKind::Other => {
                    (entry.offset, entry.size) = (0, 0);
                }
            }
            index.insert(entry)?;
        }
        index.finish();
        Ok(index)
    }

    /// Scans the headers of an uncompressed tar (see the module docs for what is accepted).
    ///
    /// # Errors
    /// A [`TarError`] describing the first problem; nothing in `data` can make this panic.
    pub fn scan(data: &[u8]) -> Result<TarIndex, TarError> {
        let len = data.len() as u64;
        let mut index = TarIndex::empty(len);
        let mut archive = ::tar::Archive::new(Cursor::new(data));
        let entries = archive.entries_with_seek().map_err(|e| malformed(0, &e))?;
        let mut at = 0u64;
        for entry in entries {
            let mut entry = entry.map_err(|e| malformed(at, &e))?;
            at = entry.raw_header_position();
            // The entry's data, padded to 512 bytes, must be inside the buffer.
            padded_end(entry.raw_file_position(), entry.size())
                .filter(|&e| e <= len)
                .ok_or_else(|| TarError::Truncated {
                    path: VfsPath::new(&String::from_utf8_lossy(&entry.path_bytes()))
                        .unwrap_or_else(|_| VfsPath::root()),
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                    len,
                })?;
            let header = entry.header();
            let raw_name = entry.path_bytes();
            let name = String::from_utf8_lossy(&raw_name);
            let path = VfsPath::new(&name).map_err(|_| TarError::BadName {
                name: name.clone().into_owned(),
            })?;
            use ::tar::EntryType as T;
            let etype = header.entry_type();
            let kind = match etype {
                T::Regular | T::Continuous if name.ends_with('/') => TarEntryKind::Dir,
                T::Regular | T::Continuous => TarEntryKind::File,
                T::Directory => TarEntryKind::Dir,
                T::Symlink => TarEntryKind::Symlink,
                T::Link => TarEntryKind::Hardlink,
                T::Char | T::Block | T::Fifo => TarEntryKind::Other,
                T::GNUSparse => {
                    return Err(TarError::Unsupported {
                        path,
                        kind: "GNU sparse",
                    });
                }
                _ => continue,
            };
            // PAX values win over the header fields, which may then hold anything.
            let pax = pax_attrs(&mut entry, at)?;
            let header = entry.header();
            let uid = match pax.uid {
                Some(v) => v,
                None => header_num(at, &header.as_old().uid, header.uid())?,
            };
            let gid = match pax.gid {
                Some(v) => v,
                None => header_num(at, &header.as_old().gid, header.gid())?,
            };
            let mut e = TarEntry {
                path,
                kind,
                mode: header_num(at, &header.as_old().mode, header.mode())? & 0o7777,
                uid: u32::try_from(uid).unwrap_or(u32::MAX),
                gid: u32::try_from(gid).unwrap_or(u32::MAX),
                mtime: match pax.mtime {
                    Some(v) => v,
                    None => header_num(at, &header.as_old().mtime, header.mtime())?,
                },
                size: 0,
                offset: 0,
                link: None,
                implied: false,
            };
            match kind {
                TarEntryKind::File => {
                    e.size = entry.size();
                    e.offset = entry.raw_file_position();
                    check_range(&e, len)?;
                }
                TarEntryKind::Symlink => {
                    let target = entry
                        .link_name_bytes()
                        .map(|t| String::from_utf8_lossy(&t).into_owned())
                        .unwrap_or_default();
                    if target.contains('\0') {
                        return Err(TarError::BadEntry {
                            path: e.path,
                            reason: "symlink target contains a NUL byte",
                        });
                    }
                    e.link = Some(target);
                }
                TarEntryKind::Hardlink => {
                    let raw = entry.link_name_bytes().unwrap_or_default();
                    let raw = String::from_utf8_lossy(&raw);
                    let target = VfsPath::new(&raw).map_err(|_| TarError::BadName {
                        name: raw.clone().into_owned(),
                    })?;
                    match index.resolve_hardlink(e, target)? {
                        Some(resolved) => e = resolved,
                        None => continue,
                    }
                }
                TarEntryKind::Dir | TarEntryKind::Other => {}
            }
            index.insert(e)?;
        }
        index.finish();
        Ok(index)
    }

    /// The entry a hardlink stands for, or `None` when its target is not earlier in this
    /// archive and it was recorded as a link into the layers below.
    fn resolve_hardlink(
        &mut self,
        link: TarEntry,
        target: VfsPath,
    ) -> Result<Option<TarEntry>, TarError> {
        let Some(node) = self.nodes.get(&target) else {
            // A link to a name that is itself a link below is a link to what that names.
            let target = self.lower.get(&target).cloned().unwrap_or(target);
            self.insert_lower(link.path, target)?;
            return Ok(None);
        };
        let t = &node.entry;
        match t.kind {
            TarEntryKind::Dir => Err(TarError::BadHardlink {
                path: link.path,
                target,
                reason: "is a directory",
            }),
            // Another name of the same inode: the target's data and attributes.
            TarEntryKind::File | TarEntryKind::Hardlink => Ok(Some(TarEntry {
                path: link.path,
                kind: TarEntryKind::Hardlink,
                link: Some(target.as_str().to_owned()),
                ..t.clone()
            })),
            TarEntryKind::Symlink | TarEntryKind::Other => Ok(Some(TarEntry {
                path: link.path,
                ..t.clone()
            })),
        }
    }

    /// Records `path` as a hardlink to `target` of the layers below, later-wins like any
    /// entry, its parents made directories of this archive.
    fn insert_lower(&mut self, path: VfsPath, target: VfsPath) -> Result<(), TarError> {
        let Some(parent) = path.parent() else {
            return Err(TarError::BadEntry {
                path,
                reason: "only a directory can stand for the volume root",
            });
        };
        self.ensure_dir(&parent);
        self.remove_subtree(&path);
        self.lower.insert(path, target);
        Ok(())
    }

    /// Hardlinks whose target this archive does not hold (path → target), for an
    /// [`crate::Overlay`] to resolve in the layers below. They are not entries of the index.
    pub fn lower_links(&self) -> &BTreeMap<VfsPath, VfsPath> {
        &self.lower
    }

    /// Adds `entry`, later-wins, creating (or forcing) its parents as directories.
    fn insert(&mut self, entry: TarEntry) -> Result<(), TarError> {
        let path = entry.path.clone();
        let Some(parent) = path.parent() else {
            // The root: only a directory can describe it, and it keeps its children.
            if entry.kind != TarEntryKind::Dir {
                return Err(TarError::BadEntry {
                    path,
                    reason: "only a directory can stand for the volume root",
                });
            }
            if let Some(root) = self.nodes.get_mut(&path) {
                root.entry = entry;
            }
            return Ok(());
        };
        self.ensure_dir(&parent);
        let merge = entry.kind == TarEntryKind::Dir
            && self
                .nodes
                .get(&path)
                .is_some_and(|n| n.entry.kind == TarEntryKind::Dir);
        if merge {
            if let Some(node) = self.nodes.get_mut(&path) {
                node.entry = entry;
            }
            return Ok(());
        }
        self.remove_subtree(&path);
        self.link_child(&parent, &path, entry.kind);
        self.nodes.insert(path, Node::new(entry));
        Ok(())
    }

    fn link_child(&mut self, parent: &VfsPath, path: &VfsPath, kind: TarEntryKind) {
        if let (Some(p), Some(name)) = (self.nodes.get_mut(parent), path.file_name()) {
            p.children.insert(name.to_owned(), kind.file_type());
        }
    }

    /// Makes every component of `dir` a directory: missing ones are implied, non-directories
    /// in the way are replaced.
    ///
    /// Every entry's parent is a directory in the table (replacing an entry removes its
    /// subtree), so the walk goes up only as far as the first existing directory: one probe
    /// for the usual entry whose parent exists, and deep archives stay linear.
    fn ensure_dir(&mut self, dir: &VfsPath) {
        let mut missing = Vec::new();
        let mut cur = dir.clone();
        loop {
            if self
                .nodes
                .get(&cur)
                .is_some_and(|n| n.entry.kind == TarEntryKind::Dir)
            {
                break;
            }
            let Some(parent) = cur.parent() else {
                break;
            };
            missing.push(cur);
            cur = parent;
        }
        while let Some(path) = missing.pop() {
            self.remove_subtree(&path);
            if let Some(parent) = path.parent() {
                self.link_child(&parent, &path, TarEntryKind::Dir);
            }
            self.nodes
                .insert(path.clone(), Node::new(TarEntry::implied_dir(path)));
        }
    }

    /// Removes `path` and its subtree, iteratively.
    fn remove_subtree(&mut self, path: &VfsPath) {
        if !self.lower.is_empty() {
            let below = format!("{}/", path.as_str());
            self.lower
                .retain(|p, _| p != path && !p.as_str().starts_with(&below));
        }
        if let (Some(parent), Some(name)) = (path.parent(), path.file_name())
            && let Some(p) = self.nodes.get_mut(&parent)
        {
            p.children.remove(name);
        }
        let mut stack = vec![path.clone()];
        while let Some(p) = stack.pop() {
            if let Some(node) = self.nodes.remove(&p) {
                stack.extend(node.children.keys().map(|c| p.child(c)));
            }
        }
    }

    /// Computes what `lstat` needs once the table is complete, so a lookup is one probe:
    /// each name's `nlink` (the names sharing a data range, or 2 + a directory's
    /// subdirectories, counted from the kinds kept with its child names).
    fn finish(&mut self) {
        let mut links: HashMap<u64, u64> = HashMap::new();
        for node in self.nodes.values() {
            if self.shared_range_is_link && node.entry.has_data() {
                *links.entry(node.entry.offset).or_insert(0) += 1;
            }
        }
        for node in self.nodes.values_mut() {
            node.nlink = match node.entry.kind {
                TarEntryKind::File | TarEntryKind::Hardlink => {
                    links.get(&node.entry.offset).copied().unwrap_or(1)
                }
                TarEntryKind::Dir => {
                    2 + node
                        .children
                        .values()
                        .filter(|k| **k == FileType::Dir)
                        .count() as u64
                }
                TarEntryKind::Symlink | TarEntryKind::Other => 1,
            };
        }
    }

    /// Length of the tar this index describes.
    pub fn tar_len(&self) -> u64 {
        self.tar_len
    }

    /// Number of entries, implied directories and `/` included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the volume holds nothing but `/`.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }

    /// The entry at `path`, if any (not following symlinks).
    pub fn get(&self, path: &VfsPath) -> Option<&TarEntry> {
        self.nodes.get(path).map(|n| &n.entry)
    }

    /// Every entry, sorted by path (so parents come before their children).
    pub fn entries(&self) -> Vec<&TarEntry> {
        let mut v: Vec<&TarEntry> = self.nodes.values().map(|n| &n.entry).collect();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }

    /// Bytes of file content, each data range counted once (hardlinks are free).
    pub fn content_bytes(&self) -> u64 {
        let mut seen = BTreeSet::new();
        self.nodes
            .values()
            .filter(|n| n.entry.has_data() && seen.insert(n.entry.offset))
            .map(|n| n.entry.size)
            .sum()
    }

    /// Serializes the index (versioned JSON) to keep it next to the blob.
    ///
    /// # Errors
    /// [`TarError::BadIndex`] if serialization fails (it does not for a valid index).
    pub fn to_bytes(&self) -> Result<Vec<u8>, TarError> {
        let wire = WireIndex {
            format: INDEX_FORMAT.to_owned(),
            version: INDEX_VERSION,
            tar_len: self.tar_len,
            separate_files: !self.shared_range_is_link,
            entries: self
                .entries()
                .into_iter()
                .map(|e| WireEntry {
                    path: e.path.as_str().to_owned(),
                    kind: e.kind,
                    mode: e.mode,
                    uid: e.uid,
                    gid: e.gid,
                    mtime: e.mtime,
                    size: e.size,
                    offset: e.offset,
                    link: e.link.clone(),
                    implied: e.implied,
                })
                .collect(),
            lower_links: self
                .lower
                .iter()
                .map(|(path, target)| WireLowerLink {
                    path: path.as_str().to_owned(),
                    target: target.as_str().to_owned(),
                })
                .collect(),
        };
        serde_json::to_vec(&wire).map_err(|e| TarError::BadIndex(e.to_string()))
    }

    /// Reads an index written by [`TarIndex::to_bytes`], checking it as if it came from
    /// outside: format and version, canonical unique paths, parents present and directories
    /// before their children, `/` a directory, every data range inside `tar_len`, no NUL in
    /// link targets. [`TarVolume::with_index`] then checks `tar_len` against the tar.
    ///
    /// # Errors
    /// [`TarError::BadIndex`] naming the first problem.
    pub fn from_bytes(bytes: &[u8]) -> Result<TarIndex, TarError> {
        let bad = |m: String| TarError::BadIndex(m);
        let wire: WireIndex = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if wire.format != INDEX_FORMAT || wire.version != INDEX_VERSION {
            return Err(bad(format!(
                "format {:?} version {}, expected {INDEX_FORMAT:?} version {INDEX_VERSION}",
                wire.format, wire.version
            )));
        }
        let mut index = TarIndex::empty(wire.tar_len);
        index.shared_range_is_link = !wire.separate_files;
        let mut seen_root = false;
        for w in wire.entries {
            let path = VfsPath::new(&w.path).map_err(|e| bad(e.to_string()))?;
            if path.as_str() != w.path {
                return Err(bad(format!("path {:?} is not normalized", w.path)));
            }
            if w.mode > 0o7777 {
                return Err(bad(format!("{path}: mode {:o} out of range", w.mode)));
            }
            if w.link.as_deref().is_some_and(|l| l.contains('\0')) {
                return Err(bad(format!("{path}: link target contains a NUL byte")));
            }
            let link_ok = match w.kind {
                TarEntryKind::Symlink | TarEntryKind::Hardlink => w.link.is_some(),
                TarEntryKind::File | TarEntryKind::Dir | TarEntryKind::Other => w.link.is_none(),
            };
            if !index.shared_range_is_link && w.kind == TarEntryKind::Hardlink {
                return Err(bad(format!(
                    "{path}: a hardlink in an index of separate files"
                )));
            }
            if w.implied && w.kind != TarEntryKind::Dir {
                return Err(bad(format!("{path}: only a directory can be implied")));
            }
            if !link_ok {
                return Err(bad(format!(
                    "{path}: link target present or missing wrongly"
                )));
            }
            let entry = TarEntry {
                path: path.clone(),
                kind: w.kind,
                mode: w.mode,
                uid: w.uid,
                gid: w.gid,
                mtime: w.mtime,
                size: if w.kind == TarEntryKind::File || w.kind == TarEntryKind::Hardlink {
                    w.size
                } else {
                    0
                },
                offset: if w.kind == TarEntryKind::File || w.kind == TarEntryKind::Hardlink {
                    w.offset
                } else {
                    0
                },
                link: w.link,
                implied: w.implied,
            };
            if entry.has_data() {
                check_range(&entry, wire.tar_len).map_err(|e| bad(e.to_string()))?;
            }
            match path.parent() {
                None => {
                    if seen_root || entry.kind != TarEntryKind::Dir {
                        return Err(bad("`/` must appear once, as a directory".to_owned()));
                    }
                    seen_root = true;
                    if let Some(root) = index.nodes.get_mut(&path) {
                        root.entry = entry;
                    }
                }
                Some(parent) => {
                    if index.nodes.contains_key(&path) {
                        return Err(bad(format!("{path} appears twice")));
                    }
                    match index.nodes.get(&parent) {
                        Some(p) if p.entry.kind == TarEntryKind::Dir => {}
                        _ => {
                            return Err(bad(format!(
                                "{path} comes before its parent directory, or its parent is \
                                 not a directory"
                            )));
                        }
                    }
                    index.link_child(&parent, &path, entry.kind);
                    index.nodes.insert(path, Node::new(entry));
                }
            }
        }
        if !seen_root {
            return Err(bad("`/` is missing".to_owned()));
        }
        for w in wire.lower_links {
            let path = VfsPath::new(&w.path).map_err(|e| bad(e.to_string()))?;
            let target = VfsPath::new(&w.target).map_err(|e| bad(e.to_string()))?;
            if path.as_str() != w.path || target.as_str() != w.target {
                return Err(bad(format!("lower link {:?} is not normalized", w.path)));
            }
            let parent_is_dir = path
                .parent()
                .and_then(|parent| index.nodes.get(&parent))
                .is_some_and(|p| p.entry.kind == TarEntryKind::Dir);
            if !parent_is_dir || index.nodes.contains_key(&path) || index.lower.contains_key(&path)
            {
                return Err(bad(format!(
                    "lower link {path} has no parent directory or shadows another entry"
                )));
            }
            index.lower.insert(path, target);
        }
        index.finish();
        Ok(index)
    }
}

/// End of a data range rounded up to the 512-byte block, as the next header follows it.
fn padded_end(offset: u64, size: u64) -> Option<u64> {
    offset.checked_add(size.checked_next_multiple_of(512)?)
}

fn check_range(e: &TarEntry, len: u64) -> Result<(), TarError> {
    match e.offset.checked_add(e.size) {
        Some(end) if end <= len => Ok(()),
        _ => Err(TarError::Truncated {
            path: e.path.clone(),
            offset: e.offset,
            size: e.size,
            len,
        }),
    }
}

/// Where a [`TarVolume`]'s file contents come from when they are not slices of a tar in
/// memory: a volume known from a table of contents, whose files are fetched when first
/// read. The index still says what each file is (path, attributes, size); the source only
/// supplies bytes, and the volume refuses any that are not the entry's size.
pub trait FileSource: Send + Sync + fmt::Debug {
    /// The content of the regular file at `path`; `entry` is its index entry (for a
    /// hardlink, its target's offset and size).
    ///
    /// # Errors
    /// Whatever getting the bytes reports, naming `path`.
    fn read(&self, path: &VfsPath, entry: &TarEntry) -> Result<Bytes>;

    /// A host file holding exactly that content, when the source keeps one (a store blob),
    /// so reads by range and [`crate::materialize`] need not hold it in memory. `None` by
    /// default.
    ///
    /// # Errors
    /// Whatever getting the file reports.
    fn backing_file(&self, _path: &VfsPath, _entry: &TarEntry) -> Result<Option<std::fs::File>> {
        Ok(None)
    }
}

/// A read-only [`FileSystem`] over an uncompressed tar in memory; file contents are
/// zero-copy slices of it (or come from a [`FileSource`], see
/// [`TarVolume::with_file_source`]). Cheap to clone (the data and the index are shared).
#[derive(Clone)]
pub struct TarVolume {
    data: Bytes,
    index: Arc<TarIndex>,
    /// The host file `data` maps, when there is one: large reads go to it by range.
    host: Option<Arc<std::fs::File>>,
    /// Where file contents come from instead of `data` (then empty).
    files: Option<Arc<dyn FileSource>>,
}

impl fmt::Debug for TarVolume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TarVolume")
            .field("bytes", &self.data.len())
            .field("entries", &self.index.len())
            .field("files", &self.files)
            .finish()
    }
}

impl TarVolume {
    /// Indexes `data` (an uncompressed tar) and serves it as a volume of its own: a
    /// hardlink to anything not earlier in the archive is an error.
    ///
    /// # Errors
    /// See [`TarIndex::scan`]; [`TarError::BadHardlink`] for a link out of the archive.
    pub fn new(data: Bytes) -> Result<Self, TarError> {
        let volume = Self::new_layer(data)?;
        match volume.index.lower.iter().next() {
            Some((path, target)) => Err(TarError::BadHardlink {
                path: path.clone(),
                target: target.clone(),
                reason: "does not exist (earlier in the archive)",
            }),
            None => Ok(volume),
        }
    }

    /// Indexes `data` as an image layer: a hardlink whose target is not earlier in the
    /// archive is a link into the layers below, left out of this volume and listed by
    /// [`Self::lower_links`] for an [`crate::Overlay`] to resolve.
    ///
    /// # Errors
    /// See [`TarIndex::scan`].
    pub fn new_layer(data: Bytes) -> Result<Self, TarError> {
        let index = TarIndex::scan(&data)?;
        Ok(TarVolume {
            data,
            index: Arc::new(index),
            host: None,
            files: None,
        })
    }

    /// Hardlinks into the layers below (path → target); see [`Self::new_layer`].
    pub fn lower_links(&self) -> &BTreeMap<VfsPath, VfsPath> {
        &self.index.lower
    }

    /// A volume over a store blob (its mmap; nothing is copied).
    ///
    /// # Errors
    /// See [`TarIndex::scan`].
    pub fn from_blob(blob: &cache_core::Blob) -> Result<Self, TarError> {
        Self::new(blob.bytes().clone())
    }

    /// A volume from an index built earlier (say, read back with [`TarIndex::from_bytes`]),
    /// without scanning again. Like [`Self::new_layer`], it serves an index with
    /// [`lower links`](Self::lower_links): check them where a layer must stand alone.
    ///
    /// # Errors
    /// [`TarError::BadIndex`] if the index was made for a tar of another length.
    pub fn with_index(data: Bytes, index: Arc<TarIndex>) -> Result<Self, TarError> {
        if index.tar_len != data.len() as u64 {
            return Err(TarError::BadIndex(format!(
                "made for a {}-byte tar, given {} bytes",
                index.tar_len,
                data.len()
            )));
        }
        Ok(TarVolume {
            data,
            index,
            host: None,
            files: None,
        })
    }

    /// A volume whose file contents come from `files` instead of a tar in memory (the
    /// index's offsets are then whatever `files` makes of them). Like
    /// [`Self::with_index`], it serves an index with lower links.
    pub fn with_file_source(index: Arc<TarIndex>, files: Arc<dyn FileSource>) -> Self {
        TarVolume {
            data: Bytes::new(),
            index,
            host: None,
            files: Some(files),
        }
    }

    /// Serve reads by byte range from `file`, which holds exactly the bytes of the tar (the
    /// store file the tar's memory map was made from): [`FileSystem::read_at`], `open` and
    /// [`crate::materialize`] then `pread` or `copy_file_range` from it instead of touching
    /// the map, so a large file does not become resident memory of this process.
    ///
    /// # Errors
    /// [`TarError::BadIndex`] if the file's length is not the tar's (then it is some other
    /// file); an I/O error of `fstat` the same way.
    pub fn with_host_file(mut self, file: std::fs::File) -> Result<Self, TarError> {
        let len = file
            .metadata()
            .map_err(|e| TarError::BadIndex(format!("cannot stat the tar's host file: {e}")))?
            .len();
        if len != self.data.len() as u64 {
            return Err(TarError::BadIndex(format!(
                "the host file holds {len} bytes, the tar {}",
                self.data.len()
            )));
        }
        self.host = Some(Arc::new(file));
        Ok(self)
    }

    /// The index, to serialize or share.
    pub fn index(&self) -> &Arc<TarIndex> {
        &self.index
    }

    /// The whole tar (empty for a volume [with a file source](Self::with_file_source)).
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    fn node(&self, path: &VfsPath) -> Result<&Node> {
        self.index
            .nodes
            .get(path)
            .ok_or_else(|| VfsError::NotFound(path.clone()))
    }
}

impl FileSystem for TarVolume {
    fn node_metadata(&self, path: &VfsPath) -> Result<Metadata> {
        let node = self.node(path)?;
        let e = &node.entry;
        let size = match e.kind {
            TarEntryKind::File | TarEntryKind::Hardlink => e.size,
            TarEntryKind::Symlink => e.link.as_ref().map_or(0, |l| l.len() as u64),
            TarEntryKind::Dir | TarEntryKind::Other => 0,
        };
        Ok(Metadata {
            kind: e.kind.file_type(),
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime: SystemTime::UNIX_EPOCH
                .checked_add(Duration::from_secs(e.mtime))
                .unwrap_or(SystemTime::UNIX_EPOCH),
            size,
            nlink: node.nlink,
        })
    }

    fn node_lookup(&self, path: &VfsPath) -> Option<Option<FileType>> {
        // Every entry's parents are directories of the table (indexing replaces whatever
        // was in the way), so an entry found is reached through real directories only.
        if let Some(node) = self.index.nodes.get(path) {
            return Some(Some(node.entry.kind.file_type()));
        }
        let parent = self.index.nodes.get(path.parent_str())?;
        (parent.entry.kind == TarEntryKind::Dir).then_some(None)
    }

    fn node_read_dir(&self, path: &VfsPath) -> Result<Vec<DirEntry>> {
        let node = self.node(path)?;
        if node.entry.kind != TarEntryKind::Dir {
            return Err(VfsError::NotADirectory(path.clone()));
        }
        Ok(node
            .children
            .iter()
            .map(|(name, &kind)| DirEntry {
                name: name.clone(),
                kind,
            })
            .collect())
    }

    fn node_is_implied_dir(&self, path: &VfsPath) -> bool {
        self.index
            .nodes
            .get(path)
            .is_some_and(|n| n.entry.kind == TarEntryKind::Dir && n.entry.implied)
    }

    fn node_id(&self, path: &VfsPath) -> Option<NodeId> {
        // A file and its hardlinks share one data range, and no two headers share a data
        // offset, so the offset names the inode.
        let e = &self.index.nodes.get(path)?.entry;
        (self.index.shared_range_is_link && e.has_data()).then(|| NodeId::new(&[e.offset]))
    }

    fn lower_hardlinks(&self) -> Vec<(VfsPath, VfsPath)> {
        self.index
            .lower
            .iter()
            .map(|(p, t)| (p.clone(), t.clone()))
            .collect()
    }

    fn footprint(&self) -> Result<Footprint> {
        let mut out = Footprint::default();
        for node in self.index.nodes.values() {
            out.add(node.entry.kind.file_type());
        }
        out.bytes = self.index.content_bytes();
        Ok(out)
    }

    fn node_read_link(&self, path: &VfsPath) -> Result<String> {
        let e = &self.node(path)?.entry;
        match (&e.kind, &e.link) {
            (TarEntryKind::Symlink, Some(target)) => Ok(target.clone()),
            _ => Err(VfsError::NotASymlink(path.clone())),
        }
    }

    fn node_host_range(&self, path: &VfsPath) -> Result<Option<HostRange>> {
        if self.files.is_some() {
            let Some(file) = self.node_backing_file(path)? else {
                return Ok(None);
            };
            return HostRange::whole(file).map(Some).map_err(|e| VfsError::Io {
                path: path.clone(),
                op: "stat",
                message: e.to_string(),
            });
        }
        let Some(file) = &self.host else {
            return Ok(None);
        };
        let (start, end) = self.file_range(path)?;
        Ok(Some(HostRange {
            file: file.clone(),
            offset: start as u64,
            len: (end - start) as u64,
        }))
    }

    fn node_backing_file(&self, path: &VfsPath) -> Result<Option<std::fs::File>> {
        let Some(files) = &self.files else {
            return Ok(None);
        };
        let entry = self.regular_file(path)?;
        let Some(file) = files.backing_file(path, entry)? else {
            return Ok(None);
        };
        let len = file.metadata().map_err(|e| VfsError::Io {
            path: path.clone(),
            op: "stat",
            message: e.to_string(),
        })?;
        if len.len() != entry.size {
            return Err(wrong_size(path));
        }
        Ok(Some(file))
    }

    fn node_read_all(&self, path: &VfsPath) -> Result<Bytes> {
        if let Some(files) = &self.files {
            let entry = self.regular_file(path)?;
            let data = files.read(path, entry)?;
            if data.len() as u64 != entry.size {
                return Err(wrong_size(path));
            }
            return Ok(data);
        }
        let (start, end) = self.file_range(path)?;
        Ok(self.data.slice(start..end))
    }
}

fn wrong_size(path: &VfsPath) -> VfsError {
    VfsError::Corrupt {
        path: path.clone(),
        reason: "the file source gave a size other than the index's",
    }
}

impl TarVolume {
    /// The entry of the regular file (or hardlink) `path`.
    fn regular_file(&self, path: &VfsPath) -> Result<&TarEntry> {
        let e = &self.node(path)?.entry;
        match e.kind {
            TarEntryKind::File | TarEntryKind::Hardlink => Ok(e),
            TarEntryKind::Dir => Err(VfsError::IsADirectory(path.clone())),
            TarEntryKind::Symlink | TarEntryKind::Other => Err(VfsError::InvalidOperation {
                path: path.clone(),
                reason: "not a regular file",
            }),
        }
    }

    /// The data range of the regular file `path` in the tar, checked against its length.
    fn file_range(&self, path: &VfsPath) -> Result<(usize, usize)> {
        let e = self.regular_file(path)?;
        let corrupt = || VfsError::Corrupt {
            path: path.clone(),
            reason: "the data range lies outside the tar",
        };
        let start = usize::try_from(e.offset).map_err(|_| corrupt())?;
        let end = e
            .offset
            .checked_add(e.size)
            .and_then(|end| usize::try_from(end).ok())
            .ok_or_else(corrupt)?;
        if end > self.data.len() {
            return Err(corrupt());
        }
        Ok((start, end))
    }
}

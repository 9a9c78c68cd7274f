//! The `FileSystem` trait and its metadata types.
//!
//! Implementations only provide `node_*` methods, which act on *resolved* paths: every
//! component but the last is known to be a real directory (not a symlink), and the last is
//! taken literally. The user-facing methods are provided on top of them and resolve
//! symlinks with [`crate::resolve`]. Splitting it this way means symlink handling (hop
//! limit, staying inside the root) is written once, and a [`crate::Union`] can resolve a
//! link in one mount to a target in another simply by resolving against itself.

use std::fmt;
use std::io::{Cursor, Read, Seek};
use std::time::SystemTime;

use bytes::Bytes;

use crate::error::{Result, VfsError};
use crate::host::HostRange;
use crate::path::VfsPath;
use crate::resolve::{Follow, resolve, resolve_below, resolve_cow};

/// The kind of a filesystem entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum FileType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// Anything else (device node, fifo, socket): listed, never read or materialized.
    Other,
}

/// Attributes of one entry, as `lstat` would report them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// What the entry is.
    pub kind: FileType,
    /// Permission bits including setuid/setgid/sticky (`0o7777`), without the type bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Last modification.
    pub mtime: SystemTime,
    /// Bytes of content for files, of the target for symlinks, 0 for directories.
    pub size: u64,
    /// Number of names for this entry (hardlinks); 1 where the filesystem cannot tell.
    pub nlink: u64,
}

impl Metadata {
    /// A directory that no layer or volume describes (a mount point's parent, the root of
    /// an empty overlay): 0755, owned by root, at the epoch.
    pub fn synthetic_dir() -> Metadata {
        Metadata {
            kind: FileType::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: std::time::SystemTime::UNIX_EPOCH,
            size: 0,
            nlink: 2,
        }
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == FileType::Dir
    }
    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        self.kind == FileType::File
    }
    /// Whether this is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.kind == FileType::Symlink
    }
}

/// Identity of a regular file's content inside one filesystem: two names with equal ids
/// are hardlinks of one file (same bytes, same attributes), so a copy of the tree can link
/// them again. Opaque; only comparable between ids taken from one filesystem while it is
/// not being changed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(Vec<u8>);

impl NodeId {
    /// An id made of numbers the filesystem uses internally (an offset, an inode number).
    pub fn new(parts: &[u64]) -> NodeId {
        let mut v = Vec::with_capacity(9 + 8 * parts.len());
        v.push(0);
        v.extend_from_slice(&(parts.len() as u64).to_le_bytes());
        for p in parts {
            v.extend_from_slice(&p.to_le_bytes());
        }
        NodeId(v)
    }

    /// This id as seen from a filesystem that combines several (a layer index, a mount
    /// point): ids from different scopes never compare equal. Both parts are length
    /// prefixed, so no two (scope, id) pairs can encode alike.
    pub fn scoped(&self, scope: &str) -> NodeId {
        let mut v = Vec::with_capacity(17 + scope.len() + self.0.len());
        v.push(1);
        v.extend_from_slice(&(scope.len() as u64).to_le_bytes());
        v.extend_from_slice(scope.as_bytes());
        v.extend_from_slice(&(self.0.len() as u64).to_le_bytes());
        v.extend_from_slice(&self.0);
        NodeId(v)
    }
}

/// `dir/name` for a name a listing returned. A name that is not one real component (`..`,
/// `a/b`, empty, with NUL) would address another path, and a walk that followed it could
/// loop or leave the tree, so it is refused.
pub(crate) fn listed_child(dir: &VfsPath, name: &str) -> Result<VfsPath> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(VfsError::InvalidPath {
            path: format!("{}/{name}", dir.as_str().trim_end_matches('/')),
            reason: "a directory listing returned a name that is not a single path component",
        });
    }
    Ok(dir.child(name))
}

/// What a filesystem holds, counted without reading file data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Names of regular files (each hardlink counts).
    pub files: u64,
    /// Directories, `/` included.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Device nodes, fifos and sockets.
    pub others: u64,
    /// Bytes of file content, the content of hardlinked names counted once.
    pub bytes: u64,
}

impl Footprint {
    /// Counts by walking `fs` from `/` (listings and `lstat`, never file data), without
    /// following symlinks. Files whose [`FileSystem::node_id`] is `None` count their bytes
    /// each. Iterative, so deep trees cannot overflow the stack.
    ///
    /// # Errors
    /// Whatever listing or `lstat` reports.
    pub fn walk<F: FileSystem + ?Sized>(fs: &F) -> Result<Footprint> {
        let mut out = Footprint {
            dirs: 1,
            ..Footprint::default()
        };
        let mut seen = std::collections::HashSet::new();
        let mut dirs = vec![VfsPath::root()];
        while let Some(dir) = dirs.pop() {
            for entry in fs.node_read_dir(&dir)? {
                let path = listed_child(&dir, &entry.name)?;
                let meta = fs.node_metadata(&path)?;
                match meta.kind {
                    FileType::Dir => {
                        out.dirs += 1;
                        dirs.push(path);
                    }
                    FileType::File => {
                        out.files += 1;
                        if fs.node_id(&path).is_none_or(|id| seen.insert(id)) {
                            out.bytes = out.bytes.saturating_add(meta.size);
                        }
                    }
                    FileType::Symlink => out.symlinks += 1,
                    FileType::Other => out.others += 1,
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn add(&mut self, kind: FileType) {
        match kind {
            FileType::File => self.files += 1,
            FileType::Dir => self.dirs += 1,
            FileType::Symlink => self.symlinks += 1,
            FileType::Other => self.others += 1,
        }
    }
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DirEntry {
    /// The entry's name within its directory.
    pub name: String,
    /// Its kind, without following symlinks.
    pub kind: FileType,
}

/// A readable, seekable file handle.
pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// Boxed file handle returned by [`FileSystem::open`].
pub type FileReader = Box<dyn ReadSeek>;

/// A virtual filesystem. Object safe: mounts hold `Arc<dyn FileSystem>`.
///
/// The write-side `node_*` methods default to [`VfsError::ReadOnly`], so a read-only
/// volume implements only the read side.
pub trait FileSystem: Send + Sync + fmt::Debug {
    // ---- Required, on resolved paths (see the module docs). ----

    /// `lstat` of a resolved path.
    fn node_metadata(&self, path: &VfsPath) -> Result<Metadata>;
    /// Sorted listing of a resolved directory.
    fn node_read_dir(&self, path: &VfsPath) -> Result<Vec<DirEntry>>;
    /// Target of a resolved symlink, exactly as stored (it may be relative, absolute or
    /// dangling; resolution interprets it).
    fn node_read_link(&self, path: &VfsPath) -> Result<String>;
    /// Whole content of a resolved regular file; a slice of the backing buffer where there
    /// is one, so no copy.
    fn node_read_all(&self, path: &VfsPath) -> Result<Bytes>;

    /// A shortcut for symlink resolution, answered in one probe where the filesystem can:
    /// `Some(kind)` when every component of `path` but the last is a directory (present, not
    /// a symlink) as [`FileSystem::node_metadata`] would report it, `kind` being what that
    /// reports for the last component (`None` if it does not exist). `None` when the
    /// filesystem cannot tell cheaply or the parents are not all real directories: the
    /// resolver then walks the path one component at a time, with the same result.
    ///
    /// `path` is never `/`. `None` by default.
    fn node_lookup(&self, _path: &VfsPath) -> Option<Option<FileType>> {
        None
    }

    /// Whether the resolved directory `path` exists only because deeper entries need it (a
    /// tar with no entry of its own for it). An [`crate::Overlay`] then keeps a lower
    /// layer's attributes for it. `false` by default.
    fn node_is_implied_dir(&self, _path: &VfsPath) -> bool {
        false
    }

    /// Hardlinks this filesystem holds only as names, their targets being files of the
    /// layers below it (path → target): an image layer's links into its parents, which an
    /// [`crate::Overlay`] resolves. Empty by default.
    fn lower_hardlinks(&self) -> Vec<(VfsPath, VfsPath)> {
        Vec::new()
    }

    /// Opens a resolved regular file. The default reads a [`HostRange`] with `pread` where
    /// there is one (so a large file never piles up in memory), else wraps
    /// [`FileSystem::node_read_all`] in a cursor (zero-copy for in-memory data).
    fn node_open(&self, path: &VfsPath) -> Result<FileReader> {
        match self.node_host_range(path)? {
            Some(range) => Ok(Box::new(range.reader())),
            None => Ok(Box::new(Cursor::new(self.node_read_all(path)?))),
        }
    }

    /// Reads bytes of the resolved regular file `path` from `offset` into `buf`: how many (0
    /// at the end). Never holds more of the file in memory than `buf`, however large the
    /// file: the default reads the [`HostRange`] with `pread` where there is one, and copies
    /// from [`FileSystem::node_read_all`] (data already in memory) otherwise.
    ///
    /// # Errors
    /// What opening the file reports; [`VfsError::Io`] for a failed host read.
    fn node_read_at(&self, path: &VfsPath, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if let Some(range) = self.node_host_range(path)? {
            return range.read_at(offset, buf).map_err(|e| VfsError::Io {
                path: path.clone(),
                op: "read",
                message: e.to_string(),
            });
        }
        let data = self.node_read_all(path)?;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let rest = data.get(start..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        Ok(n)
    }

    /// The host file range holding exactly the content of the resolved regular file `path`
    /// (a tar member inside the store's uncompressed tar, a file of a host directory), so it
    /// can be read with `pread` or copied by the kernel (`copy_file_range`) without mapping
    /// it. The default is [`FileSystem::node_backing_file`], whole.
    ///
    /// # Errors
    /// Whatever opening or `fstat` reports.
    fn node_host_range(&self, path: &VfsPath) -> Result<Option<HostRange>> {
        let Some(file) = self.node_backing_file(path)? else {
            return Ok(None);
        };
        HostRange::whole(file).map(Some).map_err(|e| VfsError::Io {
            path: path.clone(),
            op: "stat",
            message: e.to_string(),
        })
    }

    /// Content identity of the resolved regular file `path`, shared by its hardlinks; `None`
    /// (the default) where the filesystem cannot tell, and every name is then its own file.
    fn node_id(&self, _path: &VfsPath) -> Option<NodeId> {
        None
    }

    /// A host file holding exactly the content of the resolved regular file `path`, whole
    /// (a file of a host directory, a store blob served as one file), so that
    /// [`crate::materialize`] can reflink or hardlink it instead of copying. `None` by
    /// default: a slice of a larger blob (a tar member) has no such file.
    ///
    /// # Errors
    /// Whatever opening it reports.
    fn node_backing_file(&self, _path: &VfsPath) -> Result<Option<std::fs::File>> {
        Ok(None)
    }

    /// Totals of the whole filesystem without reading file data; see [`Footprint`]. The
    /// default walks the tree ([`Footprint::walk`]); [`crate::TarVolume`] counts from its
    /// index and [`crate::Overlay`] from its flattened table. A [`crate::Union`] walks:
    /// subtracting what deeper mounts shadow from each mount's own totals would need a walk
    /// of the shadowed parts anyway.
    ///
    /// # Errors
    /// Whatever listing or `lstat` reports.
    fn footprint(&self) -> Result<Footprint> {
        Footprint::walk(self)
    }

    // ---- Write side, on resolved paths; read-only by default. ----

    /// Creates or replaces the content of a regular file (mode 0o644 when created).
    fn node_write_file(&self, path: &VfsPath, _data: Bytes) -> Result<()> {
        Err(VfsError::ReadOnly(path.clone()))
    }
    /// Truncates or zero-extends a regular file.
    fn node_set_len(&self, path: &VfsPath, _len: u64) -> Result<()> {
        Err(VfsError::ReadOnly(path.clone()))
    }
    /// Creates one directory (mode 0o755); its parent must exist.
    fn node_create_dir(&self, path: &VfsPath) -> Result<()> {
        Err(VfsError::ReadOnly(path.clone()))
    }
    /// Removes a non-directory or an empty directory.
    fn node_remove(&self, path: &VfsPath) -> Result<()> {
        Err(VfsError::ReadOnly(path.clone()))
    }
    /// Removes an entry and everything below it.
    fn node_remove_dir_all(&self, path: &VfsPath) -> Result<()> {
        Err(VfsError::ReadOnly(path.clone()))
    }
    /// `rename(2)`: replaces a destination file, or an empty destination directory.
    fn node_rename(&self, from: &VfsPath, _to: &VfsPath) -> Result<()> {
        Err(VfsError::ReadOnly(from.clone()))
    }
    /// Creates a symlink at `path` pointing at `target` (stored verbatim).
    fn node_symlink(&self, _target: &str, path: &VfsPath) -> Result<()> {
        Err(VfsError::ReadOnly(path.clone()))
    }
    /// Creates `new` as another name of the regular file `existing`: they share content
    /// and attributes.
    fn node_hard_link(&self, existing: &VfsPath, _new: &VfsPath) -> Result<()> {
        Err(VfsError::ReadOnly(existing.clone()))
    }
    /// Sets permission bits (`0o7777`).
    fn node_set_mode(&self, path: &VfsPath, _mode: u32) -> Result<()> {
        Err(VfsError::ReadOnly(path.clone()))
    }
    /// Sets owner and group.
    fn node_set_owner(&self, path: &VfsPath, _uid: u32, _gid: u32) -> Result<()> {
        Err(VfsError::ReadOnly(path.clone()))
    }
    /// Sets the modification time.
    fn node_set_mtime(&self, path: &VfsPath, _mtime: SystemTime) -> Result<()> {
        Err(VfsError::ReadOnly(path.clone()))
    }

    // ---- Provided, symlink-aware API. ----

    /// `stat`: follows symlinks, including the last component.
    fn metadata(&self, path: &VfsPath) -> Result<Metadata> {
        self.node_metadata(&*resolve_cow(self, path, Follow::All)?)
    }
    /// `lstat`: follows symlinks in the parents only.
    fn symlink_metadata(&self, path: &VfsPath) -> Result<Metadata> {
        self.node_metadata(&*resolve_cow(self, path, Follow::Parents)?)
    }
    /// Sorted listing of a directory (following symlinks to it).
    fn read_dir(&self, path: &VfsPath) -> Result<Vec<DirEntry>> {
        self.node_read_dir(&*resolve_cow(self, path, Follow::All)?)
    }
    /// Target of a symlink, verbatim.
    fn read_link(&self, path: &VfsPath) -> Result<String> {
        self.node_read_link(&*resolve_cow(self, path, Follow::Parents)?)
    }
    /// Opens a file for reading (following symlinks).
    fn open(&self, path: &VfsPath) -> Result<FileReader> {
        self.node_open(&*resolve_cow(self, path, Follow::All)?)
    }
    /// Whole content of a file (following symlinks), zero-copy where possible.
    fn read_all(&self, path: &VfsPath) -> Result<Bytes> {
        self.node_read_all(&*resolve_cow(self, path, Follow::All)?)
    }
    /// Bytes of a file (following symlinks) from `offset` into `buf`; how many, 0 at the
    /// end. Memory stays bounded by `buf` (see [`FileSystem::node_read_at`]), so this is
    /// the way to stream a file of any size.
    fn read_at(&self, path: &VfsPath, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.node_read_at(&*resolve_cow(self, path, Follow::All)?, offset, buf)
    }
    /// The path with every symlink resolved; the final component need not exist.
    fn canonicalize(&self, path: &VfsPath) -> Result<VfsPath> {
        resolve(self, path, Follow::All)
    }
    /// Whether `path` exists (following symlinks); errors other than not-found count as
    /// "does not exist" too, like [`std::path::Path::exists`].
    fn exists(&self, path: &VfsPath) -> bool {
        self.metadata(path).is_ok()
    }
    /// Creates or replaces a file; a final symlink is followed, as `open(O_CREAT)` does.
    fn write_file(&self, path: &VfsPath, data: Bytes) -> Result<()> {
        self.node_write_file(&*resolve_cow(self, path, Follow::All)?, data)
    }
    /// Truncates or extends a file.
    fn set_len(&self, path: &VfsPath, len: u64) -> Result<()> {
        self.node_set_len(&*resolve_cow(self, path, Follow::All)?, len)
    }
    /// Creates one directory.
    fn create_dir(&self, path: &VfsPath) -> Result<()> {
        self.node_create_dir(&*resolve_cow(self, path, Follow::Parents)?)
    }
    /// Creates a directory and any missing parents; existing directories are fine.
    fn create_dir_all(&self, path: &VfsPath) -> Result<()> {
        // Step one level at a time from the already resolved prefix, so a deep path costs
        // one lookup per level rather than a full resolution per level.
        let mut cur = VfsPath::root();
        for name in path.components() {
            let next = resolve_below(self, cur, std::iter::once(name), Follow::All, path)?;
            match self.node_metadata(&next) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(VfsError::NotADirectory(next)),
                Err(VfsError::NotFound(_)) => self.node_create_dir(&next)?,
                Err(e) => return Err(e),
            }
            cur = next;
        }
        Ok(())
    }
    /// Removes a non-directory or an empty directory (a final symlink itself is removed).
    fn remove(&self, path: &VfsPath) -> Result<()> {
        self.node_remove(&*resolve_cow(self, path, Follow::Parents)?)
    }
    /// Removes an entry and everything below it (never following symlinks inside it).
    fn remove_dir_all(&self, path: &VfsPath) -> Result<()> {
        self.node_remove_dir_all(&*resolve_cow(self, path, Follow::Parents)?)
    }
    /// Renames an entry (a final symlink is moved, not its target).
    fn rename(&self, from: &VfsPath, to: &VfsPath) -> Result<()> {
        let from = resolve_cow(self, from, Follow::Parents)?;
        let to = resolve_cow(self, to, Follow::Parents)?;
        self.node_rename(&from, &to)
    }
    /// Creates a symlink at `link` pointing to `target`.
    fn symlink(&self, target: &str, link: &VfsPath) -> Result<()> {
        if target.is_empty() || target.contains('\0') {
            return Err(VfsError::InvalidPath {
                path: target.to_owned(),
                reason: "a symlink target must be non-empty and contain no NUL",
            });
        }
        self.node_symlink(target, &*resolve_cow(self, link, Follow::Parents)?)
    }
    /// Creates a hardlink `new` to the file `existing` (a final symlink in `existing` is
    /// not followed, as with `linkat` without `AT_SYMLINK_FOLLOW`).
    fn hard_link(&self, existing: &VfsPath, new: &VfsPath) -> Result<()> {
        let existing = resolve_cow(self, existing, Follow::Parents)?;
        // As `linkat(2)`: a missing source is reported before any problem with `new`.
        self.node_metadata(&existing)?;
        let new = resolve_cow(self, new, Follow::Parents)?;
        self.node_hard_link(&existing, &new)
    }
    /// Sets permission bits (following symlinks, as `chmod` does).
    fn set_mode(&self, path: &VfsPath, mode: u32) -> Result<()> {
        self.node_set_mode(&*resolve_cow(self, path, Follow::All)?, mode)
    }
    /// Sets owner and group (of the entry itself, as `lchown`).
    fn set_owner(&self, path: &VfsPath, uid: u32, gid: u32) -> Result<()> {
        self.node_set_owner(&*resolve_cow(self, path, Follow::Parents)?, uid, gid)
    }
    /// Sets the modification time (of the entry itself, as `lutimes`).
    fn set_mtime(&self, path: &VfsPath, mtime: SystemTime) -> Result<()> {
        self.node_set_mtime(&*resolve_cow(self, path, Follow::Parents)?, mtime)
    }
}

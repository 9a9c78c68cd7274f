//! `materialize`: writes a filesystem out to a real directory, safely.
//!
//! The tree comes from outside (a registry, an archive), so the writer assumes every name
//! and link in it is hostile:
//!
//! - **Nothing is ever created by path.** Each entry is created relative to a handle on its
//!   parent directory, and every such handle was obtained by walking down from the target
//!   with `openat(O_DIRECTORY | O_NOFOLLOW)` through directories this call created itself.
//!   Files are created with `O_CREAT | O_EXCL | O_NOFOLLOW`, directories with `mkdirat`,
//!   links with `symlinkat`/`linkat`; none of them follows or replaces something already
//!   there, so a symlink in the VFS (`a -> ../../outside`) followed by an entry "through"
//!   it (`a/x`) cannot write outside: the walk sees only what the VFS listing says, and a
//!   symlink is written as a symlink and never walked into.
//! - **Names** that are not a single component (`..`, `a/b`, empty, NUL) are refused with
//!   [`MaterializeError::BadName`], whichever filesystem produced them.
//! - **Device nodes, fifos and sockets** are refused ([`MaterializeError::Device`]) or, with
//!   [`Devices::Skip`], left out, logged and listed in the report.
//! - **The target** must be an empty directory or not exist (its parents are created);
//!   anything else is [`MaterializeError::TargetNotEmpty`] or
//!   [`MaterializeError::TargetNotADirectory`], and a symlink as the target itself is not
//!   followed. Merging into a populated directory would mean deciding what to do with
//!   every entry already there (and racing whoever put it there); an empty start avoids it.
//!
//! Order: the whole tree is listed first (so a refused entry fails before anything is
//! written), then directories are created (mode 0700, so the writer can fill them), then
//! file contents are written by a small pool of threads while symlinks are made, then
//! hardlinks, and last each directory's mode, owner and mtime, deepest first: a 0500 or
//! 0000 directory is closed only after its children are in, and adding children does not
//! disturb an mtime already set.
//!
//! Preserved: type, permission bits including setuid/setgid/sticky (set after the data,
//! since writing clears setuid), mtime (of symlinks too), symlink targets verbatim,
//! hardlinks (names with one [`crate::NodeId`]), and owners with
//! [`MaterializeOptions::preserve_owners`] (needs privileges). Access times are not set.
//!
//! [`LinkMode`] decides what happens to files the filesystem backs by one whole host file
//! ([`FileSystem::node_backing_file`]): a reflink shares its blocks copy-on-write, a
//! hardlink shares the inode itself. A file without such a host file (a tar member, a
//! file in memory) is always copied.
//!
//! The target itself takes the attributes of the filesystem's `/` (mode, mtime, owner).
//! On error, what was written so far is left in place; the caller removes the directory.

use std::collections::HashMap;
use std::fs::{File, FileTimes};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::SystemTime;

use rustix::fs::{AtFlags, Dir, Gid, Mode, OFlags, Timespec, Timestamps, Uid};
use rustix::io::Errno;

use crate::error::VfsError;
use crate::fs::{FileSystem, FileType, Metadata, NodeId};
use crate::host::HostRange;
use crate::path::VfsPath;

/// Directory handles one walk keeps open at most; deeper trees reopen ancestors on demand
/// instead of running into the process's file descriptor limit.
const MAX_OPEN_DIRS: usize = 64;

/// Files queued for the writer threads at most, which bounds the directory handles the
/// queue keeps alive.
const QUEUE_LEN: usize = 256;

/// How files backed by a whole host file are written (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LinkMode {
    /// Reflink where the target filesystem can, else copy, silently. Never hardlinks:
    /// writing to a hardlinked file would change its source (a store blob, a file under
    /// development).
    #[default]
    Auto,
    /// Reflink; where it fails, copy and count it in [`MaterializeReport::link_fallbacks`].
    Reflink,
    /// Hardlink to the backing file, which then keeps its own mtime and owner; where that
    /// fails (another filesystem, different permission bits, no `/proc`), copy and count
    /// it in [`MaterializeReport::link_fallbacks`].
    Hardlink,
    /// Always copy the bytes (host to host with `copy_file_range` where there is a
    /// backing file).
    Copy,
}

/// What to do with device nodes, fifos and sockets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Devices {
    /// Fail with [`MaterializeError::Device`] before writing anything.
    #[default]
    Refuse,
    /// Leave them out, log a warning for each, list them in
    /// [`MaterializeReport::skipped_devices`].
    Skip,
}

/// Options of [`materialize`]; `MaterializeOptions::default()` is `Auto`, `Refuse`, a
/// thread per core (at most 8), owners not preserved.
#[derive(Debug, Clone, Default)]
pub struct MaterializeOptions {
    link_mode: LinkMode,
    devices: Devices,
    threads: Option<usize>,
    preserve_owners: bool,
}

impl MaterializeOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// How whole-blob files are written.
    #[must_use]
    pub fn link_mode(mut self, mode: LinkMode) -> Self {
        self.link_mode = mode;
        self
    }
    /// What happens to device nodes.
    #[must_use]
    pub fn devices(mut self, devices: Devices) -> Self {
        self.devices = devices;
        self
    }
    /// Threads writing file contents (at least 1).
    #[must_use]
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads.max(1));
        self
    }
    /// Also set uid and gid of every entry (needs `CAP_CHOWN`).
    #[must_use]
    pub fn preserve_owners(mut self, yes: bool) -> Self {
        self.preserve_owners = yes;
        self
    }
}

/// What [`materialize`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaterializeReport {
    /// Regular file names, hardlinks included.
    pub files: u64,
    /// Directories, the target itself included.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// File names made as hardlinks of another name in the tree (counted in `files` too).
    pub hardlinks: u64,
    /// Bytes of file content, each hardlinked content once.
    pub bytes: u64,
    /// Files whose content was reflinked from a backing host file.
    pub reflinked: u64,
    /// Files hardlinked to a backing host file.
    pub hardlinked: u64,
    /// Files whose bytes were copied.
    pub copied: u64,
    /// Files an explicit [`LinkMode::Reflink`] or [`LinkMode::Hardlink`] could not link,
    /// copied instead (counted in `copied` too).
    pub link_fallbacks: u64,
    /// Device nodes, fifos and sockets left out under [`Devices::Skip`].
    pub skipped_devices: Vec<VfsPath>,
}

/// Why [`materialize`] stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaterializeError {
    /// The target exists and holds something.
    #[error("{}: the target directory is not empty; materialize into an empty or new directory", .dir.display())]
    TargetNotEmpty {
        /// The target.
        dir: PathBuf,
    },
    /// The target exists and is not a directory, or is a symlink (never followed).
    #[error("{}: the target is not a directory (a symlink is not followed)", .dir.display())]
    TargetNotADirectory {
        /// The target.
        dir: PathBuf,
    },
    /// The target could not be created, opened or listed.
    #[error("{}: cannot prepare the target directory: {source}", .dir.display())]
    Target {
        /// The target.
        dir: PathBuf,
        /// The host error.
        source: io::Error,
    },
    /// A device node, fifo or socket under [`Devices::Refuse`].
    #[error("{path}: device node, fifo or socket; refused (use Devices::Skip to leave it out)")]
    Device {
        /// The entry.
        path: VfsPath,
    },
    /// A listing gave a name that is not a single path component.
    #[error("{dir}: holds an entry named {name:?}, which is not a single path component")]
    BadName {
        /// The directory listed.
        dir: VfsPath,
        /// The name (`Debug` shows a NUL as `\0`).
        name: String,
    },
    /// Writing an entry failed on the host (including finding something in the way).
    #[error("{path}: {op} failed in the target directory: {source}")]
    Io {
        /// The entry, as a path in the VFS (and below the target).
        path: VfsPath,
        /// What was being done.
        op: &'static str,
        /// The host error.
        source: io::Error,
    },
    /// Reading the filesystem failed.
    #[error(transparent)]
    Vfs(#[from] VfsError),
}

type Result<T, E = MaterializeError> = std::result::Result<T, E>;

fn io_err<'a>(path: &'a VfsPath, op: &'static str) -> impl FnOnce(Errno) -> MaterializeError + 'a {
    move |e| MaterializeError::Io {
        path: path.clone(),
        op,
        source: e.into(),
    }
}

/// Indices come from the plan itself, so a miss would be a bug in this module: reported as
/// an error rather than a panic.
fn lost() -> MaterializeError {
    MaterializeError::Vfs(VfsError::InvalidOperation {
        path: VfsPath::root(),
        reason: "materialize lost track of a directory (a bug)",
    })
}

struct PlanDir {
    /// Index of the parent in [`Plan::dirs`]; the root is its own parent.
    parent: usize,
    name: String,
    path: VfsPath,
    meta: Metadata,
}

enum LeafKind {
    File(Option<NodeId>),
    Symlink(String),
}

struct PlanLeaf {
    dir: usize,
    name: String,
    path: VfsPath,
    meta: Metadata,
    kind: LeafKind,
}

/// The listed tree. Directories are in discovery order, so a parent always comes before
/// its children.
struct Plan {
    dirs: Vec<PlanDir>,
    leaves: Vec<PlanLeaf>,
    skipped: Vec<VfsPath>,
}

fn single_component(name: &str) -> bool {
    !(name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']))
}

/// Lists the whole tree, iteratively (hostile trees can be deep), never following links.
fn plan<F: FileSystem + ?Sized>(fs: &F, devices: Devices) -> Result<Plan> {
    let root = VfsPath::root();
    let mut plan = Plan {
        dirs: vec![PlanDir {
            parent: 0,
            name: String::new(),
            meta: fs.node_metadata(&root)?,
            path: root,
        }],
        leaves: Vec::new(),
        skipped: Vec::new(),
    };
    let mut stack = vec![0usize];
    while let Some(d) = stack.pop() {
        let Some(dir) = plan.dirs.get(d).map(|d| d.path.clone()) else {
            continue;
        };
        let mut subdirs = Vec::new();
        for entry in fs.node_read_dir(&dir)? {
            if !single_component(&entry.name) {
                return Err(MaterializeError::BadName {
                    dir,
                    name: entry.name,
                });
            }
            let path = dir.child(&entry.name);
            let meta = fs.node_metadata(&path)?;
            let kind = match meta.kind {
                FileType::Dir => {
                    subdirs.push(plan.dirs.len());
                    plan.dirs.push(PlanDir {
                        parent: d,
                        name: entry.name,
                        path,
                        meta,
                    });
                    continue;
                }
                FileType::File => LeafKind::File(fs.node_id(&path)),
                FileType::Symlink => LeafKind::Symlink(fs.node_read_link(&path)?),
                FileType::Other => match devices {
                    Devices::Refuse => return Err(MaterializeError::Device { path }),
                    Devices::Skip => {
                        tracing::warn!(%path, "materialize: skipping a device node, fifo or socket");
                        plan.skipped.push(path);
                        continue;
                    }
                },
            };
            plan.leaves.push(PlanLeaf {
                dir: d,
                name: entry.name,
                path,
                meta,
                kind,
            });
        }
        // Reversed so that the stack yields them in listing order.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(plan)
}

/// Handles on the directories from the target down to the one being worked in.
///
/// Moving to another directory keeps the common ancestors' handles and opens the rest one
/// `openat(O_NOFOLLOW)` at a time from the deepest handle still open. At most
/// [`MAX_OPEN_DIRS`] are kept: the shallowest are dropped first and reopened if a later
/// move needs them, so a 3,000-level tree costs a few reopenings, not 3,000 descriptors.
struct Cursor<'p> {
    dirs: &'p [PlanDir],
    /// `(index in dirs, handle)`, starting with the target itself, whose handle is kept.
    chain: Vec<(usize, Option<Arc<OwnedFd>>)>,
    open: usize,
    /// No handle other than the target's is open above this position of `chain`.
    low: usize,
}

impl<'p> Cursor<'p> {
    fn new(dirs: &'p [PlanDir], root: Arc<OwnedFd>) -> Self {
        Cursor {
            dirs,
            chain: vec![(0, Some(root))],
            open: 1,
            low: 1,
        }
    }

    fn dir(&self, index: usize) -> Result<&'p PlanDir> {
        self.dirs.get(index).ok_or_else(lost)
    }

    /// A handle on directory `target` of the plan.
    fn goto(&mut self, target: usize) -> Result<Arc<OwnedFd>> {
        // The common case: the next entry is in the same directory as the last.
        if let Some((index, Some(fd))) = self.chain.last()
            && *index == target
        {
            return Ok(Arc::clone(fd));
        }
        let mut want = vec![target];
        let mut i = target;
        while i != 0 {
            i = self.dir(i)?.parent;
            want.push(i);
        }
        want.reverse();
        let common = self
            .chain
            .iter()
            .zip(&want)
            .take_while(|((have, _), w)| have == *w)
            .count();
        for (_, fd) in self.chain.drain(common..) {
            if fd.is_some() {
                self.open -= 1;
            }
        }
        self.low = self.low.min(self.chain.len());
        self.chain.extend(
            want.get(common..)
                .unwrap_or_default()
                .iter()
                .map(|&i| (i, None)),
        );
        // The target's handle is never dropped, so there always is one.
        let start = self
            .chain
            .iter()
            .rposition(|(_, fd)| fd.is_some())
            .unwrap_or(0);
        let mut parent = self
            .chain
            .get(start)
            .and_then(|(_, fd)| fd.clone())
            .ok_or_else(lost)?;
        for pos in start + 1..self.chain.len() {
            let Some(&(index, _)) = self.chain.get(pos) else {
                break;
            };
            let dir = self.dir(index)?;
            let fd = rustix::fs::openat(
                &*parent,
                dir.name.as_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(io_err(&dir.path, "open directory"))?;
            parent = Arc::new(fd);
            if let Some(slot) = self.chain.get_mut(pos) {
                slot.1 = Some(Arc::clone(&parent));
            }
            self.open += 1;
            self.low = self.low.min(pos);
            if self.open > MAX_OPEN_DIRS {
                self.evict_below(pos);
            }
        }
        Ok(parent)
    }

    /// Drops the shallowest open handle above position `limit`, the target's excepted.
    fn evict_below(&mut self, limit: usize) {
        let from = self.low.max(1);
        for pos in from..limit {
            if let Some(slot) = self.chain.get_mut(pos)
                && slot.1.take().is_some()
            {
                self.open -= 1;
                self.low = pos + 1;
                return;
            }
        }
    }
}

fn timespec(t: SystemTime) -> Timespec {
    let (secs, nanos) = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(before) => {
            let d = before.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (-secs, 0),
                n => (-secs - 1, 1_000_000_000 - n),
            }
        }
    };
    Timespec {
        tv_sec: secs,
        tv_nsec: nanos.into(),
    }
}

/// Sets the mtime and leaves the access time alone.
fn mtime_only(t: SystemTime) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: timespec(t),
    }
}

/// `(uid, gid)` for `chown`; `u32::MAX` is `-1`, which means "leave unchanged".
fn owner(meta: &Metadata) -> (Option<Uid>, Option<Gid>) {
    (
        (meta.uid != u32::MAX).then(|| Uid::from_raw(meta.uid)),
        (meta.gid != u32::MAX).then(|| Gid::from_raw(meta.gid)),
    )
}

/// Opens (creating if needed) the target and checks that it is an empty directory.
fn open_target(dir: &Path) -> Result<OwnedFd> {
    let target = |source: io::Error| MaterializeError::Target {
        dir: dir.to_path_buf(),
        source,
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(target)?;
    }
    match std::fs::DirBuilder::new().create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(target(e)),
    }
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::LOOP | Errno::NOTDIR => MaterializeError::TargetNotADirectory {
            dir: dir.to_path_buf(),
        },
        e => target(e.into()),
    })?;
    for entry in Dir::read_from(&fd).map_err(|e| target(e.into()))? {
        let entry = entry.map_err(|e| target(e.into()))?;
        if entry.file_name() != c"." && entry.file_name() != c".." {
            return Err(MaterializeError::TargetNotEmpty {
                dir: dir.to_path_buf(),
            });
        }
    }
    Ok(fd)
}

/// How one file's content got there.
#[derive(Debug, Default)]
struct Tally {
    files: u64,
    bytes: u64,
    reflinked: u64,
    hardlinked: u64,
    copied: u64,
    link_fallbacks: u64,
}

impl Tally {
    fn merge(&mut self, o: &Tally) {
        self.files += o.files;
        self.bytes += o.bytes;
        self.reflinked += o.reflinked;
        self.hardlinked += o.hardlinked;
        self.copied += o.copied;
        self.link_fallbacks += o.link_fallbacks;
    }
}

/// Links the backing file `src` as `name` in `dir` if its permission bits are the ones
/// wanted (a hardlink cannot have others). `false` when it cannot be linked.
fn hardlink_backing(src: &File, dir: &OwnedFd, name: &str, mode: u32) -> bool {
    let Ok(st) = rustix::fs::fstat(src) else {
        return false;
    };
    if st.st_mode & 0o7777 != mode {
        return false;
    }
    // Linking an open file by descriptor: `/proc/self/fd/N` with `AT_SYMLINK_FOLLOW`
    // needs no privilege, unlike `AT_EMPTY_PATH`.
    let proc_path = format!("/proc/self/fd/{}", src.as_raw_fd());
    rustix::fs::linkat(
        rustix::fs::CWD,
        proc_path.as_str(),
        dir,
        name,
        AtFlags::SYMLINK_FOLLOW,
    )
    .is_ok()
}

fn write_file<F: FileSystem + ?Sized>(
    fs: &F,
    dir: &OwnedFd,
    leaf: &PlanLeaf,
    options: &MaterializeOptions,
) -> Result<Tally> {
    let path = &leaf.path;
    let mut tally = Tally {
        files: 1,
        ..Tally::default()
    };
    let backing = fs.node_backing_file(path)?;
    if let (Some(src), LinkMode::Hardlink) = (&backing, options.link_mode) {
        if hardlink_backing(src, dir, &leaf.name, leaf.meta.mode) {
            tally.hardlinked = 1;
            tally.bytes = src.metadata().map(|m| m.len()).unwrap_or(leaf.meta.size);
            return Ok(tally);
        }
        tally.link_fallbacks = 1;
    }
    let fd = rustix::fs::openat(
        dir,
        leaf.name.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(io_err(path, "create file"))?;
    let mut file = File::from(fd);
    let write_err = |op| {
        move |e: io::Error| MaterializeError::Io {
            path: path.clone(),
            op,
            source: e,
        }
    };
    let reflink = matches!(options.link_mode, LinkMode::Auto | LinkMode::Reflink);
    match &backing {
        Some(src) if reflink && rustix::fs::ioctl_ficlone(&file, src).is_ok() => {
            tally.reflinked = 1;
            tally.bytes = file.metadata().map_err(write_err("stat"))?.len();
        }
        _ => {
            if backing.is_some() && options.link_mode == LinkMode::Reflink {
                tally.link_fallbacks = 1;
            }
            tally.copied = 1;
            tally.bytes = match &backing {
                // File to file: the kernel copies (`copy_file_range`), nothing is buffered
                // here however large the file.
                Some(src) => io::copy(&mut &*src, &mut file).map_err(write_err("copy"))?,
                None => match fs.node_host_range(path)? {
                    // A byte range of a host file (a tar member): the kernel copies it too,
                    // and the volume's memory map is never touched.
                    Some(range) => copy_range(&range, &file).map_err(write_err("copy"))?,
                    None => {
                        let data = fs.node_read_all(path)?;
                        file.write_all(&data).map_err(write_err("write"))?;
                        data.len() as u64
                    }
                },
            };
        }
    }
    if options.preserve_owners {
        let (uid, gid) = owner(&leaf.meta);
        rustix::fs::fchown(&file, uid, gid).map_err(io_err(path, "chown"))?;
    }
    // After the data and the owner: both clear setuid/setgid.
    rustix::fs::fchmod(&file, Mode::from_raw_mode(leaf.meta.mode & 0o7777))
        .map_err(io_err(path, "chmod"))?;
    file.set_times(FileTimes::new().set_modified(leaf.meta.mtime))
        .map_err(write_err("set mtime"))?;
    Ok(tally)
}

/// Copies `range` to the end of `to` with `copy_file_range`; where the kernel cannot (an
/// old kernel, another filesystem type), through a bounded buffer with `pread`.
fn copy_range(range: &HostRange, to: &File) -> io::Result<u64> {
    let mut done = 0u64;
    while done < range.len {
        let mut from = range.offset + done;
        let want = usize::try_from(range.len - done)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        match rustix::fs::copy_file_range(&*range.file, Some(&mut from), to, None, want) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the host file ends before the file's content does",
                ));
            }
            Ok(n) => done += n as u64,
            Err(Errno::INTR) => {}
            Err(Errno::XDEV | Errno::NOSYS | Errno::INVAL | Errno::OPNOTSUPP | Errno::PERM) => {
                return copy_range_buffered(range, done, to).map(|rest| done + rest);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

fn copy_range_buffered(range: &HostRange, from: u64, mut to: &File) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut at = from;
    loop {
        let n = range.read_at(at, &mut buf)?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            return Ok(at - from);
        };
        to.write_all(chunk)?;
        at += n as u64;
    }
}

fn make_symlink(
    dir: &OwnedFd,
    leaf: &PlanLeaf,
    target: &str,
    options: &MaterializeOptions,
) -> Result<()> {
    let path = &leaf.path;
    let name = leaf.name.as_str();
    rustix::fs::symlinkat(target, dir, name).map_err(io_err(path, "create symlink"))?;
    if options.preserve_owners {
        let (uid, gid) = owner(&leaf.meta);
        rustix::fs::chownat(dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io_err(path, "chown"))?;
    }
    rustix::fs::utimensat(
        dir,
        name,
        &mtime_only(leaf.meta.mtime),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(io_err(path, "set mtime"))
}

/// Files of one directory, written by one worker: creating a file takes its directory's
/// lock, and two workers creating in one directory spent a quarter of a cold unpack's CPU
/// spinning on it. A batch ends at [`BATCH_BYTES`], so the files of a directory of large
/// files still spread over the workers (creation is then a small part of the work).
struct Job {
    dir: Arc<OwnedFd>,
    dir_index: usize,
    leaves: Vec<usize>,
    bytes: u64,
}

/// Where a batch of one directory's files ends (see [`Job`]).
const BATCH_BYTES: u64 = 8 << 20;

/// Files one batch holds at most, so a directory of many empty files still spreads.
const BATCH_FILES: usize = 64;

/// Takes jobs until the queue closes; stops at its first error and raises `failed` so
/// that the producer stops queueing.
fn worker<F: FileSystem + ?Sized>(
    fs: &F,
    plan: &Plan,
    options: &MaterializeOptions,
    jobs: &Mutex<mpsc::Receiver<Job>>,
    failed: &AtomicBool,
) -> Result<Tally> {
    let mut tally = Tally::default();
    loop {
        let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else {
            return Ok(tally);
        };
        if failed.load(Ordering::Relaxed) {
            return Ok(tally);
        }
        for leaf in job.leaves.iter().filter_map(|&i| plan.leaves.get(i)) {
            match write_file(fs, &job.dir, leaf, options) {
                Ok(t) => tally.merge(&t),
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
    }
}

/// Writes the whole of `fs` into the directory `dir`; see the module docs for the rules.
///
/// ```
/// use bytes::Bytes;
/// use vfs_overlay::{FileSystem, MaterializeOptions, MemFs, VfsPath, materialize};
///
/// let fs = MemFs::new();
/// fs.create_dir_all(&VfsPath::new("/bin")?)?;
/// fs.write_file(&VfsPath::new("/bin/tool")?, Bytes::from_static(b"#!/bin/sh\n"))?;
/// fs.set_mode(&VfsPath::new("/bin/tool")?, 0o755)?;
/// fs.symlink("bin/tool", &VfsPath::new("/run")?)?;
///
/// let tmp = tempfile::tempdir()?;
/// let out = tmp.path().join("tree");
/// let report = materialize(&fs, &out, MaterializeOptions::default())?;
/// assert_eq!((report.files, report.dirs, report.symlinks), (1, 2, 1));
/// assert_eq!(std::fs::read(out.join("run"))?, b"#!/bin/sh\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// A [`MaterializeError`] naming the target or the entry; see its variants.
pub fn materialize<F: FileSystem + ?Sized>(
    fs: &F,
    dir: &Path,
    options: MaterializeOptions,
) -> Result<MaterializeReport> {
    let _span = tracing::info_span!("materialize", dir = %dir.display()).entered();
    let plan = plan(fs, options.devices)?;
    let root = Arc::new(open_target(dir)?);
    let mut report = MaterializeReport {
        skipped_devices: plan.skipped.clone(),
        ..MaterializeReport::default()
    };
    let mut cursor = Cursor::new(&plan.dirs, Arc::clone(&root));

    for d in plan.dirs.iter().skip(1) {
        let parent = cursor.goto(d.parent)?;
        rustix::fs::mkdirat(&*parent, d.name.as_str(), Mode::from_raw_mode(0o700))
            .map_err(io_err(&d.path, "create directory"))?;
    }

    // Leaves: contents to the pool, symlinks here; later names of a hardlinked file wait
    // until their first name is complete.
    let threads = options
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(8)));
    let mut first_names: HashMap<&NodeId, usize> = HashMap::new();
    let mut links = Vec::new();
    let failed = AtomicBool::new(false);
    let tally = std::thread::scope(|s| -> Result<Tally> {
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE_LEN);
        let rx = Arc::new(Mutex::new(rx));
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let rx = Arc::clone(&rx);
                let (plan, options, failed) = (&plan, &options, &failed);
                s.spawn(move || worker(fs, plan, options, &rx, failed))
            })
            .collect();
        // Once the workers are gone the queue must close, so only they hold the receiver.
        drop(rx);
        let mut batch: Option<Job> = None;
        let produced = (|| -> Result<()> {
            for (i, leaf) in plan.leaves.iter().enumerate() {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                match &leaf.kind {
                    LeafKind::Symlink(target) => {
                        let dir = cursor.goto(leaf.dir)?;
                        make_symlink(&dir, leaf, target, &options)?;
                        report.symlinks += 1;
                    }
                    LeafKind::File(id) => {
                        if let Some(id) = id {
                            if let Some(&first) = first_names.get(id) {
                                links.push((i, first));
                                continue;
                            }
                            first_names.insert(id, i);
                        }
                        if let Some(job) = &mut batch
                            && job.dir_index == leaf.dir
                            && job.bytes < BATCH_BYTES
                            && job.leaves.len() < BATCH_FILES
                        {
                            job.leaves.push(i);
                            job.bytes += leaf.meta.size;
                            continue;
                        }
                        let dir = cursor.goto(leaf.dir)?;
                        let next = Job {
                            dir,
                            dir_index: leaf.dir,
                            leaves: vec![i],
                            bytes: leaf.meta.size,
                        };
                        if let Some(full) = batch.replace(next)
                            && tx.send(full).is_err()
                        {
                            break;
                        }
                    }
                }
            }
            if let Some(last) = batch.take() {
                let _ = tx.send(last);
            }
            Ok(())
        })();
        if produced.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        drop(tx);
        let mut total = Tally::default();
        let mut first_err = produced.err();
        for w in workers {
            match w.join() {
                Ok(Ok(t)) => total.merge(&t),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(total),
        }
    })?;
    report.files = tally.files;
    report.bytes = tally.bytes;
    report.reflinked = tally.reflinked;
    report.hardlinked = tally.hardlinked;
    report.copied = tally.copied;
    report.link_fallbacks = tally.link_fallbacks;

    let mut sources = Cursor::new(&plan.dirs, Arc::clone(&root));
    for (i, first) in links {
        let (Some(leaf), Some(src)) = (plan.leaves.get(i), plan.leaves.get(first)) else {
            continue;
        };
        let from = sources.goto(src.dir)?;
        let to = cursor.goto(leaf.dir)?;
        rustix::fs::linkat(
            &*from,
            src.name.as_str(),
            &*to,
            leaf.name.as_str(),
            AtFlags::empty(),
        )
        .map_err(io_err(&leaf.path, "create hardlink"))?;
        report.files += 1;
        report.hardlinks += 1;
    }
    drop(sources);

    // Children have higher indices than their parents, so going backwards closes every
    // directory after everything inside it is complete.
    for index in (0..plan.dirs.len()).rev() {
        let Some(d) = plan.dirs.get(index) else {
            continue;
        };
        let fd = cursor.goto(index)?;
        if options.preserve_owners {
            let (uid, gid) = owner(&d.meta);
            rustix::fs::fchown(&*fd, uid, gid).map_err(io_err(&d.path, "chown"))?;
        }
        rustix::fs::fchmod(&*fd, Mode::from_raw_mode(d.meta.mode & 0o7777))
            .map_err(io_err(&d.path, "chmod"))?;
        rustix::fs::futimens(&*fd, &mtime_only(d.meta.mtime))
            .map_err(io_err(&d.path, "set mtime"))?;
        report.dirs += 1;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespec_before_the_epoch_borrows_a_second() {
        let t = SystemTime::UNIX_EPOCH - std::time::Duration::new(1, 250_000_000);
        let ts = timespec(t);
        assert_eq!((ts.tv_sec, ts.tv_nsec), (-2, 750_000_000));
        let ts = timespec(SystemTime::UNIX_EPOCH + std::time::Duration::new(5, 7));
        assert_eq!((ts.tv_sec, ts.tv_nsec), (5, 7));
    }

    #[test]
    fn names_must_be_one_component() {
        for bad in ["", ".", "..", "a/b", "/", "a\0b"] {
            assert!(!single_component(bad), "{bad:?}");
        }
        for good in ["a", "...", ".wh.x", "é"] {
            assert!(single_component(good), "{good:?}");
        }
    }
}

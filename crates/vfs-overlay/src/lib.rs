//! Zero-copy virtual filesystems for pkgload.
//!
//! Everything works on [`VfsPath`]s, normalized once and rooted at `/`. A [`FileSystem`]
//! implements a few primitives on resolved paths; symlink resolution (inside the root, at
//! most [`MAX_SYMLINK_HOPS`] links) is shared by all of them. [`MemFs`] is a writable
//! in-memory filesystem and [`Union`] mounts filesystems at any depth, nested.
//!
//! [`SubFs`] shows one directory of a filesystem as its own root (to mount a sub-path).
//! [`Overlay`] stacks read-only layers with OCI whiteout rules into one flattened table;
//! [`WritableOverlay`] puts a writable layer with copy-up on top of one.
//!
//! [`TarVolume`] serves an uncompressed tar (a memory-mapped blob) read-only, file data as
//! zero-copy slices, from a [`TarIndex`] built once and serializable.
//!
//! [`DirVolume`] serves a host directory read-only (packages under development), confined
//! to it: host symlinks are resolved by the VFS, inside its root. [`materialize`] writes any
//! filesystem out to a real directory, never outside it; [`FileSystem::footprint`] counts
//! what a filesystem holds without reading file data.
//!
//! ```
//! use bytes::Bytes;
//! use std::sync::Arc;
//! use vfs_overlay::{FileSystem, MemFs, MountPolicy, Union, VfsPath};
//!
//! let pkg = MemFs::new();
//! pkg.create_dir_all(&VfsPath::new("/bin")?)?;
//! pkg.write_file(&VfsPath::new("/bin/tool")?, Bytes::from_static(b"#!/bin/sh\n"))?;
//!
//! let root = Union::new();
//! root.mount(&VfsPath::new("/opt")?, Arc::new(pkg), MountPolicy::Fail)?;
//! assert_eq!(root.read_all(&VfsPath::new("/opt/bin/tool")?)?, "#!/bin/sh\n");
//! # Ok::<(), vfs_overlay::VfsError>(())
//! ```

#[cfg(unix)]
mod dir;
mod error;
mod fs;
mod host;
mod layer;
#[cfg(unix)]
mod materialize;
mod mem;
mod overlay;
mod path;
mod resolve;
mod sub;
mod tar;
mod union;
mod upper;

pub use self::tar::{FileSource, TarEntry, TarEntryKind, TarError, TarIndex, TarVolume};
#[cfg(unix)]
pub use dir::DirVolume;
pub use error::{Result, VfsError};
pub use fs::{DirEntry, FileReader, FileSystem, FileType, Footprint, Metadata, NodeId, ReadSeek};
pub use host::{HostRange, HostRangeReader};
pub use layer::{
    Compression, LayerError, LayerLimits, LayerSpec, SMALL_TAR, open_image_layers, open_layer,
    open_volume, recorded_uncompressed,
};
#[cfg(unix)]
pub use materialize::{
    Devices, LinkMode, MaterializeError, MaterializeOptions, MaterializeReport, materialize,
};
pub use mem::MemFs;
pub use overlay::Overlay;
pub use path::VfsPath;
pub use resolve::{Follow, MAX_SYMLINK_HOPS, resolve};
pub use sub::SubFs;
pub use union::{MountOutcome, MountPolicy, Union};
pub use upper::WritableOverlay;

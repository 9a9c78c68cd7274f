//! Zero-copy virtual filesystems for pkgload.
//!
//! Everything works on [`VfsPath`]s, normalized once and rooted at `/`. A [`FileSystem`]
//! implements a few primitives on resolved paths; symlink resolution (inside the root, at
//! most [`MAX_SYMLINK_HOPS`] links) is shared by all of them. [`MemFs`] is a writable
//! in-memory filesystem.
//!
//! Tar volumes over memory-mapped blobs, OCI overlays and materialization (issue 5) are not
//! written yet.
//!
//! ```
//! use bytes::Bytes;
//! use vfs_overlay::{FileSystem, MemFs, VfsPath};
//!
//! let pkg = MemFs::new();
//! pkg.create_dir_all(&VfsPath::new("/bin")?)?;
//! pkg.write_file(&VfsPath::new("/bin/tool")?, Bytes::from_static(b"#!/bin/sh\n"))?;
//!
//! pkg.symlink("bin/tool", &VfsPath::new("/run")?)?;
//! assert_eq!(pkg.read_all(&VfsPath::new("/run")?)?, "#!/bin/sh\n");
//! # Ok::<(), vfs_overlay::VfsError>(())
//! ```

mod error;
mod fs;
mod mem;
mod path;
mod resolve;

pub use error::{Result, VfsError};
pub use fs::{DirEntry, FileReader, FileSystem, FileType, Metadata, ReadSeek};
pub use mem::MemFs;
pub use path::VfsPath;
pub use resolve::{Follow, MAX_SYMLINK_HOPS, resolve};

//! Wasmer's **webc** packages, as pkgload reads them.
//!
//! A webc file holds one package: a CBOR manifest (name and version in the `wapm`
//! annotation, dependencies in `use`, commands, an entrypoint, `fs` mappings), atoms
//! (WebAssembly modules) and volumes (directory trees). Three container versions exist and
//! all are in use: v1 (the oldest, still what many published packages are), v2 and v3
//! (which adds per-file sha256 and symlinks).
//!
//! This crate is the room where that format lives:
//! - [`WebcContainer`] parses a file held in memory (in pkgload, the memory map of a cached
//!   blob) with the `webc` crate, after checking the container's framing itself, and hands
//!   out atoms and volume files as zero-copy slices of it;
//! - [`PackageSpec`] is what the manifest says, in the resolver's terms;
//! - a volume opens as a `vfs-overlay` [`TarVolume`](vfs_overlay::TarVolume), so it mounts
//!   in the same union as OCI volumes.
//!
//! Nothing from the file is trusted before it is checked: lengths against the file, atoms
//! against their manifest signatures, v3 files against their sha256, symlinks against the
//! volume's root, names against `..`. The `webc` crate is only called behind a panic guard.
//!
//! ```
//! use std::collections::BTreeMap;
//! use vfs_overlay::{FileSystem, VfsPath};
//! use webc::metadata::Manifest;
//! use webc::v3::write::{Directory, DirEntry, FileEntry, Writer};
//! use webc::v3::{ChecksumAlgorithm, SignatureAlgorithm, Timestamps};
//! use webc_package::WebcContainer;
//!
//! // A v3 package with one volume holding /etc/motd.
//! let file = DirEntry::File(FileEntry::borrowed(b"hello\n", Timestamps::default()));
//! let etc = Directory::new(BTreeMap::from([("motd".parse()?, file)]), Timestamps::default());
//! let root = Directory::new(
//!     BTreeMap::from([("etc".parse()?, DirEntry::Dir(etc))]),
//!     Timestamps::default(),
//! );
//! let bytes = Writer::new(ChecksumAlgorithm::Sha256)
//!     .write_manifest(&Manifest::default())?
//!     .write_atoms(BTreeMap::new())?
//!     .with_volume("data", root)?
//!     .finish(SignatureAlgorithm::None)?;
//!
//! let container = WebcContainer::parse(bytes, "motd.webc")?;
//! assert_eq!(container.version(), 3);
//! let volume = container.volume("data")?;
//! assert_eq!(volume.read_all(&VfsPath::new("/etc/motd")?)?, "hello\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod container;
mod error;
mod frame;
mod model;
mod volume;
mod write;

pub use container::{Atom, Checked, WebcContainer};
pub use error::WebcError;
pub use model::{
    AtomRef, CommandSpec, Dependency, DependencySource, Identity, Mount, PackageSpec, parse_use,
};
pub use write::{CommandToWrite, PackageToWrite};

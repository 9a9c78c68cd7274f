//! The pkgload facade: one reference in, a ready-to-use package tree out.
//!
//! A [`Loader`] wires the other crates together:
//!
//! 1. **resolve** ([`Loader::resolve`]): read the root's manifest (cache-first), classify it
//!    (a pkgload package, a container image or a wasm artifact) and, for a package, run the
//!    backtracking solver of `resolve-graph` over a [`Source`](resolve_graph::Source) built
//!    on `fetch-http`: a package's versions are its repository's semver tags, and a
//!    dependency is looked up beside its dependent (same registry and prefix, or the same
//!    directory of layouts). With a [`Lockfile`](resolve_graph::Lockfile), no version is
//!    listed and every manifest is read by its locked digest.
//! 2. **fetch** ([`Loader::fetch`]): only the blobs that commands and filesystem mappings
//!    use, deduplicated by digest, largest first, `jobs` at a time, streamed and verified
//!    into the `cache-core` store. Blobs already stored cost no request.
//! 3. **assemble** ([`Loader::load`]): every mapping's volume becomes a zero-copy tar volume
//!    over the store's mmap (gzip and zstd layers are decompressed once into the store),
//!    mounted in one union filesystem; an image's layers become one overlay at `/`.
//!
//! [`pack`] builds a package from a directory holding `pkgload.toml` into an OCI layout or
//! a registry; such a directory also loads directly, as a package under development.
//!
//! ```no_run
//! # async fn example() -> Result<(), loader::LoadError> {
//! use loader::{Loader, PackageRef};
//! use vfs_overlay::VfsPath;
//!
//! let loader = Loader::builder().cache_dir("/tmp/pkgload-cache").build().await?;
//! let reference = PackageRef::parse("127.0.0.1:5000/team/acme/app:1.0.0")?;
//! let package = loader.load(&reference, None).await?;
//! let readme = package.fs.read_all(&VfsPath::new("/app/README.md")?)?;
//! for command in &package.commands {
//!     println!("{} ({} bytes of {})", command.name, command.atom.len(), command.runner);
//! }
//! # let _ = readme; Ok(()) }
//! ```

// `LoadError` embeds the lower crates' errors whole (so callers can match on them); it is
// large, but errors are rare and every fallible call here does network or disk I/O.
#![allow(clippy::result_large_err)]

mod artifact;
mod config;
mod dev;
mod direct;
mod error;
mod gc;
mod kept_volume;
mod lazy;
mod lazy_image;
mod lazy_prefetch;
mod lazy_table;
mod load;
mod local;
mod pack;
mod package_dir;
mod prefetch;
mod reference;
mod remote;
mod source;
mod tree_snapshot;
mod volume;
mod webc;
mod webc_dir;
mod webc_oci;
mod webc_pack;
mod webc_precheck;

pub use artifact::{
    Artifact, ArtifactKind, BlobRef, PACKAGE_ARTIFACT_TYPE, PACKAGE_CONFIG_MEDIA_TYPE,
    TITLE_ANNOTATION, WASM_LAYER_MEDIA_TYPES, WASM_MEDIA_TYPE, referenced_blobs,
};
pub use config::{
    LoadEvent, LoaderBuilder, ProgressSink, Validation, default_cache_dir, default_hosts_dirs,
};
pub use error::{LoadError, Result};
pub use gc::gc_children;
pub use lazy::{Lazy, WHOLE_BELOW};
pub use lazy_image::LazyFill;
pub use lazy_prefetch::{LazyPrefetch, PrefetchReport};
pub use load::{FetchReport, LoadedCommand, LoadedPackage, Loader, PackageInfo, Resolved};
pub use pack::{MANIFEST_MEDIA_TYPE, Packed, VOLUME_MEDIA_TYPE, pack};
pub use package_dir::PackageDir;
pub use reference::{PACKAGE_FILE, PackageRef};
pub use webc::WEBC_MEDIA_TYPE;
pub use webc_oci::{WEBC_ARTIFACT_TYPE, push_webc};
pub use webc_pack::{PackedWebc, pack_webc};

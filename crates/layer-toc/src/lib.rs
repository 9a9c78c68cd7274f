//! Seekable compressed layers: read a layer's files before (or without) downloading it.
//!
//! A zstd:chunked layer (containers/storage's format; `skopeo copy --dest-compress-format
//! zstd:chunked` writes it) compresses every regular file as its own zstd frame(s) and
//! appends a table of contents (TOC) that says where each file's frames are and what its
//! content hashes to. To any other reader it is an ordinary `tar+zstd` layer with the same
//! diff_id. This crate:
//!
//! - finds the table: [`TocPosition`] from the layer's annotations (one range request),
//!   [`Footer`] from the end of a whole blob;
//! - checks it and turns it into a path table with the rules of a tar index ([`Toc`]):
//!   nothing in it is trusted (see the [`toc`] module);
//! - serves the layer as a `vfs-overlay` volume whose files are fetched by range on first
//!   read and verified against their sha256 before a byte is returned ([`LazyFiles`]);
//! - writes a tar as a zstd:chunked layer ([`write_zstd_chunked`]), reproducibly.
//!
//! ```
//! use cache_core::{Algorithm, Digest};
//! use layer_toc::TocPosition;
//!
//! let blob = Algorithm::Sha256.digest(b"layer");
//! let annotations = [
//!     ("io.containers.zstd-chunked.manifest-checksum",
//!      "sha256:f662ce11195517f0af4b2054bf3a812348a075f924eceff90b4cdbdf9f64cc35"),
//!     ("io.containers.zstd-chunked.manifest-position", "3146982:3477:12039:1"),
//! ];
//! let get = |key: &str| annotations.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
//! let position = TocPosition::from_annotations(blob, get).unwrap()?;
//! assert_eq!(position.range(), 3146982..3146982 + 3477);
//! // A table that would not fit in the blob is refused before anything is fetched.
//! assert!(position.check(1_000_000, 64 << 20).is_err());
//! # Ok::<(), layer_toc::TocError>(())
//! ```

// Errors carry digests so they can name the layer; they are rare, so their size is not
// worth a box on every return path.
#![allow(clippy::result_large_err)]

mod error;
mod estargz;
mod gunzip;
mod lazy;
mod position;
mod time;
pub mod toc;
mod write;
mod write_estargz;

pub use error::TocError;
pub use estargz::{
    ESTARGZ_TOC_DIGEST_KEY, ESTARGZ_UNCOMPRESSED_SIZE_KEY, EstargzFooter, EstargzPosition,
};
pub use lazy::{LazyFiles, RangeFetch, ReadHook};
pub use position::{CHECKSUM_KEY, Footer, POSITION_KEY, TocPosition};
pub use toc::{Codec, Toc, TocFile};
pub use write::{WRITTEN_CHECKSUM_KEY, WRITTEN_POSITION_KEY, write_zstd_chunked};
pub use write_estargz::{EstargzOptions, EstargzWritten, write_estargz};

/// The default limit on a table of contents, compressed or not (`--max-toc-size`).
pub const DEFAULT_TOC_LIMIT: u64 = 64 << 20;

//! Seekable compressed layers: read a layer's files before (or without) downloading it.
//!
//! Two formats put every regular file's content in compressed pieces of its own and add a
//! table of contents (TOC) saying where each file's pieces are and what its content hashes
//! to; to any other reader the layer is an ordinary compressed tar:
//!
//! - **zstd:chunked** (containers/storage; `skopeo copy --dest-compress-format
//!   zstd:chunked`): `tar+zstd`, one zstd frame per file (or chunk); the TOC is compressed
//!   in a skippable frame before a footer, and the layer's annotations give its position
//!   and the sha256 of its compressed bytes. Same diff_id as the plain tar.
//! - **eStargz** (containerd's stargz-snapshotter): `tar+gzip` made of many gzip members,
//!   one starting at each file's content (or chunk); the TOC is the tar's last entry,
//!   `stargz.index.json`, in a member of its own before a footer that gives its offset; the
//!   annotation `containerd.io/snapshot/stargz/toc.digest` is the sha256 of its JSON. Small
//!   files may share a member (`innerOffset`), and a member runs on past the file's bytes.
//!
//! This crate:
//!
//! - finds the table: [`TocPosition`] from a zstd:chunked layer's annotations (one range
//!   request), [`Footer`] from the end of a whole blob; [`EstargzPosition`] from an
//!   eStargz layer's annotation, then its tail (one request, a second for a TOC larger
//!   than [`EstargzPosition::TAIL`]) and [`EstargzFooter`] in it (see [`estargz`] for the
//!   sequence);
//! - checks it and turns it into a path table with the rules of a tar index ([`Toc::parse`],
//!   [`Toc::parse_estargz`]): nothing in it is trusted (see the [`toc`] module);
//! - serves the layer as a `vfs-overlay` volume whose files are fetched by range on first
//!   read and verified against their sha256 before a byte is returned ([`LazyFiles`]; each
//!   [`TocFile`] says its [`Codec`]);
//! - writes a tar as either, reproducibly ([`write_zstd_chunked`], [`write_estargz`]).
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
pub mod estargz;
mod gunzip;
mod lazy;
mod position;
mod seekable;
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
pub use seekable::Seekable;
pub use toc::{Codec, Toc, TocFile};
pub use write::{WRITTEN_CHECKSUM_KEY, WRITTEN_POSITION_KEY, write_zstd_chunked};
pub use write_estargz::{EstargzOptions, EstargzWritten, write_estargz};

/// The default limit on a table of contents, compressed or not (`--max-toc-size`).
pub const DEFAULT_TOC_LIMIT: u64 = 64 << 20;

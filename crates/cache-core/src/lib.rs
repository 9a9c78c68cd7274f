//! A verified, crash-safe, content-addressed blob store shared by threads and processes.
//!
//! Everything pkgload downloads or derives lands here, named by its [`Digest`]. The store
//! guarantees:
//!
//! - **Nothing unverified is visible.** Data is written under `ingest/` while it is hashed,
//!   and only renamed into `blobs/` after its size and digest match and the file was
//!   fsynced (the directory is fsynced after the rename). A mismatch discards it.
//! - **Each blob is fetched once.** Concurrent requests for one digest in a process share
//!   one in-flight fill ([`Store::get_or_ingest`]); across processes a lock on the digest's
//!   partial file makes the second process wait and then find the finished blob.
//! - **Interrupted downloads resume.** A crash, an error or a dropped future leaves a partial
//!   file that the next ingest re-hashes and continues ([`Ingest::offset`]).
//! - **Reads are zero-copy.** [`Store::get`] returns a [`Blob`]: [`bytes::Bytes`] over a
//!   read-only memory map (or a small heap copy), behind a byte-bounded [`MemoryTier`].
//! - **Nothing outside the root is touched.** Digests are parsed strictly before they become
//!   paths, and ref names follow the OCI grammar ([`RefKey`]).
//!
//! Maintenance — [`Store::verify`], [`Store::scan`], [`Store::retain`], [`Store::gc`] — takes
//! the store lock exclusively, so it never races another process's reads or writes.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use cache_core::{Algorithm, Begin, Store, VerifyMode};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path()).await?;
//!
//! let body = vec![7u8; 100_000];
//! let digest = Algorithm::Sha256.digest(&body);
//! if let Begin::Write(mut ingest) = store.begin(digest, Some(body.len() as u64)).await? {
//!     ingest.write_all(&body).await?;
//!     ingest.commit().await?;
//! }
//!
//! let blob = store.get(&digest)?.expect("just stored");
//! assert!(blob.is_mapped()); // 100 kB is above the default mmap threshold
//! assert_eq!(blob.len(), 100_000);
//!
//! let report = store.verify(VerifyMode::Warn).await?;
//! assert_eq!(report.checked, 1);
//! assert!(report.problems.is_empty());
//! # Ok(()) }
//! ```

// `Error` carries two digests (up to 64 bytes each) in `DigestMismatch`, which is what makes
// it "large". Errors are rare and every fallible call here does I/O that dwarfs moving 150
// bytes, while boxing would make matching on variants clumsy for every caller.
#![allow(clippy::result_large_err)]

mod blob;
mod digest;
mod error;
mod ingest;
mod layout;
mod link;
mod lock;
mod maintenance;
mod memory;
mod refs;
mod store;

pub use blob::Blob;
pub use digest::{Algorithm, Digest, Hasher, ParseDigestError};
pub use error::{Error, Result, SourceError};
pub use ingest::Ingest;
pub use layout::{DerivedKind, RefKey};
pub use maintenance::{
    ChildrenFn, GcOptions, GcReport, Problem, ProblemKind, VerifyMode, VerifyReport,
};
pub use memory::MemoryTier;
pub use store::{Begin, BlobInfo, LinkMode, Linked, RefEntry, Store, StoreOptions, TagList};

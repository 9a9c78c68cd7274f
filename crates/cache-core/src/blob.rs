//! [`Blob`]: the bytes of a stored blob, shared and zero-copy.

use std::fs::File;
use std::ops::Deref;
use std::path::Path;

use bytes::Bytes;

use crate::Digest;
use crate::error::{IoContext, Result};

/// The content of one verified blob.
///
/// Large blobs are a read-only memory map of the store file, small ones an in-memory copy;
/// either way the data is a [`Bytes`], so cloning a `Blob` or slicing it never copies.
///
/// A mapped blob stays valid even if gc deletes its file (the mapping keeps the inode alive),
/// which is also why the store evicts deleted digests from its memory tier: nothing should pin
/// a deleted file longer than a caller holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct Blob {
    digest: Digest,
    data: Bytes,
    mapped: bool,
}

impl Blob {
    /// Wrap bytes already known to hash to `digest`.
    pub(crate) fn new(digest: Digest, data: Bytes, mapped: bool) -> Self {
        Blob {
            digest,
            data,
            mapped,
        }
    }

    /// Load the file at `path` (which the store has verified to hold `digest`): memory-mapped
    /// at or above `mmap_threshold` bytes, read into memory below it.
    pub(crate) fn load(digest: Digest, path: &Path, mmap_threshold: u64) -> Result<Option<Self>> {
        Ok(Self::open(digest, path, mmap_threshold)?.map(|(blob, _, _)| blob))
    }

    /// [`Blob::load`], also handing back the open file and its metadata so that the caller
    /// can act on them (e.g. record a use) without opening or stat-ing the file again.
    pub(crate) fn open(
        digest: Digest,
        path: &Path,
        mmap_threshold: u64,
    ) -> Result<Option<(Self, File, std::fs::Metadata)>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(crate::Error::io("open blob", path, e)),
        };
        let meta = file.metadata().at("stat blob", path)?;
        let len = meta.len();
        let blob = if len == 0 {
            Blob::new(digest, Bytes::new(), false)
        } else if len < mmap_threshold {
            // The length is known and the bytes never change: one read of exactly that many
            // (`read_to_end` would stat and seek again to size its buffer).
            let mut data = vec![0; usize::try_from(len).unwrap_or(0)];
            std::io::Read::read_exact(&mut &file, &mut data).at("read blob", path)?;
            Blob::new(digest, Bytes::from(data), false)
        } else {
            let size = usize::try_from(len)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::OutOfMemory))
                .at("mmap blob", path)?;
            // SAFETY: store blobs are immutable: they are written once, made read-only and
            // only ever replaced by rename or removed by unlink, neither of which changes the
            // bytes of a mapping that already exists. A process that ignores the store's
            // permissions and writes into a blob in place breaks that contract;
            // `Store::verify` detects it.
            // The length given is the file's, so the mapping needs no second stat.
            let map = unsafe { memmap2::MmapOptions::new().len(size).map(&file) }
                .at("mmap blob", path)?;
            Blob::new(digest, Bytes::from_owner(map), true)
        };
        Ok(Some((blob, file, meta)))
    }

    /// A part of a stored blob that is content in its own right (an atom inside a webc
    /// container), named by its own `digest`. `within` is the stored blob `data` is a slice
    /// of; the caller must have checked that `data` hashes to `digest` (that is the whole
    /// contract of a `Blob`).
    pub fn verified_part(within: &Blob, digest: Digest, data: Bytes) -> Blob {
        Blob::new(digest, data, within.mapped)
    }

    /// The blob's digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The data as [`Bytes`] (clone it freely: it shares the buffer).
    pub fn bytes(&self) -> &Bytes {
        &self.data
    }

    /// Take the data out.
    pub fn into_bytes(self) -> Bytes {
        self.data
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.data.len() as u64
    }

    /// True for the empty blob.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// True when the data is a memory map of the store file rather than a heap copy.
    pub fn is_mapped(&self) -> bool {
        self.mapped
    }
}

impl Deref for Blob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data
    }
}

impl AsRef<[u8]> for Blob {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blob")
            .field("digest", &self.digest)
            .field("len", &self.data.len())
            .field("mapped", &self.mapped)
            .finish()
    }
}

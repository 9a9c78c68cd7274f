//! What can be wrong with a seekable layer; every variant names the blob.

use cache_core::Digest;
use vfs_overlay::VfsPath;

/// A table of contents (or a file read through one) that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TocError {
    /// A layer annotation that should locate the table of contents does not parse.
    #[error("layer {blob}: annotation {key} = {value:?} is malformed: {reason}")]
    BadAnnotation {
        /// The layer.
        blob: Digest,
        /// The annotation's key.
        key: String,
        /// Its value, shortened.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The footer at the end of the blob is not a zstd:chunked (or eStargz) footer.
    #[error("layer {blob}: the footer is malformed: {reason}")]
    BadFooter {
        /// The layer.
        blob: Digest,
        /// What is wrong with it.
        reason: String,
    },
    /// The table of contents (or a frame it names) lies outside the blob.
    #[error(
        "layer {blob}: {what} at bytes {start}..{end} lies outside the {size}-byte blob; \
         the layer or its annotations are corrupt"
    )]
    OutOfBlob {
        /// The layer.
        blob: Digest,
        /// What was located there.
        what: String,
        /// Where it starts.
        start: u64,
        /// Where it ends.
        end: u64,
        /// The blob's size.
        size: u64,
    },
    /// The table of contents is larger than allowed.
    #[error(
        "layer {blob}: the table of contents is {size} bytes {what}, above the limit of {limit} \
         bytes; raise the limit if the layer is trusted, or load with --lazy=off"
    )]
    TooLarge {
        /// The layer.
        blob: Digest,
        /// "compressed" or "uncompressed".
        what: &'static str,
        /// Its declared or actual size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The bytes fetched for the table of contents are not the ones its annotation names.
    #[error(
        "layer {blob}: the table of contents hashes to {actual}, but the layer's annotation \
         says {expected}; the registry served other bytes"
    )]
    DigestMismatch {
        /// The layer.
        blob: Digest,
        /// From the annotation.
        expected: Digest,
        /// Of the bytes fetched.
        actual: Digest,
    },
    /// The table of contents does not decompress, or not to the size it declares.
    #[error("layer {blob}: the table of contents does not decompress: {reason}")]
    Decompress {
        /// The layer.
        blob: Digest,
        /// What the decoder said.
        reason: String,
    },
    /// The table of contents is not the JSON document it should be.
    #[error("layer {blob}: the table of contents is not valid: {reason}")]
    Json {
        /// The layer.
        blob: Digest,
        /// What the parser said.
        reason: String,
    },
    /// One entry of the table of contents lies.
    #[error("layer {blob}: table of contents entry {index} ({name:?}): {reason}")]
    BadEntry {
        /// The layer.
        blob: Digest,
        /// Its position in the table (0-based).
        index: usize,
        /// The name it gives.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Valid, but something this reader does not serve lazily; the layer is read whole.
    #[error("layer {blob}: {what} is not read lazily by pkgload")]
    Unsupported {
        /// The layer.
        blob: Digest,
        /// What it is.
        what: String,
    },
    /// A file could not be fetched, decoded or verified.
    #[error("layer {blob}: file {path}: {reason}")]
    File {
        /// The layer.
        blob: Digest,
        /// The file.
        path: VfsPath,
        /// What went wrong.
        reason: String,
    },
}

//! What can be wrong with a webc file; every variant names the file or URL it came from.

use vfs_overlay::VfsPath;

/// A webc container that cannot be read, or a package in it that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebcError {
    /// Not a webc file at all, or a version this crate does not read.
    #[error("{origin}: not a webc file: {reason}")]
    NotWebc {
        /// The file or URL.
        origin: String,
        /// What the first bytes said.
        reason: String,
    },
    /// The container's framing points outside the file or is cut short.
    #[error(
        "{origin}: webc v{version} is malformed: {what} (at byte {offset} of {len}); \
         the file is truncated or corrupt, fetch it again"
    )]
    Framing {
        /// The file or URL.
        origin: String,
        /// 1, 2 or 3.
        version: u8,
        /// What was being read.
        what: String,
        /// Where in the file.
        offset: u64,
        /// The file's length.
        len: u64,
    },
    /// The `webc` crate refused the container (bad CBOR, a bad section, …).
    #[error("{origin}: webc v{version} is malformed: {message}")]
    Malformed {
        /// The file or URL.
        origin: String,
        /// 1, 2 or 3.
        version: u8,
        /// The parser's words.
        message: String,
    },
    /// An atom's bytes do not hash to the signature its manifest entry declares.
    #[error(
        "{origin}: atom {atom:?} does not match its manifest signature (declared {declared}, \
         content is sha256:{actual}); the package is corrupt"
    )]
    AtomSignature {
        /// The file or URL.
        origin: String,
        /// The atom.
        atom: String,
        /// What the manifest says.
        declared: String,
        /// The content's sha256, hex.
        actual: String,
    },
    /// A name the manifest or a command refers to is not in the container.
    #[error("{origin}: no {kind} named {name:?} (the container has: {available})")]
    Missing {
        /// The file or URL.
        origin: String,
        /// "atom" or "volume".
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// What there is, comma-separated.
        available: String,
    },
    /// A v3 file whose content does not hash to the sha256 its directory entry declares.
    #[error(
        "{origin}: volume {volume:?}: {path} does not match its recorded sha256; the package \
         is corrupt"
    )]
    FileHash {
        /// The file or URL.
        origin: String,
        /// The volume.
        volume: String,
        /// The file inside it.
        path: VfsPath,
    },
    /// A relative symlink that climbs out of its volume.
    #[error("{origin}: volume {volume:?}: symlink {path} -> {target:?} leaves the volume")]
    SymlinkEscapes {
        /// The file or URL.
        origin: String,
        /// The volume.
        volume: String,
        /// The link.
        path: VfsPath,
        /// Its target, verbatim.
        target: String,
    },
    /// A volume whose tree cannot be indexed (a bad name, an entry that vanished, data that
    /// lies outside the file).
    #[error("{origin}: volume {volume:?}: {message}")]
    Volume {
        /// The file or URL.
        origin: String,
        /// The volume.
        volume: String,
        /// What is wrong.
        message: String,
    },
    /// The manifest's metadata (annotations, `use`, commands) cannot be understood.
    #[error("{origin}: {message}")]
    Metadata {
        /// The file or URL.
        origin: String,
        /// What is wrong, naming the field.
        message: String,
    },
}

//! The facade's error: what failed, on which reference, digest or path, and what to do.
//!
//! Lower crates' errors are kept as sources, so a caller can still match on the store's or
//! the solver's verdict, while [`Display`](std::fmt::Display) reads as one sentence.

use cache_core::Digest;

/// Everything loading can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The reference is not something pkgload can load.
    #[error("invalid reference {input:?}: {reason}")]
    Reference {
        /// What the user gave.
        input: String,
        /// Why it is not a reference.
        reason: String,
    },

    /// Talking to a registry or reading a layout failed.
    #[error("{what}: {source}")]
    Fetch {
        /// What was being fetched (a reference, a digest).
        what: String,
        /// The transport's verdict.
        #[source]
        source: fetch_http::Error,
    },

    /// A webc file is malformed, or its package cannot be used (the message names the file).
    #[error(transparent)]
    Webc(#[from] webc_package::WebcError),

    /// The cache refused or failed.
    #[error("cache: {0}")]
    Store(#[from] cache_core::Error),

    /// Offline mode, and something needed is not in the cache.
    #[error(
        "offline: {what} is not in the cache at {cache}; run the same command once without \
         --offline (or with the lockfile it made) while the registry is reachable"
    )]
    Offline {
        /// The missing piece (tags of a repository, a manifest, a blob).
        what: String,
        /// The cache directory.
        cache: String,
    },

    /// A manifest is not a package, an image or a wasm artifact.
    #[error("{reference}: {reason}")]
    Unsupported {
        /// The artifact's reference.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A package config blob is invalid.
    #[error("{reference}: invalid package config: {source}")]
    Config {
        /// Where the config came from.
        reference: String,
        /// The model's verdict (names the package and the field).
        #[source]
        source: resolve_graph::ManifestError,
    },

    /// A manifest or config says something inconsistent.
    #[error("{reference}: {reason}")]
    Inconsistent {
        /// Where.
        reference: String,
        /// What.
        reason: String,
    },

    /// No set of versions works, or a source failed while resolving.
    #[error("resolving {root}: {source}")]
    Resolve {
        /// The root package.
        root: String,
        /// The solver's verdict (its text is the explanation).
        #[source]
        source: resolve_graph::ResolveError,
    },

    /// The lockfile cannot be used.
    #[error("lockfile: {0}")]
    Lock(#[from] resolve_graph::LockError),

    /// Commands or mounts of the resolved packages do not fit together (or form a cycle).
    #[error("merging {root}: {source}")]
    Merge {
        /// The root package.
        root: String,
        /// Why.
        #[source]
        source: resolve_graph::MergeError,
    },

    /// A dependency cycle.
    #[error("{0}")]
    Graph(#[from] resolve_graph::GraphError),

    /// A package names a volume or atom its manifest does not carry.
    #[error(
        "{package}: it has no {what} named {name:?} (its layers' \
         org.opencontainers.image.title annotations are: {available})"
    )]
    MissingLayer {
        /// The package.
        package: String,
        /// `volume` or `atom`.
        what: &'static str,
        /// The name asked for.
        name: String,
        /// The names present.
        available: String,
    },

    /// A layer could not be turned into a filesystem.
    #[error("layer {digest}: {source}")]
    Layer {
        /// The layer.
        digest: Digest,
        /// Why.
        #[source]
        source: vfs_overlay::LayerError,
    },

    /// A seekable layer's table of contents cannot be used (the message names the layer).
    #[error(transparent)]
    Toc(#[from] layer_toc::TocError),

    /// The whole of a layer read lazily did not match its image config's diff_id: every
    /// file served from it before is untrusted.
    #[error(
        "layer {digest}: its content is not what the image config declares ({source});          the {} file(s) read from it before it was complete are untrusted: {}",
        read.len(),
        read.join(", ")
    )]
    LazyUntrusted {
        /// The layer.
        digest: Digest,
        /// The files read lazily.
        read: Vec<String>,
        /// The mismatch.
        #[source]
        source: vfs_overlay::LayerError,
    },

    /// Assembling the filesystem failed.
    #[error("assembling the filesystem: {0}")]
    Vfs(#[from] vfs_overlay::VfsError),

    /// A package directory (`pkgload.toml`) is invalid.
    #[error("{path}: {reason}")]
    PackageDir {
        /// The file or directory.
        path: String,
        /// What is wrong.
        reason: String,
    },

    /// Local file work failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl LoadError {
    pub(crate) fn fetch(what: impl Into<String>, source: fetch_http::Error) -> Self {
        LoadError::Fetch {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl AsRef<std::path::Path>,
        source: std::io::Error,
    ) -> Self {
        LoadError::Io {
            action,
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    pub(crate) fn unsupported(reference: impl Into<String>, reason: impl Into<String>) -> Self {
        LoadError::Unsupported {
            reference: reference.into(),
            reason: reason.into(),
        }
    }
}

/// `Result` with [`LoadError`].
pub type Result<T, E = LoadError> = std::result::Result<T, E>;

//! [`LoaderBuilder`]: every knob of a [`Loader`](crate::Loader), with defaults a user can
//! live with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fetch_http::hosts::HostsDirs;
use fetch_http::{ClientConfig, Credential, Credentials, HttpClient};

use crate::error::{LoadError, Result};
use crate::remote::Place;

/// What to do when a layer's content does not match the uncompressed digest (`diff_id`)
/// its image config declares.
///
/// Every downloaded blob is verified against its descriptor's digest whatever this says:
/// the store cannot hold a blob under a digest it does not have. The switch exists for
/// parity with loaders that can skip checks; it governs the checks that are ours to relax.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Validation {
    /// Do not check diff_ids.
    NoValidate,
    /// Check, log a warning on mismatch, and use the layer anyway.
    Warn,
    /// Check, and fail on mismatch.
    #[default]
    Fail,
}

/// One event for a progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadEvent {
    /// The fetch plan is known: `blobs` blobs, `bytes` bytes, `cached` already in the store.
    Planned {
        /// Blobs needed.
        blobs: usize,
        /// Their total size.
        bytes: u64,
        /// How many of them the store already holds.
        cached: usize,
    },
    /// A blob transfer made progress.
    Blob(fetch_http::Progress),
}

/// Receives [`LoadEvent`]s; called from download tasks, so keep it cheap.
pub type ProgressSink = Arc<dyn Fn(LoadEvent) + Send + Sync>;

/// Builds a [`Loader`](crate::Loader).
#[derive(Clone)]
pub struct LoaderBuilder {
    pub(crate) cache_dir: Option<PathBuf>,
    /// Where named packages are looked up, in order.
    pub(crate) places: Vec<Place>,
    pub(crate) insecure: Vec<String>,
    pub(crate) credentials: Option<Credentials>,
    pub(crate) explicit: Vec<(String, Credential)>,
    pub(crate) jobs: usize,
    pub(crate) validation: Validation,
    pub(crate) offline: bool,
    pub(crate) ref_ttl: Duration,
    pub(crate) memory_budget: u64,
    pub(crate) progress: Option<ProgressSink>,
    pub(crate) client: Option<ClientConfig>,
    /// Where `hosts.toml` files are read (`None`: [`default_hosts_dirs`]).
    pub(crate) hosts: Option<HostsDirs>,
    pub(crate) layer_limits: vfs_overlay::LayerLimits,
    pub(crate) prefetch: bool,
    pub(crate) lazy: crate::Lazy,
    pub(crate) lazy_prefetch: bool,
    pub(crate) toc_limit: u64,
    pub(crate) lazy_deadline: std::time::Duration,
}

impl std::fmt::Debug for LoaderBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoaderBuilder")
            .field("cache_dir", &self.cache_dir)
            .field("places", &self.places)
            .field("insecure", &self.insecure)
            .field("jobs", &self.jobs)
            .field("validation", &self.validation)
            .field("offline", &self.offline)
            .field("ref_ttl", &self.ref_ttl)
            .finish_non_exhaustive()
    }
}

impl Default for LoaderBuilder {
    fn default() -> Self {
        LoaderBuilder {
            cache_dir: None,
            places: Vec::new(),
            insecure: Vec::new(),
            credentials: None,
            explicit: Vec::new(),
            jobs: 16,
            validation: Validation::Fail,
            offline: false,
            ref_ttl: Duration::from_secs(300),
            memory_budget: 64 << 20,
            progress: None,
            client: None,
            hosts: None,
            layer_limits: vfs_overlay::LayerLimits::default(),
            prefetch: true,
            lazy: crate::Lazy::default(),
            lazy_prefetch: true,
            toc_limit: layer_toc::DEFAULT_TOC_LIMIT,
            lazy_deadline: crate::lazy::READ_DEADLINE,
        }
    }
}

impl LoaderBuilder {
    /// The cache directory (default: `$PKGLOAD_CACHE_DIR`, else the platform cache
    /// directory + `pkgload`).
    #[must_use]
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Adds a registry (`host[:port]`) and repository prefix to the places where
    /// `namespace/name@REQ` references and the dependencies of local roots are looked up.
    ///
    /// Places are one source, consulted in the order they were added: a name's versions
    /// are those of every place, and a version comes from the first place that has it.
    #[must_use]
    pub fn registry(mut self, registry: impl Into<String>, prefix: impl Into<String>) -> Self {
        self.places.push(Place::Registry {
            registry: registry.into(),
            prefix: prefix.into().trim_matches('/').to_owned(),
        });
        self
    }

    /// Adds a directory of webc files to the places where packages are looked up (see
    /// [`LoaderBuilder::registry`] for the order): `DIR/<namespace>/<name>/<version>.webc`,
    /// `DIR/<namespace>--<name>@<version>.webc`, or any `*.webc` in `DIR` (indexed by its
    /// annotation).
    #[must_use]
    pub fn webc_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.places.push(Place::WebcDir { root: dir.into() });
        self
    }

    /// Read each registry's host configuration (containerd's `hosts.toml`: mirrors, TLS,
    /// headers) from exactly `dir` (`DIR/<host[:port]>/hosts.toml`, `DIR/_default/...`),
    /// instead of [`default_hosts_dirs`].
    #[must_use]
    pub fn hosts_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.hosts = Some(HostsDirs::pinned(dir));
        self
    }

    /// A host that may be spoken to over plain HTTP (loopback always may).
    #[must_use]
    pub fn insecure_host(mut self, host: impl Into<String>) -> Self {
        self.insecure.push(host.into());
        self
    }

    /// Use these credentials instead of reading the docker config file.
    #[must_use]
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// A credential for one registry host, on top of the others.
    #[must_use]
    pub fn credential(mut self, host: impl Into<String>, credential: Credential) -> Self {
        self.explicit.push((host.into(), credential));
        self
    }

    /// How much runs at once (default 16): HTTP requests in flight (tag lists, manifests
    /// and blobs alike, all registries together), and package volumes being unpacked.
    /// `jobs(1)` makes a load strictly one step at a time.
    ///
    /// Each download in flight holds one of the runtime's blocking threads while its body
    /// arrives: a runtime built with `max_blocking_threads` below `jobs` plus a few can
    /// stall HTTP/2 transfers for good (tokio's default, 512, is ample).
    #[must_use]
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs.max(1);
        self
    }

    /// The diff_id check policy (default [`Validation::Fail`]).
    #[must_use]
    pub fn validation(mut self, validation: Validation) -> Self {
        self.validation = validation;
        self
    }

    /// Make no network request at all: everything must be in the cache.
    #[must_use]
    pub fn offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// How long a cached tag → digest pointer or tag list is used without asking the
    /// registry again (default 5 minutes).
    #[must_use]
    pub fn ref_ttl(mut self, ttl: Duration) -> Self {
        self.ref_ttl = ttl;
        self
    }

    /// Bytes of small blobs kept in memory (default 64 MiB).
    #[must_use]
    pub fn memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = bytes;
        self
    }

    /// Where progress events go.
    #[must_use]
    pub fn progress(mut self, sink: ProgressSink) -> Self {
        self.progress = Some(sink);
        self
    }

    /// Start downloading and unpacking the blobs of likely picks while resolving (default
    /// on), so that a load overlaps its downloads with the solver's round trips. Turn it
    /// off when only the resolution is wanted: a guess the solver later drops costs one
    /// version's blobs.
    #[must_use]
    pub fn prefetch(mut self, prefetch: bool) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// Bounds on decompressing one layer (default: 64 GiB). gzip and zstd carry no trusted
    /// size, so this is what stops a decompression bomb.
    #[must_use]
    pub fn layer_limits(mut self, limits: vfs_overlay::LayerLimits) -> Self {
        self.layer_limits = limits;
        self
    }

    /// Whether seekable (zstd:chunked) layers are read before they are downloaded (default
    /// [`Lazy::Auto`](crate::Lazy::Auto)).
    #[must_use]
    pub fn lazy(mut self, lazy: crate::Lazy) -> Self {
        self.lazy = lazy;
        self
    }

    /// Whether a load that reads layers lazily first fetches, in the background, the files
    /// it is about to need (default on): the image's program (`Entrypoint`/`Cmd` on its
    /// `PATH`, and a `#!` interpreter), the absolute paths package commands pass as
    /// `main_args`, and the files earlier loads of the same layers read. Tools that read
    /// one named file and exit (`pkgload cat`) turn it off.
    #[must_use]
    pub fn lazy_prefetch(mut self, prefetch: bool) -> Self {
        self.lazy_prefetch = prefetch;
        self
    }

    /// The most bytes a seekable layer's table of contents may take, compressed or not
    /// (default 64 MiB; never more than the layer limit allows).
    #[must_use]
    pub fn toc_limit(mut self, bytes: u64) -> Self {
        self.toc_limit = bytes;
        self
    }

    /// How long a read of a lazily read file waits for it to be fetched before failing
    /// with `EIO` (default 300 s). The read blocks its thread meanwhile; a runtime that
    /// must answer sooner sets it lower.
    #[must_use]
    pub fn lazy_read_deadline(mut self, deadline: std::time::Duration) -> Self {
        self.lazy_deadline = deadline;
        self
    }

    /// HTTP settings (timeouts, retries, user agent); `jobs` (which sets the request
    /// limits) and insecure hosts given to this builder are applied on top.
    #[must_use]
    pub fn http(mut self, config: ClientConfig) -> Self {
        self.client = Some(config);
        self
    }

    /// Open the cache and build the HTTP client.
    pub async fn build(self) -> Result<crate::Loader> {
        let cache_dir = match &self.cache_dir {
            Some(dir) => dir.clone(),
            None => default_cache_dir().ok_or_else(|| LoadError::Io {
                action: "find a cache directory for",
                path: "pkgload".to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "set PKGLOAD_CACHE_DIR or HOME, or give a cache directory",
                ),
            })?,
        };
        let store = cache_core::Store::open_with(
            &cache_dir,
            cache_core::StoreOptions {
                memory_budget: self.memory_budget,
                ..cache_core::StoreOptions::default()
            },
        )
        .await?;
        let mut credentials = match &self.credentials {
            Some(c) => c.clone(),
            None => Credentials::from_docker_config()
                .map_err(|e| LoadError::fetch("reading docker credentials", e))?,
        };
        for (host, credential) in &self.explicit {
            credentials.insert(host, credential.clone());
        }
        let mut client = self.client.clone().unwrap_or_default();
        client.max_concurrent = self.jobs;
        client.max_per_host = self.jobs;
        client.insecure_hosts.extend(self.insecure.iter().cloned());
        client.hosts = self.hosts.clone().unwrap_or_else(default_hosts_dirs);
        let lazy =
            crate::lazy::LazyContext::new(client.clone(), credentials.clone(), self.lazy_deadline);
        let client = HttpClient::new(client, credentials)
            .map_err(|e| LoadError::fetch("starting the HTTP client", e))?;
        Ok(crate::Loader::from_parts(store, client, lazy, self))
    }
}

/// Where `hosts.toml` files are read by default: exactly `$PKGLOAD_HOSTS_DIR` when set,
/// else, per registry, the first of `$XDG_CONFIG_HOME/pkgload/certs.d` (`~/.config/...`;
/// `~/Library/Application Support/...` on macOS) and `/etc/containerd/certs.d` that has a
/// file for it.
pub fn default_hosts_dirs() -> HostsDirs {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty("PKGLOAD_HOSTS_DIR") {
        return HostsDirs::pinned(PathBuf::from(dir));
    }
    let home = non_empty("HOME").map(PathBuf::from);
    let config = if cfg!(target_os = "macos") {
        home.map(|h| h.join("Library/Application Support"))
    } else {
        non_empty("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| home.map(|h| h.join(".config")))
    };
    let mut dirs: Vec<PathBuf> = config
        .map(|c| c.join("pkgload/certs.d"))
        .into_iter()
        .collect();
    dirs.push(PathBuf::from("/etc/containerd/certs.d"));
    HostsDirs::search(dirs)
}

/// `$PKGLOAD_CACHE_DIR`, else `$XDG_CACHE_HOME/pkgload`, else `~/.cache/pkgload`
/// (`~/Library/Caches/pkgload` on macOS).
pub fn default_cache_dir() -> Option<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty("PKGLOAD_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if cfg!(target_os = "macos") {
        return non_empty("HOME").map(|h| Path::new(&h).join("Library/Caches/pkgload"));
    }
    non_empty("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| non_empty("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|base| base.join("pkgload"))
}

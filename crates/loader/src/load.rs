//! [`Loader`]: reference → resolution → fetch plan → parallel fetch → assembled filesystem.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use cache_core::{Blob, Digest, Store};
use futures::{StreamExt, TryStreamExt};
use resolve_graph::{
    Lockfile, PackageId, PackageName, Resolution, ResolveOptions, ResolvedGraph, ResolvedPackage,
};
use semver::Version;
use serde::Serialize;
use vfs_overlay::{FileSystem, MountPolicy, SubFs, Union, VfsPath};

use crate::artifact::{ArtifactKind, BlobRef};
use crate::config::{LoadEvent, LoaderBuilder, Validation};
use crate::dev::DevRoot;
use crate::direct::DirectPackages;
use crate::error::{LoadError, Result};
use crate::lazy::reads_lazily;
use crate::lazy_image::LazyLayer;
use crate::local::{LocalParts, LocalRoot};
use crate::prefetch::Prefetch;
use crate::reference::PackageRef;
use crate::remote::{Found, Located, Place, Remote, place_of};
use crate::source::{PlaceSource, TreeSource};
use crate::tree_snapshot::{SnapshotPlan, SnapshotTree};
use crate::volume::OpenedVolumes;
use crate::webc::{WebcFile, WebcRoot};
use crate::webc_dir::WebcDirSource;

/// Loads packages, images and wasm artifacts. Cheap to clone; share one per process.
#[derive(Debug, Clone)]
pub struct Loader {
    remote: Arc<Remote>,
    jobs: usize,
    validation: Validation,
    /// Where named packages are looked up, in order (empty: nowhere configured).
    places: Vec<Place>,
    layer_limits: vfs_overlay::LayerLimits,
    prefetch: bool,
    lazy: crate::Lazy,
    lazy_prefetch: bool,
    toc_limit: u64,
    lazy_context: Arc<crate::lazy::LazyContext>,
}

/// One package of a resolution, as printed by `pkgload resolve --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageInfo {
    /// The package name (for an image or wasm artifact: where it came from).
    pub name: String,
    /// Its version (for an image or wasm artifact: its tag or digest).
    pub version: String,
    /// The digest of its OCI manifest.
    pub digest: String,
}

/// The outcome of resolving a reference: which packages, and where their blobs are.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The root.
    pub root: PackageInfo,
    /// What the root is.
    pub kind: ArtifactKind,
    /// Every package, the root first, then by name.
    pub packages: Vec<PackageInfo>,
    /// The solver's result (packages only).
    pub resolution: Option<Resolution>,
    /// The dependency graph (packages only).
    pub graph: Option<ResolvedGraph>,
    /// Merged commands and mounts (packages only).
    pub merged: Option<ResolvedPackage>,
    pub(crate) root_found: Found,
    pub(crate) found: HashMap<PackageId, Found>,
    /// Downloads resolution started; the fetch joins them (dropping the last clone of this
    /// `Resolved` aborts what is still running).
    pub(crate) _prefetch: Option<Arc<Prefetch>>,
    /// Volumes opened so far (by the prefetch, then the load), each opened once.
    pub(crate) volumes: OpenedVolumes,
    /// Packages whose own volumes and atoms are local: a package under development, webc
    /// files.
    pub(crate) local: HashMap<PackageId, Arc<LocalRoot>>,
    /// Where the tree's snapshot goes once it is loaded (a webc tree by URL, resolved
    /// rather than read from its snapshot).
    pub(crate) snapshot: Option<SnapshotPlan>,
    /// What the assembled tree holds, when its snapshot says.
    pub(crate) kept_footprint: Option<vfs_overlay::Footprint>,
}

/// A command of the loaded tree, with its code.
#[derive(Debug, Clone)]
pub struct LoadedCommand {
    /// The command's name.
    pub name: String,
    /// The package that declares it.
    pub package: String,
    /// That package's version.
    pub version: String,
    /// Which runner executes it.
    pub runner: String,
    /// Runner settings, verbatim.
    pub annotations: BTreeMap<String, serde_json::Value>,
    /// The code (memory-mapped from the store).
    pub atom: Blob,
}

/// What a runtime gets: the tree's filesystem, commands and entrypoint.
#[derive(Debug, Clone)]
pub struct LoadedPackage {
    /// The root and every resolved package.
    pub resolved: Resolved,
    /// The assembled filesystem.
    pub fs: Arc<dyn FileSystem>,
    /// Every exposed command, by name.
    pub commands: Vec<LoadedCommand>,
    /// The command to run by default.
    pub entrypoint: Option<String>,
    /// Size of the assembled tree, from the volumes' indexes.
    pub footprint: vfs_overlay::Footprint,
    /// The background download of layers read lazily ([`crate::Lazy::Auto`]).
    fill: Option<crate::lazy_image::LazyFill>,
    /// The prefetch of files the tree is about to read lazily.
    prefetch: Option<crate::lazy_prefetch::LazyPrefetch>,
}

impl LoadedPackage {
    /// The background download of the layers this tree reads lazily, to wait for (it
    /// fails if a layer's whole content is not what its image config declares: then the
    /// files read from it are untrusted). `None` when nothing is read lazily, or with
    /// [`crate::Lazy::Only`].
    pub fn lazy_fill(&self) -> Option<crate::lazy_image::LazyFill> {
        self.fill.clone()
    }

    /// The prefetch of the files this tree is about to read lazily (its program, and what
    /// earlier loads of the same layers read), to wait for. `None` when nothing is read
    /// lazily, or the loader was built with `lazy_prefetch(false)`.
    pub fn lazy_prefetch(&self) -> Option<crate::lazy_prefetch::LazyPrefetch> {
        self.prefetch.clone()
    }
}

/// What [`Loader::fetch`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FetchReport {
    /// Blobs the tree needs.
    pub blobs: usize,
    /// Their total size.
    pub bytes: u64,
    /// How many were already in the cache.
    pub cached: usize,
}

impl Resolved {
    /// The lockfile of this resolution (packages only).
    pub fn lockfile(&self) -> Option<Lockfile> {
        self.resolution.as_ref().map(Lockfile::from_resolution)
    }

    /// Every blob the tree uses, deduplicated by digest, largest first: the volumes of fs
    /// mappings and the atoms of commands (an image's layers and config, a wasm artifact's
    /// module). Other layers of a package are never fetched.
    pub fn blobs(&self) -> Result<Vec<BlobRef>> {
        Ok(self.plan()?.into_iter().map(|p| p.blob).collect())
    }

    /// What [`blobs`](Self::blobs) lists, with where each blob lives and whether it is a
    /// package volume (which a load opens as soon as it is stored).
    pub(crate) fn plan(&self) -> Result<Vec<Planned>> {
        let mut wanted: Vec<Planned> = Vec::new();
        match (&self.kind, &self.merged) {
            (ArtifactKind::Package, Some(merged)) => {
                // Volumes first: a digest that is also an atom keeps its volume entry below.
                for mapping in merged.fs.values().filter(|m| !self.is_local(&m.package)) {
                    let (found, blob) =
                        self.layer_of(&mapping.package, Layer::Volume, &mapping.volume)?;
                    wanted.push(Planned::new(found.at.clone(), blob.clone(), true));
                }
                for command in merged
                    .commands
                    .values()
                    .filter(|c| !self.is_local(&c.atom_package))
                {
                    let (found, blob) =
                        self.layer_of(&command.atom_package, Layer::Atom, &command.atom)?;
                    wanted.push(Planned::new(found.at.clone(), blob.clone(), false));
                }
            }
            (ArtifactKind::Wasm, _) => {
                // The module only: a runwasi image's other layers are not part of it.
                let found = &self.root_found;
                wanted.extend(
                    found
                        .artifact
                        .wasm_module()
                        .map(|l| Planned::new(found.at.clone(), l.clone(), false)),
                );
            }
            (kind, _) => {
                // An image's config is part of the load (its diff_ids check the layers).
                let found = &self.root_found;
                let config = (*kind == ArtifactKind::Image).then_some(&found.artifact.config);
                wanted.extend(
                    found
                        .artifact
                        .layers
                        .iter()
                        .chain(config)
                        .map(|l| Planned::new(found.at.clone(), l.clone(), false)),
                );
            }
        }
        let mut seen = std::collections::HashSet::new();
        wanted.retain(|p| seen.insert(p.blob.digest));
        wanted.sort_by_key(|p| std::cmp::Reverse(p.blob.size));
        Ok(wanted)
    }

    /// True when `id`'s volumes and atoms are local (a package under development, a webc
    /// file), not OCI blobs.
    pub(crate) fn is_local(&self, id: &PackageId) -> bool {
        self.local.contains_key(id)
    }

    /// The volume or atom `name` of the resolved package `id`, and where that package lives.
    fn layer_of(&self, id: &PackageId, what: Layer, name: &str) -> Result<(&Found, &BlobRef)> {
        let found = self.found.get(id).ok_or_else(|| LoadError::Inconsistent {
            reference: id.to_string(),
            reason: "resolved, but its manifest was never read (a loader bug)".to_owned(),
        })?;
        let blob = match what {
            Layer::Volume => found.artifact.volume(name),
            Layer::Atom => found.artifact.atom(name),
        };
        let blob = blob.ok_or_else(|| LoadError::MissingLayer {
            package: id.to_string(),
            what: match what {
                Layer::Volume => "volume",
                Layer::Atom => "atom",
            },
            name: name.to_owned(),
            available: found.artifact.titles(),
        })?;
        Ok((found, blob))
    }
}

/// An opened volume.
type Volume = Arc<dyn FileSystem>;

/// One blob of a fetch plan.
pub(crate) struct Planned {
    pub(crate) at: Located,
    pub(crate) blob: BlobRef,
    /// A package volume: a load opens it as soon as it is stored.
    pub(crate) volume: bool,
}

impl Planned {
    fn new(at: Located, blob: BlobRef, volume: bool) -> Self {
        Planned { at, blob, volume }
    }
}

/// What [`Loader::fetch_and_open`] returns.
struct Fetched {
    report: FetchReport,
    blobs: HashMap<Digest, Blob>,
    /// Opened package volumes, by digest.
    volumes: HashMap<Digest, Volume>,
    /// The volumes among them read lazily.
    lazy: Vec<LazyLayer>,
}

/// Which kind of named layer a mapping or command refers to.
#[derive(Debug, Clone, Copy)]
enum Layer {
    Volume,
    Atom,
}

impl Loader {
    /// Start configuring a loader.
    pub fn builder() -> LoaderBuilder {
        LoaderBuilder::default()
    }

    pub(crate) fn from_parts(
        store: Store,
        client: fetch_http::HttpClient,
        lazy_context: crate::lazy::LazyContext,
        config: LoaderBuilder,
    ) -> Self {
        let remote = Remote {
            store,
            client,
            offline: config.offline,
            ttl: config.ref_ttl,
            progress: config.progress.clone(),
            platform: fetch_http::platform::PlatformMatcher::new(
                &fetch_http::platform::Platform::host(),
            ),
            unwritten_tags: Default::default(),
        };
        Loader {
            remote: Arc::new(remote),
            jobs: config.jobs,
            validation: config.validation,
            places: config.places,
            layer_limits: config.layer_limits,
            prefetch: config.prefetch,
            lazy: config.lazy,
            lazy_prefetch: config.lazy_prefetch,
            toc_limit: config.toc_limit,
            lazy_context: Arc::new(lazy_context),
        }
    }

    /// The HTTP client (to push, or to reuse its connections and credentials).
    pub fn http_client(&self) -> &fetch_http::HttpClient {
        &self.remote.client
    }

    /// The content-addressed cache this loader reads and fills.
    pub fn store(&self) -> &Store {
        &self.remote.store
    }

    /// Resolve `reference`; with `lock`, exactly the locked versions (no version query,
    /// manifests read by their locked digests).
    #[tracing::instrument(level = "info", skip(self, lock), fields(%reference))]
    pub async fn resolve(
        &self,
        reference: &PackageRef,
        lock: Option<&Lockfile>,
    ) -> Result<Resolved> {
        let started = std::time::Instant::now();
        let resolved = self.resolve_reference(reference, lock).await;
        // Tag lists not yet written beside a tag's digest are written now, whether or not
        // the resolution succeeded: the next load reuses them either way.
        self.remote.write_tag_lists().await?;
        let resolved = resolved?;
        tracing::info!(
            packages = resolved.packages.len(),
            ms = started.elapsed().as_millis() as u64,
            "resolved"
        );
        Ok(resolved)
    }

    async fn resolve_reference(
        &self,
        reference: &PackageRef,
        lock: Option<&Lockfile>,
    ) -> Result<Resolved> {
        let trust = lock.is_some();
        let direct = DirectPackages::new(self.remote.clone(), lock);
        // A root named by `namespace/name@REQ` takes its dependencies from the configured
        // places; one named by its registry or layout, from where it was found.
        let named = matches!(reference, PackageRef::Named { .. });
        let (at, tag) = match reference {
            PackageRef::Registry(r) => (
                Located::Registry {
                    registry: r.registry().to_owned(),
                    repository: r.repository().to_owned(),
                },
                Some(r.reference_str()),
            ),
            PackageRef::Layout(l) => (
                Located::Layout(l.dir().to_owned()),
                l.tag().map(str::to_owned),
            ),
            PackageRef::Named { name, req } => {
                let locked = lock
                    .filter(|l| l.root.name == *name && req.matches(&l.root.version))
                    .map(|l| l.root.version.clone());
                let (place, version) = self
                    .pick_named(reference, name, req, locked, &direct)
                    .await?;
                if let Place::WebcDir { root } = &place {
                    let source = WebcDirSource::new(root.clone(), &direct, HashMap::new());
                    let path = source.pick(name, req, Some(&version)).await?;
                    return self.resolve_webc(&path, lock, &direct).await;
                }
                (place.locate(name.as_str()), Some(version.to_string()))
            }
            PackageRef::Directory(dir) => {
                return self.resolve_directory(dir, lock, &direct).await;
            }
            PackageRef::WebcFile(path) => {
                return self.resolve_webc(path, lock, &direct).await;
            }
            PackageRef::WebcUrl { url, sha256 } => {
                let key = crate::tree_snapshot::key(url, sha256.as_ref(), &self.places);
                // Read before any URL is: see `tree_snapshot::write`.
                let mark = crate::direct::url_change_mark(&self.remote.store);
                if lock.is_none() {
                    let (store, ttl, offline) =
                        (&self.remote.store, self.remote.ttl, self.remote.offline);
                    if let Some(tree) = crate::tree_snapshot::read(store, &key, ttl, offline, &mark)
                    {
                        tracing::info!(%url, packages = tree.packages.len(), "read from the tree snapshot");
                        return resolved_from_snapshot(tree);
                    }
                }
                let file = direct.open_url(url, *sha256).await?;
                let root = WebcRoot::new(file, ".".into(), &self.places)?;
                let mut resolved = self.resolve_webc_root(root, lock, &direct).await?;
                if lock.is_none() {
                    let confirmed = direct.oldest_confirmation();
                    let changed = direct.saw_change();
                    resolved.snapshot = Some(SnapshotPlan::new(key, confirmed, mark, changed));
                }
                return Ok(resolved);
            }
        };
        let artifact = Arc::new(self.remote.artifact(&at, tag.as_deref(), trust).await?);
        let root_found = Found {
            at: at.clone(),
            artifact: artifact.clone(),
        };
        match artifact.kind {
            ArtifactKind::Webc => {
                let placed = placed_identity(&at, tag.as_deref());
                let file = WebcFile::from_artifact(&direct, &at, artifact, placed).await?;
                let places = match named {
                    true => self.places.clone(),
                    false => vec![place_of(&at, file.manifest.name.as_str())],
                };
                let local = file.local_root();
                let root = RootParts {
                    found: file.found,
                    places,
                    local: Some(local),
                    stand_in: false,
                };
                self.resolve_package(file.manifest, root, lock, &direct)
                    .await
            }
            ArtifactKind::Package => {
                let manifest = self.remote.package_config(&at, &artifact).await?;
                let places = match named {
                    true => self.places.clone(),
                    false => vec![place_of(&at, manifest.name.as_str())],
                };
                let root = RootParts {
                    found: root_found,
                    places,
                    local: None,
                    stand_in: false,
                };
                self.resolve_package(manifest, root, lock, &direct).await
            }
            kind => {
                let (name, version) = match (&at, reference) {
                    (
                        Located::Registry {
                            registry,
                            repository,
                        },
                        _,
                    ) => (
                        format!("{registry}/{repository}"),
                        tag.clone().unwrap_or_default(),
                    ),
                    (Located::Layout(dir), _) => (
                        format!("oci:{}", dir.display()),
                        tag.clone().unwrap_or_default(),
                    ),
                };
                let root = PackageInfo {
                    name,
                    version,
                    digest: artifact.digest.to_string(),
                };
                Ok(Resolved {
                    packages: vec![root.clone()],
                    root,
                    kind,
                    resolution: None,
                    graph: None,
                    merged: None,
                    root_found,
                    found: HashMap::new(),
                    local: HashMap::new(),
                    _prefetch: None,
                    volumes: OpenedVolumes::default(),
                    snapshot: None,
                    kept_footprint: None,
                })
            }
        }
    }

    /// The newest version of `name` matching `req` (`locked`, when a lockfile names one)
    /// over every configured place, and the first place, in order, that has it.
    async fn pick_named(
        &self,
        reference: &PackageRef,
        name: &PackageName,
        req: &semver::VersionReq,
        locked: Option<Version>,
        direct: &Arc<DirectPackages>,
    ) -> Result<(Place, Version)> {
        let invalid = |reason: String| LoadError::Reference {
            input: reference.to_string(),
            reason,
        };
        if self.places.is_empty() {
            return Err(invalid(
                "a name with a version requirement needs a registry: pass --registry \
                 HOST[/PREFIX] or --registry dir:DIR (or LoaderBuilder::registry)"
                    .to_owned(),
            ));
        }
        let listings = futures::future::join_all(self.places.iter().map(|place| async move {
            let source = PlaceSource::new(place.clone(), direct, HashMap::new());
            resolve_graph::Source::versions(&source, name).await
        }))
        .await;
        let mut failures = Vec::new();
        let mut candidates: Vec<(Version, usize)> = Vec::new();
        let mut seen = Vec::new();
        for (index, listing) in listings.into_iter().enumerate() {
            let place = self
                .places
                .get(index)
                .map(Place::describe)
                .unwrap_or_default();
            match listing {
                Ok(mut versions) => {
                    versions.sort();
                    let shown: Vec<String> = versions.iter().map(ToString::to_string).collect();
                    seen.push(match shown.is_empty() {
                        true => format!("{place} has none"),
                        false => format!("{place} has {}", shown.join(", ")),
                    });
                    candidates.extend(versions.into_iter().map(|v| (v, index)));
                }
                Err(e) => failures.push(e),
            }
        }
        let wanted = |v: &Version| match &locked {
            Some(locked) => v == locked,
            None => req.matches(v),
        };
        // Newest first; among equals, the earliest place.
        let pick = candidates
            .into_iter()
            .filter(|(v, _)| wanted(v))
            .max_by(|(a, i), (b, j)| a.cmp(b).then(j.cmp(i)));
        match pick {
            Some((version, index)) => {
                for failure in &failures {
                    tracing::warn!(%failure, "a place could not answer; another did");
                }
                let place = self
                    .places
                    .get(index)
                    .cloned()
                    .ok_or_else(|| invalid("the place that answered is gone".to_owned()))?;
                Ok((place, version))
            }
            None => {
                seen.extend(failures.iter().map(ToString::to_string));
                Err(invalid(format!(
                    "no version of {name} matching {req} ({})",
                    seen.join("; ")
                )))
            }
        }
    }

    /// Resolve a package under development: its config from `pkgload.toml`, its
    /// dependencies from the configured registry (or beside it, when it has none).
    async fn resolve_directory(
        &self,
        dir: &std::path::Path,
        lock: Option<&Lockfile>,
        direct: &Arc<DirectPackages>,
    ) -> Result<Resolved> {
        let DevRoot {
            package,
            found,
            places,
        } = DevRoot::open(dir, &self.places).await?;
        let manifest = package.manifest.clone();
        let root = RootParts {
            found,
            places,
            local: Some(LocalRoot::Directory(package)),
            // Without a registry, the package directory's place is a stand-in.
            stand_in: self.places.is_empty(),
        };
        self.resolve_package(manifest, root, lock, direct).await
    }

    /// Resolve a webc file: its package from the container, its dependencies from the
    /// configured registry.
    async fn resolve_webc(
        &self,
        path: &std::path::Path,
        lock: Option<&Lockfile>,
        direct: &Arc<DirectPackages>,
    ) -> Result<Resolved> {
        let file = direct.open_file(path).await?;
        let beside = path
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .to_owned();
        let root = WebcRoot::new(file, beside, &self.places)?;
        self.resolve_webc_root(root, lock, direct).await
    }

    async fn resolve_webc_root(
        &self,
        root: WebcRoot,
        lock: Option<&Lockfile>,
        direct: &Arc<DirectPackages>,
    ) -> Result<Resolved> {
        let WebcRoot { file, places } = root;
        let local = file.local_root();
        let root = RootParts {
            found: file.found,
            places,
            local: Some(local),
            // Without a registry, the webc file's place is a stand-in.
            stand_in: self.places.is_empty(),
        };
        self.resolve_package(file.manifest, root, lock, direct)
            .await
    }

    /// Resolve the dependencies of a root package whose manifest is already known;
    /// `local_root` holds its own volumes and atoms when they are not OCI blobs.
    async fn resolve_package(
        &self,
        manifest: resolve_graph::Manifest,
        root: RootParts,
        lock: Option<&Lockfile>,
        direct: &Arc<DirectPackages>,
    ) -> Result<Resolved> {
        let RootParts {
            found: root_found,
            places,
            local: local_root,
            stand_in,
        } = root;
        let root_id = manifest.id();
        let mut local = HashMap::new();
        if let Some(root) = local_root {
            local.insert(root_id.clone(), Arc::new(root));
        }
        let pinned: HashMap<PackageId, Digest> = lock
            .map(|l| {
                l.packages
                    .iter()
                    .filter_map(|p| {
                        let digest = Digest::parse(&p.digest).ok()?;
                        Some((PackageId::new(p.name.clone(), p.version.clone()), digest))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let volumes = OpenedVolumes::default();
        // One prefetcher for every registry place: the root's blobs start downloading now.
        // Not when the root's blobs are stored already: the tree was loaded before, and the
        // only downloads left to guess would be of versions the solver passed over (the
        // newest of a name it did not choose), which a load that gave up on them left
        // unfinished: a warm load would fetch them again every time.
        let registries = places.iter().any(|p| !matches!(p, Place::WebcDir { .. }));
        let warm = root_found
            .artifact
            .layers
            .iter()
            .all(|l| self.remote.store.contains(&l.digest));
        let prefetch = (self.prefetch && registries && !warm).then(|| {
            let started = Arc::new(Prefetch::new(
                self.remote.clone(),
                self.layer_limits,
                self.jobs,
                self.lazy,
                volumes.clone(),
            ));
            started.package(&root_found.at, &root_found.artifact, &manifest);
            started
        });
        let sources = places
            .into_iter()
            .map(|place| {
                let mut source = PlaceSource::new(place, direct, pinned.clone());
                if let PlaceSource::Oci(oci) = &mut source {
                    if let Some(prefetch) = &prefetch {
                        oci.set_prefetch(prefetch.clone());
                    }
                    oci.remember(root_id.clone(), root_found.clone());
                }
                source
            })
            .collect();
        let source = TreeSource::new(direct.clone(), sources, stand_in);
        let resolution = match lock {
            Some(lock) => resolve_graph::resolve_locked(&source, &manifest, lock).await?,
            None => resolve_graph::resolve(&source, &manifest, &ResolveOptions::default())
                .await
                .map_err(|source| LoadError::Resolve {
                    root: root_id.to_string(),
                    source,
                })?,
        };
        let mut found = HashMap::new();
        found.insert(root_id.clone(), root_found.clone());
        for (name, summary) in &resolution.packages {
            let id = PackageId::new(name.clone(), summary.manifest.version.clone());
            if let Some((f, parts)) = source.found(&id) {
                found.insert(id.clone(), f);
                if let Some(parts) = parts {
                    local.insert(id.clone(), Arc::new(parts));
                }
            }
        }
        let mut resolved = resolved_package(resolution, root_found, found, local)?;
        resolved._prefetch = prefetch;
        resolved.volumes = volumes;
        Ok(resolved)
    }

    /// Fetch every blob the resolved tree uses, `jobs` at a time, largest first; blobs in
    /// the cache cost nothing.
    pub async fn fetch(&self, resolved: &Resolved) -> Result<(FetchReport, HashMap<Digest, Blob>)> {
        let fetched = self
            .fetch_and_open(resolved, false, &HashSet::new())
            .await?;
        Ok((fetched.report, fetched.blobs))
    }

    /// [`fetch`](Self::fetch), and with `open`, each package volume opened (decompressed
    /// and indexed on first use) as soon as it is in the store. Opening inside the same
    /// `jobs`-bounded task overlaps local work with the downloads still in flight, instead
    /// of leaving it all for after the last byte.
    async fn fetch_and_open(
        &self,
        resolved: &Resolved,
        open: bool,
        lazy: &HashSet<Digest>,
    ) -> Result<Fetched> {
        let mut plan = resolved.plan()?;
        plan.retain(|p| !lazy.contains(&p.blob.digest));
        let cached = plan
            .iter()
            .filter(|p| self.remote.store.contains(&p.blob.digest))
            .count();
        let report = FetchReport {
            blobs: plan.len(),
            bytes: plan.iter().map(|p| p.blob.size).sum(),
            cached,
        };
        if let Some(sink) = &self.remote.progress {
            sink(LoadEvent::Planned {
                blobs: report.blobs,
                bytes: report.bytes,
                cached,
            });
        }
        let toc_limit = self.toc_limit.min(self.layer_limits.max_uncompressed);
        type Done = (Digest, Option<Blob>, Option<Volume>, Option<LazyLayer>);
        let done: Vec<Done> = futures::stream::iter(plan)
            .map(|Planned { at, blob, volume }| async move {
                // A seekable volume is opened from its table, its files fetched when read.
                if open
                    && volume
                    && reads_lazily(self.lazy, &self.remote, &at, &blob)
                    && let Some(Ok(position)) = &blob.toc
                {
                    let request = self.remote.blob_request(&at, &blob)?;
                    let opened = self
                        .lazy_context
                        .open(&self.remote, request, &blob, position, toc_limit)
                        .await?;
                    if let Some(opened) = opened {
                        let digest = blob.digest;
                        let v: Volume = Arc::new(opened.volume.clone());
                        let lazy = LazyLayer::new(at, blob, None, opened);
                        return Ok((digest, None, Some(v), Some(lazy)));
                    }
                }
                let fetched = self.remote.blob(&at, &blob).await?;
                let opened = match open && volume {
                    true => Some(self.open_volume(resolved, &blob).await?),
                    false => None,
                };
                Ok::<_, LoadError>((blob.digest, Some(fetched), opened, None))
            })
            .buffer_unordered(self.jobs)
            .try_collect()
            .await?;
        let mut fetched = Fetched {
            report,
            blobs: HashMap::with_capacity(done.len()),
            volumes: HashMap::new(),
            lazy: Vec::new(),
        };
        for (digest, blob, opened, lazy) in done {
            if let Some(blob) = blob {
                fetched.blobs.insert(digest, blob);
            }
            if let Some(volume) = opened {
                fetched.volumes.insert(digest, volume);
            }
            fetched.lazy.extend(lazy);
        }
        Ok(fetched)
    }

    /// Resolve, fetch and assemble.
    pub async fn load(
        &self,
        reference: &PackageRef,
        lock: Option<&Lockfile>,
    ) -> Result<LoadedPackage> {
        let resolved = self.resolve(reference, lock).await?;
        self.load_resolved(resolved).await
    }

    /// Fetch and assemble an already resolved tree.
    pub async fn load_resolved(&self, resolved: Resolved) -> Result<LoadedPackage> {
        let started = std::time::Instant::now();
        let open = resolved.kind == ArtifactKind::Package;
        let lazy = match resolved.kind {
            ArtifactKind::Image => self.lazy_image().lazy_layers(&resolved.root_found),
            _ => HashSet::new(),
        };
        let Fetched {
            report,
            blobs,
            volumes,
            lazy: lazy_volumes,
        } = self.fetch_and_open(&resolved, open, &lazy).await?;
        tracing::info!(
            blobs = report.blobs,
            cached = report.cached,
            bytes = report.bytes,
            ms = started.elapsed().as_millis() as u64,
            "fetched"
        );
        let started = std::time::Instant::now();
        let local = match &resolved.merged {
            Some(merged) if !resolved.local.is_empty() => {
                let mut volumes: Vec<_> = merged
                    .fs
                    .values()
                    .filter(|m| resolved.is_local(&m.package))
                    .map(|m| (m.package.clone(), m.volume.clone()))
                    .collect();
                volumes.sort();
                volumes.dedup();
                let mut atoms: Vec<_> = merged
                    .commands
                    .values()
                    .filter(|c| resolved.is_local(&c.atom_package))
                    .map(|c| (c.atom_package.clone(), c.atom.clone()))
                    .collect();
                atoms.sort();
                atoms.dedup();
                LocalParts::open(self.store(), &resolved.local, volumes, atoms).await?
            }
            _ => LocalParts::default(),
        };
        let (fs, lazy_layers): (Arc<dyn FileSystem>, _) = match resolved.kind {
            ArtifactKind::Image if !lazy.is_empty() => {
                self.lazy_image()
                    .image_fs(&resolved.root_found, &lazy)
                    .await?
            }
            ArtifactKind::Image => (self.image_fs(&resolved).await?, Vec::new()),
            ArtifactKind::Wasm => (Arc::new(Union::new()), Vec::new()),
            ArtifactKind::Package | ArtifactKind::Webc => (
                self.package_fs(&resolved, &local, volumes).await?,
                lazy_volumes,
            ),
        };
        let commands = self.commands(&resolved, &blobs, &local)?;
        let prefetch = match lazy_layers.first() {
            Some(first) if self.lazy_prefetch => {
                let program = match resolved.kind {
                    // Best effort, like all of the prefetch.
                    ArtifactKind::Image => self
                        .remote
                        .image_program(&resolved.root_found)
                        .await
                        .unwrap_or_default(),
                    _ => crate::lazy_prefetch::command_files(&commands),
                };
                Some(crate::lazy_prefetch::LazyPrefetch::start(
                    &first.runtime,
                    lazy_layers.iter().map(|l| l.prefetch.clone()).collect(),
                    fs.clone(),
                    program,
                    self.jobs,
                ))
            }
            _ => None,
        };
        // Offline, there is nothing to download the rest from.
        let fill =
            (self.lazy == crate::Lazy::Auto && !self.remote.offline && !lazy_layers.is_empty())
                .then(|| self.lazy_image().start_fill(lazy_layers, prefetch.clone()));
        let entrypoint = match (&resolved.merged, resolved.kind) {
            (Some(m), _) => m.entrypoint.clone(),
            (None, ArtifactKind::Wasm) => commands.first().map(|c| c.name.clone()),
            (None, _) => None,
        };
        let footprint = match resolved.kept_footprint {
            Some(kept) => kept,
            None => footprint(fs.clone()).await?,
        };
        if let (Some(plan), Some(resolution)) = (&resolved.snapshot, &resolved.resolution) {
            let store = &self.remote.store;
            let (found, opened) = (&resolved.found, &local.opened);
            let written =
                crate::tree_snapshot::write(store, plan, resolution, found, opened, footprint)
                    .await;
            if let Err(error) = written {
                tracing::warn!(%error, "could not keep the tree snapshot; the next load resolves again");
            }
        }
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            "assembled the filesystem"
        );
        Ok(LoadedPackage {
            resolved,
            fs,
            commands,
            entrypoint,
            footprint,
            fill,
            prefetch,
        })
    }

    /// The union of the packages' mappings; `local` holds the volumes of a package under
    /// development.
    async fn package_fs(
        &self,
        resolved: &Resolved,
        local: &LocalParts,
        mut volumes: HashMap<Digest, Volume>,
    ) -> Result<Arc<dyn FileSystem>> {
        let Some(merged) = &resolved.merged else {
            return Ok(Arc::new(Union::new()));
        };
        let union = Union::new();
        for mapping in merged.fs.values() {
            let local_volume = resolved
                .is_local(&mapping.package)
                .then(|| {
                    local
                        .volumes
                        .get(&(mapping.package.clone(), mapping.volume.clone()))
                })
                .flatten();
            let volume: Arc<dyn FileSystem> = match local_volume {
                Some(fs) => fs.clone(),
                None => {
                    let (_, blob) =
                        resolved.layer_of(&mapping.package, Layer::Volume, &mapping.volume)?;
                    match volumes.get(&blob.digest) {
                        Some(v) => v.clone(),
                        None => {
                            let v = self.open_volume(resolved, blob).await?;
                            volumes.insert(blob.digest, v.clone());
                            v
                        }
                    }
                }
            };
            let sub = vfs_path(mapping.path.as_str())?;
            let shown: Arc<dyn FileSystem> = if sub.is_root() {
                volume
            } else {
                Arc::new(SubFs::new(volume, &sub)?)
            };
            union.mount(&vfs_path(mapping.mount.as_str())?, shown, MountPolicy::Fail)?;
        }
        Ok(Arc::new(union))
    }

    fn lazy_image(&self) -> crate::lazy_image::LazyImage<'_> {
        crate::lazy_image::LazyImage {
            remote: &self.remote,
            context: &self.lazy_context,
            lazy: self.lazy,
            jobs: self.jobs,
            validation: self.validation,
            layer_limits: self.layer_limits,
            toc_limit: self.toc_limit,
        }
    }

    async fn open_volume(&self, resolved: &Resolved, blob: &BlobRef) -> Result<Volume> {
        let volume = resolved
            .volumes
            .open(&self.remote.store, blob, &self.layer_limits)
            .await
            .map_err(|source| LoadError::Layer {
                digest: blob.digest,
                source,
            })?;
        Ok(volume)
    }

    async fn image_fs(&self, resolved: &Resolved) -> Result<Arc<dyn FileSystem>> {
        let found = &resolved.root_found;
        let diff_ids = self.remote.layer_diff_ids(found, self.validation).await?;
        let specs = |with_ids: bool| -> Vec<vfs_overlay::LayerSpec> {
            found
                .artifact
                .layers
                .iter()
                .enumerate()
                .map(|(i, l)| vfs_overlay::LayerSpec {
                    digest: l.digest,
                    media_type: l.media_type.clone(),
                    diff_id: if with_ids {
                        diff_ids.get(i).copied()
                    } else {
                        None
                    },
                })
                .collect()
        };
        let limits = self.layer_limits;
        let opened =
            vfs_overlay::open_image_layers(&self.remote.store, &specs(true), &limits).await;
        let overlay = match (opened, self.validation) {
            (Ok(o), _) => o,
            (Err(e @ vfs_overlay::LayerError::DiffIdMismatch { .. }), Validation::Warn) => {
                tracing::warn!(reference = %found.artifact.reference, error = %e, "diff_id mismatch; using the layer anyway (validation: warn)");
                vfs_overlay::open_image_layers(&self.remote.store, &specs(false), &limits)
                    .await
                    .map_err(|source| layer_error(found, source))?
            }
            (Err(e), _) => return Err(layer_error(found, e)),
        };
        let union = Union::new();
        union.mount(&VfsPath::root(), Arc::new(overlay), MountPolicy::Fail)?;
        Ok(Arc::new(union))
    }

    fn commands(
        &self,
        resolved: &Resolved,
        blobs: &HashMap<Digest, Blob>,
        local: &LocalParts,
    ) -> Result<Vec<LoadedCommand>> {
        let blob_of = |b: &BlobRef| -> Result<Blob> {
            blobs
                .get(&b.digest)
                .cloned()
                .ok_or_else(|| LoadError::Inconsistent {
                    reference: b.digest.to_string(),
                    reason: "planned but not fetched (a loader bug)".to_owned(),
                })
        };
        match (&resolved.merged, resolved.kind) {
            (Some(merged), _) => merged
                .commands
                .values()
                .map(|c| {
                    let local_atom = local.atoms.get(&(c.atom_package.clone(), c.atom.clone()));
                    let atom = match local_atom {
                        Some(blob) => blob.clone(),
                        _ => blob_of(resolved.layer_of(&c.atom_package, Layer::Atom, &c.atom)?.1)?,
                    };
                    Ok(LoadedCommand {
                        name: c.name.clone(),
                        package: c.declared_by.name.to_string(),
                        version: c.declared_by.version.to_string(),
                        runner: c.runner.clone(),
                        annotations: c.annotations.clone(),
                        atom,
                    })
                })
                .collect(),
            (None, ArtifactKind::Wasm) => {
                let found = &resolved.root_found;
                let Some(layer) = found.artifact.wasm_module() else {
                    return Ok(Vec::new());
                };
                let name = layer.title.clone().unwrap_or_else(|| {
                    let base = resolved.root.name.rsplit('/').next().unwrap_or("main");
                    base.trim_end_matches(".wasm").to_owned()
                });
                Ok(vec![LoadedCommand {
                    name,
                    package: resolved.root.name.clone(),
                    version: resolved.root.version.clone(),
                    runner: "wasm".to_owned(),
                    annotations: BTreeMap::new(),
                    atom: blob_of(layer)?,
                }])
            }
            (None, _) => Ok(Vec::new()),
        }
    }
}

/// The root of a resolution: where it was found, where its named dependencies are looked
/// up, and its own parts when they are not OCI blobs.
struct RootParts {
    found: Found,
    /// Where its named dependencies are looked up, in order.
    places: Vec<Place>,
    local: Option<LocalRoot>,
    /// `places` stand in for a registry nobody configured (see `TreeSource`).
    stand_in: bool,
}

fn layer_error(found: &Found, source: vfs_overlay::LayerError) -> LoadError {
    LoadError::Layer {
        digest: found.artifact.digest,
        source,
    }
}

/// The [`Resolved`] of a package tree: its graph and merged view checked, `found` and
/// `local` saying where each package's parts are.
fn resolved_package(
    resolution: Resolution,
    root_found: Found,
    found: HashMap<PackageId, Found>,
    local: HashMap<PackageId, Arc<LocalRoot>>,
) -> Result<Resolved> {
    let root_id = resolution.root.id();
    let graph = ResolvedGraph::new(&resolution)?;
    if let Some(cycle) = graph.find_cycle() {
        return Err(LoadError::Graph(resolve_graph::GraphError::Cycle(cycle)));
    }
    let merged = ResolvedPackage::new(&resolution).map_err(|source| LoadError::Merge {
        root: root_id.to_string(),
        source,
    })?;
    let root = PackageInfo {
        name: root_id.name.to_string(),
        version: root_id.version.to_string(),
        digest: root_found.artifact.digest.to_string(),
    };
    let mut packages = vec![root.clone()];
    packages.extend(
        resolution
            .packages
            .iter()
            .map(|(name, summary)| PackageInfo {
                name: name.to_string(),
                version: summary.manifest.version.to_string(),
                digest: summary.digest.clone(),
            }),
    );
    Ok(Resolved {
        root,
        packages,
        kind: ArtifactKind::Package,
        resolution: Some(resolution),
        graph: Some(graph),
        merged: Some(merged),
        root_found,
        found,
        local,
        _prefetch: None,
        volumes: OpenedVolumes::default(),
        snapshot: None,
        kept_footprint: None,
    })
}

/// The [`Resolved`] of a tree read back from its snapshot.
fn resolved_from_snapshot(tree: SnapshotTree) -> Result<Resolved> {
    let SnapshotTree {
        packages,
        rounds,
        footprint,
    } = tree;
    let mut found = HashMap::with_capacity(packages.len());
    let mut local = HashMap::with_capacity(packages.len());
    let mut root = None;
    let mut solution = BTreeMap::new();
    for package in packages {
        let id = package.summary.manifest.id();
        found.insert(id.clone(), package.found.clone());
        local.insert(id, Arc::new(package.local));
        match root {
            None => root = Some((package.summary.manifest, package.found)),
            Some(_) => {
                solution.insert(package.summary.manifest.name.clone(), package.summary);
            }
        }
    }
    let (root, root_found) = root.ok_or_else(|| LoadError::Inconsistent {
        reference: "tree snapshot".to_owned(),
        reason: "no packages".to_owned(),
    })?;
    let resolution = Resolution {
        root,
        packages: solution,
        rounds,
        warnings: Vec::new(),
    };
    let mut resolved = resolved_package(resolution, root_found, found, local)?;
    resolved.kept_footprint = Some(footprint);
    Ok(resolved)
}

/// The `namespace/name` and version a repository and tag spell (`…/acme/app:1.2.0`), if
/// they do.
pub(crate) fn placed_identity(
    at: &Located,
    tag: Option<&str>,
) -> Option<(resolve_graph::PackageName, semver::Version)> {
    let version = semver::Version::parse(tag?).ok()?;
    let path = match at {
        Located::Registry { repository, .. } => repository.clone(),
        Located::Layout(dir) => dir.to_str()?.to_owned(),
    };
    let mut parts = path.rsplit('/');
    let (name, namespace) = (parts.next()?, parts.next()?);
    let name = resolve_graph::PackageName::new(&format!("{namespace}/{name}")).ok()?;
    Some((name, version))
}

pub(crate) fn vfs_path(path: &str) -> Result<VfsPath> {
    VfsPath::new(path).map_err(LoadError::Vfs)
}

/// The footprint, computed off the runtime's threads (a union may walk metadata).
pub(crate) async fn footprint(fs: Arc<dyn FileSystem>) -> Result<vfs_overlay::Footprint> {
    tokio::task::spawn_blocking(move || fs.footprint())
        .await
        .map_err(|e| LoadError::Inconsistent {
            reference: "footprint".to_owned(),
            reason: format!("worker failed: {e}"),
        })?
        .map_err(LoadError::Vfs)
}

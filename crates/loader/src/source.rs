//! [`TreeSource`], the solver's [`Source`] for one resolution, and [`PackageSource`], the
//! part of it over a registry or a directory of layouts.
//!
//! A package's versions are its repository's semver tags; a version's summary is its
//! package config, read through [`Remote`] (so cache-first). Every artifact met on the way
//! is remembered, so the fetch that follows resolution knows each package's layers
//! without asking again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cache_core::Digest;
use futures::future::{BoxFuture, FutureExt, join_all};
use resolve_graph::{GLOBAL_NAMESPACE, PackageId, PackageName, Source, SourceError, Summary};
use semver::Version;

use crate::artifact::ArtifactKind;
use crate::direct::DirectPackages;
use crate::error::LoadError;
use crate::local::LocalRoot;
use crate::prefetch::Prefetch;
use crate::remote::{Found, Place, Remote};
use crate::webc::WebcFile;
use crate::webc_dir::WebcDirSource;

/// The source one resolution reads: the packages named by URL or path first, then the
/// places (registries and layouts, directories of webc files) as one source, in order.
///
/// A name's versions are the union of every place's; a version's summary comes from the
/// first place, in order, that listed it. A place that fails while another answers is a
/// warning, not an error (a registry that is down does not hide a directory's packages).
pub(crate) struct TreeSource {
    direct: Arc<DirectPackages>,
    places: Vec<PlaceSource>,
    /// The places are a stand-in (no registry was configured and the root named none): a
    /// name they would be asked for is an error saying how to configure one.
    stand_in: bool,
    /// Which places listed which versions of each name.
    listed: Mutex<HashMap<PackageName, Vec<Listing>>>,
}

/// The versions one place (by index) listed for a name.
type Listing = (usize, Vec<Version>);

/// One place where named packages are found.
pub(crate) enum PlaceSource {
    Oci(PackageSource),
    WebcDir(WebcDirSource),
}

impl PlaceSource {
    pub(crate) fn new(
        place: Place,
        direct: &Arc<DirectPackages>,
        pinned: HashMap<PackageId, Digest>,
    ) -> PlaceSource {
        match place {
            Place::WebcDir { root } => {
                PlaceSource::WebcDir(WebcDirSource::new(root, direct, pinned))
            }
            place => PlaceSource::Oci(PackageSource::new(direct, place, pinned)),
        }
    }

    fn found(&self, id: &PackageId) -> Option<(Found, Option<LocalRoot>)> {
        match self {
            PlaceSource::Oci(s) => s.found(id).map(|f| (f, s.local(id))),
            PlaceSource::WebcDir(s) => s.found(id).map(|(f, local)| (f, Some(local))),
        }
    }
}

impl Source for PlaceSource {
    fn versions<'a>(
        &'a self,
        name: &'a PackageName,
    ) -> BoxFuture<'a, Result<Vec<Version>, SourceError>> {
        match self {
            PlaceSource::Oci(s) => s.versions(name),
            PlaceSource::WebcDir(s) => s.versions(name),
        }
    }

    fn summary<'a>(&'a self, id: &'a PackageId) -> BoxFuture<'a, Result<Summary, SourceError>> {
        match self {
            PlaceSource::Oci(s) => s.summary(id),
            PlaceSource::WebcDir(s) => s.summary(id),
        }
    }
}

impl TreeSource {
    pub(crate) fn new(
        direct: Arc<DirectPackages>,
        places: Vec<PlaceSource>,
        stand_in: bool,
    ) -> Self {
        TreeSource {
            direct,
            places,
            stand_in,
            listed: Mutex::new(HashMap::new()),
        }
    }

    /// Where the package `id` was found, and its local parts when they are not OCI blobs.
    pub(crate) fn found(&self, id: &PackageId) -> Option<(Found, Option<LocalRoot>)> {
        if let Some((found, local)) = self.direct.found(id) {
            return Some((found, Some(local)));
        }
        self.places.iter().find_map(|place| place.found(id))
    }

    /// The places to ask for `id`'s summary, in order: those that listed its version, or,
    /// when its name was never listed (a locked load asks for summaries directly), all.
    fn places_for(&self, id: &PackageId) -> Vec<usize> {
        let listed = self.listed.lock().unwrap_or_else(|p| p.into_inner());
        match listed.get(&id.name) {
            Some(listings) => listings
                .iter()
                .filter(|(_, versions)| versions.contains(&id.version))
                .map(|(index, _)| *index)
                .collect(),
            None => (0..self.places.len()).collect(),
        }
    }
}

impl Source for TreeSource {
    fn versions<'a>(
        &'a self,
        name: &'a PackageName,
    ) -> BoxFuture<'a, Result<Vec<Version>, SourceError>> {
        if let Some(versions) = self.direct.versions(name) {
            return futures::future::ready(Ok(versions)).boxed();
        }
        if self.stand_in {
            return futures::future::ready(Err(SourceError::Failed {
                origin: "no registry is configured; the lookup".to_owned(),
                package: name.to_string(),
                message: "a package named by URL or path depends on it by name; say where \
                          named packages come from with --registry HOST[/PREFIX] or \
                          --registry dir:DIR (or LoaderBuilder::registry)"
                    .to_owned(),
            }))
            .boxed();
        }
        async move {
            let answers = join_all(self.places.iter().map(|p| p.versions(name))).await;
            let mut listings = Vec::new();
            let mut failures = Vec::new();
            for (index, answer) in answers.into_iter().enumerate() {
                match answer {
                    Ok(versions) => listings.push((index, versions)),
                    Err(e) => failures.push(e),
                }
            }
            let mut union: Vec<Version> = listings
                .iter()
                .flat_map(|(_, versions)| versions.iter().cloned())
                .collect();
            if union.is_empty()
                && let Some(failure) = failures.first()
            {
                return Err(failure.clone());
            }
            for failure in &failures {
                tracing::warn!(%failure, "a place could not list versions; another did");
            }
            union.sort();
            union.dedup();
            self.listed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.clone(), listings);
            Ok(union)
        }
        .boxed()
    }

    fn summary<'a>(&'a self, id: &'a PackageId) -> BoxFuture<'a, Result<Summary, SourceError>> {
        async move {
            if let Some(summary) = self.direct.summary(id).await {
                return summary.map_err(|e| SourceError::Failed {
                    origin: "reading the file named by URL or path".to_owned(),
                    package: id.to_string(),
                    message: e.to_string(),
                });
            }
            let mut first_failure = None;
            for index in self.places_for(id) {
                let Some(place) = self.places.get(index) else {
                    continue;
                };
                match place.summary(id).await {
                    Ok(summary) => return Ok(summary),
                    Err(e) => {
                        first_failure.get_or_insert(e);
                    }
                }
            }
            Err(first_failure.unwrap_or_else(|| SourceError::NotFound {
                origin: "the configured places".to_owned(),
                package: id.to_string(),
            }))
        }
        .boxed()
    }
}

pub(crate) struct PackageSource {
    remote: Arc<Remote>,
    /// Packages named by URL or path (a webc package's dependencies may be).
    direct: Arc<DirectPackages>,
    place: Place,
    /// Manifest digests a lockfile pins: summaries are read by digest, never by tag.
    pinned: HashMap<PackageId, Digest>,
    found: Mutex<HashMap<PackageId, Found>>,
    /// Webc packages met (their containers serve their volumes and atoms).
    webc: Mutex<HashMap<PackageId, LocalRoot>>,
    /// Where the blobs of likely picks start downloading (see `prefetch.rs`).
    prefetch: Option<Arc<Prefetch>>,
    /// The newest version of each name listed so far: the solver's first choice.
    newest: Mutex<HashMap<PackageName, Version>>,
}

impl PackageSource {
    pub(crate) fn new(
        direct: &Arc<DirectPackages>,
        place: Place,
        pinned: HashMap<PackageId, Digest>,
    ) -> Self {
        PackageSource {
            remote: direct.remote().clone(),
            direct: direct.clone(),
            place,
            pinned,
            found: Mutex::new(HashMap::new()),
            webc: Mutex::new(HashMap::new()),
            prefetch: None,
            newest: Mutex::new(HashMap::new()),
        }
    }

    /// Start downloading the blobs of each package that is likely to be picked as soon as
    /// its config is read.
    pub(crate) fn set_prefetch(&mut self, prefetch: Arc<Prefetch>) {
        self.prefetch = Some(prefetch);
    }

    pub(crate) fn remember(&self, id: PackageId, found: Found) {
        self.found
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, found);
    }

    pub(crate) fn found(&self, id: &PackageId) -> Option<Found> {
        self.found
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// The container of `id`, when it is a webc package.
    pub(crate) fn local(&self, id: &PackageId) -> Option<LocalRoot> {
        self.webc
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    fn failed(&self, package: String, e: &LoadError) -> SourceError {
        SourceError::Failed {
            origin: self.place.describe(),
            package,
            message: e.to_string(),
        }
    }

    async fn summarize(&self, id: &PackageId) -> Result<Summary, LoadError> {
        let at = self.place.locate(id.name.as_str());
        let pinned = self.pinned.get(id).map(ToString::to_string);
        let reference = pinned.clone().unwrap_or_else(|| id.version.to_string());
        let artifact = self
            .remote
            .artifact(&at, Some(&reference), pinned.is_some())
            .await?;
        if artifact.kind == ArtifactKind::Webc {
            let placed = Some((id.name.clone(), id.version.clone()));
            let file =
                WebcFile::from_artifact(&self.direct, &at, Arc::new(artifact), placed).await?;
            let summary = Summary {
                manifest: file.manifest.clone(),
                digest: file.found.artifact.digest.to_string(),
                source: at.describe(),
            };
            self.webc
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.clone(), file.local_root());
            self.remember(id.clone(), file.found);
            return Ok(summary);
        }
        if artifact.kind != ArtifactKind::Package {
            return Err(LoadError::unsupported(
                artifact.reference.clone(),
                "a dependency must be a pkgload package, this is not one",
            ));
        }
        let manifest = self.remote.package_config(&at, &artifact).await?;
        if manifest.name != id.name || manifest.version != id.version {
            return Err(LoadError::Inconsistent {
                reference: artifact.reference.clone(),
                reason: format!(
                    "tagged as {id} but its config says {} {}",
                    manifest.name, manifest.version
                ),
            });
        }
        if let Some(prefetch) = &self.prefetch {
            // A lockfile names the exact pick; otherwise the newest version is the guess.
            let likely = pinned.is_some()
                || self
                    .newest
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&id.name)
                    .is_some_and(|v| *v == id.version);
            if likely {
                prefetch.package(&at, &artifact, &manifest);
            }
        }
        let summary = Summary {
            manifest,
            digest: artifact.digest.to_string(),
            source: at.describe(),
        };
        self.remember(
            id.clone(),
            Found {
                at,
                artifact: Arc::new(artifact),
            },
        );
        Ok(summary)
    }
}

impl Source for PackageSource {
    fn versions<'a>(
        &'a self,
        name: &'a PackageName,
    ) -> BoxFuture<'a, Result<Vec<Version>, SourceError>> {
        async move {
            // No OCI repository can be named after a package of wapm's global namespace
            // (`_/python`): a registry holds none, which is an answer, not a failure.
            if name.namespace() == GLOBAL_NAMESPACE {
                return Ok(Vec::new());
            }
            let at = self.place.locate(name.as_str());
            let tags = self
                .remote
                .tags(&at)
                .await
                .map_err(|e| self.failed(name.to_string(), &e))?;
            // Tags that are not versions (`latest`, `main`) are not candidates.
            let versions: Vec<Version> =
                tags.iter().filter_map(|t| Version::parse(t).ok()).collect();
            if let Some(newest) = versions.iter().filter(|v| v.pre.is_empty()).max() {
                self.newest
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name.clone(), newest.clone());
            }
            Ok(versions)
        }
        .boxed()
    }

    fn summary<'a>(&'a self, id: &'a PackageId) -> BoxFuture<'a, Result<Summary, SourceError>> {
        async move {
            if id.name.namespace() == GLOBAL_NAMESPACE {
                return Err(SourceError::NotFound {
                    origin: self.place.describe(),
                    package: id.to_string(),
                });
            }
            self.summarize(id)
                .await
                .map_err(|e| self.failed(id.to_string(), &e))
        }
        .boxed()
    }
}

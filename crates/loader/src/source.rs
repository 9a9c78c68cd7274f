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
use futures::future::{BoxFuture, FutureExt};
use resolve_graph::{PackageId, PackageName, Source, SourceError, Summary};
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
/// place (registries and layouts, or a directory of webc files).
pub(crate) struct TreeSource {
    direct: Arc<DirectPackages>,
    place: PlaceSource,
    /// The place is a stand-in (no registry was configured and the root named none): a
    /// name it would be asked for is an error saying how to configure one.
    stand_in: bool,
}

/// Where named packages are found.
pub(crate) enum PlaceSource {
    Oci(PackageSource),
    WebcDir(WebcDirSource),
}

impl TreeSource {
    pub(crate) fn new(direct: Arc<DirectPackages>, place: PlaceSource, stand_in: bool) -> Self {
        TreeSource {
            direct,
            place,
            stand_in,
        }
    }

    /// Where the package `id` was found, and its local parts when they are not OCI blobs.
    pub(crate) fn found(&self, id: &PackageId) -> Option<(Found, Option<LocalRoot>)> {
        if let Some((found, local)) = self.direct.found(id) {
            return Some((found, Some(local)));
        }
        match &self.place {
            PlaceSource::Oci(s) => s.found(id).map(|f| (f, s.local(id))),
            PlaceSource::WebcDir(s) => s.found(id).map(|(f, local)| (f, Some(local))),
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
        match &self.place {
            PlaceSource::Oci(s) => s.versions(name),
            PlaceSource::WebcDir(s) => s.versions(name),
        }
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
            match &self.place {
                PlaceSource::Oci(s) => s.summary(id).await,
                PlaceSource::WebcDir(s) => s.summary(id).await,
            }
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
    pub(crate) fn with_prefetch(mut self, prefetch: Arc<Prefetch>) -> Self {
        self.prefetch = Some(prefetch);
        self
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
            self.summarize(id)
                .await
                .map_err(|e| self.failed(id.to_string(), &e))
        }
        .boxed()
    }
}

//! Where versions and manifests come from: the [`Source`] trait and two implementations.
//!
//! The trait returns boxed futures rather than using `async fn` so that it stays
//! object-safe: [`MultiSource`] holds a list of different sources behind `dyn Source`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, join_all};
use semver::Version;

use crate::manifest::Manifest;
use crate::name::{PackageId, PackageName};

/// What a source knows about one package version.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The package's config.
    pub manifest: Manifest,
    /// The digest of the package's OCI manifest (`algorithm:hex`), what a lockfile pins.
    pub digest: String,
    /// Where it came from (a registry repository, a layout directory, ...), for lockfiles
    /// and messages.
    pub source: String,
}

/// A failed query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The source does not have this package version.
    #[error("{origin} has no {package}")]
    NotFound {
        /// Which source answered.
        origin: String,
        /// What was asked for (`name` or `name version`).
        package: String,
    },
    /// The source could not answer (network, parse, ...).
    #[error("{origin} failed for {package}: {message}")]
    Failed {
        /// Which source failed.
        origin: String,
        /// What was asked for.
        package: String,
        /// Why.
        message: String,
    },
}

/// Anything that lists a package's versions and hands out their summaries.
///
/// `versions` of a package the source has never heard of is `Ok(vec![])`, not an error:
/// "no such package" is an answer, and [`MultiSource`] must tell it apart from a failure.
pub trait Source: Send + Sync {
    /// All versions of `name`, in any order.
    fn versions<'a>(
        &'a self,
        name: &'a PackageName,
    ) -> BoxFuture<'a, Result<Vec<Version>, SourceError>>;

    /// The summary of one version.
    fn summary<'a>(&'a self, id: &'a PackageId) -> BoxFuture<'a, Result<Summary, SourceError>>;

    /// Failures this source survived (another source answered instead), handed over and
    /// forgotten: [`crate::resolve`] calls it once fetching is over so that the
    /// [`crate::Resolution`] reports them. Most sources have none and keep the default.
    fn take_warnings(&self) -> Vec<SourceError> {
        Vec::new()
    }
}

impl<S: Source + ?Sized> Source for Arc<S> {
    fn versions<'a>(
        &'a self,
        name: &'a PackageName,
    ) -> BoxFuture<'a, Result<Vec<Version>, SourceError>> {
        (**self).versions(name)
    }
    fn summary<'a>(&'a self, id: &'a PackageId) -> BoxFuture<'a, Result<Summary, SourceError>> {
        (**self).summary(id)
    }
    fn take_warnings(&self) -> Vec<SourceError> {
        (**self).take_warnings()
    }
}

/// A source held in memory: tests, fixtures, benchmarks and already-parsed registries.
#[derive(Debug, Clone, Default)]
pub struct InMemorySource {
    name: String,
    packages: BTreeMap<PackageName, BTreeMap<Version, Summary>>,
}

impl InMemorySource {
    /// An empty source called `name` in messages and summaries.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            packages: BTreeMap::new(),
        }
    }

    /// Adds a manifest with a made-up digest; replaces an existing entry for the same id.
    pub fn add(&mut self, manifest: Manifest) -> &mut Self {
        let digest = format!("memory:{}@{}", manifest.name, manifest.version);
        let summary = Summary {
            manifest,
            digest,
            source: self.name.clone(),
        };
        self.insert(summary)
    }

    /// Adds a summary as is.
    pub fn insert(&mut self, summary: Summary) -> &mut Self {
        self.packages
            .entry(summary.manifest.name.clone())
            .or_default()
            .insert(summary.manifest.version.clone(), summary);
        self
    }
}

impl Source for InMemorySource {
    fn versions<'a>(
        &'a self,
        name: &'a PackageName,
    ) -> BoxFuture<'a, Result<Vec<Version>, SourceError>> {
        let versions = self
            .packages
            .get(name)
            .map(|v| v.keys().cloned().collect())
            .unwrap_or_default();
        futures::future::ready(Ok(versions)).boxed()
    }

    fn summary<'a>(&'a self, id: &'a PackageId) -> BoxFuture<'a, Result<Summary, SourceError>> {
        let found = self
            .packages
            .get(&id.name)
            .and_then(|v| v.get(&id.version))
            .cloned()
            .ok_or_else(|| SourceError::NotFound {
                origin: self.name.clone(),
                package: id.to_string(),
            });
        futures::future::ready(found).boxed()
    }
}

/// Several sources asked in order.
///
/// `versions` is the union over all sources; `summary` comes from the first source that has
/// the version. A source that *fails* does not hide an answer from another: when some other
/// source answers, the failure is kept as a warning (see [`MultiSource::warnings`]); only
/// when no source answers is the first failure returned.
#[derive(Default)]
pub struct MultiSource {
    sources: Vec<Box<dyn Source>>,
    warnings: Mutex<Vec<SourceError>>,
}

impl std::fmt::Debug for MultiSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiSource")
            .field("sources", &self.sources.len())
            .finish_non_exhaustive()
    }
}

impl MultiSource {
    /// No sources yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a source with the lowest precedence so far.
    #[must_use]
    pub fn with(mut self, source: impl Source + 'static) -> Self {
        self.sources.push(Box::new(source));
        self
    }

    /// Failures that were outvoted by another source's answer, oldest first, that
    /// [`Source::take_warnings`] (which [`crate::resolve`] calls) has not handed over yet.
    pub fn warnings(&self) -> Vec<SourceError> {
        self.warnings.lock().map(|w| w.clone()).unwrap_or_default()
    }

    fn warn(&self, errors: impl IntoIterator<Item = SourceError>) {
        if let Ok(mut w) = self.warnings.lock() {
            w.extend(errors);
        }
    }
}

impl Source for MultiSource {
    fn versions<'a>(
        &'a self,
        name: &'a PackageName,
    ) -> BoxFuture<'a, Result<Vec<Version>, SourceError>> {
        async move {
            // All sources at once: the union needs every answer anyway.
            let answers = join_all(self.sources.iter().map(|s| s.versions(name))).await;
            let mut versions = Vec::new();
            let mut errors = Vec::new();
            for answer in answers {
                match answer {
                    Ok(v) => versions.extend(v),
                    Err(e) => errors.push(e),
                }
            }
            if !versions.is_empty() || errors.is_empty() {
                versions.sort();
                versions.dedup();
                self.warn(errors);
                return Ok(versions);
            }
            Err(first(errors))
        }
        .boxed()
    }

    fn summary<'a>(&'a self, id: &'a PackageId) -> BoxFuture<'a, Result<Summary, SourceError>> {
        async move {
            // In order, stopping at the first hit: precedence decides which summary wins.
            let mut failures = Vec::new();
            let mut not_found = None;
            for s in &self.sources {
                match s.summary(id).await {
                    Ok(summary) => {
                        self.warn(failures);
                        return Ok(summary);
                    }
                    Err(e @ SourceError::NotFound { .. }) => {
                        not_found.get_or_insert(e);
                    }
                    Err(e) => failures.push(e),
                }
            }
            let mut failures = failures.into_iter();
            Err(failures
                .next()
                .or(not_found)
                .unwrap_or_else(|| SourceError::NotFound {
                    origin: "no source".to_owned(),
                    package: id.to_string(),
                }))
        }
        .boxed()
    }

    fn take_warnings(&self) -> Vec<SourceError> {
        let mut taken = self
            .warnings
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default();
        // A nested MultiSource keeps its own list; its failures are ours too.
        for s in &self.sources {
            taken.extend(s.take_warnings());
        }
        taken
    }
}

fn first(errors: Vec<SourceError>) -> SourceError {
    // Prefer a real failure over "not found" so the message says what went wrong.
    let mut not_found = None;
    for e in errors {
        match e {
            SourceError::Failed { .. } => return e,
            SourceError::NotFound { .. } => {
                not_found.get_or_insert(e);
            }
        }
    }
    not_found.unwrap_or_else(|| SourceError::Failed {
        origin: "no source".to_owned(),
        package: String::new(),
        message: "no answer".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    struct Broken;
    impl Source for Broken {
        fn versions<'a>(
            &'a self,
            name: &'a PackageName,
        ) -> BoxFuture<'a, Result<Vec<Version>, SourceError>> {
            futures::future::ready(Err(SourceError::Failed {
                origin: "broken".to_owned(),
                package: name.to_string(),
                message: "connection refused".to_owned(),
            }))
            .boxed()
        }
        fn summary<'a>(&'a self, id: &'a PackageId) -> BoxFuture<'a, Result<Summary, SourceError>> {
            futures::future::ready(Err(SourceError::Failed {
                origin: "broken".to_owned(),
                package: id.to_string(),
                message: "connection refused".to_owned(),
            }))
            .boxed()
        }
    }

    fn memory(versions: &[&str]) -> InMemorySource {
        named("mem", versions)
    }

    fn named(origin: &str, versions: &[&str]) -> InMemorySource {
        let mut s = InMemorySource::new(origin);
        for v in versions {
            s.add(Manifest::new(
                "acme/lib".parse().unwrap(),
                Version::parse(v).unwrap(),
            ));
        }
        s
    }

    #[test]
    fn in_memory_answers() {
        let s = memory(&["1.0.0", "1.1.0"]);
        let name: PackageName = "acme/lib".parse().unwrap();
        assert_eq!(block_on(s.versions(&name)).unwrap().len(), 2);
        let other: PackageName = "acme/other".parse().unwrap();
        assert!(block_on(s.versions(&other)).unwrap().is_empty());
        let id = PackageId::new(name, Version::new(1, 1, 0));
        assert_eq!(
            block_on(s.summary(&id)).unwrap().digest,
            "memory:acme/lib@1.1.0"
        );
        let id = PackageId::new(id.name, Version::new(9, 0, 0));
        assert_eq!(
            block_on(s.summary(&id)).unwrap_err().to_string(),
            "mem has no acme/lib 9.0.0"
        );
    }

    #[test]
    fn failure_becomes_warning_when_another_source_answers() {
        let multi = MultiSource::new().with(Broken).with(memory(&["1.0.0"]));
        let name: PackageName = "acme/lib".parse().unwrap();
        assert_eq!(
            block_on(multi.versions(&name)).unwrap(),
            [Version::new(1, 0, 0)]
        );
        let id = PackageId::new(name, Version::new(1, 0, 0));
        assert_eq!(block_on(multi.summary(&id)).unwrap().source, "mem");
        let warnings: Vec<_> = multi.warnings().iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            [
                "broken failed for acme/lib: connection refused",
                "broken failed for acme/lib 1.0.0: connection refused"
            ]
        );
    }

    #[test]
    fn failure_is_an_error_when_nobody_answers() {
        let multi = MultiSource::new().with(Broken).with(memory(&[]));
        let name: PackageName = "acme/lib".parse().unwrap();
        let e = block_on(multi.versions(&name)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "broken failed for acme/lib: connection refused"
        );
    }

    #[test]
    fn union_and_precedence() {
        let multi = MultiSource::new()
            .with(named("first", &["1.0.0"]))
            .with(memory(&["1.0.0", "2.0.0"]));
        let name: PackageName = "acme/lib".parse().unwrap();
        assert_eq!(block_on(multi.versions(&name)).unwrap().len(), 2);
        let id = PackageId::new(name, Version::new(1, 0, 0));
        assert_eq!(block_on(multi.summary(&id)).unwrap().source, "first");
    }
}

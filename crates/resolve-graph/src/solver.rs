//! The version solver: pubgrub over a snapshot of metadata fetched level by level.
//!
//! pubgrub's `DependencyProvider` is synchronous while sources are async, so resolution is
//! a loop of *rounds*:
//!
//! 1. fetch, concurrently, the version lists of every package the last round asked for,
//!    then, concurrently, the summaries of all their versions, into a [`Snapshot`];
//! 2. run pubgrub over the snapshot. Packages whose metadata is present get high priority
//!    and packages not fetched yet the lowest, so pubgrub decides everything it can and only
//!    then asks for an unknown package, which aborts the run with the set of every package
//!    it met but could not see;
//! 3. fetch that whole set and run again.
//!
//! So a registry costs two round trips (list, then manifests) per dependency *level*, not
//! one per edge, and every query is made at most once per resolution (the snapshot is the
//! memo). Re-running pubgrub is cheap compared with a network round trip.
//!
//! Pre-releases: a pre-release version is a candidate only when some requirement on that
//! package in the fetched manifests (any version of any package, not only the chosen ones)
//! names a pre-release of the same `major.minor.patch`. That is slightly more permissive
//! than semver's per-requirement rule, and deterministic for a given registry.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures::future::join_all;
use pubgrub::{
    Dependencies, DependencyConstraints, DependencyProvider, PackageResolutionStatistics,
    PubGrubError, Ranges,
};
use semver::{Version, VersionReq};

use crate::explain::{Catalog, Explanation, explain};
use crate::manifest::Manifest;
use crate::name::{PackageId, PackageName};
use crate::ranges::{opts_into_prerelease, req_to_ranges};
use crate::source::{Source, SourceError, Summary};
use crate::validate::ManifestError;

/// Knobs for one resolution.
#[derive(Debug, Clone, Default)]
pub struct ResolveOptions {
    /// Versions to prefer (e.g. from a lockfile): used whenever they still satisfy every
    /// requirement, so re-resolving does not upgrade packages behind the user's back.
    pub preferred: BTreeMap<PackageName, Version>,
}

/// A successful resolution: exactly one version per package name.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The root package's manifest (it came from the caller, not from a source).
    pub root: Manifest,
    /// Every other package in the solution, by name.
    pub packages: BTreeMap<PackageName, Summary>,
    /// How many fetch rounds were needed (about the depth of the graph).
    pub rounds: usize,
}

impl Resolution {
    /// The manifest of a package in the solution, the root included.
    pub fn manifest(&self, name: &PackageName) -> Option<&Manifest> {
        if name == &self.root.name {
            return Some(&self.root);
        }
        self.packages.get(name).map(|s| &s.manifest)
    }

    /// The chosen version of a package, the root included.
    pub fn version(&self, name: &PackageName) -> Option<&Version> {
        self.manifest(name).map(|m| &m.version)
    }
}

/// Why a resolution failed.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// No set of versions satisfies every requirement; the explanation says why.
    #[error("{0}")]
    NoSolution(Explanation),
    /// A source could not list a package's versions.
    #[error("could not list versions: {0}")]
    Source(#[source] SourceError),
    /// The root manifest is invalid.
    #[error("invalid root manifest: {0}")]
    InvalidRoot(#[source] ManifestError),
    /// A bug in this crate (kept as an error rather than a panic).
    #[error("internal resolver error: {0}")]
    Internal(String),
}

/// Resolves `root`'s dependencies against `source`: one version per package name, newest
/// first unless [`ResolveOptions::preferred`] says otherwise, backtracking as needed.
///
/// Metadata is fetched one dependency level per round (all version lists of the level at
/// once, then all their manifests at once); a manifest that cannot be fetched or is invalid
/// makes only that version unusable. Pre-release versions are offered only when some
/// requirement on the package names a pre-release of the same `major.minor.patch`.
pub async fn resolve<S: Source + ?Sized>(
    source: &S,
    root: &Manifest,
    options: &ResolveOptions,
) -> Result<Resolution, ResolveError> {
    root.validate().map_err(ResolveError::InvalidRoot)?;
    let mut snap = Snapshot::with_root(root);
    let mut wanted: BTreeSet<PackageName> = root
        .dependencies
        .iter()
        .map(|d| d.package.clone())
        .collect();
    let mut rounds = 0;
    loop {
        let new: Vec<PackageName> = wanted
            .into_iter()
            .filter(|n| !snap.versions.contains_key(n))
            .collect();
        if !new.is_empty() {
            snap.fetch(source, &new).await?;
            rounds += 1;
        }
        let provider = Provider {
            snap: &snap,
            preferred: &options.preferred,
            missing: RefCell::new(BTreeSet::new()),
        };
        let outcome = pubgrub::resolve(&provider, root.name.clone(), root.version.clone());
        let missing = provider.missing.into_inner();
        match outcome {
            Ok(selected) => {
                let mut packages = BTreeMap::new();
                for (name, version) in selected {
                    if name == root.name {
                        continue;
                    }
                    let id = PackageId::new(name.clone(), version);
                    match snap.summaries.remove(&id) {
                        Some(Ok(summary)) => {
                            packages.insert(name, summary);
                        }
                        _ => return Err(ResolveError::Internal(format!("{id} chosen unseen"))),
                    }
                }
                return Ok(Resolution {
                    root: root.clone(),
                    packages,
                    rounds,
                });
            }
            Err(PubGrubError::NoSolution(tree)) => {
                return Err(ResolveError::NoSolution(explain(&tree, &snap)));
            }
            Err(
                PubGrubError::ErrorChoosingVersion { .. }
                | PubGrubError::ErrorRetrievingDependencies { .. },
            ) => {
                // Only "not fetched yet" reaches here; fetching nothing new would loop forever.
                if missing.iter().all(|n| snap.versions.contains_key(n)) {
                    return Err(ResolveError::Internal(
                        "the solver asked for metadata it already has".to_owned(),
                    ));
                }
                wanted = missing;
            }
            Err(PubGrubError::ErrorInShouldCancel(e)) => {
                return Err(ResolveError::Internal(e.to_string()));
            }
        }
    }
}

/// Everything fetched so far in one resolution.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// All listed versions, newest first. The root maps to its own version only.
    versions: HashMap<PackageName, Vec<Version>>,
    /// One entry per listed version: the summary, or why it cannot be used.
    summaries: HashMap<PackageId, Result<Summary, String>>,
    /// Every requirement seen on a package, for semver's pre-release opt-in rule.
    requirements: HashMap<PackageName, Vec<VersionReq>>,
}

impl Snapshot {
    fn with_root(root: &Manifest) -> Self {
        let mut snap = Self::default();
        snap.versions
            .insert(root.name.clone(), vec![root.version.clone()]);
        snap.note_requirements(root);
        snap.summaries.insert(
            root.id(),
            Ok(Summary {
                manifest: root.clone(),
                digest: String::new(),
                source: "root".to_owned(),
            }),
        );
        snap
    }

    fn note_requirements(&mut self, manifest: &Manifest) {
        for dep in &manifest.dependencies {
            self.requirements
                .entry(dep.package.clone())
                .or_default()
                .push(dep.req.clone());
        }
    }

    async fn fetch<S: Source + ?Sized>(
        &mut self,
        source: &S,
        names: &[PackageName],
    ) -> Result<(), ResolveError> {
        let lists = join_all(names.iter().map(|n| source.versions(n))).await;
        let mut ids = Vec::new();
        for (name, list) in names.iter().zip(lists) {
            let mut list = list.map_err(ResolveError::Source)?;
            list.sort_by(|a, b| b.cmp(a));
            list.dedup();
            ids.extend(list.iter().map(|v| PackageId::new(name.clone(), v.clone())));
            self.versions.insert(name.clone(), list);
        }
        let summaries = join_all(ids.iter().map(|id| source.summary(id))).await;
        for (id, summary) in ids.into_iter().zip(summaries) {
            let entry = summary
                .map_err(|e| e.to_string())
                .and_then(|s| check(&id, s));
            if let Ok(s) = &entry {
                self.note_requirements(&s.manifest);
            }
            self.summaries.insert(id, entry);
        }
        Ok(())
    }

    /// Whether `version` may be offered: releases always, pre-releases only when some
    /// requirement on the package opts into that `major.minor.patch`.
    fn is_candidate(&self, name: &PackageName, version: &Version) -> bool {
        version.pre.is_empty()
            || self
                .requirements
                .get(name)
                .is_some_and(|reqs| reqs.iter().any(|r| opts_into_prerelease(r, version)))
    }
}

/// A summary must describe the version it was asked for and be valid; otherwise that one
/// version is unusable (the solver then tries others) instead of failing everything.
fn check(id: &PackageId, summary: Summary) -> Result<Summary, String> {
    let got = summary.manifest.id();
    if &got != id {
        return Err(format!("{} returned the manifest of {got}", summary.source));
    }
    summary.manifest.validate().map_err(|e| e.to_string())?;
    Ok(summary)
}

impl Catalog for Snapshot {
    fn candidates(&self, name: &PackageName) -> Vec<Version> {
        let mut out: Vec<Version> = self
            .versions
            .get(name)
            .into_iter()
            .flatten()
            .filter(|v| self.is_candidate(name, v))
            .cloned()
            .collect();
        out.reverse();
        out
    }

    fn requirement(&self, from: &PackageId, on: &PackageName) -> Option<VersionReq> {
        let summary = self.summaries.get(from)?.as_ref().ok()?;
        let dep = summary
            .manifest
            .dependencies
            .iter()
            .find(|d| &d.package == on)?;
        Some(dep.req.clone())
    }
}

/// Raised inside pubgrub when it needs metadata the snapshot lacks; ends the round.
#[derive(Debug, thiserror::Error)]
#[error("metadata for {0} has not been fetched yet")]
struct NotFetched(PackageName);

struct Provider<'a> {
    snap: &'a Snapshot,
    preferred: &'a BTreeMap<PackageName, Version>,
    missing: RefCell<BTreeSet<PackageName>>,
}

impl Provider<'_> {
    fn not_fetched(&self, name: &PackageName) -> NotFetched {
        self.missing.borrow_mut().insert(name.clone());
        NotFetched(name.clone())
    }
}

impl DependencyProvider for Provider<'_> {
    type P = PackageName;
    type V = Version;
    type VS = Ranges<Version>;
    type M = String;
    type Err = NotFetched;
    /// (metadata present, conflicts so far, fewest candidates first).
    type Priority = (bool, u32, Reverse<usize>);

    fn prioritize(
        &self,
        package: &PackageName,
        range: &Ranges<Version>,
        stats: &PackageResolutionStatistics,
    ) -> Self::Priority {
        match self.snap.versions.get(package) {
            // Unknown packages last: everything decidable now is decided before the round
            // ends, so the next fetch covers a whole level.
            None => (false, 0, Reverse(0)),
            Some(all) => {
                let count = all
                    .iter()
                    .filter(|v| range.contains(v) && self.snap.is_candidate(package, v))
                    .count();
                (true, stats.conflict_count(), Reverse(count))
            }
        }
    }

    fn choose_version(
        &self,
        package: &PackageName,
        range: &Ranges<Version>,
    ) -> Result<Option<Version>, NotFetched> {
        let Some(all) = self.snap.versions.get(package) else {
            return Err(self.not_fetched(package));
        };
        let ok = |v: &Version| range.contains(v) && self.snap.is_candidate(package, v);
        if let Some(v) = self.preferred.get(package)
            && all.contains(v)
            && ok(v)
        {
            return Ok(Some(v.clone()));
        }
        // Newest first.
        Ok(all.iter().find(|v| ok(v)).cloned())
    }

    fn get_dependencies(
        &self,
        package: &PackageName,
        version: &Version,
    ) -> Result<Dependencies<PackageName, Ranges<Version>, String>, NotFetched> {
        let id = PackageId::new(package.clone(), version.clone());
        let summary = match self.snap.summaries.get(&id) {
            None => return Err(self.not_fetched(package)),
            Some(Err(reason)) => return Ok(Dependencies::Unavailable(reason.clone())),
            Some(Ok(summary)) => summary,
        };
        let mut merged: Vec<(PackageName, Ranges<Version>)> = Vec::new();
        for dep in &summary.manifest.dependencies {
            if &dep.package == package {
                return Ok(Dependencies::Unavailable(format!(
                    "it depends on itself (alias `{}`)",
                    dep.alias
                )));
            }
            let range = req_to_ranges(&dep.req);
            // Two aliases for one package: both requirements must hold (one version per name).
            match merged.iter_mut().find(|(n, _)| n == &dep.package) {
                Some((_, r)) => *r = r.intersection(&range),
                None => merged.push((dep.package.clone(), range)),
            }
            if !self.snap.versions.contains_key(&dep.package) {
                self.missing.borrow_mut().insert(dep.package.clone());
            }
        }
        Ok(Dependencies::Available(
            merged.into_iter().collect::<DependencyConstraints<_, _>>(),
        ))
    }
}

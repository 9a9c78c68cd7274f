//! The version solver: fetch every version that can matter, then one pubgrub run.
//!
//! pubgrub's `DependencyProvider` is synchronous while sources are async, so resolution has
//! two phases:
//!
//! 1. **Fetch** ([`Snapshot::fetch`]). Starting from the root's dependencies, list each
//!    package met and fetch the summary of every listed version that some requirement seen
//!    so far accepts; each summary's dependencies are met in turn. The fetch is pipelined:
//!    a listing is sent the moment its package is first named, summaries the moment the
//!    listing (or a new requirement) arrives, all concurrently. A slow registry therefore
//!    costs about two round trips per dependency *level*, not one per edge, and each query
//!    is made at most once per resolution (the snapshot is the memo). Versions that no
//!    requirement accepts are never fetched, so the work is proportional to what is
//!    reachable through acceptable versions, not to the registry.
//! 2. **Solve**, once, over the snapshot. Before that, [`Snapshot::prepare`] finds the
//!    *doomed* versions: those that can be shown unusable from metadata alone (their summary
//!    failed, or some dependency of theirs has no usable version in range, recursively).
//!    `choose_version` skips them whenever an alternative exists. This matters for speed, not
//!    correctness: pubgrub learns "this version is unusable" as a one-package fact, and every
//!    such fact makes it backjump to the root and redo every decision, which turns a
//!    registry with many dead versions quadratic. A doomed version is still offered when
//!    nothing else is left, so pubgrub proves the failure itself and the explanation names
//!    the real cause.
//!
//! Pre-releases: a pre-release version is a candidate only when some requirement on that
//! package in the fetched manifests (any version of any package, not only the chosen ones)
//! names a pre-release of the same `major.minor.patch`. That is slightly more permissive
//! than semver's per-requirement rule, and deterministic for a given registry.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::{Bound, Range};

use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt};
use futures::stream::FuturesUnordered;
use pubgrub::{
    Dependencies, DependencyConstraints, DependencyProvider, PackageResolutionStatistics,
    PubGrubError, Ranges,
};
use semver::{Version, VersionReq};

use crate::explain::{Catalog, Explanation, dismantle, explain};
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
    /// How many dependency levels were fetched one after another (the depth of the graph
    /// of acceptable versions); a slow source costs about two round trips per level.
    pub rounds: usize,
    /// Failures the resolution survived: those of a source that another source outvoted
    /// (see [`crate::MultiSource`]), then listings of packages the solution did not need,
    /// then summaries that made a version unusable. The resolution is valid, but a source
    /// that did not answer may have held a newer version.
    pub warnings: Vec<SourceError>,
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
    /// A source could not list the versions of a package the solution needs.
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
/// Every acceptable version's metadata is fetched first, pipelined and concurrently (about
/// two round trips per dependency level), then the solver runs once without further
/// queries. A manifest that cannot be fetched or is invalid makes only that version
/// unusable (a failed query is also one of [`Resolution::warnings`]); a package whose
/// versions cannot be listed is an error only if the solution needs it (otherwise that
/// failure too is a warning). Pre-release versions are offered only when some requirement
/// on the package names a pre-release of the same `major.minor.patch`.
///
/// All queries of a level are in flight at once; a source that must limit concurrency
/// (a registry client) does so itself.
pub async fn resolve<S: Source + ?Sized>(
    source: &S,
    root: &Manifest,
    options: &ResolveOptions,
) -> Result<Resolution, ResolveError> {
    root.validate().map_err(ResolveError::InvalidRoot)?;
    let mut snap = Snapshot::with_root(root);
    let rounds = snap.fetch(source, root).await?;
    let mut warnings = source.take_warnings();
    snap.prepare();
    let provider = Provider {
        snap: &snap,
        preferred: &options.preferred,
    };
    match pubgrub::resolve(&provider, root.name.clone(), root.version.clone()) {
        Ok(selected) => {
            let mut packages = BTreeMap::new();
            for (name, version) in selected {
                if name == root.name {
                    continue;
                }
                match snap.take(&name, &version) {
                    Some(Ok(summary)) => {
                        packages.insert(name, summary);
                    }
                    _ => {
                        return Err(ResolveError::Internal(format!(
                            "{name} {version} chosen unseen"
                        )));
                    }
                }
            }
            // Packages that could not be listed but that no chosen version needed.
            let mut unlisted: Vec<(PackageName, SourceError)> = snap.unlisted.into_iter().collect();
            unlisted.sort_by(|a, b| a.0.cmp(&b.0));
            warnings.extend(unlisted.into_iter().map(|(_, e)| e));
            warnings.extend(snap.unfetched);
            Ok(Resolution {
                root: root.clone(),
                packages,
                rounds,
                warnings,
            })
        }
        Err(PubGrubError::NoSolution(tree)) => {
            let explanation = explain(&tree, &snap);
            dismantle(tree);
            Err(ResolveError::NoSolution(explanation))
        }
        Err(
            PubGrubError::ErrorChoosingVersion { source, .. }
            | PubGrubError::ErrorRetrievingDependencies { source, .. },
        ) => Err(match source {
            Missing::Unlisted(e) => ResolveError::Source(e),
            unfetched @ Missing::Unfetched(_) => ResolveError::Internal(unfetched.to_string()),
        }),
        Err(PubGrubError::ErrorInShouldCancel(e)) => Err(ResolveError::Internal(e.to_string())),
    }
}

/// Everything fetched in one resolution, and what the solver derives from it.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// Every listed package; the root lists its own version only.
    listings: HashMap<PackageName, Listing>,
    /// Every distinct requirement seen on a package: it decides which versions are fetched
    /// and, for semver's pre-release opt-in rule, which are candidates.
    requirements: HashMap<PackageName, HashSet<VersionReq>>,
    /// Packages whose listing failed. Only an error if the solver needs one of them: an
    /// old version nobody chooses may depend on a repository that is gone.
    unlisted: HashMap<PackageName, SourceError>,
    /// Failed summary queries, in arrival order: each made one version unusable, which a
    /// successful resolution reports so that a flaky registry does not silently downgrade.
    unfetched: Vec<SourceError>,
    /// Filled by [`Snapshot::prepare`] once fetching is over.
    known: HashMap<PackageName, Known>,
}

/// One package's versions and, slot by slot, their summaries. Slots are allocated with
/// the listing, so the (large) summaries never move once stored and a version is looked up
/// by binary search rather than by hashing a whole id.
#[derive(Debug, Default)]
struct Listing {
    /// Oldest first, without duplicates.
    versions: Vec<Version>,
    /// Parallel to `versions`.
    slots: Vec<Slot>,
}

#[derive(Debug)]
enum Slot {
    /// No requirement accepts this version (yet).
    Unasked,
    Asked,
    /// The summary, or why this version cannot be used (boxed: most slots of a long
    /// listing stay empty).
    Fetched(Box<Result<Summary, String>>),
}

impl Listing {
    fn new(versions: Vec<Version>) -> Self {
        let slots = versions.iter().map(|_| Slot::Unasked).collect();
        Self { versions, slots }
    }

    fn summary(&self, version: &Version) -> Option<&Result<Summary, String>> {
        let i = self.versions.binary_search(version).ok()?;
        match self.slots.get(i)? {
            Slot::Fetched(entry) => Some(entry),
            Slot::Unasked | Slot::Asked => None,
        }
    }
}

/// What the solver may choose from for one package.
#[derive(Debug, Default)]
struct Known {
    /// Candidate versions, oldest first (sorted, so a range maps to index spans).
    candidates: Vec<Version>,
    /// Parallel to `candidates`: whether that version is provably unusable.
    doomed: Vec<bool>,
}

impl Known {
    fn is_doomed(&self, index: usize) -> bool {
        self.doomed.get(index).copied().unwrap_or(false)
    }
}

/// The answer to one query, tagged with what was asked (and, for a summary, its slot).
enum Answer {
    Versions(PackageName, Result<Vec<Version>, SourceError>),
    Summary(PackageId, usize, Result<Summary, SourceError>),
}

/// The state of [`Snapshot::fetch`]: queries in flight and the packages met.
struct Fetch<'s, S: ?Sized> {
    source: &'s S,
    pending: FuturesUnordered<BoxFuture<'s, Answer>>,
    /// Packages met so far and the dependency level they were met at.
    level: HashMap<PackageName, usize>,
}

impl<'s, S: Source + ?Sized> Fetch<'s, S> {
    fn list(&mut self, name: PackageName, level: usize) {
        if self.level.contains_key(&name) {
            return;
        }
        self.level.insert(name.clone(), level);
        let source = self.source;
        self.pending.push(
            async move {
                let answer = source.versions(&name).await;
                Answer::Versions(name, answer)
            }
            .boxed(),
        );
    }

    /// Asks for the summaries of the versions of `name` inside `range` not asked for yet.
    fn summaries(&mut self, name: &PackageName, listing: &mut Listing, range: &Ranges<Version>) {
        for span in spans(&listing.versions, range) {
            for i in span {
                let (Some(slot), Some(version)) =
                    (listing.slots.get_mut(i), listing.versions.get(i))
                else {
                    continue;
                };
                if !matches!(slot, Slot::Unasked) {
                    continue;
                }
                *slot = Slot::Asked;
                let id = PackageId::new(name.clone(), version.clone());
                let source = self.source;
                self.pending.push(
                    async move {
                        let answer = source.summary(&id).await;
                        Answer::Summary(id, i, answer)
                    }
                    .boxed(),
                );
            }
        }
    }
}

impl Snapshot {
    fn with_root(root: &Manifest) -> Self {
        let mut snap = Self::default();
        let mut listing = Listing::new(vec![root.version.clone()]);
        listing.slots = vec![Slot::Fetched(Box::new(Ok(Summary {
            manifest: root.clone(),
            digest: String::new(),
            source: "root".to_owned(),
        })))];
        snap.listings.insert(root.name.clone(), listing);
        snap
    }

    /// The summary of a fetched version, moved out.
    fn take(&mut self, name: &PackageName, version: &Version) -> Option<Result<Summary, String>> {
        let listing = self.listings.get_mut(name)?;
        let i = listing.versions.binary_search(version).ok()?;
        match std::mem::replace(listing.slots.get_mut(i)?, Slot::Unasked) {
            Slot::Fetched(entry) => Some(*entry),
            Slot::Unasked | Slot::Asked => None,
        }
    }

    fn summary(&self, name: &PackageName, version: &Version) -> Option<&Result<Summary, String>> {
        self.listings.get(name)?.summary(version)
    }

    /// Fetches the metadata of every version some requirement reachable from `root`
    /// accepts; returns how many dependency levels deep that went.
    async fn fetch<S: Source + ?Sized>(
        &mut self,
        source: &S,
        root: &Manifest,
    ) -> Result<usize, ResolveError> {
        let mut fetch = Fetch {
            source,
            pending: FuturesUnordered::new(),
            level: HashMap::from([(root.name.clone(), 0)]),
        };
        self.meet(&mut fetch, root, 0);
        while let Some(answer) = fetch.pending.next().await {
            match answer {
                Answer::Versions(name, listed) => {
                    let mut listed = match listed {
                        Ok(listed) => listed,
                        Err(e) => {
                            self.unlisted.insert(name, e);
                            continue;
                        }
                    };
                    listed.sort();
                    listed.dedup();
                    let mut listing = Listing::new(listed);
                    // Requirements seen while the listing was in flight pick its summaries.
                    let range = self
                        .requirements
                        .get(&name)
                        .into_iter()
                        .flatten()
                        .fold(Ranges::empty(), |acc, req| acc.union(&req_to_ranges(req)));
                    fetch.summaries(&name, &mut listing, &range);
                    self.listings.insert(name, listing);
                }
                Answer::Summary(id, i, summary) => {
                    let entry = summary
                        .map_err(|e| {
                            let reason = e.to_string();
                            self.unfetched.push(e);
                            reason
                        })
                        .and_then(|s| check(&id, s));
                    if let Ok(s) = &entry {
                        let level = fetch.level.get(&id.name).copied().unwrap_or(0);
                        self.meet(&mut fetch, &s.manifest, level);
                    }
                    if let Some(slot) = self
                        .listings
                        .get_mut(&id.name)
                        .and_then(|l| l.slots.get_mut(i))
                    {
                        *slot = Slot::Fetched(Box::new(entry));
                    }
                }
            }
        }
        Ok(fetch.level.values().copied().max().unwrap_or(0))
    }

    /// Records `manifest`'s requirements and asks for whatever they newly make relevant.
    fn meet<S: Source + ?Sized>(
        &mut self,
        fetch: &mut Fetch<'_, S>,
        manifest: &Manifest,
        level: usize,
    ) {
        for dep in &manifest.dependencies {
            // Most requirements repeat (every version of a package tends to state the same
            // ones): look before cloning.
            let seen = self
                .requirements
                .get(&dep.package)
                .is_some_and(|reqs| reqs.contains(&dep.req));
            if seen {
                continue;
            }
            self.requirements
                .entry(dep.package.clone())
                .or_default()
                .insert(dep.req.clone());
            match self.listings.get_mut(&dep.package) {
                Some(listing) => {
                    fetch.summaries(&dep.package, listing, &req_to_ranges(&dep.req));
                }
                None => fetch.list(dep.package.clone(), level + 1),
            }
        }
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

    /// Builds the candidate lists and marks doomed versions.
    fn prepare(&mut self) {
        let mut known: HashMap<PackageName, Known> = self
            .listings
            .iter()
            .map(|(name, listing)| {
                let candidates: Vec<Version> = listing
                    .versions
                    .iter()
                    .filter(|v| self.is_candidate(name, v))
                    .cloned()
                    .collect();
                let doomed = vec![false; candidates.len()];
                (name.clone(), Known { candidates, doomed })
            })
            .collect();
        for (name, flags) in doomed(&known, &self.listings) {
            if let Some(k) = known.get_mut(&name) {
                k.doomed = flags;
            }
        }
        self.known = known;
    }
}

/// A requirement shared by several versions (`bench/b ^1` from all of `bench/a`'s versions,
/// say), with how many of its target's candidates are not doomed yet.
struct Group {
    range: Ranges<Version>,
    alive: usize,
    users: Vec<(usize, usize)>,
}

/// The doomed flags (parallel to the candidates) of every package with a doomed version.
///
/// Doomed is the least fixpoint of "its summary failed, it depends on itself, or one of its
/// requirements accepts only doomed candidates". Least, so a cycle is never doomed by
/// assuming its own failure. Each distinct (target, requirement) pair is a [`Group`] that
/// counts its live candidates down as they die, so the work is linear in the number of
/// (version, requirement) pairs plus, per death, the groups on that package.
fn doomed(
    known: &HashMap<PackageName, Known>,
    listings: &HashMap<PackageName, Listing>,
) -> Vec<(PackageName, Vec<bool>)> {
    let names: Vec<&PackageName> = known.keys().collect();
    let index: HashMap<&PackageName, usize> =
        names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let mut dead: Vec<Vec<bool>> = names
        .iter()
        .map(|n| vec![false; known.get(*n).map_or(0, |k| k.candidates.len())])
        .collect();
    let mut groups: Vec<Group> = Vec::new();
    let mut group_of: HashMap<(usize, &VersionReq), usize> = HashMap::new();
    let mut by_target: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
    let mut work: Vec<(usize, usize)> = Vec::new();
    for (p, name) in names.iter().enumerate() {
        let candidates = known.get(*name).map_or(&[][..], |k| &k.candidates);
        let Some(listing) = listings.get(*name) else {
            continue;
        };
        for (i, version) in candidates.iter().enumerate() {
            let summary = match listing.summary(version) {
                // Never fetched: no requirement accepts it, so it cannot matter.
                None => continue,
                Some(Err(_)) => {
                    kill(&mut dead, &mut work, p, i);
                    continue;
                }
                Some(Ok(summary)) => summary,
            };
            for dep in &summary.manifest.dependencies {
                if &dep.package == *name {
                    kill(&mut dead, &mut work, p, i);
                    continue;
                }
                // Every package named by a fetched manifest was listed; if not, knowing
                // nothing about it means assuming nothing.
                let Some(&target) = index.get(&dep.package) else {
                    continue;
                };
                let g = *group_of.entry((target, &dep.req)).or_insert_with(|| {
                    let range = req_to_ranges(&dep.req);
                    let target_candidates = names
                        .get(target)
                        .and_then(|n| known.get(*n))
                        .map_or(&[][..], |k| &k.candidates);
                    let alive = spans(target_candidates, &range).map(|s| s.len()).sum();
                    groups.push(Group {
                        range,
                        alive,
                        users: Vec::new(),
                    });
                    if let Some(list) = by_target.get_mut(target) {
                        list.push(groups.len() - 1);
                    }
                    groups.len() - 1
                });
                if let Some(group) = groups.get_mut(g) {
                    group.users.push((p, i));
                }
            }
        }
    }
    for group in &groups {
        if group.alive == 0 {
            for &(p, i) in &group.users {
                kill(&mut dead, &mut work, p, i);
            }
        }
    }
    while let Some((p, i)) = work.pop() {
        let Some(version) = names
            .get(p)
            .and_then(|n| known.get(*n))
            .and_then(|k| k.candidates.get(i))
        else {
            continue;
        };
        for &g in by_target.get(p).map_or(&[][..], Vec::as_slice) {
            let Some(group) = groups.get_mut(g) else {
                continue;
            };
            if group.alive == 0 || !group.range.contains(version) {
                continue;
            }
            group.alive -= 1;
            if group.alive == 0 {
                for &(q, j) in &group.users {
                    kill(&mut dead, &mut work, q, j);
                }
            }
        }
    }
    names
        .into_iter()
        .zip(dead)
        .filter(|(_, flags)| flags.contains(&true))
        .map(|(name, flags)| (name.clone(), flags))
        .collect()
}

/// Marks a version doomed and queues it so its dependents' groups are updated once.
fn kill(dead: &mut [Vec<bool>], work: &mut Vec<(usize, usize)>, p: usize, i: usize) {
    if let Some(flag) = dead.get_mut(p).and_then(|d| d.get_mut(i))
        && !*flag
    {
        *flag = true;
        work.push((p, i));
    }
}

/// The index spans of the sorted `versions` that `range` contains, lowest first.
fn spans<'a>(
    versions: &'a [Version],
    range: &'a Ranges<Version>,
) -> impl Iterator<Item = Range<usize>> + 'a {
    range.iter().filter_map(move |(lo, hi)| {
        let start = match lo {
            Bound::Included(v) => versions.partition_point(|x| x < v),
            Bound::Excluded(v) => versions.partition_point(|x| x <= v),
            Bound::Unbounded => 0,
        };
        let end = match hi {
            Bound::Included(v) => versions.partition_point(|x| x <= v),
            Bound::Excluded(v) => versions.partition_point(|x| x < v),
            Bound::Unbounded => versions.len(),
        };
        (start < end).then_some(start..end)
    })
}

/// A summary must describe the version it was asked for and be valid; otherwise that one
/// version is unusable (the solver then tries others) instead of failing everything.
fn check(id: &PackageId, summary: Summary) -> Result<Summary, String> {
    let m = &summary.manifest;
    if m.name != id.name || m.version != id.version {
        return Err(format!(
            "{} returned the manifest of {}",
            summary.source,
            m.id()
        ));
    }
    summary.manifest.validate().map_err(|e| e.to_string())?;
    Ok(summary)
}

impl Catalog for Snapshot {
    fn candidates(&self, name: &PackageName) -> Vec<Version> {
        self.known
            .get(name)
            .map(|k| k.candidates.clone())
            .unwrap_or_default()
    }

    fn requirement(&self, from: &PackageId, on: &PackageName) -> Option<VersionReq> {
        let summary = self.summary(&from.name, &from.version)?.as_ref().ok()?;
        let dep = summary
            .manifest
            .dependencies
            .iter()
            .find(|d| &d.package == on)?;
        Some(dep.req.clone())
    }
}

/// Metadata the solver needs and does not have.
#[derive(Debug, thiserror::Error)]
enum Missing {
    /// The package's listing failed: the resolution cannot go on without it.
    #[error("{0}")]
    Unlisted(SourceError),
    /// A package or version the fetch phase did not cover: a bug here, since every version
    /// inside a requirement's range is fetched.
    #[error("the solver reached {0}, whose metadata was never fetched")]
    Unfetched(String),
}

struct Provider<'a> {
    snap: &'a Snapshot,
    preferred: &'a BTreeMap<PackageName, Version>,
}

impl DependencyProvider for Provider<'_> {
    type P = PackageName;
    type V = Version;
    type VS = Ranges<Version>;
    type M = String;
    type Err = Missing;
    /// Packages that caused conflicts first, then those with the fewest candidates left
    /// (a package with one choice cannot be a wrong guess).
    type Priority = (u32, Reverse<usize>);

    fn prioritize(
        &self,
        package: &PackageName,
        range: &Ranges<Version>,
        stats: &PackageResolutionStatistics,
    ) -> Self::Priority {
        // Binary searches per segment of the range, not a scan of the versions: pubgrub
        // calls this after every change to a package's range.
        let count = self
            .snap
            .known
            .get(package)
            .map_or(0, |k| spans(&k.candidates, range).map(|s| s.len()).sum());
        (stats.conflict_count(), Reverse(count))
    }

    fn choose_version(
        &self,
        package: &PackageName,
        range: &Ranges<Version>,
    ) -> Result<Option<Version>, Missing> {
        let Some(known) = self.snap.known.get(package) else {
            return Err(match self.snap.unlisted.get(package) {
                Some(e) => Missing::Unlisted(e.clone()),
                None => Missing::Unfetched(package.to_string()),
            });
        };
        if let Some(v) = self.preferred.get(package)
            && range.contains(v)
            && let Ok(i) = known.candidates.binary_search(v)
            && !known.is_doomed(i)
        {
            return Ok(Some(v.clone()));
        }
        // Newest first, skipping doomed versions; if all are doomed, the newest anyway so
        // that pubgrub derives (and can explain) why.
        let mut newest = None;
        let mut newest_usable = None;
        for span in spans(&known.candidates, range) {
            newest = span.end.checked_sub(1);
            if let Some(i) = span.rev().find(|&i| !known.is_doomed(i)) {
                newest_usable = Some(i);
            }
        }
        Ok(newest_usable
            .or(newest)
            .and_then(|i| known.candidates.get(i))
            .cloned())
    }

    fn get_dependencies(
        &self,
        package: &PackageName,
        version: &Version,
    ) -> Result<Dependencies<PackageName, Ranges<Version>, String>, Missing> {
        let summary = match self.snap.summary(package, version) {
            None => return Err(Missing::Unfetched(format!("{package} {version}"))),
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
        }
        Ok(Dependencies::Available(
            merged.into_iter().collect::<DependencyConstraints<_, _>>(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::InMemorySource;
    use futures::executor::block_on;

    fn m(name: &str, version: &str, deps: &[(&str, &str)]) -> Manifest {
        let mut m = Manifest::new(name.parse().unwrap(), Version::parse(version).unwrap());
        for (i, (dep, req)) in deps.iter().enumerate() {
            m = m.with_dependency(
                &format!("d{i}"),
                dep.parse().unwrap(),
                VersionReq::parse(req).unwrap(),
            );
        }
        m
    }

    /// The doomed versions after fetching everything `root` reaches, as `name version`.
    fn doomed_after(registry: &[Manifest], root: &Manifest) -> Vec<String> {
        let mut source = InMemorySource::new("memory");
        for p in registry {
            source.add(p.clone());
        }
        let mut snap = Snapshot::with_root(root);
        block_on(snap.fetch(&source, root)).unwrap();
        snap.prepare();
        let mut out: Vec<String> = snap
            .known
            .iter()
            .flat_map(|(name, k)| {
                k.candidates
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| k.is_doomed(*i))
                    .map(move |(_, v)| format!("{name} {v}"))
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn doom_spreads_up_a_chain_only_when_no_alternative_is_left() {
        let registry = [
            m("acme/a", "1.0.0", &[("acme/b", "^1")]),
            m("acme/a", "1.1.0", &[("acme/b", ">=1.1")]),
            m("acme/b", "1.0.0", &[]),
            m("acme/b", "1.1.0", &[("acme/gone", "^1")]),
            m("acme/b", "1.2.0", &[("acme/b", "^1")]),
        ];
        let root = m("acme/app", "1.0.0", &[("acme/a", "^1")]);
        // b 1.1.0 needs a missing package, b 1.2.0 itself; so a 1.1.0 (b >=1.1) has nothing
        // left, while a 1.0.0 still has b 1.0.0.
        assert_eq!(
            doomed_after(&registry, &root),
            ["acme/a 1.1.0", "acme/b 1.1.0", "acme/b 1.2.0"]
        );
    }

    #[test]
    fn a_cycle_is_not_doomed_by_assuming_its_own_failure() {
        let registry = [
            m("acme/a", "1.0.0", &[("acme/b", "^1")]),
            m("acme/b", "1.0.0", &[("acme/a", "^1")]),
            m("acme/c", "1.0.0", &[("acme/d", "^1")]),
            m("acme/d", "1.0.0", &[("acme/c", "^1"), ("acme/gone", "^1")]),
        ];
        let root = m("acme/app", "1.0.0", &[("acme/a", "^1"), ("acme/c", "^1")]);
        assert_eq!(
            doomed_after(&registry, &root),
            ["acme/app 1.0.0", "acme/c 1.0.0", "acme/d 1.0.0"]
        );
    }

    #[test]
    fn spans_follow_bounds() {
        let versions: Vec<Version> = (0..5).map(|minor| Version::new(1, minor, 0)).collect();
        let range = req_to_ranges(&VersionReq::parse(">1.1.0, <=1.3.0").unwrap())
            .union(&Ranges::singleton(Version::new(1, 0, 0)));
        let got: Vec<Range<usize>> = spans(&versions, &range).collect();
        assert_eq!(got, [0..1, 2..4]);
        assert_eq!(spans(&versions, &Ranges::empty()).count(), 0);
        assert_eq!(spans(&versions, &Ranges::full()).next(), Some(0..5));
        assert_eq!(spans(&[], &Ranges::full()).count(), 0);
    }
}

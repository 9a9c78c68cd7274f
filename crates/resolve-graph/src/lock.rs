//! The lockfile, `pkgload.lock`: the exact versions (and manifest digests) of a resolution.
//!
//! ```toml
//! version = 1
//!
//! [root]
//! name = "acme/app"
//! version = "1.0.0"
//!
//! [[package]]
//! name = "acme/python"
//! version = "3.12.0"
//! digest = "sha256:…"
//! source = "registry.example/acme/python"
//! ```
//!
//! [`resolve_locked`] rebuilds a resolution from a lockfile without listing any versions:
//! it asks only for the locked summaries, checks their digests, and checks that every
//! requirement reachable from the root still holds.

use std::collections::BTreeMap;

use futures::future::join_all;
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::manifest::Manifest;
use crate::name::{PackageId, PackageName};
use crate::solver::Resolution;
use crate::source::{Source, SourceError};

/// The lockfile format version this build reads and writes.
pub const LOCK_VERSION: u32 = 1;

/// A parsed `pkgload.lock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lockfile {
    /// Format version; must be [`LOCK_VERSION`].
    pub version: u32,
    /// The root package the lock was made for.
    pub root: LockedRoot,
    /// Every other package, sorted by name.
    #[serde(default, rename = "package")]
    pub packages: Vec<LockedPackage>,
}

/// The root entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedRoot {
    /// The root's name.
    pub name: PackageName,
    /// The root's version.
    pub version: Version,
}

/// One locked package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedPackage {
    /// Name.
    pub name: PackageName,
    /// Exact version.
    pub version: Version,
    /// Digest of its OCI manifest.
    pub digest: String,
    /// Where it came from.
    pub source: String,
}

/// Lockfile problems.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Not TOML, or not the lockfile shape.
    #[error("pkgload.lock is not valid: {0}")]
    Parse(#[source] toml::de::Error),
    /// Could not be written as TOML.
    #[error("pkgload.lock could not be written: {0}")]
    Write(#[source] toml::ser::Error),
    /// Written by an incompatible build.
    #[error("pkgload.lock has version {0}; this build reads version {LOCK_VERSION}")]
    Version(u32),
    /// A package is locked twice.
    #[error("pkgload.lock locks {0} twice")]
    Duplicate(PackageName),
    /// The lock is for another root.
    #[error("pkgload.lock was made for {locked}, not {root}")]
    OtherRoot {
        /// What the lock says.
        locked: String,
        /// What is being loaded.
        root: String,
    },
    /// The root's requirements changed since the lock was written.
    #[error("pkgload.lock no longer matches: {package} requires {on} {req}, but {found}")]
    Stale {
        /// The dependent.
        package: String,
        /// The dependency.
        on: String,
        /// The requirement.
        req: String,
        /// What the lock has instead.
        found: String,
    },
    /// A locked summary could not be fetched.
    #[error("locked package unavailable: {0}")]
    Source(#[source] SourceError),
    /// A source returned a different manifest than the one locked.
    #[error("{package}: the lock pins manifest {locked} but the source has {found}")]
    DigestMismatch {
        /// The package.
        package: String,
        /// The locked digest.
        locked: String,
        /// The digest found.
        found: String,
    },
}

impl Lockfile {
    /// The lockfile for a resolution.
    pub fn from_resolution(resolution: &Resolution) -> Self {
        Self {
            version: LOCK_VERSION,
            root: LockedRoot {
                name: resolution.root.name.clone(),
                version: resolution.root.version.clone(),
            },
            // `packages` is a BTreeMap, so this is sorted by name: diffs stay small.
            packages: resolution
                .packages
                .iter()
                .map(|(name, s)| LockedPackage {
                    name: name.clone(),
                    version: s.manifest.version.clone(),
                    digest: s.digest.clone(),
                    source: s.source.clone(),
                })
                .collect(),
        }
    }

    /// Parses and checks a lockfile.
    pub fn from_toml(text: &str) -> Result<Self, LockError> {
        let lock: Self = toml::from_str(text).map_err(LockError::Parse)?;
        if lock.version != LOCK_VERSION {
            return Err(LockError::Version(lock.version));
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &lock.packages {
            if !seen.insert(&p.name) {
                return Err(LockError::Duplicate(p.name.clone()));
            }
        }
        Ok(lock)
    }

    /// The lockfile as TOML text.
    pub fn to_toml(&self) -> Result<String, LockError> {
        toml::to_string(self).map_err(LockError::Write)
    }

    /// Locked versions, for [`crate::ResolveOptions::preferred`] when re-resolving.
    pub fn preferred(&self) -> BTreeMap<PackageName, Version> {
        self.packages
            .iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect()
    }
}

/// Rebuilds the resolution a lockfile describes, querying only the locked summaries (all
/// at once) and never a version list. Fails if the lock no longer satisfies the root.
pub async fn resolve_locked<S: Source + ?Sized>(
    source: &S,
    root: &Manifest,
    lock: &Lockfile,
) -> Result<Resolution, LockError> {
    if lock.root.name != root.name || lock.root.version != root.version {
        return Err(LockError::OtherRoot {
            locked: format!("{} {}", lock.root.name, lock.root.version),
            root: root.id().to_string(),
        });
    }
    let locked: BTreeMap<&PackageName, &LockedPackage> =
        lock.packages.iter().map(|p| (&p.name, p)).collect();
    // Check the root first: a changed root requirement is the common case and needs no query.
    check_requirements(root, root, &locked)?;
    let ids: Vec<PackageId> = lock
        .packages
        .iter()
        .map(|p| PackageId::new(p.name.clone(), p.version.clone()))
        .collect();
    let summaries = join_all(ids.iter().map(|id| source.summary(id))).await;
    let mut packages = BTreeMap::new();
    for (p, summary) in lock.packages.iter().zip(summaries) {
        let summary = summary.map_err(LockError::Source)?;
        if summary.digest != p.digest {
            return Err(LockError::DigestMismatch {
                package: format!("{} {}", p.name, p.version),
                locked: p.digest.clone(),
                found: summary.digest,
            });
        }
        packages.insert(p.name.clone(), summary);
    }
    // Keep only what the root still reaches, checking each requirement on the way.
    let mut reached = BTreeMap::new();
    let mut queue = vec![root.name.clone()];
    while let Some(name) = queue.pop() {
        let manifest = if name == root.name {
            root
        } else {
            match packages.remove(&name) {
                Some(summary) => {
                    let summary = reached.entry(name).or_insert(summary);
                    &summary.manifest
                }
                None => continue,
            }
        };
        check_requirements(manifest, root, &locked)?;
        queue.extend(
            manifest
                .dependencies
                .iter()
                .map(|d| d.package.clone())
                .filter(|n| packages.contains_key(n)),
        );
    }
    Ok(Resolution {
        root: root.clone(),
        packages: reached,
        rounds: 1,
        warnings: source.take_warnings(),
    })
}

fn check_requirements(
    manifest: &Manifest,
    root: &Manifest,
    locked: &BTreeMap<&PackageName, &LockedPackage>,
) -> Result<(), LockError> {
    for dep in &manifest.dependencies {
        let stale = |found: String| LockError::Stale {
            package: manifest.id().to_string(),
            on: dep.package.to_string(),
            req: dep.req.to_string(),
            found,
        };
        // The root is not in `package` entries but may be depended on (a cycle through it).
        let version = if dep.package == root.name {
            Some(&root.version)
        } else {
            locked.get(&dep.package).map(|p| &p.version)
        };
        match version {
            None => return Err(stale("the lock has no such package".to_owned())),
            Some(v) if !dep.req.matches(v) => {
                return Err(stale(format!("the lock pins {v}")));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

//! The pkgload package model and dependency resolver.
//!
//! - [`Manifest`] is the package config (schema v1, DESIGN.md "A package is an OCI
//!   artifact"), parsed with [`Manifest::from_json`] and checked by [`Manifest::validate`];
//!   errors name the package and the field.
//! - [`Source`] is how versions and manifests are discovered; [`InMemorySource`] and
//!   [`MultiSource`] (ordered, failures become warnings when another source answers, and
//!   reach [`Resolution::warnings`]) ship here, registries live in other crates.
//! - [`resolve`] is a backtracking solver on `pubgrub`: one version per package name,
//!   lockfile versions preferred through [`ResolveOptions::preferred`]. It first fetches,
//!   pipelined and concurrently, the metadata of every version some reachable requirement
//!   accepts (about two round trips per dependency level, each query once), then runs
//!   pubgrub once, stepping over versions the metadata already shows to be unusable so
//!   that time grows about linearly with the registry. When nothing fits, the error
//!   carries an [`Explanation`] in plain sentences.
//! - [`ResolvedGraph`] is the result as a `petgraph` graph with alias-labelled edges, cycle
//!   detection that names the cycle, a topological order and DOT export.
//! - [`ResolvedPackage`] merges every package's commands (nearer shadows farther) and
//!   filesystem mappings (nearer wins, equal distance is a [`MergeError::MountConflict`]).
//! - [`Lockfile`] reads and writes `pkgload.lock`; [`resolve_locked`] rebuilds a resolution
//!   from it without listing any versions and fails clearly when the root changed.
//!
//! The crate is pure: no network, disk or runtime crate.
//!
//! ```
//! use resolve_graph::{resolve, InMemorySource, Manifest, ResolveOptions};
//! use semver::{Version, VersionReq};
//!
//! let lib = "acme/lib".parse()?;
//! let mut registry = InMemorySource::new("memory");
//! registry.add(Manifest::new("acme/lib".parse()?, Version::new(1, 0, 0)));
//! registry.add(Manifest::new("acme/lib".parse()?, Version::new(1, 4, 2)));
//! registry.add(Manifest::new("acme/lib".parse()?, Version::new(2, 0, 0)));
//!
//! let app = Manifest::new("acme/app".parse()?, Version::new(0, 1, 0))
//!     .with_dependency("lib", "acme/lib".parse()?, VersionReq::parse("^1")?);
//! let resolution = futures::executor::block_on(resolve(&registry, &app, &ResolveOptions::default()))?;
//! assert_eq!(resolution.version(&lib), Some(&Version::new(1, 4, 2)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod explain;
mod graph;
mod lock;
mod manifest;
mod merge;
mod name;
mod path;
mod ranges;
mod solver;
mod source;
mod validate;

pub use explain::Explanation;
pub use graph::{Cycle, GraphError, ResolvedGraph};
pub use lock::{LOCK_VERSION, LockError, LockedPackage, LockedRoot, Lockfile, resolve_locked};
pub use manifest::{Command, Dependency, FsMapping, Manifest};
pub use merge::{MergeError, ResolvedCommand, ResolvedMapping, ResolvedPackage};
pub use name::{GLOBAL_NAMESPACE, NameError, PackageId, PackageName};
pub use path::AbsPath;
pub use ranges::{opts_into_prerelease, req_to_ranges};
pub use solver::{Resolution, ResolveError, ResolveOptions, resolve};
pub use source::{InMemorySource, MultiSource, Source, SourceError, Summary};
pub use validate::ManifestError;

//! The pkgload package model and dependency resolver.
//!
//! This crate holds the package config model (schema v1, see DESIGN.md "A package is an OCI
//! artifact") and its validation. It stays pure: no network or disk crate.

mod manifest;
mod name;
mod path;
pub mod ranges;
mod source;
mod validate;

pub use manifest::{Command, Dependency, FsMapping, Manifest};
pub use name::{NameError, PackageId, PackageName};
pub use path::AbsPath;
pub use ranges::{opts_into_prerelease, req_to_ranges};
pub use source::{InMemorySource, MultiSource, Source, SourceError, Summary};
pub use validate::ManifestError;

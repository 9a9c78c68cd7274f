//! The pkgload package model and dependency resolver.
//!
//! This crate will hold the package manifest model (config schema v1), the `Source` trait
//! through which versions and manifests are discovered, a backtracking version solver built
//! on `pubgrub`, the resolved `petgraph` graph, the merge of commands and filesystem mappings
//! and the `pkgload.lock` lockfile. It stays pure: no network or disk crate.
//!
//! It is specified by issue 6 and not written yet: there is deliberately no API here so that
//! nothing can depend on a placeholder.

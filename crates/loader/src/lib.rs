//! The pkgload facade: one call from a package reference to a ready package tree.
//!
//! This crate will wire the sources, the resolver, the parallel cache-first fetch and the
//! filesystem assembly into `Loader::load(reference) -> LoadedPackage`.
//!
//! It is specified by issue 7 and not written yet: there is deliberately no API here so that
//! nothing can depend on a placeholder.

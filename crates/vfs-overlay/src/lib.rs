//! Zero-copy virtual filesystems for pkgload.
//!
//! This crate will hold the `FileSystem` trait, tar volumes served as slices of memory-mapped
//! blobs, nested union mounts, OCI overlay layers with exact whiteout semantics and a
//! materializer that never writes outside its target directory.
//!
//! It is specified by issue 5 and not written yet: there is deliberately no API here so that
//! nothing can depend on a placeholder.

//! HTTP transport and OCI distribution for pkgload.
//!
//! This crate will hold one shared, pooled HTTP client that streams response bodies straight
//! into [`cache-core`](../cache_core/index.html)'s ingest (hashing while writing, resuming
//! with `Range` after an interrupted transfer, retrying transient failures), the OCI
//! distribution protocol (manifests, blobs, tags, the token flow) and OCI image layout
//! directories on top of it.
//!
//! It is specified by issue 4 and not written yet: there is deliberately no API here so that
//! nothing can depend on a placeholder.

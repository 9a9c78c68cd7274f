//! What the cache's garbage collector must follow from a kept blob: an OCI manifest keeps
//! its config and layers (an index its manifests), and a compressed layer keeps the
//! uncompressed tar derived from it.

use cache_core::{ChildrenFn, Store};

/// The `children` function for [`cache_core::GcOptions`], so that `gc` keeping a tag ref
/// keeps everything a load of that tag reads.
pub fn gc_children(store: Store) -> ChildrenFn {
    std::sync::Arc::new(move |digest, bytes| {
        let mut children = crate::artifact::referenced_blobs(bytes);
        children.extend(vfs_overlay::recorded_uncompressed(&store, digest));
        children
    })
}

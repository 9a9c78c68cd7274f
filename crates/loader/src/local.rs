//! Packages whose volumes and atoms are not OCI blobs: a package directory under
//! development (host directories and files) or a webc file (volumes and atoms inside the
//! container), as a root or as a dependency found in a directory of webc files.

use std::collections::HashMap;
use std::sync::Arc;

use cache_core::{Algorithm, Blob, Digest, Store};
use resolve_graph::PackageId;
use vfs_overlay::{DirVolume, FileSystem};
use webc_package::WebcContainer;

use crate::error::{LoadError, Result};
use crate::package_dir::PackageDir;
use crate::remote::blocking;

/// Where a local package's parts come from.
#[derive(Debug, Clone)]
pub(crate) enum LocalRoot {
    /// A directory holding `pkgload.toml`.
    Directory(PackageDir),
    /// A webc file, and its copy in the store.
    Webc {
        container: WebcContainer,
        blob: Blob,
    },
}

/// A package and the name of one of its volumes or atoms.
pub(crate) type PartKey = (PackageId, String);

/// The opened volumes and atoms of the local packages of a tree.
#[derive(Debug, Default)]
pub(crate) struct LocalParts {
    pub(crate) volumes: HashMap<PartKey, Arc<dyn FileSystem>>,
    pub(crate) atoms: HashMap<PartKey, Blob>,
}

impl LocalParts {
    /// Open the `volumes` and `atoms` of `packages` (the names the tree's mappings and
    /// commands use): a directory's as host directories and files imported into `store`, a
    /// webc's from the container (an atom is checked against its signature and handed out
    /// as a [`Blob`] named by its sha256, like any other).
    pub(crate) async fn open(
        store: &Store,
        packages: &HashMap<PackageId, Arc<LocalRoot>>,
        volumes: Vec<PartKey>,
        atoms: Vec<PartKey>,
    ) -> Result<Self> {
        let mut parts = LocalParts::default();
        let package = |id: &PackageId| {
            packages
                .get(id)
                .cloned()
                .ok_or_else(|| LoadError::Inconsistent {
                    reference: id.to_string(),
                    reason: "not a local package (a loader bug)".to_owned(),
                })
        };
        for key in volumes {
            let volume: Arc<dyn FileSystem> = match &*package(&key.0)? {
                LocalRoot::Directory(dir) => {
                    let Some(path) = dir.volumes.get(&key.1) else {
                        continue;
                    };
                    Arc::new(
                        DirVolume::open(path).map_err(|e| LoadError::io("open volume", path, e))?,
                    )
                }
                LocalRoot::Webc { container, .. } => {
                    // Indexing reads the volume's header and, for v3, hashes every file.
                    let (container, name) = (container.clone(), key.1.clone());
                    Arc::new(
                        blocking(
                            "opening a webc volume",
                            move || Ok(container.volume(&name)?),
                        )
                        .await?,
                    )
                }
            };
            parts.volumes.insert(key, volume);
        }
        for key in atoms {
            let blob = match &*package(&key.0)? {
                LocalRoot::Directory(dir) => {
                    let Some(file) = dir.atoms.get(&key.1) else {
                        continue;
                    };
                    store.import_file(file, Algorithm::Sha256).await?
                }
                LocalRoot::Webc { container, blob } => {
                    let (container, blob, name) = (container.clone(), blob.clone(), key.1.clone());
                    blocking("opening a webc atom", move || {
                        let atom = container.atom(&name)?;
                        let digest =
                            Digest::from_raw(Algorithm::Sha256, &atom.sha256).ok_or_else(|| {
                                LoadError::Inconsistent {
                                    reference: container.origin().to_owned(),
                                    reason: "an atom's sha256 is not 32 bytes".to_owned(),
                                }
                            })?;
                        Ok(Blob::verified_part(&blob, digest, atom.bytes))
                    })
                    .await?
                }
            };
            parts.atoms.insert(key, blob);
        }
        Ok(parts)
    }
}

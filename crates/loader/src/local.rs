//! A root whose own volumes and atoms are not OCI blobs: a package directory under
//! development (host directories and files) or a webc file (volumes and atoms inside the
//! container). Its dependencies are ordinary resolved packages.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cache_core::{Algorithm, Blob, Digest, Store};
use vfs_overlay::{DirVolume, FileSystem};
use webc_package::WebcContainer;

use crate::error::{LoadError, Result};
use crate::package_dir::PackageDir;

/// Where a local root's parts come from.
#[derive(Debug)]
pub(crate) enum LocalRoot {
    /// A directory holding `pkgload.toml`.
    Directory(PackageDir),
    /// A webc file, and its copy in the store.
    Webc {
        container: WebcContainer,
        blob: Blob,
    },
}

/// The opened volumes and atoms of a local root.
#[derive(Debug, Default)]
pub(crate) struct LocalParts {
    pub(crate) volumes: HashMap<String, Arc<dyn FileSystem>>,
    pub(crate) atoms: HashMap<String, Blob>,
}

impl LocalParts {
    /// Open the volumes in `volumes` and the atoms in `atoms` (the names the root's
    /// mappings and commands use): a directory's as host directories and files imported
    /// into `store`, a webc's from the container (an atom is checked against its signature
    /// and handed out as a [`Blob`] named by its sha256, like any other).
    pub(crate) async fn open(
        store: &Store,
        root: &LocalRoot,
        volumes: &HashSet<String>,
        atoms: &HashSet<String>,
    ) -> Result<Self> {
        let mut parts = LocalParts::default();
        match root {
            LocalRoot::Directory(package) => {
                for (name, dir) in package.volumes.iter().filter(|(n, _)| volumes.contains(*n)) {
                    let volume =
                        DirVolume::open(dir).map_err(|e| LoadError::io("open volume", dir, e))?;
                    parts.volumes.insert(name.clone(), Arc::new(volume));
                }
                for (name, file) in package.atoms.iter().filter(|(n, _)| atoms.contains(*n)) {
                    let blob = store.import_file(file, Algorithm::Sha256).await?;
                    parts.atoms.insert(name.clone(), blob);
                }
            }
            LocalRoot::Webc { container, blob } => {
                let (container, blob) = (container.clone(), blob.clone());
                let (volumes, atoms) = (volumes.clone(), atoms.clone());
                // Indexing a volume reads its header and, for v3, hashes every file.
                parts =
                    tokio::task::spawn_blocking(move || -> Result<LocalParts> {
                        let mut parts = LocalParts::default();
                        for name in volumes {
                            let volume = container.volume(&name)?;
                            parts.volumes.insert(name, Arc::new(volume));
                        }
                        for name in atoms {
                            let atom = container.atom(&name)?;
                            let digest = Digest::from_raw(Algorithm::Sha256, &atom.sha256)
                                .ok_or_else(|| LoadError::Inconsistent {
                                    reference: container.origin().to_owned(),
                                    reason: "an atom's sha256 is not 32 bytes".to_owned(),
                                })?;
                            parts
                                .atoms
                                .insert(name, Blob::verified_part(&blob, digest, atom.bytes));
                        }
                        Ok(parts)
                    })
                    .await
                    .map_err(|e| LoadError::Inconsistent {
                        reference: "webc".to_owned(),
                        reason: format!("opening the webc package failed: {e}"),
                    })??;
            }
        }
        Ok(parts)
    }
}

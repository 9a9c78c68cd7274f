//! Packages whose volumes and atoms are not OCI blobs: a package directory under
//! development (host directories and files) or a webc file (volumes and atoms inside the
//! container), as a root or as a dependency found in a directory of webc files.

use std::collections::HashMap;
use std::sync::Arc;

use cache_core::{Algorithm, Blob, Digest, Store};
use resolve_graph::PackageId;
use vfs_overlay::{DirVolume, FileSystem};
use webc_package::{Checked, WebcContainer};

use crate::error::{LoadError, Result};
use crate::kept_volume::KeptVolume;
use crate::package_dir::PackageDir;
use crate::remote::blocking;
use crate::tree_snapshot::{KeptAtom, KeptParts, OpenedParts};
use crate::webc_precheck::Precheck;

/// Where a local package's parts come from.
#[derive(Debug, Clone)]
pub(crate) enum LocalRoot {
    /// A directory holding `pkgload.toml`.
    Directory(PackageDir),
    /// A webc file, its copy in the store, what earlier loads had checked in it, and the
    /// checks this load started early.
    Webc {
        container: WebcContainer,
        blob: Blob,
        recorded: Checked,
        precheck: Precheck,
    },
    /// A webc file's parts as a tree snapshot kept them (`tree_snapshot.rs`): checked when
    /// the snapshot was made, indexed, nothing to parse.
    Kept(KeptParts),
}

/// A package and the name of one of its volumes or atoms.
pub(crate) type PartKey = (PackageId, String);

/// The opened volumes and atoms of the local packages of a tree.
#[derive(Debug, Default)]
pub(crate) struct LocalParts {
    pub(crate) volumes: HashMap<PartKey, Arc<dyn FileSystem>>,
    pub(crate) atoms: HashMap<PartKey, Blob>,
    /// What was opened of each webc package, for a tree snapshot.
    pub(crate) opened: HashMap<PackageId, OpenedParts>,
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
        // Parts whose checks started during resolution open once those are done, as
        // checked parts.
        futures::future::join_all(packages.values().map(|root| async move {
            if let LocalRoot::Webc { precheck, .. } = &**root {
                precheck.done().await;
            }
        }))
        .await;
        // Volumes open side by side: a v3 volume's first opening hashes every file.
        let opened = futures::future::try_join_all(volumes.into_iter().map(|key| {
            let root = package(&key.0);
            async move {
                let volume: Option<(Arc<dyn FileSystem>, Option<_>)> = match &*root? {
                    LocalRoot::Directory(dir) => match dir.volumes.get(&key.1) {
                        Some(path) => Some((
                            Arc::new(
                                DirVolume::open(path)
                                    .map_err(|e| LoadError::io("open volume", path, e))?,
                            ),
                            None,
                        )),
                        None => None,
                    },
                    // Indexing a volume checked before reads its index only: no need to
                    // leave this task. A first opening hashes every file.
                    LocalRoot::Webc { container, .. } if container.volume_is_checked(&key.1) => {
                        let volume = container.volume(&key.1)?;
                        let index = volume.index().clone();
                        Some((Arc::new(volume), Some(index)))
                    }
                    LocalRoot::Webc { container, .. } => {
                        let (container, name) = (container.clone(), key.1.clone());
                        let volume =
                            blocking(
                                "opening a webc volume",
                                move || Ok(container.volume(&name)?),
                            )
                            .await?;
                        let index = volume.index().clone();
                        Some((Arc::new(volume), Some(index)))
                    }
                    LocalRoot::Kept(kept) => {
                        let index = kept.volumes.get(&key.1).ok_or_else(|| kept.lacks(&key))?;
                        let shown = format!("volume {:?} of {}", key.1, key.0);
                        let data = kept.blob.bytes().clone();
                        let volume = KeptVolume::new(data, index.clone(), shown);
                        Some((Arc::new(volume), None))
                    }
                };
                Ok::<_, LoadError>(volume.map(|v| (key, v)))
            }
        }))
        .await?;
        for (key, (volume, index)) in opened.into_iter().flatten() {
            if let Some(index) = index {
                let opened = parts.opened.entry(key.0.clone()).or_default();
                opened.volumes.push((key.1.clone(), index));
            }
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
                LocalRoot::Webc {
                    container, blob, ..
                } => {
                    // An atom checked before is a slice; a first one is hashed.
                    let checked = container.atom_is_checked(&key.1);
                    let file = blob.bytes().clone();
                    let (container, blob, name) = (container.clone(), blob.clone(), key.1.clone());
                    let open =
                        move || {
                            let atom = container.atom(&name)?;
                            let digest = Digest::from_raw(Algorithm::Sha256, &atom.sha256)
                                .ok_or_else(|| LoadError::Inconsistent {
                                    reference: container.origin().to_owned(),
                                    reason: "an atom's sha256 is not 32 bytes".to_owned(),
                                })?;
                            Ok(Blob::verified_part(&blob, digest, atom.bytes))
                        };
                    let atom = if checked {
                        open()?
                    } else {
                        blocking("opening a webc atom", open).await?
                    };
                    if let Some(kept) = KeptAtom::of(&file, &atom) {
                        let opened = parts.opened.entry(key.0.clone()).or_default();
                        opened.atoms.push((key.1.clone(), kept));
                    }
                    atom
                }
                LocalRoot::Kept(kept) => kept.atom(&key.1).ok_or_else(|| kept.lacks(&key))?,
            };
            parts.atoms.insert(key, blob);
        }
        // What was checked now need not be checked by the next load of the same bytes.
        futures::future::try_join_all(packages.values().map(|root| async move {
            match &**root {
                LocalRoot::Webc {
                    container,
                    blob,
                    recorded,
                    ..
                } => record_checks(store, blob.digest(), container, recorded).await,
                LocalRoot::Directory(_) | LocalRoot::Kept(_) => Ok(()),
            }
        }))
        .await?;
        Ok(parts)
    }
}

/// The derived entry that records what was checked in a stored webc blob (atoms against
/// their signatures, v3 volumes' files against their hashes). The blob is content-
/// addressed, so what held for its bytes once holds for good: a warm load vouches for it
/// instead of hashing every atom and file again.
const CHECKED_KIND: &str = "webcchecked";

/// What earlier loads checked in the blob `digest` (nothing when no record, or an
/// unreadable one).
pub(crate) fn recorded_checks(store: &Store, digest: &Digest) -> Checked {
    cache_core::DerivedKind::new(CHECKED_KIND)
        .ok()
        .and_then(|kind| store.get_derived(digest, &kind).ok().flatten())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Records what has been checked in `container` (the stored blob `digest`) when it is more
/// than `recorded`.
async fn record_checks(
    store: &Store,
    digest: &Digest,
    container: &WebcContainer,
    recorded: &Checked,
) -> Result<()> {
    let checked = container.checked();
    if checked == *recorded {
        return Ok(());
    }
    let kind = cache_core::DerivedKind::new(CHECKED_KIND)?;
    let json = serde_json::to_vec(&checked).map_err(|e| LoadError::Inconsistent {
        reference: container.origin().to_owned(),
        reason: format!("cannot record its checks: {e}"),
    })?;
    store.put_memo(digest, &kind, json).await?;
    Ok(())
}

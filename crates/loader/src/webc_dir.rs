//! A directory of webc files as the place packages are found (`--registry dir:DIR`,
//! `LoaderBuilder::webc_dir`): the solver's [`Source`] over it.
//!
//! Files are found in either of the layouts Wasmer's tools write,
//! `DIR/<namespace>/<name>/<version>.webc` and `DIR/<namespace>--<name>@<version>.webc`,
//! where the name and version come from the path and a file is opened only when the
//! solution needs it (its annotation must then agree with its place). A `*.webc` file at
//! the top that fits neither (`cowsay.webc`, `bash-1.0.16-<uuid>.webc`) is opened once,
//! when the directory is first listed, and indexed by its annotation, else by its sha256,
//! as Wasmer's directory source does.
//!
//! Every package a summary was read for is remembered with its container, so the load
//! serves its volumes and atoms from it (see `local.rs`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use cache_core::Digest;
use futures::future::{BoxFuture, FutureExt};
use resolve_graph::{PackageId, PackageName, Source, SourceError, Summary};
use semver::Version;
use tokio::sync::OnceCell;

use crate::direct::DirectPackages;
use crate::error::{LoadError, Result};
use crate::local::LocalRoot;
use crate::remote::Found;
use crate::webc::{WebcFile, identity_of_place};

/// The packages of one directory, by name and version.
type Index = HashMap<PackageName, BTreeMap<Version, PathBuf>>;

pub(crate) struct WebcDirSource {
    root: PathBuf,
    /// Packages named by URL or path (a file's dependencies may be).
    direct: Arc<DirectPackages>,
    /// File digests a lockfile pins.
    pinned: HashMap<PackageId, Digest>,
    index: OnceCell<Index>,
    /// Files opened so far (while indexing or for a summary), by path.
    opened: Mutex<HashMap<PathBuf, Arc<WebcFile>>>,
    /// The package behind each summary handed out.
    found: Mutex<HashMap<PackageId, Arc<WebcFile>>>,
}

impl WebcDirSource {
    pub(crate) fn new(
        root: PathBuf,
        direct: &Arc<DirectPackages>,
        pinned: HashMap<PackageId, Digest>,
    ) -> Self {
        WebcDirSource {
            root,
            direct: direct.clone(),
            pinned,
            index: OnceCell::new(),
            opened: Mutex::new(HashMap::new()),
            found: Mutex::new(HashMap::new()),
        }
    }

    /// Where the package `id` was found, with its container, if a summary was read for it.
    pub(crate) fn found(&self, id: &PackageId) -> Option<(Found, LocalRoot)> {
        let found = self.found.lock().unwrap_or_else(PoisonError::into_inner);
        let file = found.get(id)?;
        Some((file.found.clone(), file.local_root()))
    }

    /// The file of `name`'s newest version matching `req` (`locked`, when given).
    pub(crate) async fn pick(
        &self,
        name: &PackageName,
        req: &semver::VersionReq,
        locked: Option<&Version>,
    ) -> Result<PathBuf> {
        let index = self.index().await?;
        let versions = index.get(name);
        let picked = match locked {
            Some(v) => versions.and_then(|vs| vs.get(v)),
            None => versions.and_then(|vs| {
                vs.iter()
                    .rev()
                    .find(|(v, _)| req.matches(v))
                    .map(|(_, p)| p)
            }),
        };
        picked.cloned().ok_or_else(|| LoadError::Reference {
            input: format!("{name}@{req}"),
            reason: format!(
                "{} has no version of {name} matching {req} (it has: {})",
                self.origin(),
                versions.map_or_else(
                    || "none".to_owned(),
                    |vs| vs
                        .keys()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            ),
        })
    }

    fn origin(&self) -> String {
        format!("dir:{}", self.root.display())
    }

    async fn open(&self, path: &Path) -> Result<Arc<WebcFile>> {
        if let Some(file) = self
            .opened
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
        {
            return Ok(file.clone());
        }
        let file = Arc::new(self.direct.open_file(path).await?);
        self.opened
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.to_owned(), file.clone());
        Ok(file)
    }

    async fn index(&self) -> Result<&Index> {
        self.index.get_or_try_init(|| self.build_index()).await
    }

    async fn build_index(&self) -> Result<Index> {
        let io = |e: std::io::Error, path: &Path| LoadError::io("list", path, e);
        let mut index = Index::new();
        let mut add = |name: PackageName, version: Version, path: PathBuf| -> Result<()> {
            let versions = index.entry(name.clone()).or_default();
            match versions.get(&version) {
                Some(other) if other != &path => Err(LoadError::PackageDir {
                    path: path.display().to_string(),
                    reason: format!(
                        "{name}@{version} is also {}; keep one file per package version",
                        other.display()
                    ),
                }),
                _ => {
                    versions.insert(version, path);
                    Ok(())
                }
            }
        };
        let entries = std::fs::read_dir(&self.root).map_err(|e| io(e, &self.root))?;
        let mut unplaced = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| io(e, &self.root))?.path();
            if path.is_dir() {
                // DIR/<namespace>/<name>/<version>.webc
                for name_dir in std::fs::read_dir(&path).map_err(|e| io(e, &path))? {
                    let name_dir = name_dir.map_err(|e| io(e, &path))?.path();
                    if !name_dir.is_dir() {
                        continue;
                    }
                    for file in std::fs::read_dir(&name_dir).map_err(|e| io(e, &name_dir))? {
                        let file = file.map_err(|e| io(e, &name_dir))?.path();
                        if let Some((name, version)) = identity_of_place(&file) {
                            add(name, version, file)?;
                        }
                    }
                }
            } else if path.extension().is_some_and(|e| e == "webc") {
                match identity_of_place(&path) {
                    Some((name, version)) => add(name, version, path)?,
                    None => unplaced.push(path),
                }
            }
        }
        unplaced.sort();
        for path in unplaced {
            let file = self.open(&path).await?;
            add(
                file.manifest.name.clone(),
                file.manifest.version.clone(),
                path,
            )?;
        }
        Ok(index)
    }

    async fn summarize(&self, id: &PackageId) -> Result<Summary> {
        let index = self.index().await?;
        let path = index
            .get(&id.name)
            .and_then(|v| v.get(&id.version))
            .ok_or_else(|| LoadError::PackageDir {
                path: self.root.display().to_string(),
                reason: format!("has no {id}"),
            })?
            .clone();
        let file = self.open(&path).await?;
        if let Some(pinned) = self.pinned.get(id)
            && pinned != file.blob.digest()
        {
            return Err(LoadError::PackageDir {
                path: path.display().to_string(),
                reason: format!(
                    "the lockfile pins {id} to {pinned}, but this file is {}; the file changed \
                     since the lockfile was written",
                    file.blob.digest()
                ),
            });
        }
        if file.manifest.name != id.name || file.manifest.version != id.version {
            return Err(LoadError::PackageDir {
                path: path.display().to_string(),
                reason: format!(
                    "found as {id}, but it is {}@{}",
                    file.manifest.name, file.manifest.version
                ),
            });
        }
        file.precheck();
        self.found
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), file.clone());
        Ok(Summary {
            manifest: file.manifest.clone(),
            digest: file.blob.digest().to_string(),
            source: path.display().to_string(),
        })
    }

    fn failed(&self, package: String, e: &LoadError) -> SourceError {
        SourceError::Failed {
            origin: self.origin(),
            package,
            message: e.to_string(),
        }
    }
}

impl Source for WebcDirSource {
    fn versions<'a>(
        &'a self,
        name: &'a PackageName,
    ) -> BoxFuture<'a, std::result::Result<Vec<Version>, SourceError>> {
        async move {
            let index = self
                .index()
                .await
                .map_err(|e| self.failed(name.to_string(), &e))?;
            Ok(index
                .get(name)
                .map(|v| v.keys().cloned().collect())
                .unwrap_or_default())
        }
        .boxed()
    }

    fn summary<'a>(
        &'a self,
        id: &'a PackageId,
    ) -> BoxFuture<'a, std::result::Result<Summary, SourceError>> {
        async move {
            self.summarize(id)
                .await
                .map_err(|e| self.failed(id.to_string(), &e))
        }
        .boxed()
    }
}

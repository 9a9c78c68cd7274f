//! A package under development: a directory with `pkgload.toml` whose volumes are host
//! directories (served read-only and confined by [`DirVolume`]) and whose atoms are local
//! files, with its dependencies resolved from the configured registry.
//!
//! This module only reads the directory; the loader resolves the root it describes like
//! any other (see `Loader::resolve_directory`).

use std::path::Path;
use std::sync::Arc;

use cache_core::Algorithm;

use crate::artifact::{Artifact, ArtifactKind, BlobRef, PACKAGE_CONFIG_MEDIA_TYPE};
use crate::error::{LoadError, Result};
use crate::package_dir::PackageDir;
use crate::reference::PACKAGE_FILE;
use crate::remote::{Found, Located, Place};

/// A package directory read as the root of a resolution.
#[derive(Debug)]
pub(crate) struct DevRoot {
    pub(crate) package: PackageDir,
    /// The root as the solver sees it: its config, found in the directory.
    pub(crate) found: Found,
    /// Where its dependencies are looked up, in order.
    pub(crate) places: Vec<Place>,
}

impl DevRoot {
    /// Read `dir`; `places` are the configured places, which a package with dependencies
    /// needs.
    pub(crate) async fn open(dir: &Path, places: &[Place]) -> Result<Self> {
        let package = {
            let owned = dir.to_owned();
            tokio::task::spawn_blocking(move || PackageDir::open(&owned))
                .await
                .map_err(|e| LoadError::PackageDir {
                    path: dir.display().to_string(),
                    reason: format!("reading the package failed: {e}"),
                })??
        };
        let places = Place::for_local_root(
            places,
            package.manifest.dependencies.is_empty(),
            dir.to_owned(),
            &dir.join(PACKAGE_FILE).display().to_string(),
        )?;
        let config = Algorithm::Sha256.digest(&package.config_json);
        let artifact = Artifact {
            reference: dir.display().to_string(),
            digest: config,
            kind: ArtifactKind::Package,
            config: BlobRef {
                digest: config,
                size: package.config_json.len() as u64,
                media_type: PACKAGE_CONFIG_MEDIA_TYPE.to_owned(),
                title: None,
                embedded: None,
                toc: None,
            },
            layers: Vec::new(),
        };
        let found = Found {
            at: Located::Layout(dir.to_owned()),
            artifact: Arc::new(artifact),
        };
        Ok(DevRoot {
            package,
            found,
            places,
        })
    }
}

//! A Wasmer webc file as the root of a resolution.
//!
//! The file is stored in the cache under its sha256 (so a load of the same file costs one
//! hash, and the tree it serves is the cache's memory map, not the user's file, which may
//! change), parsed with `webc-package`, and its manifest mapped onto the resolver's: the
//! package's named dependencies then resolve through the configured registry exactly like
//! an OCI package's, so a webc root may depend on OCI packages; dependencies named by URL
//! or path are identified first (`direct.rs`). Its own volumes and atoms are served from
//! the container (see `local.rs`).
//!
//! Identity, in order (the first that exists; where the annotation and the file's place
//! both say something and disagree, that is an error naming both):
//! 1. the `wapm` annotation's name and version;
//! 2. where the file is: `<namespace>--<name>@<version>.webc`, or
//!    `<namespace>/<name>/<version>.webc`;
//! 3. the file's sha256, as the package `sha256/<hex>` at version 0.0.0 (Wasmer's
//!    `sha256:<hex>` for nameless packages; pkgload's names need the slash).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use cache_core::{Algorithm, Blob, Digest, Store};
use resolve_graph::{AbsPath, PackageId, PackageName};
use semver::Version;
use webc_package::{Checked, DependencySource, Identity, PackageSpec, WebcContainer};

use crate::artifact::{Artifact, ArtifactKind, BlobRef};
use crate::error::{LoadError, Result};
use crate::local::{LocalRoot, recorded_checks};
use crate::remote::{Found, Located, Place, blocking};
use crate::webc_precheck::Precheck;

/// The media type pkgload gives a webc file wherever it names one (an OCI layer, a
/// descriptor).
pub const WEBC_MEDIA_TYPE: &str = "application/webc";

/// A webc file read as the root of a resolution.
#[derive(Debug)]
pub(crate) struct WebcRoot {
    pub(crate) file: WebcFile,
    /// Where its named dependencies are looked up, in order.
    pub(crate) places: Vec<Place>,
}

/// What a webc file's relative `use` paths are relative to.
#[derive(Debug, Clone)]
pub(crate) enum Base {
    /// The directory of a webc file on disk.
    Dir(PathBuf),
    /// The URL a webc file was fetched from.
    Url(fetch_http::Url),
    /// Nothing: the file came from somewhere a path cannot point into (an OCI registry).
    Nowhere,
}

/// A webc file stored, parsed and named, before its dependencies are looked at.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub(crate) container: WebcContainer,
    pub(crate) spec: PackageSpec,
    /// The container's file in the store.
    pub(crate) blob: Blob,
    pub(crate) name: PackageName,
    pub(crate) version: Version,
    /// The package as the solver and the fetch plan see it.
    pub(crate) found: Found,
    /// The file, URL or artifact, for messages.
    pub(crate) shown: String,
    /// What its `use` paths are relative to.
    pub(crate) base: Base,
    /// What earlier loads checked in these bytes (atoms, volumes), vouched for.
    pub(crate) checked: Checked,
}

impl Parsed {
    /// Parse a stored webc `blob` (named `shown` in errors) and name its package; `placed`
    /// is the identity where it was found (a file name, a tag), which an annotation must
    /// agree with; `found` is where it lives.
    pub(crate) async fn new(
        store: &Store,
        blob: Blob,
        shown: String,
        placed: Option<(PackageName, Version)>,
        found: Found,
        base: Base,
    ) -> Result<Parsed> {
        let (container, spec) = parse(blob.bytes().clone(), &shown).await?;
        let checked = recorded_checks(store, blob.digest());
        // Checks read the store's file, so they do not make the whole map resident; when
        // an earlier load checked every atom and volume, there is nothing left to read.
        let all_checked = container
            .atom_names()
            .iter()
            .all(|atom| checked.atoms.contains_key(atom))
            && container
                .volume_names()
                .iter()
                .all(|volume| checked.volumes.contains(volume));
        let container = match all_checked {
            true => container,
            false => match std::fs::File::open(store.blob_path(blob.digest())) {
                Ok(file) => container.with_file(file),
                Err(_) => container,
            },
        };
        if checked != Checked::default() {
            tracing::info!(
                file = %shown,
                atoms = checked.atoms.len(),
                volumes = checked.volumes.len(),
                "checked by an earlier load; not hashed again"
            );
        }
        container.vouch(&checked);
        let (name, version) = identity(spec.identity.clone(), placed, blob.digest(), &shown)?;
        Ok(Parsed {
            container,
            spec,
            blob,
            name,
            version,
            found,
            shown,
            base,
            checked,
        })
    }

    /// The webc file at `path`, stored under its sha256.
    pub(crate) async fn from_file(store: &Store, path: &Path) -> Result<Parsed> {
        let blob = stored_copy(store, path).await?;
        let shown = path.display().to_string();
        let found = found_as_file(&shown, Located::Layout(path.to_owned()), &blob);
        let beside = path.parent().unwrap_or(Path::new(".")).to_owned();
        Self::new(
            store,
            blob,
            shown,
            identity_of_place(path),
            found,
            Base::Dir(beside),
        )
        .await
    }

    /// The webc file `blob`, fetched from `url`.
    pub(crate) async fn from_url(
        store: &Store,
        blob: Blob,
        url: &fetch_http::Url,
    ) -> Result<Parsed> {
        let shown = url.to_string();
        let found = found_as_file(&shown, Located::Layout(PathBuf::from(&shown)), &blob);
        let placed = url
            .path_segments()
            .and_then(|mut segments| segments.next_back())
            .and_then(|name| identity_of_place(Path::new(name)));
        Self::new(store, blob, shown, placed, found, Base::Url(url.clone())).await
    }

    pub(crate) fn id(&self) -> PackageId {
        PackageId::new(self.name.clone(), self.version.clone())
    }
}

/// A webc file stored, parsed and mapped onto the resolver's model.
#[derive(Debug)]
pub(crate) struct WebcFile {
    pub(crate) container: WebcContainer,
    /// The container's file in the store.
    pub(crate) blob: Blob,
    /// The package in the resolver's terms.
    pub(crate) manifest: resolve_graph::Manifest,
    /// The package as the solver and the fetch plan see it.
    pub(crate) found: Found,
    /// Whether some dependency is named (`namespace/name@req`) and so needs a place.
    pub(crate) needs_place: bool,
    /// What earlier loads had checked in it.
    pub(crate) checked: Checked,
    /// The checks of the parts it uses, started when the solver reads its summary (not
    /// when it is opened: a directory's unplaced files are all opened to be indexed).
    precheck: OnceLock<Precheck>,
}

impl WebcFile {
    /// Where the load takes this package's volumes and atoms from (starting its checks,
    /// if its summary did not).
    pub(crate) fn local_root(&self) -> LocalRoot {
        LocalRoot::Webc {
            container: self.container.clone(),
            blob: self.blob.clone(),
            recorded: self.checked.clone(),
            precheck: self.precheck(),
        }
    }

    /// Start checking the parts the package uses itself, once (see `webc_precheck.rs`):
    /// called when its summary goes to the solver.
    pub(crate) fn precheck(&self) -> Precheck {
        self.precheck
            .get_or_init(|| Precheck::start(&self.container, &self.manifest))
            .clone()
    }

    /// The package of `parsed`; `direct` names the packages its `use` entries give by URL
    /// or path, by alias (`direct.rs` identifies them).
    pub(crate) fn from_parsed(
        parsed: Parsed,
        direct: &HashMap<String, PackageId>,
    ) -> Result<WebcFile> {
        let manifest = to_manifest(&parsed, direct)?;
        let needs_place = parsed
            .spec
            .dependencies
            .iter()
            .any(|d| matches!(d.source, DependencySource::Registry { .. }));
        Ok(WebcFile {
            container: parsed.container,
            blob: parsed.blob,
            manifest,
            found: parsed.found,
            needs_place,
            checked: parsed.checked,
            precheck: OnceLock::new(),
        })
    }
}

impl WebcRoot {
    /// `file` as a root; its named dependencies come from `places`, and without any it
    /// may name none (`beside` is then a place that is never asked; dependencies by URL or
    /// path need no place).
    pub(crate) fn new(file: WebcFile, beside: PathBuf, places: &[Place]) -> Result<WebcRoot> {
        let places = Place::for_local_root(
            places,
            !file.needs_place,
            beside,
            &file.found.artifact.reference,
        )?;
        Ok(WebcRoot { file, places })
    }
}

/// Containers up to this size are parsed on the calling task. Parsing reads the framing,
/// the manifest and the section indexes, never atom or file data, so for a container this
/// small it takes microseconds, less than the trip through `spawn_blocking` (a thread
/// woken or started per package, which dominated warm loads of many small packages).
const PARSE_HERE_MAX: usize = 8 << 20;

/// Parses the webc container `bytes` (named `shown` in errors), a large one off the
/// runtime's threads, and reads its package model.
pub(crate) async fn parse(bytes: Bytes, shown: &str) -> Result<(WebcContainer, PackageSpec)> {
    let origin = shown.to_owned();
    let container = if bytes.len() <= PARSE_HERE_MAX {
        WebcContainer::parse(bytes, origin)?
    } else {
        blocking(shown, move || Ok(WebcContainer::parse(bytes, origin)?)).await?
    };
    let spec = PackageSpec::from_manifest(
        container.manifest(),
        container.version(),
        &container.atom_names(),
        shown,
    )?;
    Ok((container, spec))
}

/// How a webc file that is not an OCI artifact (a file, a URL) appears to the solver and
/// the fetch plan: a package whose one blob is the file.
pub(crate) fn found_as_file(reference: &str, at: Located, blob: &Blob) -> Found {
    let artifact = Artifact {
        reference: reference.to_owned(),
        digest: *blob.digest(),
        kind: ArtifactKind::Package,
        config: BlobRef {
            digest: *blob.digest(),
            size: blob.len(),
            media_type: WEBC_MEDIA_TYPE.to_owned(),
            title: None,
            embedded: None,
            toc: None,
        },
        layers: Vec::new(),
    };
    Found {
        at,
        artifact: Arc::new(artifact),
    }
}

/// The derived entry that remembers which stored blob a webc file was, by its identity on
/// disk.
const FILE_MEMO_KIND: &str = "webcfile";

/// The store's copy of the file at `path`. A file whose device, inode, size, mtime and
/// ctime are those of an earlier import is that import's blob (ctime changes on every
/// write and cannot be set back, so a changed file always misses); anything else is
/// imported (hashed and copied) again. A warm load of a large webc is then one `stat`.
async fn stored_copy(store: &Store, path: &Path) -> Result<Blob> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).map_err(|e| LoadError::io("stat", path, e))?;
    let canonical = std::fs::canonicalize(path).map_err(|e| LoadError::io("resolve", path, e))?;
    let identity = format!(
        "webc file\0{}\0{}:{}:{}:{}.{}:{}.{}",
        canonical.display(),
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    );
    let key = Algorithm::Sha256.digest(identity.as_bytes());
    let kind = cache_core::DerivedKind::new(FILE_MEMO_KIND)?;
    let remembered = store
        .get_derived(&key, &kind)?
        .and_then(|v| Digest::parse(std::str::from_utf8(&v).ok()?).ok())
        .and_then(|digest| store.get(&digest).ok().flatten())
        .filter(|blob| blob.len() == meta.size());
    if let Some(blob) = remembered {
        tracing::info!(path = %path.display(), digest = %blob.digest(), "webc file unchanged since it was stored; using the stored copy");
        return Ok(blob);
    }
    let blob = store.import_file(path, Algorithm::Sha256).await?;
    store
        .put_memo(&key, &kind, blob.digest().to_string())
        .await?;
    Ok(blob)
}

/// The package's name and version; see the module docs for the order.
fn identity(
    annotation: Option<Identity>,
    placed: Option<(PackageName, Version)>,
    digest: &Digest,
    shown: &str,
) -> Result<(PackageName, Version)> {
    let bad = |reason: String| LoadError::PackageDir {
        path: shown.to_owned(),
        reason,
    };
    match annotation {
        Some(Identity::Named { name, version }) => {
            let name = PackageName::new(&name).map_err(|e| {
                bad(format!(
                    "its `wapm` annotation names it {name:?}, which pkgload cannot \
                             use as a package name: {e}"
                ))
            })?;
            if let Some((place_name, place_version)) = &placed
                && (place_name != &name || place_version != &version)
            {
                return Err(bad(format!(
                    "its `wapm` annotation says {name}@{version}, but where it was found says \
                     {place_name}@{place_version}; rename the file (or tag) or fix the package"
                )));
            }
            Ok((name, version))
        }
        Some(Identity::Hash(_)) | None => match placed {
            Some(found) => Ok(found),
            None => {
                let name = PackageName::new(&format!("sha256/{}", digest.hex()))
                    .map_err(|e| bad(e.to_string()))?;
                Ok((name, Version::new(0, 0, 0)))
            }
        },
    }
}

/// `<namespace>--<name>@<version>.webc`, else `<namespace>/<name>/<version>.webc`.
pub(crate) fn identity_of_place(path: &Path) -> Option<(PackageName, Version)> {
    let stem = path.file_name()?.to_str()?.strip_suffix(".webc")?;
    if let Some((full, version)) = stem.split_once('@')
        && let Some((namespace, name)) = full.split_once("--")
    {
        let name = PackageName::new(&format!("{namespace}/{name}")).ok()?;
        return Some((name, Version::parse(version).ok()?));
    }
    let version = Version::parse(stem).ok()?;
    let name_dir = path.parent()?;
    let namespace_dir = name_dir.parent()?;
    let name = PackageName::new(&format!(
        "{}/{}",
        namespace_dir.file_name()?.to_str()?,
        name_dir.file_name()?.to_str()?
    ))
    .ok()?;
    Some((name, version))
}

/// The webc package in the resolver's terms; `direct` names the packages its `use` entries
/// give by URL or path, by alias.
fn to_manifest(
    parsed: &Parsed,
    direct: &HashMap<String, PackageId>,
) -> Result<resolve_graph::Manifest> {
    let Parsed {
        name,
        version,
        spec,
        container,
        shown,
        ..
    } = parsed;
    let bad = |reason: String| LoadError::PackageDir {
        path: shown.to_owned(),
        reason,
    };
    let mut manifest = resolve_graph::Manifest::new(name.clone(), version.clone());
    for dep in &spec.dependencies {
        let (package, req) = match &dep.source {
            DependencySource::Registry { name, req } => (
                PackageName::new(name)
                    .map_err(|e| bad(format!("dependency {:?}: {e}", dep.alias)))?,
                req.clone(),
            ),
            DependencySource::Url { .. } | DependencySource::Path(_) => {
                let id = direct
                    .get(&dep.alias)
                    .ok_or_else(|| bad(format!("dependency {:?} was not identified", dep.alias)))?;
                // Exactly the version the location holds.
                let exact = semver::VersionReq::parse(&format!("={}", id.version))
                    .map_err(|e| bad(format!("dependency {:?}: {e}", dep.alias)))?;
                (id.name.clone(), exact)
            }
        };
        manifest.dependencies.push(resolve_graph::Dependency {
            alias: dep.alias.clone(),
            package,
            req,
        });
    }
    for command in &spec.commands {
        let annotations = container
            .manifest()
            .commands
            .get(&command.name)
            .map(|c| {
                c.annotations
                    .iter()
                    .map(|(key, value)| {
                        serde_json::to_value(value)
                            .map(|v| (key.clone(), v))
                            .map_err(|e| {
                                bad(format!(
                                    "command {:?}: annotation {key:?} has no JSON form: {e}",
                                    command.name
                                ))
                            })
                    })
                    .collect::<Result<BTreeMap<_, _>>>()
            })
            .transpose()?
            .unwrap_or_default();
        manifest.commands.push(resolve_graph::Command {
            name: command.name.clone(),
            runner: command.runner.clone(),
            atom: command.atom.atom.clone(),
            dependency: command.atom.dependency.clone(),
            annotations,
        });
    }
    manifest.entrypoint = spec.entrypoint.clone();
    for mount in &spec.mounts {
        let path = |text: &str, what: &str| {
            AbsPath::parse(text).map_err(|why| {
                bad(format!(
                    "the fs mapping of volume {:?}: its {what} {text:?} {why}",
                    mount.volume
                ))
            })
        };
        manifest.fs.push(resolve_graph::FsMapping {
            volume: mount.volume.clone(),
            mount: path(&mount.mount_path, "mount path")?,
            dependency: mount.from.clone(),
            path: path(&mount.host_path, "host_path")?,
        });
    }
    manifest.validate().map_err(|e| bad(e.to_string()))?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_name_packages() {
        let (name, version) =
            identity_of_place(Path::new("/pkgs/wasmer--python@3.12.0.webc")).unwrap();
        assert_eq!(
            (name.as_str(), version.to_string().as_str()),
            ("wasmer/python", "3.12.0")
        );
        let (name, version) = identity_of_place(Path::new("/r/acme/tool/1.0.0.webc")).unwrap();
        assert_eq!(
            (name.as_str(), version.to_string().as_str()),
            ("acme/tool", "1.0.0")
        );
        assert_eq!(identity_of_place(Path::new("/x/cowsay.webc")), None);
        assert_eq!(
            identity_of_place(Path::new("/x/bash-1.0.16-0123abcd.webc")),
            None
        );
    }
}

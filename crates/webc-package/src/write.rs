//! Writing a package as a webc v3 container, reproducibly: the same description and files
//! give the same bytes on any machine.
//!
//! Reproducible means: directory entries in byte order of their names (the `webc` crate's
//! writer sorts them), every timestamp zero, the manifest's maps in the order given, and
//! atoms signed with their sha256. The `webc` crate's writer returns the container as one
//! buffer, so the package is held in memory while it is written; files are read as the
//! writer reaches them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use webc::metadata::annotations::{
    Atom as AtomAnnotation, FileSystemMapping, FileSystemMappings, Wapm,
};
use webc::metadata::{Atom, Command, Manifest, UrlOrManifest};
use webc::v3::write::{DirEntry, Directory, FileEntry, SymlinkEntry, Writer};
use webc::v3::{ChecksumAlgorithm, SignatureAlgorithm, Timestamps};

use crate::error::WebcError;

/// The kind every atom pkgload writes has.
const WASM_KIND: &str = "https://webc.org/kind/wasm";

/// A package to write, in the terms of the webc manifest.
#[derive(Debug, Clone, Default)]
pub struct PackageToWrite {
    /// `namespace/name`.
    pub name: String,
    /// Semver.
    pub version: String,
    /// `use` entries: alias → `namespace/name@req`, a URL or a path.
    pub uses: Vec<(String, String)>,
    /// Commands, in order.
    pub commands: Vec<CommandToWrite>,
    /// The command run by default.
    pub entrypoint: Option<String>,
    /// `fs` mappings, in order: (dependency alias, volume, path inside it, mount point).
    pub mounts: Vec<(Option<String>, String, Option<String>, String)>,
    /// Atom name → its file.
    pub atoms: BTreeMap<String, PathBuf>,
    /// Volume name → its directory.
    pub volumes: BTreeMap<String, PathBuf>,
}

/// One command.
#[derive(Debug, Clone, Default)]
pub struct CommandToWrite {
    /// Its name.
    pub name: String,
    /// A runner URI, or a short name (`wasi` → `https://webc.org/runner/wasi`).
    pub runner: String,
    /// The atom it runs.
    pub atom: String,
    /// The `use` alias the atom comes from; `None` for this package.
    pub dependency: Option<String>,
    /// Other annotations, as JSON.
    pub annotations: BTreeMap<String, serde_json::Value>,
}

impl PackageToWrite {
    /// The package as a webc v3 container. `origin` names the package in errors.
    ///
    /// # Errors
    /// [`WebcError::Metadata`] when a name, path or annotation cannot be written, and for
    /// an unreadable file or directory.
    pub fn write_v3(&self, origin: &str) -> Result<Bytes, WebcError> {
        let bad = |message: String| WebcError::Metadata {
            origin: origin.to_owned(),
            message,
        };
        let mut atoms = BTreeMap::new();
        let mut atom_entries = BTreeMap::new();
        for (name, path) in &self.atoms {
            let bytes = std::fs::read(path)
                .map_err(|e| bad(format!("atom {name:?}: {}: {e}", path.display())))?;
            let signature = format!(
                "sha256:{}",
                base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes))
            );
            atoms.insert(
                name.clone(),
                Atom {
                    kind: WASM_KIND
                        .parse()
                        .map_err(|e| bad(format!("atom kind: {e}")))?,
                    signature,
                    annotations: Default::default(),
                },
            );
            let segment = name
                .parse()
                .map_err(|e| bad(format!("atom name {name:?}: {e}")))?;
            atom_entries.insert(segment, FileEntry::owned(bytes, Timestamps::default()));
        }
        let manifest = self.manifest(atoms, &bad)?;
        let mut writer = Writer::new(ChecksumAlgorithm::Sha256)
            .write_manifest(&manifest)
            .map_err(|e| bad(format!("the manifest: {e}")))?
            .write_atoms(atom_entries)
            .map_err(|e| bad(format!("the atoms: {e}")))?;
        for (name, dir) in &self.volumes {
            let tree = directory(dir).map_err(|e| bad(format!("volume {name:?}: {e}")))?;
            writer = writer
                .with_volume(name, tree)
                .map_err(|e| bad(format!("volume {name:?}: {e}")))?;
        }
        writer
            .finish(SignatureAlgorithm::None)
            .map_err(|e| bad(format!("writing the container: {e}")))
    }

    fn manifest(
        &self,
        atoms: BTreeMap<String, Atom>,
        bad: &dyn Fn(String) -> WebcError,
    ) -> Result<Manifest, WebcError> {
        let mut package = webc::indexmap::IndexMap::new();
        let wapm = Wapm::new(Some(self.name.clone()), Some(self.version.clone()), None);
        package.insert(
            Wapm::KEY.to_owned(),
            cbor("the wapm annotation", &wapm, bad)?,
        );
        if !self.mounts.is_empty() {
            let mappings = FileSystemMappings(
                self.mounts
                    .iter()
                    .map(|(from, volume, host_path, mount)| FileSystemMapping {
                        from: from.clone(),
                        volume_name: volume.clone(),
                        host_path: host_path.clone(),
                        mount_path: mount.clone(),
                    })
                    .collect(),
            );
            package.insert(
                FileSystemMappings::KEY.to_owned(),
                cbor("the fs annotation", &mappings, bad)?,
            );
        }
        let mut commands = webc::indexmap::IndexMap::new();
        for command in &self.commands {
            let mut annotations = webc::indexmap::IndexMap::new();
            for (key, value) in &command.annotations {
                annotations.insert(key.clone(), cbor(key, value, bad)?);
            }
            let atom = AtomAnnotation::new(command.atom.clone(), command.dependency.clone());
            annotations.insert(
                AtomAnnotation::KEY.to_owned(),
                cbor("the atom annotation", &atom, bad)?,
            );
            let runner = if command.runner.contains("://") {
                command.runner.clone()
            } else {
                format!("https://webc.org/runner/{}", command.runner)
            };
            commands.insert(
                command.name.clone(),
                Command {
                    runner,
                    annotations,
                },
            );
        }
        Ok(Manifest {
            origin: None,
            use_map: self
                .uses
                .iter()
                .map(|(alias, spec)| {
                    (
                        alias.clone(),
                        UrlOrManifest::RegistryDependentUrl(spec.clone()),
                    )
                })
                .collect(),
            package,
            atoms: atoms.into_iter().collect(),
            commands,
            bindings: Vec::new(),
            entrypoint: self.entrypoint.clone(),
        })
    }
}

fn cbor<T: serde::Serialize>(
    what: &str,
    value: &T,
    bad: &dyn Fn(String) -> WebcError,
) -> Result<ciborium::Value, WebcError> {
    ciborium::Value::serialized(value).map_err(|e| bad(format!("{what}: {e}")))
}

/// `dir` as a volume: files read as the writer reaches them, symlinks kept as links,
/// timestamps zero.
fn directory(dir: &Path) -> Result<Directory<'static>, String> {
    let mut children = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name
            .to_str()
            .ok_or_else(|| format!("{}: the name is not UTF-8", path.display()))?;
        let segment = name
            .parse()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let kind = entry
            .file_type()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let node = if kind.is_symlink() {
            let target =
                std::fs::read_link(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let target = target
                .to_str()
                .ok_or_else(|| format!("{}: the link target is not UTF-8", path.display()))?
                .to_owned();
            DirEntry::Symlink(SymlinkEntry::owned(target, Timestamps::default()))
        } else if kind.is_dir() {
            DirEntry::Dir(directory(&path)?)
        } else if kind.is_file() {
            let file =
                std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let reader: Box<dyn Read> = Box::new(file);
            DirEntry::File(FileEntry::reader(reader, Timestamps::default()))
        } else {
            return Err(format!(
                "{}: only files, directories and symlinks can go in a webc volume",
                path.display()
            ));
        };
        children.insert(segment, node);
    }
    Ok(Directory::new(children, Timestamps::default()))
}

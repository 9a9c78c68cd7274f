//! What a webc manifest says about its package, in the terms pkgload's resolver uses:
//! who it is, what it needs, what it runs and what it mounts where.
//!
//! The rules follow Wasmer's loader where it is right and differ where it is not; every
//! difference is listed in `docs/ARCHITECTURE.md` ("webc packages").

use semver::{Version, VersionReq};
use webc::metadata::annotations::{
    Atom as AtomAnnotation, Emscripten, FileSystemMappings, Wapm, Wasi,
};
use webc::metadata::{Command, Manifest, UrlOrManifest};

use crate::error::WebcError;

/// A package's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// `namespace/name` and a version, from the `wapm` annotation or from where the file
    /// was found.
    Named {
        /// `namespace/name`.
        name: String,
        /// Its version.
        version: Version,
    },
    /// A nameless package, known by the sha256 of its file (`sha256:<hex>`).
    Hash(String),
}

/// One entry of the manifest's `use` map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The alias commands and `fs` mappings refer to it by.
    pub alias: String,
    /// Where it comes from.
    pub source: DependencySource,
}

/// Where a dependency comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DependencySource {
    /// `namespace/name@req` (Cargo's semver rules; `latest` and a missing requirement mean
    /// any version).
    Registry {
        /// `namespace/name`.
        name: String,
        /// The requirement.
        req: VersionReq,
    },
    /// An `http(s)://` URL, with the sha256 given as `#sha256=<hex>`, if any.
    Url {
        /// The URL without the fragment.
        url: String,
        /// Lowercase hex.
        sha256: Option<String>,
    },
    /// A file path (relative to the file that names it).
    Path(String),
}

/// Which atom a command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtomRef {
    /// The `use` alias of the package that holds it; `None` for this package.
    pub dependency: Option<String>,
    /// The atom's name there.
    pub atom: String,
}

/// A command the package exposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    /// Its name.
    pub name: String,
    /// The runner URI (`https://webc.org/runner/wasi`, …).
    pub runner: String,
    /// The atom it runs.
    pub atom: AtomRef,
}

/// One `fs` mapping: a directory of a volume mounted at a path of the package tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The `use` alias whose volume this is; `None` for this package's own.
    pub from: Option<String>,
    /// The volume.
    pub volume: String,
    /// The directory inside the volume (`/` for all of it).
    pub host_path: String,
    /// Where it appears in the tree.
    pub mount_path: String,
}

/// The package as the resolver and loader see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageSpec {
    /// From the `wapm` annotation, when it names one.
    pub identity: Option<Identity>,
    /// The `use` map, in order.
    pub dependencies: Vec<Dependency>,
    /// The commands, in manifest order.
    pub commands: Vec<CommandSpec>,
    /// The command run by default.
    pub entrypoint: Option<String>,
    /// The `fs` mappings, in order.
    pub mounts: Vec<Mount>,
}

impl PackageSpec {
    /// Reads the package model from `manifest`; `version` (1, 2 or 3) decides the default
    /// mount of a package without `fs`, `atoms` are the container's atom names, and
    /// `origin` names the file in errors.
    ///
    /// # Errors
    /// [`WebcError::Metadata`] naming the field that cannot be understood.
    pub fn from_manifest(
        manifest: &Manifest,
        version: u8,
        atoms: &[String],
        origin: &str,
    ) -> Result<PackageSpec, WebcError> {
        let err = |message: String| WebcError::Metadata {
            origin: origin.to_owned(),
            message,
        };
        let identity = identity(manifest).map_err(err)?;
        let dependencies = manifest
            .use_map
            .iter()
            .map(|(alias, value)| dependency(alias, value).map_err(err))
            .collect::<Result<Vec<_>, _>>()?;
        let commands = manifest
            .commands
            .iter()
            .map(|(name, command)| {
                let atom = command_atom(name, command, atoms).map_err(err)?;
                Ok(CommandSpec {
                    name: name.clone(),
                    runner: command.runner.clone(),
                    atom,
                })
            })
            .collect::<Result<Vec<_>, WebcError>>()?;
        if let Some(entry) = &manifest.entrypoint
            && !manifest.commands.contains_key(entry)
        {
            return Err(err(format!(
                "the entrypoint {entry:?} is not one of its commands"
            )));
        }
        let mounts = mounts(manifest, version).map_err(err)?;
        for m in &mounts {
            if let Some(from) = &m.from
                && !manifest.use_map.contains_key(from)
            {
                return Err(err(format!(
                    "the fs mapping at {} takes a volume from {from:?}, which is not in `use`",
                    m.mount_path
                )));
            }
        }
        for c in &commands {
            if let Some(dep) = &c.atom.dependency
                && !manifest.use_map.contains_key(dep)
            {
                return Err(err(format!(
                    "command {:?} runs atom {:?} of {dep:?}, which is not in `use`",
                    c.name, c.atom.atom
                )));
            }
        }
        Ok(PackageSpec {
            identity,
            dependencies,
            commands,
            entrypoint: manifest.entrypoint.clone(),
            mounts,
        })
    }
}

fn identity(manifest: &Manifest) -> Result<Option<Identity>, String> {
    let wapm = manifest
        .wapm()
        .map_err(|e| format!("the `wapm` annotation is malformed: {e}"))?;
    let Some(Wapm {
        name: Some(name),
        version: Some(version),
        ..
    }) = wapm
    else {
        return Ok(None);
    };
    let version = Version::parse(&version)
        .map_err(|e| format!("the `wapm` annotation's version {version:?} is not semver: {e}"))?;
    let name =
        qualified(&name).map_err(|why| format!("the `wapm` annotation's name {name:?} {why}"))?;
    Ok(Some(Identity::Named { name, version }))
}

/// `namespace/name`: two non-empty parts of `[a-z0-9_.-]`, as the Wasmer registry allows.
/// A bare `name` is wapm's global namespace, `_/name`: packages published before
/// namespaces (many v1 packages, `use` entries such as `python@^3`) are named so.
pub(crate) fn qualified(name: &str) -> Result<String, &'static str> {
    let valid = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    };
    match name.split_once('/') {
        Some((ns, n)) if valid(ns) && valid(n) => Ok(name.to_owned()),
        None if valid(name) => Ok(format!("_/{name}")),
        _ => Err("is not `namespace/name` or `name`"),
    }
}

fn dependency(alias: &str, value: &UrlOrManifest) -> Result<Dependency, String> {
    let source = match value {
        UrlOrManifest::Url(url) => url_source(url.as_str())?,
        UrlOrManifest::RegistryDependentUrl(text) => {
            parse_use(text).map_err(|why| format!("dependency {alias:?} = {text:?}: {why}"))?
        }
        UrlOrManifest::Manifest(_) => {
            return Err(format!(
                "dependency {alias:?} is a vendored manifest, which pkgload does not load (it \
                 carries no volumes of its own); publish it as a package and `use` it by name"
            ));
        }
    };
    Ok(Dependency {
        alias: alias.to_owned(),
        source,
    })
}

/// A `use` value: `namespace/name@req`, `namespace/name` (any version), a URL or a path.
pub fn parse_use(text: &str) -> Result<DependencySource, String> {
    let text = text.trim();
    if text.starts_with("http://") || text.starts_with("https://") {
        return url_source(text);
    }
    if text.starts_with('.') || text.starts_with('/') || text.ends_with(".webc") {
        return Ok(DependencySource::Path(text.to_owned()));
    }
    let (name, req) = match text.split_once('@') {
        Some((name, req)) => (name, req.trim()),
        None => (text, "*"),
    };
    let name = qualified(name)?;
    let req = match req {
        "" | "latest" | "*" => VersionReq::STAR,
        req => VersionReq::parse(req).map_err(|_| "its version requirement is not semver")?,
    };
    Ok(DependencySource::Registry { name, req })
}

fn url_source(text: &str) -> Result<DependencySource, String> {
    let (url, fragment) = match text.split_once('#') {
        Some((url, fragment)) => (url, Some(fragment)),
        None => (text, None),
    };
    let sha256 = match fragment {
        None => None,
        Some(f) => {
            let hex = f
                .strip_prefix("sha256=")
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| format!("{text:?}: the fragment must be #sha256=<64 hex digits>"))?;
            Some(hex.to_ascii_lowercase())
        }
    };
    Ok(DependencySource::Url {
        url: url.to_owned(),
        sha256,
    })
}

/// Which atom `command` runs. In order: the `atom` annotation (with its optional
/// `dependency`), the older `wasi`/`emscripten` annotations' `atom` (`"dep:atom"` naming a
/// dependency's), the atom named like the command, the package's only atom.
// The `wasi.atom` and `emscripten.atom` fields are deprecated in the `webc` crate, but they
// are what published packages carry.
#[allow(deprecated)]
fn command_atom(name: &str, command: &Command, atoms: &[String]) -> Result<AtomRef, String> {
    let bad = |what: &str, e: &dyn std::fmt::Display| format!("command {name:?}: {what}: {e}");
    if let Some(AtomAnnotation {
        name: atom,
        dependency,
        ..
    }) = command
        .atom()
        .map_err(|e| bad("the `atom` annotation", &e))?
    {
        return Ok(AtomRef { dependency, atom });
    }
    let legacy = match command
        .wasi()
        .map_err(|e| bad("the `wasi` annotation", &e))?
    {
        Some(Wasi { atom, .. }) => Some(atom),
        None => command
            .emscripten()
            .map_err(|e| bad("the `emscripten` annotation", &e))?
            .and_then(|Emscripten { atom, .. }| atom),
    };
    if let Some(atom) = legacy.filter(|a| !a.is_empty()) {
        return Ok(match atom.split_once(':') {
            Some((dep, atom)) => AtomRef {
                dependency: Some(dep.to_owned()),
                atom: atom.to_owned(),
            },
            None => AtomRef {
                dependency: None,
                atom,
            },
        });
    }
    if atoms.iter().any(|a| a == name) {
        return Ok(AtomRef {
            dependency: None,
            atom: name.to_owned(),
        });
    }
    if let [only] = atoms {
        return Ok(AtomRef {
            dependency: None,
            atom: only.clone(),
        });
    }
    Err(format!(
        "command {name:?} names no atom: it has no `atom`, `wasi.atom` or `emscripten.atom` \
         annotation, no atom is called {name:?}, and the package has {} atoms ({}) rather \
         than one",
        atoms.len(),
        atoms.join(", ")
    ))
}

/// The `fs` mappings; a v1/v2 package without them mounts its `atom` volume at `/`.
fn mounts(manifest: &Manifest, version: u8) -> Result<Vec<Mount>, String> {
    let mappings: Option<FileSystemMappings> = match manifest.filesystem() {
        Ok(m) => m,
        // Older packages wrote `fs` as a map of mount path to directory of the `atom`
        // volume.
        Err(e) => match manifest.package_annotation::<std::collections::BTreeMap<String, String>>(
            FileSystemMappings::KEY,
        ) {
            Ok(Some(map)) => Some(FileSystemMappings(
                map.into_iter()
                    .map(
                        |(mount_path, host_path)| webc::metadata::annotations::FileSystemMapping {
                            from: None,
                            volume_name: "atom".to_owned(),
                            host_path: Some(host_path),
                            mount_path,
                        },
                    )
                    .collect(),
            )),
            _ => return Err(format!("the `fs` annotation is malformed: {e}")),
        },
    };
    let Some(mappings) = mappings else {
        return Ok(if version < 3 {
            vec![Mount {
                from: None,
                volume: "atom".to_owned(),
                host_path: "/".to_owned(),
                mount_path: "/".to_owned(),
            }]
        } else {
            Vec::new()
        });
    };
    mappings
        .0
        .into_iter()
        .map(|m| {
            let host_path = absolute(m.host_path.as_deref().unwrap_or("/"));
            if !m.mount_path.starts_with('/') {
                return Err(format!(
                    "the fs mapping of volume {:?} mounts at {:?}, which is not an absolute path",
                    m.volume_name, m.mount_path
                ));
            }
            Ok(Mount {
                from: m.from,
                volume: m.volume_name,
                host_path,
                mount_path: m.mount_path,
            })
        })
        .collect()
}

/// `host_path` as an absolute path inside the volume (`data` and `./data` mean `/data`).
fn absolute(host_path: &str) -> String {
    let trimmed = host_path.trim_start_matches("./");
    if trimmed.starts_with('/') {
        trimmed.to_owned()
    } else {
        format!("/{trimmed}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_values() {
        assert_eq!(
            parse_use("wasmer/python@^3.12").unwrap(),
            DependencySource::Registry {
                name: "wasmer/python".into(),
                req: VersionReq::parse("^3.12").unwrap()
            }
        );
        assert_eq!(
            parse_use("sharrattj/coreutils@latest").unwrap(),
            DependencySource::Registry {
                name: "sharrattj/coreutils".into(),
                req: VersionReq::STAR
            }
        );
        let hex = "ab".repeat(32);
        assert_eq!(
            parse_use(&format!("https://x.test/a.webc#sha256={hex}")).unwrap(),
            DependencySource::Url {
                url: "https://x.test/a.webc".into(),
                sha256: Some(hex)
            }
        );
        assert!(parse_use("https://x.test/a.webc#md5=00").is_err());
        assert_eq!(
            parse_use("python@^3").unwrap(),
            DependencySource::Registry {
                name: "_/python".into(),
                req: VersionReq::parse("^3").unwrap()
            }
        );
        assert!(parse_use("a/b/c@1").is_err());
        assert_eq!(
            parse_use("./deps/b.webc").unwrap(),
            DependencySource::Path("./deps/b.webc".into())
        );
        assert!(parse_use("@1").is_err());
        assert!(parse_use("a/b@not a version").is_err());
        assert!(parse_use("../x/y@1").is_ok_and(|s| matches!(s, DependencySource::Path(_))));
    }

    #[test]
    fn host_paths_are_absolute() {
        assert_eq!(absolute("data"), "/data");
        assert_eq!(absolute("./data"), "/data");
        assert_eq!(absolute("/"), "/");
    }
}

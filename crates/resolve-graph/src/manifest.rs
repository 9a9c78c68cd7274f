//! The package config, schema v1 (see DESIGN.md, "A package is an OCI artifact").
//!
//! JSON is read into loose `Raw*` structs first and then converted field by field, so every
//! error can name the package and the field it came from instead of a serde position.

use std::collections::BTreeMap;
use std::fmt;

use semver::{Version, VersionReq};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::name::{PackageId, PackageName};
use crate::path::AbsPath;
use crate::validate::ManifestError;

/// A package's config: what it depends on, the commands it offers and its filesystem.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The package's name.
    pub name: PackageName,
    /// The package's version.
    pub version: Version,
    /// Dependencies in declaration order (that order breaks command-shadowing ties).
    pub dependencies: Vec<Dependency>,
    /// Commands in declaration order.
    pub commands: Vec<Command>,
    /// The command run by default, if any.
    pub entrypoint: Option<String>,
    /// Filesystem mappings in declaration order.
    pub fs: Vec<FsMapping>,
}

/// One entry of `dependencies`: an alias bound to a package and a version requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The local name commands and mappings use to refer to this dependency.
    pub alias: String,
    /// The package depended on.
    pub package: PackageName,
    /// Which of its versions are acceptable.
    pub req: VersionReq,
}

/// One entry of `commands`.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The command's name (its key in `commands`).
    pub name: String,
    /// Which runner executes the atom, e.g. `wasi`.
    pub runner: String,
    /// The atom (layer title) holding the code.
    pub atom: String,
    /// The alias of the dependency the atom comes from; `None` means this package.
    pub dependency: Option<String>,
    /// Free-form runner settings, kept verbatim.
    pub annotations: BTreeMap<String, serde_json::Value>,
}

/// One entry of `fs`: a directory of a volume that appears at a mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsMapping {
    /// The volume (layer title).
    pub volume: String,
    /// Where it appears in the loaded tree.
    pub mount: AbsPath,
    /// The alias of the dependency the volume comes from; `None` means this package.
    pub dependency: Option<String>,
    /// The directory inside the volume that appears at `mount` (default `/`).
    pub path: AbsPath,
}

impl Manifest {
    /// An empty manifest, handy for building registries in code and tests.
    pub fn new(name: PackageName, version: Version) -> Self {
        Self {
            name,
            version,
            dependencies: Vec::new(),
            commands: Vec::new(),
            entrypoint: None,
            fs: Vec::new(),
        }
    }

    /// This package's id.
    pub fn id(&self) -> PackageId {
        PackageId::new(self.name.clone(), self.version.clone())
    }

    /// Adds a dependency (builder style; call [`Manifest::validate`] when done).
    #[must_use]
    pub fn with_dependency(mut self, alias: &str, package: PackageName, req: VersionReq) -> Self {
        self.dependencies.push(Dependency {
            alias: alias.to_owned(),
            package,
            req,
        });
        self
    }

    /// Parses and validates a config blob.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        // A well-formed v1 config is read in one pass; anything else takes the careful path
        // below, whose errors are the ones users see.
        if let Ok(raw) = serde_json::from_slice::<RawManifest>(bytes)
            && raw.schema_version == Some(1)
        {
            let package = raw.name.clone().unwrap_or_else(|| "<unnamed>".to_owned());
            let manifest = raw.convert(&package)?;
            manifest.validate()?;
            return Ok(manifest);
        }
        // Look at the version and name before anything else: a future schema may change every
        // other field, and its error should say "unsupported schema", not "missing field".
        let head: RawHead = serde_json::from_slice(bytes).map_err(ManifestError::Json)?;
        let package = head.name.unwrap_or_else(|| "<unnamed>".to_owned());
        if head.schema_version != Some(1) {
            return Err(ManifestError::SchemaVersion {
                package,
                found: head.schema_version,
            });
        }
        let raw: RawManifest =
            serde_json::from_slice(bytes).map_err(|source| ManifestError::Field {
                package: package.clone(),
                source,
            })?;
        let manifest = raw.convert(&package)?;
        manifest.validate()?;
        Ok(manifest)
    }
}

impl Manifest {
    /// The config blob of this manifest (schema v1), which [`Manifest::from_json`] reads
    /// back as an equal manifest: dependencies and commands keep their declaration order.
    pub fn to_json(&self) -> Vec<u8> {
        let config = ConfigOut {
            schema_version: 1,
            name: self.name.as_str(),
            version: self.version.to_string(),
            dependencies: InOrder(
                self.dependencies
                    .iter()
                    .map(|d| {
                        let out = DependencyOut {
                            package: d.package.as_str(),
                            version: d.req.to_string(),
                        };
                        (d.alias.as_str(), out)
                    })
                    .collect(),
            ),
            commands: InOrder(
                self.commands
                    .iter()
                    .map(|c| {
                        let out = CommandOut {
                            runner: &c.runner,
                            atom: &c.atom,
                            dependency: c.dependency.as_deref(),
                            annotations: &c.annotations,
                        };
                        (c.name.as_str(), out)
                    })
                    .collect(),
            ),
            entrypoint: self.entrypoint.as_deref(),
            fs: self
                .fs
                .iter()
                .map(|m| FsOut {
                    volume: &m.volume,
                    mount: m.mount.as_str(),
                    dependency: m.dependency.as_deref(),
                    path: m.path.as_str(),
                })
                .collect(),
        };
        // Nothing in it can fail to serialize: strings, numbers and JSON values.
        serde_json::to_vec(&config).unwrap_or_default()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfigOut<'a> {
    schema_version: u32,
    name: &'a str,
    version: String,
    dependencies: InOrder<'a, DependencyOut<'a>>,
    commands: InOrder<'a, CommandOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entrypoint: Option<&'a str>,
    fs: Vec<FsOut<'a>>,
}

#[derive(Serialize)]
struct DependencyOut<'a> {
    package: &'a str,
    version: String,
}

#[derive(Serialize)]
struct CommandOut<'a> {
    runner: &'a str,
    atom: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dependency: Option<&'a str>,
    annotations: &'a BTreeMap<String, serde_json::Value>,
}

#[derive(Serialize)]
struct FsOut<'a> {
    volume: &'a str,
    mount: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dependency: Option<&'a str>,
    path: &'a str,
}

/// Pairs written as one JSON object, in their order (the reading side is [`Ordered`]).
struct InOrder<'a, T>(Vec<(&'a str, T)>);

impl<T: Serialize> Serialize for InOrder<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawHead {
    schema_version: Option<u64>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<u64>,
    #[serde(default)]
    name: Option<String>,
    version: String,
    #[serde(default)]
    dependencies: Ordered<RawDependency>,
    #[serde(default)]
    commands: Ordered<RawCommand>,
    #[serde(default)]
    entrypoint: Option<String>,
    #[serde(default)]
    fs: Vec<RawFs>,
}

#[derive(Deserialize)]
struct RawDependency {
    package: String,
    version: String,
}

#[derive(Deserialize)]
struct RawCommand {
    runner: String,
    atom: String,
    #[serde(default)]
    dependency: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct RawFs {
    volume: String,
    mount: String,
    #[serde(default)]
    dependency: Option<String>,
    #[serde(default)]
    path: Option<String>,
}

/// A JSON object read as a list of pairs, in order and *with* duplicates: a `BTreeMap`
/// would silently keep the last of two equal keys, and a duplicate alias must be an error.
struct Ordered<T>(Vec<(String, T)>);

impl<T> Default for Ordered<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(pair) = map.next_entry()? {
                    out.push(pair);
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

impl RawManifest {
    fn convert(self, package: &str) -> Result<Manifest, ManifestError> {
        let name = PackageName::new(package).map_err(|source| ManifestError::Name {
            package: package.to_owned(),
            field: "name".to_owned(),
            source,
        })?;
        let version = Version::parse(&self.version).map_err(|source| ManifestError::Version {
            package: package.to_owned(),
            field: "version".to_owned(),
            value: self.version.clone(),
            source,
        })?;
        let mut dependencies = Vec::with_capacity(self.dependencies.0.len());
        for (alias, dep) in self.dependencies.0 {
            let field = format!("dependencies.{alias}");
            let dep_name =
                PackageName::new(&dep.package).map_err(|source| ManifestError::Name {
                    package: package.to_owned(),
                    field: format!("{field}.package"),
                    source,
                })?;
            let req = VersionReq::parse(&dep.version).map_err(|source| ManifestError::Version {
                package: package.to_owned(),
                field: format!("{field}.version"),
                value: dep.version.clone(),
                source,
            })?;
            dependencies.push(Dependency {
                alias,
                package: dep_name,
                req,
            });
        }
        let commands = self
            .commands
            .0
            .into_iter()
            .map(|(name, c)| Command {
                name,
                runner: c.runner,
                atom: c.atom,
                dependency: c.dependency,
                annotations: c.annotations,
            })
            .collect();
        let mut fs = Vec::with_capacity(self.fs.len());
        for (i, m) in self.fs.into_iter().enumerate() {
            let path_err = |field: &str, value: &str, reason| ManifestError::Path {
                package: package.to_owned(),
                field: format!("fs[{i}].{field}"),
                value: value.to_owned(),
                reason,
            };
            let mount = AbsPath::parse(&m.mount).map_err(|r| path_err("mount", &m.mount, r))?;
            let path = match &m.path {
                None => AbsPath::root(),
                Some(p) => AbsPath::parse(p).map_err(|r| path_err("path", p, r))?,
            };
            fs.push(FsMapping {
                volume: m.volume,
                mount,
                dependency: m.dependency,
                path,
            });
        }
        Ok(Manifest {
            name,
            version,
            dependencies,
            commands,
            entrypoint: self.entrypoint,
            fs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const EXAMPLE: &str = r#"{
      "schemaVersion": 1,
      "name": "acme/app",
      "version": "1.0.0",
      "dependencies": {
        "py":    { "package": "acme/python", "version": ">=3.11, <3.14" },
        "tools": { "package": "acme/tools",  "version": "^1" }
      },
      "commands": {
        "app":    { "runner": "wasi", "atom": "app" },
        "python": { "runner": "wasi", "atom": "python", "dependency": "py",
                    "annotations": { "wasi": { "env": ["A=1"] } } }
      },
      "entrypoint": "app",
      "fs": [
        { "volume": "app",    "mount": "/app" },
        { "volume": "data",   "mount": "/app//data/" },
        { "volume": "stdlib", "mount": "/opt/python", "dependency": "py", "path": "/lib/json" }
      ],
      "somethingNew": true
    }"#;

    #[test]
    fn to_json_reads_back_as_the_same_manifest() {
        let m = Manifest::from_json(EXAMPLE.as_bytes()).unwrap();
        let back = Manifest::from_json(&m.to_json()).unwrap();
        assert_eq!(back, m);
        let aliases: Vec<_> = back.dependencies.iter().map(|d| d.alias.as_str()).collect();
        assert_eq!(aliases, ["py", "tools"]);
        let bare = Manifest::new(
            PackageName::new("acme/bare").unwrap(),
            Version::new(0, 1, 0),
        );
        assert_eq!(Manifest::from_json(&bare.to_json()).unwrap(), bare);
    }

    #[test]
    fn parses_design_example() {
        let m = Manifest::from_json(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(m.id().to_string(), "acme/app 1.0.0");
        let aliases: Vec<_> = m.dependencies.iter().map(|d| d.alias.as_str()).collect();
        assert_eq!(aliases, ["py", "tools"]);
        assert_eq!(m.dependencies[0].req.to_string(), ">=3.11, <3.14");
        assert_eq!(m.commands[1].dependency.as_deref(), Some("py"));
        assert!(m.commands[1].annotations.contains_key("wasi"));
        assert_eq!(m.entrypoint.as_deref(), Some("app"));
        assert_eq!(m.fs[1].mount.as_str(), "/app/data");
        assert_eq!(m.fs[0].path.as_str(), "/");
        assert_eq!(m.fs[2].path.as_str(), "/lib/json");
    }

    fn err(json: &str) -> String {
        Manifest::from_json(json.as_bytes())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn schema_version_must_be_one() {
        let e = err(r#"{"schemaVersion": 2, "name": "acme/app", "version": "1.0.0"}"#);
        assert_eq!(
            e,
            "acme/app: unsupported schemaVersion 2 (this build reads 1)"
        );
        let e = err(r#"{"name": "acme/app", "version": "1.0.0"}"#);
        assert_eq!(e, "acme/app: missing schemaVersion (this build reads 1)");
    }

    #[test]
    fn bad_fields_are_named() {
        let e = err(r#"{"schemaVersion": 1, "name": "acme/app", "version": "one"}"#);
        assert!(
            e.starts_with("acme/app: field `version`: `one` is not valid"),
            "{e}"
        );
        let e = err(
            r#"{"schemaVersion": 1, "name": "acme/app", "version": "1.0.0",
                "dependencies": {"py": {"package": "acme/Python", "version": "1"}}}"#,
        );
        assert!(
            e.starts_with("acme/app: field `dependencies.py.package`:"),
            "{e}"
        );
        let e = err(
            r#"{"schemaVersion": 1, "name": "acme/app", "version": "1.0.0",
                "dependencies": {"py": {"package": "acme/python", "version": "^^1"}}}"#,
        );
        assert!(
            e.starts_with("acme/app: field `dependencies.py.version`:"),
            "{e}"
        );
        let e = err(
            r#"{"schemaVersion": 1, "name": "acme/app", "version": "1.0.0",
                "fs": [{"volume": "v", "mount": "/../../x"}]}"#,
        );
        assert_eq!(
            e,
            "acme/app: field `fs[0].mount`: `/../../x` must not contain `..`"
        );
        let e = err(
            r#"{"schemaVersion": 1, "name": "acme/app", "version": "1.0.0",
                "fs": [{"volume": "v", "mount": "/x", "path": "rel"}]}"#,
        );
        assert_eq!(
            e,
            "acme/app: field `fs[0].path`: `rel` must be absolute (start with `/`)"
        );
    }
}

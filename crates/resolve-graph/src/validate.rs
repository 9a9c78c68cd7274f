//! Manifest validation: the rules that serde alone cannot check.

use std::collections::HashSet;

use crate::manifest::Manifest;
use crate::name::NameError;

/// Why a package config was rejected. Every variant names the package, and where a field is
/// at fault, the field (`dependencies.py.package`, `fs[2].mount`, `commands.run.dependency`).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The blob is not JSON, or not a JSON object.
    #[error("package config is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// `schemaVersion` is missing or not 1.
    #[error("{package}: {}", match found {
        Some(v) => format!("unsupported schemaVersion {v} (this build reads 1)"),
        None => "missing schemaVersion (this build reads 1)".to_owned(),
    })]
    SchemaVersion {
        /// The package (as written in the blob).
        package: String,
        /// The version found, if any.
        found: Option<u64>,
    },
    /// A field has the wrong JSON shape or is missing.
    #[error("{package}: {source}")]
    Field {
        /// The package.
        package: String,
        /// serde's description, which names the field.
        #[source]
        source: serde_json::Error,
    },
    /// A package name is invalid.
    #[error("{package}: field `{field}`: {source}")]
    Name {
        /// The package.
        package: String,
        /// The field holding the name.
        field: String,
        /// What is wrong.
        #[source]
        source: NameError,
    },
    /// A version or version requirement does not parse.
    #[error("{package}: field `{field}`: `{value}` is not valid: {source}")]
    Version {
        /// The package.
        package: String,
        /// The field.
        field: String,
        /// The text found.
        value: String,
        /// semver's reason.
        #[source]
        source: semver::Error,
    },
    /// A mount point or volume sub-path is not absolute and clean.
    #[error("{package}: field `{field}`: `{value}` {reason}")]
    Path {
        /// The package.
        package: String,
        /// The field.
        field: String,
        /// The text found.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Two dependencies share an alias.
    #[error("{package}: field `dependencies`: alias `{alias}` is declared twice")]
    DuplicateAlias {
        /// The package.
        package: String,
        /// The repeated alias.
        alias: String,
    },
    /// Two commands share a name.
    #[error("{package}: field `commands`: command `{command}` is declared twice")]
    DuplicateCommand {
        /// The package.
        package: String,
        /// The repeated command name.
        command: String,
    },
    /// A command or mapping refers to an alias that `dependencies` does not declare.
    #[error("{package}: field `{field}`: no dependency has the alias `{alias}`")]
    UnknownAlias {
        /// The package.
        package: String,
        /// The field holding the alias.
        field: String,
        /// The unknown alias.
        alias: String,
    },
    /// `entrypoint` names no command of this package.
    #[error("{package}: field `entrypoint`: `{entrypoint}` is not one of the package's commands")]
    UnknownEntrypoint {
        /// The package.
        package: String,
        /// The entrypoint found.
        entrypoint: String,
    },
    /// A name that must not be empty is.
    #[error("{package}: field `{field}` must not be empty")]
    Empty {
        /// The package.
        package: String,
        /// The field.
        field: String,
    },
}

impl Manifest {
    /// Checks the cross-field rules: aliases are unique and every referenced alias exists,
    /// command names are unique, the entrypoint names a command, names are non-empty.
    ///
    /// Names, versions and paths are already valid by construction of their types.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let package = self.name.to_string();
        let empty = |field: String| ManifestError::Empty {
            package: package.clone(),
            field,
        };
        let mut aliases = HashSet::new();
        for dep in &self.dependencies {
            if dep.alias.is_empty() {
                return Err(empty("dependencies".to_owned()));
            }
            if !aliases.insert(dep.alias.as_str()) {
                return Err(ManifestError::DuplicateAlias {
                    package,
                    alias: dep.alias.clone(),
                });
            }
        }
        let known = |field: String, alias: &Option<String>| match alias {
            Some(a) if !aliases.contains(a.as_str()) => Err(ManifestError::UnknownAlias {
                package: package.clone(),
                field,
                alias: a.clone(),
            }),
            _ => Ok(()),
        };
        let mut commands = HashSet::new();
        for c in &self.commands {
            if c.name.is_empty() {
                return Err(empty("commands".to_owned()));
            }
            if !commands.insert(c.name.as_str()) {
                return Err(ManifestError::DuplicateCommand {
                    package,
                    command: c.name.clone(),
                });
            }
            for (field, value) in [("runner", &c.runner), ("atom", &c.atom)] {
                if value.is_empty() {
                    return Err(empty(format!("commands.{}.{field}", c.name)));
                }
            }
            known(format!("commands.{}.dependency", c.name), &c.dependency)?;
        }
        for (i, m) in self.fs.iter().enumerate() {
            if m.volume.is_empty() {
                return Err(empty(format!("fs[{i}].volume")));
            }
            known(format!("fs[{i}].dependency"), &m.dependency)?;
        }
        if let Some(entry) = &self.entrypoint
            && !commands.contains(entry.as_str())
        {
            return Err(ManifestError::UnknownEntrypoint {
                package,
                entrypoint: entry.clone(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::Manifest;

    fn err(body: &str) -> String {
        let json =
            format!(r#"{{"schemaVersion": 1, "name": "acme/app", "version": "1.0.0", {body}}}"#);
        Manifest::from_json(json.as_bytes())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn duplicate_alias() {
        let e = err(r#""dependencies": {
            "py": {"package": "acme/python", "version": "3"},
            "py": {"package": "acme/python2", "version": "2"}}"#);
        assert_eq!(
            e,
            "acme/app: field `dependencies`: alias `py` is declared twice"
        );
    }

    #[test]
    fn unknown_alias_in_command_and_mapping() {
        let e =
            err(r#""commands": {"run": {"runner": "wasi", "atom": "a", "dependency": "nope"}}"#);
        assert_eq!(
            e,
            "acme/app: field `commands.run.dependency`: no dependency has the alias `nope`"
        );
        let e = err(r#""fs": [{"volume": "v", "mount": "/x", "dependency": "nope"}]"#);
        assert_eq!(
            e,
            "acme/app: field `fs[0].dependency`: no dependency has the alias `nope`"
        );
    }

    #[test]
    fn entrypoint_must_name_a_command() {
        let e = err(r#""commands": {"run": {"runner": "wasi", "atom": "a"}}, "entrypoint": "go""#);
        assert_eq!(
            e,
            "acme/app: field `entrypoint`: `go` is not one of the package's commands"
        );
    }

    #[test]
    fn duplicate_command_and_empty_atom() {
        let e = err(r#""commands": {"run": {"runner": "wasi", "atom": "a"},
                                    "run": {"runner": "wasi", "atom": "b"}}"#);
        assert_eq!(
            e,
            "acme/app: field `commands`: command `run` is declared twice"
        );
        let e = err(r#""commands": {"run": {"runner": "wasi", "atom": ""}}"#);
        assert_eq!(e, "acme/app: field `commands.run.atom` must not be empty");
    }
}

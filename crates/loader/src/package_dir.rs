//! A package directory: `pkgload.toml` plus the directories and files it names.
//!
//! ```toml
//! name = "acme/app"
//! version = "1.0.0"
//! entrypoint = "app"
//!
//! [dependencies]
//! py = { package = "acme/python", version = ">=3.11, <3.14" }
//!
//! [commands.app]
//! runner = "wasi"
//! atom = "app"
//!
//! [[fs]]
//! volume = "app"
//! mount = "/app"
//!
//! [volumes]
//! app = "app/"
//!
//! [atoms]
//! app = "app.wasm"
//! ```
//!
//! Everything but `[volumes]` and `[atoms]` is the package config of DESIGN.md, so the
//! file is converted to that JSON and checked by the same code that checks a pulled config.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::error::{LoadError, Result};
use crate::reference::PACKAGE_FILE;

/// A parsed package directory.
#[derive(Debug, Clone)]
pub struct PackageDir {
    /// The directory.
    pub root: PathBuf,
    /// The package config, validated.
    pub manifest: resolve_graph::Manifest,
    /// The config as the JSON blob a package carries (keys sorted: reproducible).
    pub config_json: Vec<u8>,
    /// Volume name → directory.
    pub volumes: BTreeMap<String, PathBuf>,
    /// Atom name → file.
    pub atoms: BTreeMap<String, PathBuf>,
}

impl PackageDir {
    /// Read and check `dir/pkgload.toml`: the config must be valid, every volume a
    /// directory and every atom a file inside `dir`, and every volume and atom the config
    /// uses from this package must be declared.
    pub fn open(dir: &Path) -> Result<PackageDir> {
        let file = dir.join(PACKAGE_FILE);
        let text = std::fs::read_to_string(&file).map_err(|e| LoadError::io("read", &file, e))?;
        let bad = |reason: String| LoadError::PackageDir {
            path: file.display().to_string(),
            reason,
        };
        let value: toml::Table = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let mut config =
            serde_json::to_value(&value).map_err(|e| bad(format!("not representable: {e}")))?;
        let object = config
            .as_object_mut()
            .ok_or_else(|| bad("expected a table".to_owned()))?;
        let volumes = take_paths(object.remove("volumes"), dir, true).map_err(bad)?;
        let atoms = take_paths(object.remove("atoms"), dir, false).map_err(bad)?;
        object
            .entry("schemaVersion")
            .or_insert(serde_json::Value::from(1));
        let config_json = serde_json::to_vec(&config).map_err(|e| bad(e.to_string()))?;
        let manifest = resolve_graph::Manifest::from_json(&config_json).map_err(|source| {
            LoadError::Config {
                reference: file.display().to_string(),
                source,
            }
        })?;
        for mapping in manifest.fs.iter().filter(|m| m.dependency.is_none()) {
            if !volumes.contains_key(&mapping.volume) {
                return Err(bad(format!(
                    "fs mapping at {} uses volume {:?}, which [volumes] does not declare",
                    mapping.mount.as_str(),
                    mapping.volume
                )));
            }
        }
        for command in manifest.commands.iter().filter(|c| c.dependency.is_none()) {
            if !atoms.contains_key(&command.atom) {
                return Err(bad(format!(
                    "command {:?} uses atom {:?}, which [atoms] does not declare",
                    command.name, command.atom
                )));
            }
        }
        Ok(PackageDir {
            root: dir.to_owned(),
            manifest,
            config_json,
            volumes,
            atoms,
        })
    }
}

/// `[volumes]` / `[atoms]`: names to relative paths that must stay inside `dir`.
fn take_paths(
    table: Option<serde_json::Value>,
    dir: &Path,
    directories: bool,
) -> std::result::Result<BTreeMap<String, PathBuf>, String> {
    let section = if directories { "volumes" } else { "atoms" };
    let Some(table) = table else {
        return Ok(BTreeMap::new());
    };
    let serde_json::Value::Object(map) = table else {
        return Err(format!("[{section}] must be a table of name = \"path\""));
    };
    let mut out = BTreeMap::new();
    for (name, path) in map {
        let serde_json::Value::String(path) = path else {
            return Err(format!("[{section}] {name}: expected a path string"));
        };
        let relative = Path::new(&path);
        if !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(format!(
                "[{section}] {name} = {path:?}: use a relative path inside the package \
                 directory (no `..`, not absolute)"
            ));
        }
        let full = dir.join(relative);
        let meta = std::fs::symlink_metadata(&full)
            .map_err(|e| format!("[{section}] {name} = {path:?}: {e}"))?;
        if directories && !meta.is_dir() {
            return Err(format!("[{section}] {name} = {path:?} is not a directory"));
        }
        if !directories && !meta.is_file() {
            return Err(format!(
                "[{section}] {name} = {path:?} is not a regular file"
            ));
        }
        out.insert(name, full);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, toml: &str) {
        std::fs::write(dir.join(PACKAGE_FILE), toml).unwrap();
    }

    #[test]
    fn reads_a_package() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("app")).unwrap();
        std::fs::write(d.path().join("app.wasm"), b"\0asm").unwrap();
        write(
            d.path(),
            r#"
name = "acme/app"
version = "1.0.0"
entrypoint = "app"
[dependencies]
py = { package = "acme/python", version = "^3" }
[commands.app]
runner = "wasi"
atom = "app"
[[fs]]
volume = "app"
mount = "/app"
[volumes]
app = "app/"
[atoms]
app = "app.wasm"
"#,
        );
        let pkg = PackageDir::open(d.path()).unwrap();
        assert_eq!(pkg.manifest.name.as_str(), "acme/app");
        assert_eq!(pkg.manifest.dependencies.len(), 1);
        assert_eq!(pkg.volumes["app"], d.path().join("app/"));
        let json: serde_json::Value = serde_json::from_slice(&pkg.config_json).unwrap();
        assert_eq!(json["schemaVersion"], 1);
        assert!(json.get("volumes").is_none());
    }

    #[test]
    fn bad_directories_are_explained() {
        let d = tempfile::tempdir().unwrap();
        let cases = [
            (
                "name = \"acme/app\"\nversion = \"1.0.0\"\n[volumes]\nx = \"../x\"",
                "relative path",
            ),
            (
                "name = \"acme/app\"\nversion = \"1.0.0\"\n[volumes]\nx = \"/etc\"",
                "relative path",
            ),
            (
                "name = \"acme/app\"\nversion = \"1.0.0\"\n[volumes]\nx = \"nope\"",
                "nope",
            ),
            (
                "name = \"acme/app\"\nversion = \"1.0.0\"\n[[fs]]\nvolume = \"v\"\nmount = \"/v\"",
                "does not declare",
            ),
            ("name = \"Acme\"\nversion = \"1.0.0\"", "Acme"),
            ("name = ", "pkgload.toml"),
        ];
        for (toml, expected) in cases {
            write(d.path(), toml);
            let err = PackageDir::open(d.path()).unwrap_err().to_string();
            assert!(err.contains(expected), "{toml}: {err}");
        }
    }
}

//! `pkgload pack DIR --output FILE.webc`: a package directory written as a webc v3 file,
//! reproducibly (see `webc_package::PackageToWrite`), for Wasmer's tools or any loader of
//! webc files.

use std::path::Path;

use cache_core::Algorithm;
use serde::Serialize;
use webc_package::{CommandToWrite, PackageToWrite};

use crate::error::{LoadError, Result};
use crate::package_dir::PackageDir;

/// What [`pack_webc`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackedWebc {
    /// The package name.
    pub name: String,
    /// The package version.
    pub version: String,
    /// The file written.
    pub path: String,
    /// The file's sha256 (`sha256:<hex>`), which names it wherever pkgload meets it.
    pub digest: String,
    /// Its size.
    pub bytes: u64,
}

/// Build the package in `dir` as a webc v3 file at `output` (replaced atomically).
///
/// # Errors
/// [`LoadError::PackageDir`] for an invalid package directory or one that webc cannot
/// express; [`LoadError::Io`] when the file cannot be written.
pub async fn pack_webc(dir: &Path, output: &Path) -> Result<PackedWebc> {
    let package = PackageDir::open(dir)?;
    let shown = dir.display().to_string();
    let to_write = describe(&package);
    let origin = shown.clone();
    let bytes = tokio::task::spawn_blocking(move || to_write.write_v3(&origin))
        .await
        .map_err(|e| LoadError::PackageDir {
            path: shown.clone(),
            reason: format!("writing the webc file failed: {e}"),
        })??;
    // Read back with the same checks every loaded webc gets: what pack writes must load.
    crate::webc::parse(bytes.clone(), &output.display().to_string()).await?;
    let digest = Algorithm::Sha256.digest(&bytes);
    write_atomically(output, &bytes)?;
    Ok(PackedWebc {
        name: package.manifest.name.to_string(),
        version: package.manifest.version.to_string(),
        path: output.display().to_string(),
        digest: digest.to_string(),
        bytes: bytes.len() as u64,
    })
}

/// The package directory in the webc manifest's terms.
fn describe(package: &PackageDir) -> PackageToWrite {
    let manifest = &package.manifest;
    PackageToWrite {
        name: manifest.name.to_string(),
        version: manifest.version.to_string(),
        uses: manifest
            .dependencies
            .iter()
            .map(|d| (d.alias.clone(), format!("{}@{}", d.package, d.req)))
            .collect(),
        commands: manifest
            .commands
            .iter()
            .map(|c| CommandToWrite {
                name: c.name.clone(),
                runner: c.runner.clone(),
                atom: c.atom.clone(),
                dependency: c.dependency.clone(),
                annotations: c.annotations.clone(),
            })
            .collect(),
        entrypoint: manifest.entrypoint.clone(),
        mounts: manifest
            .fs
            .iter()
            .map(|m| {
                let inside = (m.path.as_str() != "/").then(|| m.path.to_string());
                (
                    m.dependency.clone(),
                    m.volume.clone(),
                    inside,
                    m.mount.to_string(),
                )
            })
            .collect(),
        atoms: package.atoms.clone(),
        volumes: package.volumes.clone(),
    }
}

fn write_atomically(output: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let io = |op: &'static str, e: std::io::Error| LoadError::io(op, output, e);
    let mut temp = tempfile_in(dir).map_err(|e| io("create", e))?;
    std::io::Write::write_all(&mut temp.1, bytes).map_err(|e| io("write", e))?;
    temp.1.sync_all().map_err(|e| io("sync", e))?;
    std::fs::rename(&temp.0, output).map_err(|e| {
        let _ = std::fs::remove_file(&temp.0);
        io("rename", e)
    })
}

/// A new file beside the output, so the rename stays on one filesystem.
fn tempfile_in(dir: &Path) -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    for attempt in 0..100u32 {
        let path = dir.join(format!(
            ".pkgload-pack-{}-{attempt}.webc.tmp",
            std::process::id()
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free temporary file name"))
}

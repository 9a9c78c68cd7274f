//! Building a package from a [`PackageDir`]: volumes as reproducible tar+zstd in
//! zstd:chunked form (each file its own frame, a table of contents after them, so a reader
//! can fetch one file by range; to any other reader an ordinary `tar+zstd` layer), atoms as
//! they are, the config as JSON, and an OCI image manifest naming each by title.
//!
//! The manifest also embeds the config (the OCI 1.1 descriptor `data` field) when it is at
//! most [`EMBED_LIMIT`] bytes, so a resolver reads a package's dependencies from the manifest
//! alone: one request per package version instead of two, and one round trip per dependency
//! level fewer. The config blob is pushed all the same, for clients that ignore `data` and
//! for registries that check every descriptor names a blob they hold.
//!
//! Reproducible means the same directory gives the same digests on any machine: entries in
//! byte order of their names, owner 0:0 without names, mtime 0, only permission bits kept,
//! a fixed zstd level. A volume's tar is written to a temporary file and mapped, then
//! compressed into another while being hashed, and that is mapped: a large volume never
//! sits in memory.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use bytes::Bytes;
use cache_core::{Algorithm, Digest, Hasher};
use fetch_http::Repository;
use serde::Serialize;
use serde_json::json;

use crate::artifact::{
    PACKAGE_ARTIFACT_TYPE, PACKAGE_CONFIG_MEDIA_TYPE, TITLE_ANNOTATION, WASM_MEDIA_TYPE,
};
use crate::error::{LoadError, Result};
use crate::package_dir::PackageDir;

/// Media type of a volume built by [`pack`].
pub const VOLUME_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Media type of the manifest [`pack`] writes.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const ZSTD_LEVEL: i32 = 3;
/// The largest config [`pack`] embeds in the manifest.
pub const EMBED_LIMIT: usize = 16 << 10;

/// What [`pack`] produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Packed {
    /// The package name.
    pub name: String,
    /// The package version.
    pub version: String,
    /// The tag it was stored under.
    pub tag: String,
    /// The manifest's digest.
    pub digest: String,
    /// Config and layer blobs written.
    pub blobs: usize,
    /// Their total size.
    pub bytes: u64,
}

struct Built {
    digest: Digest,
    data: Bytes,
    media_type: String,
    title: Option<String>,
    /// More descriptor annotations (a volume's table-of-contents position).
    annotations: Annotations,
}

/// Descriptor annotations, in the order they are written.
type Annotations = Vec<(String, String)>;

/// Build the package in `dir` and store it in `target` under `tag` (default: its version).
pub async fn pack(dir: &Path, target: &Repository, tag: Option<&str>) -> Result<Packed> {
    let package = PackageDir::open(dir)?;
    let package_for_build = package.clone();
    let (config, layers) = tokio::task::spawn_blocking(move || build(&package_for_build))
        .await
        .map_err(|e| LoadError::PackageDir {
            path: dir.display().to_string(),
            reason: format!("building the package failed: {e}"),
        })??;
    let descriptor = |b: &Built| {
        let mut d = serde_json::Map::new();
        d.insert("mediaType".into(), json!(b.media_type));
        d.insert("digest".into(), json!(b.digest.to_string()));
        d.insert("size".into(), json!(b.data.len()));
        let mut annotations = serde_json::Map::new();
        if let Some(title) = &b.title {
            annotations.insert(TITLE_ANNOTATION.into(), json!(title));
        }
        for (key, value) in &b.annotations {
            annotations.insert(key.clone(), json!(value));
        }
        if !annotations.is_empty() {
            d.insert("annotations".into(), serde_json::Value::Object(annotations));
        }
        serde_json::Value::Object(d)
    };
    let mut config_descriptor = descriptor(&config);
    if config.data.len() <= EMBED_LIMIT
        && let Some(d) = config_descriptor.as_object_mut()
    {
        d.insert(
            "data".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(&config.data)),
        );
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": PACKAGE_ARTIFACT_TYPE,
        "config": config_descriptor,
        "layers": layers.iter().map(descriptor).collect::<Vec<_>>(),
    });
    let manifest = serde_json::to_vec(&manifest).map_err(|e| LoadError::PackageDir {
        path: dir.display().to_string(),
        reason: format!("cannot write the manifest: {e}"),
    })?;
    let shown = target_name(target);
    let mut bytes = 0;
    for blob in std::iter::once(&config).chain(&layers) {
        bytes += blob.data.len() as u64;
        target
            .put_blob(&blob.digest, blob.data.clone())
            .await
            .map_err(|e| LoadError::fetch(format!("pushing {} to {shown}", blob.digest), e))?;
    }
    let tag = tag.map_or_else(|| package.manifest.version.to_string(), str::to_owned);
    let digest = target
        .put_manifest(Some(&tag), MANIFEST_MEDIA_TYPE, Bytes::from(manifest))
        .await
        .map_err(|e| LoadError::fetch(format!("pushing the manifest to {shown}:{tag}"), e))?;
    Ok(Packed {
        name: package.manifest.name.to_string(),
        version: package.manifest.version.to_string(),
        tag,
        digest: digest.to_string(),
        blobs: layers.len() + 1,
        bytes,
    })
}

fn target_name(target: &Repository) -> String {
    match target {
        Repository::Registry { reference, .. } => {
            format!("{}/{}", reference.registry(), reference.repository())
        }
        Repository::Layout(l) => format!("oci:{}", l.root().display()),
    }
}

fn build(package: &PackageDir) -> Result<(Built, Vec<Built>)> {
    let config = Bytes::from(package.config_json.clone());
    let config = Built {
        digest: Algorithm::Sha256.digest(&config),
        data: config,
        media_type: PACKAGE_CONFIG_MEDIA_TYPE.to_owned(),
        title: None,
        annotations: Vec::new(),
    };
    let mut layers = Vec::new();
    for (name, dir) in &package.volumes {
        let (digest, data, annotations) = volume(dir)?;
        layers.push(Built {
            digest,
            data,
            media_type: VOLUME_MEDIA_TYPE.to_owned(),
            title: Some(name.clone()),
            annotations,
        });
    }
    for (name, file) in &package.atoms {
        let data = Bytes::from(std::fs::read(file).map_err(|e| LoadError::io("read", file, e))?);
        let media_type = if data.starts_with(b"\0asm") {
            WASM_MEDIA_TYPE
        } else {
            "application/octet-stream"
        };
        layers.push(Built {
            digest: Algorithm::Sha256.digest(&data),
            data,
            media_type: media_type.to_owned(),
            title: Some(name.clone()),
            annotations: Vec::new(),
        });
    }
    Ok((config, layers))
}

/// Writes to a file while hashing what is written.
struct HashingFile {
    file: std::fs::File,
    hasher: Hasher,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The zstd:chunked tar of `dir`, hashed, as a memory-mapped temporary file, with the
/// annotations that locate its table of contents.
fn volume(dir: &Path) -> Result<(Digest, Bytes, Annotations)> {
    let io_err = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |e: io::Error| LoadError::io(action, &path, e)
    };
    let tar_file = tempfile::tempfile().map_err(io_err("create a temporary file for", dir))?;
    let mut tar = tar::Builder::new(io::BufWriter::new(
        tar_file.try_clone().map_err(io_err("reopen", dir))?,
    ));
    tar.follow_symlinks(false);
    for (relative, full) in walk_sorted(dir)? {
        append(&mut tar, &relative, &full)?;
    }
    let mut written = tar.into_inner().map_err(io_err("write the tar of", dir))?;
    written.flush().map_err(io_err("write the tar of", dir))?;
    drop(written);
    // SAFETY (both maps): the temporary files are unlinked and private to this process;
    // nothing else can change them while they are mapped.
    let tar = unsafe { memmap2::Mmap::map(&tar_file) }.map_err(io_err("map", dir))?;
    let temp = tempfile::tempfile().map_err(io_err("create a temporary file for", dir))?;
    let mut sink = HashingFile {
        file: temp.try_clone().map_err(io_err("reopen", dir))?,
        hasher: Hasher::new(Algorithm::Sha256),
    };
    let annotations =
        layer_toc::write_zstd_chunked(&tar, ZSTD_LEVEL, io::BufWriter::new(&mut sink))
            .map_err(io_err("compress", dir))?;
    sink.flush().map_err(io_err("write", dir))?;
    let digest = sink.hasher.finalize();
    let map = unsafe { memmap2::Mmap::map(&temp) }.map_err(io_err("map", dir))?;
    Ok((digest, Bytes::from_owner(map), annotations))
}

/// Every entry under `dir` (not `dir` itself) in byte order of its path. Iterative: depth
/// is not bounded by the stack.
fn walk_sorted(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), dir.to_owned())];
    while let Some((prefix, path)) = stack.pop() {
        let mut children: Vec<(String, PathBuf, bool)> = Vec::new();
        for entry in std::fs::read_dir(&path).map_err(|e| LoadError::io("list", &path, e))? {
            let entry = entry.map_err(|e| LoadError::io("list", &path, e))?;
            let name = entry
                .file_name()
                .into_string()
                .map_err(|name| LoadError::PackageDir {
                    path: path.join(&name).display().to_string(),
                    reason: "file names in a volume must be UTF-8".to_owned(),
                })?;
            let is_dir = entry
                .file_type()
                .map_err(|e| LoadError::io("stat", entry.path(), e))?
                .is_dir();
            let relative = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            children.push((relative, entry.path(), is_dir));
        }
        for (relative, full, is_dir) in children {
            if is_dir {
                stack.push((relative.clone(), full.clone()));
            }
            out.push((relative, full));
        }
    }
    // A parent's path is a prefix of its children's, so plain byte order lists parents
    // first.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn append<W: Write>(tar: &mut tar::Builder<W>, relative: &str, full: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(full).map_err(|e| LoadError::io("stat", full, e))?;
    let mut header = tar::Header::new_gnu();
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mode(meta.permissions().mode() & 0o7777);
    let write = |e: io::Error| LoadError::io("add to a volume", full, e);
    let kind = meta.file_type();
    if kind.is_dir() {
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        tar.append_data(&mut header, format!("{relative}/"), io::empty())
            .map_err(write)
    } else if kind.is_symlink() {
        let target = std::fs::read_link(full).map_err(|e| LoadError::io("read link", full, e))?;
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        tar.append_link(&mut header, relative, target)
            .map_err(write)
    } else if kind.is_file() {
        let file = std::fs::File::open(full).map_err(|e| LoadError::io("open", full, e))?;
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(meta.len());
        tar.append_data(&mut header, relative, file).map_err(write)
    } else {
        Err(LoadError::PackageDir {
            path: full.display().to_string(),
            reason: "volumes may hold only directories, regular files and symlinks".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_reproducible() {
        let make = || {
            let d = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(d.path().join("b/c")).unwrap();
            std::fs::write(d.path().join("b/c/f.txt"), b"hello").unwrap();
            std::fs::write(d.path().join("a"), b"x").unwrap();
            std::os::unix::fs::symlink("b/c/f.txt", d.path().join("link")).unwrap();
            d
        };
        let (one, two) = (make(), make());
        // Different mtimes must not matter.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(two.path().join("a"), b"x").unwrap();
        let (d1, b1, annotations) = volume(one.path()).unwrap();
        let (d2, _, again) = volume(two.path()).unwrap();
        assert_eq!(d1, d2);
        assert_eq!(annotations, again);
        assert_eq!(Algorithm::Sha256.digest(&b1), d1);
        // A table of contents where the annotations say, naming the one file with data.
        let get = |key: &str| {
            annotations
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let position = layer_toc::TocPosition::from_annotations(d1, get)
            .unwrap()
            .unwrap();
        let range = position.range();
        let toc = layer_toc::Toc::parse(
            &position,
            &b1[range.start as usize..range.end as usize],
            1 << 20,
        )
        .unwrap();
        let files: Vec<&str> = toc.files().iter().map(|f| f.path.as_str()).collect();
        assert_eq!(files, ["/a", "/b/c/f.txt"]);

        let tar = zstd::decode_all(&b1[..]).unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["a", "b/", "b/c/", "b/c/f.txt", "link"]);
    }
}

//! OCI image layout directories (the format `skopeo` and `umoci` read and write).
//!
//! ```text
//! <dir>/oci-layout          {"imageLayoutVersion": "1.0.0"}
//! <dir>/index.json          an image index; tags are `org.opencontainers.image.ref.name`
//! <dir>/blobs/<alg>/<hex>   content, named by digest
//! ```
//!
//! Digests read from `index.json` are parsed strictly before they name a file, so a hostile
//! layout cannot point outside `blobs/`. Manifests are verified against their digest and
//! capped like registry manifests; blobs are fetched through [`HttpClient::fetch_blob`]
//! (a [`BlobSource::File`]) and so verified like downloads.
//!
//! [`HttpClient::fetch_blob`]: crate::HttpClient::fetch_blob

use std::path::{Path, PathBuf};

use bytes::Bytes;
use cache_core::{Algorithm, Digest};
use oci_spec::image::{Descriptor, ImageIndex, MediaType};

use crate::blob::{BlobRequest, BlobSource};
use crate::error::{Error, Result};
use crate::registry::{MANIFEST_LIMIT, Manifest};

const REF_NAME: &str = oci_spec::image::ANNOTATION_REF_NAME;

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct OciLayout {
    root: PathBuf,
}

impl OciLayout {
    /// Open an existing layout (its `oci-layout` file must say version 1.x).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let root = dir.into();
        let marker = root.join("oci-layout");
        let text = std::fs::read_to_string(&marker).map_err(|e| file_error(&marker, &e))?;
        let version = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("imageLayoutVersion")?.as_str().map(str::to_owned))
            .ok_or_else(|| Error::File {
                path: marker.display().to_string(),
                message: "not an OCI layout marker (no imageLayoutVersion)".into(),
            })?;
        if !version.starts_with("1.") {
            return Err(Error::File {
                path: marker.display().to_string(),
                message: format!("unsupported OCI layout version {version}"),
            });
        }
        Ok(OciLayout { root })
    }

    /// Open the layout at `dir`, creating an empty one if the directory has none.
    pub fn create(dir: impl Into<PathBuf>) -> Result<Self> {
        let root = dir.into();
        if root.join("oci-layout").is_file() {
            return Self::open(root);
        }
        std::fs::create_dir_all(root.join("blobs")).map_err(|e| file_error(&root, &e))?;
        write_atomic(
            &root.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        write_atomic(
            &root.join("index.json"),
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#,
        )?;
        Ok(OciLayout { root })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    fn index(&self) -> Result<ImageIndex> {
        let path = self.root.join("index.json");
        let bytes = read_capped(&path, MANIFEST_LIMIT)?;
        serde_json::from_slice(&bytes).map_err(|e| Error::File {
            path: path.display().to_string(),
            message: format!("invalid index.json: {e}"),
        })
    }

    /// The tags (`org.opencontainers.image.ref.name`) in `index.json`.
    pub fn list_tags(&self) -> Result<Vec<String>> {
        Ok(self
            .index()?
            .manifests()
            .iter()
            .filter_map(|d| d.annotations().as_ref()?.get(REF_NAME).cloned())
            .collect())
    }

    /// The manifest named by `reference`: a tag, a digest, or `None` for the only one.
    pub fn read_manifest(&self, reference: Option<&str>) -> Result<Manifest> {
        let index = self.index()?;
        let entries = index.manifests();
        let shown = || format!("{}:{}", self.root.display(), reference.unwrap_or(""));
        let entry = match reference {
            Some(r) if Digest::parse(r).is_ok() => {
                entries.iter().find(|d| d.digest().as_ref() == r)
            }
            Some(tag) => entries.iter().find(|d| {
                d.annotations()
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .is_some_and(|t| t == tag)
            }),
            None if entries.len() == 1 => entries.first(),
            None => {
                return Err(Error::Refused {
                    url: shown(),
                    reason: format!(
                        "the layout holds {} manifests; name one with oci:DIR:TAG",
                        entries.len()
                    ),
                });
            }
        };
        // A manifest an index points to (an image of a multi-platform index) is in the
        // layout's blobs without an entry of its own in index.json.
        let nested = match (entry, reference.map(Digest::parse)) {
            (None, Some(Ok(digest))) if self.contains(&digest) => Some(digest),
            _ => None,
        };
        if let Some(digest) = nested {
            let path = self.blob_path(&digest);
            let bytes = Bytes::from(read_capped(&path, MANIFEST_LIMIT)?);
            check_digest(&path, &digest, &bytes)?;
            return Manifest::new(digest, bytes, None, path.display().to_string());
        }
        let entry = entry.ok_or_else(|| Error::Status {
            method: "READ".into(),
            url: shown(),
            status: 404,
        })?;
        let digest = Digest::parse(entry.digest().as_ref()).map_err(|e| Error::Refused {
            url: shown(),
            reason: format!("index.json names an unusable digest: {e}"),
        })?;
        if entry.size() > MANIFEST_LIMIT {
            return Err(Error::TooLarge {
                url: shown(),
                what: "a manifest",
                limit: MANIFEST_LIMIT,
            });
        }
        let path = self.blob_path(&digest);
        let bytes = Bytes::from(read_capped(&path, MANIFEST_LIMIT)?);
        check_digest(&path, &digest, &bytes)?;
        let declared = entry.media_type().to_string();
        Manifest::new(digest, bytes, Some(&declared), path.display().to_string())
    }

    /// A request that copies (and verifies) a blob of this layout into a store.
    pub fn blob_request(&self, digest: Digest, size: Option<u64>) -> BlobRequest {
        BlobRequest::new(BlobSource::File(self.blob_path(&digest)), digest, size)
    }

    /// True when the layout holds the blob.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Write a blob (verified against `digest`; atomic; skipped when present).
    pub fn write_blob(&self, digest: &Digest, data: &[u8]) -> Result<()> {
        let actual = digest.algorithm().digest(data);
        if actual != *digest {
            return Err(Error::Corrupt {
                url: self.root.display().to_string(),
                source: cache_core::Error::DigestMismatch {
                    expected: *digest,
                    actual,
                },
            });
        }
        let path = self.blob_path(digest);
        if path.is_file() {
            return Ok(());
        }
        write_atomic(&path, data)
    }

    /// Write a manifest blob and list it in `index.json` (under `tag`, replacing the
    /// entry that had that tag). Returns its digest.
    pub fn write_manifest(
        &self,
        tag: Option<&str>,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest> {
        let digest = Algorithm::Sha256.digest(bytes);
        self.write_blob(&digest, bytes)?;
        let mut index = self.index()?;
        let mut entries: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| {
                let same_tag = tag.is_some()
                    && d.annotations()
                        .as_ref()
                        .and_then(|a| a.get(REF_NAME))
                        .map(String::as_str)
                        == tag;
                let same_untagged = tag.is_none() && d.digest().as_ref() == digest.to_string();
                !same_tag && !same_untagged
            })
            .cloned()
            .collect();
        let oci_digest: oci_spec::image::Digest =
            digest.to_string().parse().map_err(|e| Error::Refused {
                url: self.root.display().to_string(),
                reason: format!("digest not accepted by oci-spec: {e}"),
            })?;
        let mut entry =
            Descriptor::new(MediaType::from(media_type), bytes.len() as u64, oci_digest);
        if let Some(t) = tag {
            entry.set_annotations(Some([(REF_NAME.to_owned(), t.to_owned())].into()));
        }
        entries.push(entry);
        index.set_manifests(entries);
        let json = serde_json::to_vec(&index).map_err(|e| Error::Refused {
            url: self.root.display().to_string(),
            reason: format!("cannot serialize index.json: {e}"),
        })?;
        write_atomic(&self.root.join("index.json"), &json)?;
        Ok(digest)
    }
}

fn file_error(path: &Path, e: &std::io::Error) -> Error {
    Error::File {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| file_error(path, &e))?;
    let mut data = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut data)
        .map_err(|e| file_error(path, &e))?;
    if data.len() as u64 > limit {
        return Err(Error::TooLarge {
            url: path.display().to_string(),
            what: "a layout metadata file",
            limit,
        });
    }
    Ok(data)
}

/// Temp file + rename in the same directory.
fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| file_error(dir, &e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&temp)?;
        f.write_all(data)?;
        f.sync_data()?;
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(file_error(path, &e));
    }
    Ok(())
}

fn check_digest(path: &Path, digest: &Digest, bytes: &[u8]) -> Result<()> {
    let actual = digest.algorithm().digest(bytes);
    if actual == *digest {
        return Ok(());
    }
    Err(Error::Corrupt {
        url: path.display().to_string(),
        source: cache_core::Error::DigestMismatch {
            expected: *digest,
            actual,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(dir.path().join("l")).unwrap();
        let config = br#"{}"#;
        let config_digest = Algorithm::Sha256.digest(config);
        layout.write_blob(&config_digest, config).unwrap();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":2}},"layers":[]}}"#
        );
        let d1 = layout
            .write_manifest(
                Some("v1"),
                "application/vnd.oci.image.manifest.v1+json",
                manifest.as_bytes(),
            )
            .unwrap();
        let reopened = OciLayout::open(layout.root()).unwrap();
        assert_eq!(reopened.list_tags().unwrap(), vec!["v1".to_owned()]);
        let m = reopened.read_manifest(Some("v1")).unwrap();
        assert_eq!(m.digest, d1);
        assert_eq!(&m.bytes[..], manifest.as_bytes());
        assert_eq!(reopened.read_manifest(None).unwrap().digest, d1);
        assert_eq!(
            reopened
                .read_manifest(Some(&d1.to_string()))
                .unwrap()
                .digest,
            d1
        );
        assert_eq!(
            reopened.read_manifest(Some("v2")).unwrap_err().status(),
            Some(404)
        );
        // Re-tagging replaces the entry instead of adding a second "v1".
        layout
            .write_manifest(
                Some("v1"),
                "application/vnd.oci.image.manifest.v1+json",
                manifest.as_bytes(),
            )
            .unwrap();
        assert_eq!(reopened.list_tags().unwrap().len(), 1);
        // A blob of the wrong content is refused.
        assert!(layout.write_blob(&config_digest, b"other").is_err());
    }

    #[test]
    fn hostile_index_cannot_escape() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(dir.path()).unwrap();
        std::fs::write(
            dir.path().join("index.json"),
            r#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:../../../../etc/passwd","size":10}]}"#,
        )
        .unwrap();
        let err = layout.read_manifest(None).unwrap_err();
        assert!(!matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(OciLayout::open(dir.path().join("missing")).is_err());
    }
}

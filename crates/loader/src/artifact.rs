//! What an image manifest holds, in pkgload's terms (DESIGN.md "A package is an OCI
//! artifact" and "Other OCI content is a package too"): a package (config + named volumes
//! and atoms), a container image (layers stacked at `/`) or a wasm artifact (one atom).

use base64::Engine as _;
use bytes::Bytes;
use cache_core::Digest;
use oci_spec::image::{Descriptor, ImageManifest};

use crate::error::{LoadError, Result};

/// `artifactType` of a pkgload package manifest.
pub const PACKAGE_ARTIFACT_TYPE: &str = "application/vnd.pkgload.package.v1";
/// Media type of a package's config blob.
pub const PACKAGE_CONFIG_MEDIA_TYPE: &str = "application/vnd.pkgload.package.config.v1+json";
/// The annotation that names a volume or an atom.
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// Media type of a wasm module layer.
pub const WASM_MEDIA_TYPE: &str = "application/wasm";

/// The layer media types other tools publish a wasm module under: pkgload and
/// wasm-pkg-tools (`application/wasm`), containerd/runwasi (a component layer, beside an
/// OCI image config and sometimes other layers) and wasm-to-oci.
pub const WASM_LAYER_MEDIA_TYPES: [&str; 3] = [
    WASM_MEDIA_TYPE,
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
];

const IMAGE_CONFIG_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// The largest config blob read into memory.
pub const CONFIG_LIMIT: u64 = 4 << 20;

/// What kind of artifact a manifest describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    /// A pkgload package.
    Package,
    /// A container image.
    Image,
    /// A wasm artifact.
    Wasm,
    /// A Wasmer webc package as an OCI artifact (see `webc_oci.rs`).
    Webc,
}

/// One blob a manifest points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    /// Its digest.
    pub digest: Digest,
    /// Its size, as the descriptor declares it.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
    /// Its `org.opencontainers.image.title`, if any.
    pub title: Option<String>,
    /// Its content, when the descriptor embeds it (OCI 1.1 `data`, base64) and the decoded
    /// bytes match `size` and `digest`. Reading it costs no request and no cache file.
    pub embedded: Option<Bytes>,
    /// Where its table of contents is, when the descriptor's annotations say it is a
    /// seekable (zstd:chunked) layer; `Some(Err)` when they say so in a form that does not
    /// parse (an error only if the layer is read lazily).
    pub toc: Option<Result<layer_toc::Seekable, layer_toc::TocError>>,
}

impl BlobRef {
    fn from_descriptor(d: &Descriptor, reference: &str) -> Result<BlobRef> {
        let digest = Digest::parse(d.digest().as_ref()).map_err(|e| LoadError::Inconsistent {
            reference: reference.to_owned(),
            reason: format!("a descriptor has an unusable digest: {e}"),
        })?;
        Ok(BlobRef {
            digest,
            size: d.size(),
            media_type: d.media_type().to_string(),
            title: d
                .annotations()
                .as_ref()
                .and_then(|a| a.get(TITLE_ANNOTATION))
                .cloned(),
            embedded: d
                .data()
                .as_deref()
                .and_then(|data| embedded(data, digest, d.size(), reference)),
            toc: d.annotations().as_ref().and_then(|a| {
                layer_toc::Seekable::from_annotations(digest, d.size(), |k| {
                    a.get(k).map(String::as_str)
                })
            }),
        })
    }

    /// A webc file (`application/webc`).
    pub fn is_webc(&self) -> bool {
        self.media_type == crate::webc::WEBC_MEDIA_TYPE
    }

    /// A layer of one of the [`WASM_LAYER_MEDIA_TYPES`].
    pub fn is_wasm(&self) -> bool {
        WASM_LAYER_MEDIA_TYPES.contains(&self.media_type.as_str())
    }

    /// True when the layer is a tar (plain, gzip or zstd): a volume, not an atom.
    pub fn is_tar(&self) -> bool {
        is_tar_media_type(&self.media_type)
    }
}

/// The bytes a descriptor's `data` field embeds, if they are the blob it names.
///
/// The spec makes `data` a copy whose consumers should check it. A copy that does not decode
/// or does not match is ignored (the blob is then fetched as if nothing were embedded), so a
/// publisher's mistake costs a request, never a wrong byte.
fn embedded(data: &str, digest: Digest, size: u64, reference: &str) -> Option<Bytes> {
    // Four base64 characters per three bytes: a longer string cannot be `size` bytes.
    if size > CONFIG_LIMIT || data.len() as u64 > size.div_ceil(3) * 4 {
        tracing::warn!(%reference, %digest, "ignoring embedded data larger than its blob");
        return None;
    }
    let bytes = match base64::engine::general_purpose::STANDARD.decode(data) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(%reference, %digest, "ignoring embedded data that is not base64: {e}");
            return None;
        }
    };
    if bytes.len() as u64 != size || digest.algorithm().digest(&bytes) != digest {
        tracing::warn!(%reference, %digest, "ignoring embedded data that is not the blob it names");
        return None;
    }
    Some(Bytes::from(bytes))
}

/// True for OCI and Docker tar layer media types, compressed or not.
pub fn is_tar_media_type(media_type: &str) -> bool {
    media_type.contains(".tar") || media_type.ends_with(".tar")
}

/// An image manifest, classified.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// Where it came from (for messages and lockfiles).
    pub reference: String,
    /// The manifest's digest.
    pub digest: Digest,
    /// What it is.
    pub kind: ArtifactKind,
    /// Its config blob.
    pub config: BlobRef,
    /// Its layers, in manifest order.
    pub layers: Vec<BlobRef>,
}

impl Artifact {
    /// Classify `manifest` (pulled from `reference`, hashing to `digest`).
    pub fn classify(manifest: &ImageManifest, digest: Digest, reference: &str) -> Result<Self> {
        let config = BlobRef::from_descriptor(manifest.config(), reference)?;
        let layers = manifest
            .layers()
            .iter()
            .map(|d| BlobRef::from_descriptor(d, reference))
            .collect::<Result<Vec<_>>>()?;
        let artifact_type = manifest.artifact_type().as_ref().map(|t| t.to_string());
        let kind = if config.media_type == PACKAGE_CONFIG_MEDIA_TYPE
            || artifact_type.as_deref() == Some(PACKAGE_ARTIFACT_TYPE)
        {
            ArtifactKind::Package
        } else if layers.iter().filter(|l| l.is_webc()).count() == 1 {
            ArtifactKind::Webc
        } else if IMAGE_CONFIG_MEDIA_TYPES.contains(&config.media_type.as_str())
            && layers.iter().all(BlobRef::is_tar)
        {
            ArtifactKind::Image
        } else if layers.iter().filter(|l| l.is_wasm()).count() == 1 {
            // One wasm layer says what this is, whatever the config (wasm-pkg-tools'
            // `application/vnd.wasm.config.v0+json`, wasm-to-oci's `…config.v1+json`,
            // runwasi's OCI image config): the module is that layer.
            ArtifactKind::Wasm
        } else {
            let shown = |l: &[BlobRef]| {
                l.iter()
                    .map(|l| l.media_type.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let why = if layers.iter().filter(|l| l.is_wasm()).count() > 1 {
                "several wasm layers, so no one module is the artifact".to_owned()
            } else {
                format!(
                    "a package has config {PACKAGE_CONFIG_MEDIA_TYPE} or artifactType \
                     {PACKAGE_ARTIFACT_TYPE}; an image an image config and tar layers; a wasm \
                     artifact one layer of {}; a webc package one layer of {}",
                    WASM_LAYER_MEDIA_TYPES.join(", "),
                    crate::webc::WEBC_MEDIA_TYPE
                )
            };
            return Err(LoadError::unsupported(
                reference,
                format!(
                    "not a pkgload package, a container image or a wasm artifact (config media \
                     type {:?}, layer media types [{}]): {why}",
                    config.media_type,
                    shown(&layers)
                ),
            ));
        };
        if kind == ArtifactKind::Package && config.size > CONFIG_LIMIT {
            return Err(LoadError::Inconsistent {
                reference: reference.to_owned(),
                reason: format!(
                    "its config blob declares {} bytes, over the {CONFIG_LIMIT}-byte limit",
                    config.size
                ),
            });
        }
        Ok(Artifact {
            reference: reference.to_owned(),
            digest,
            kind,
            config,
            layers,
        })
    }

    /// A webc artifact's container: its one webc layer.
    pub fn webc_file(&self) -> Option<&BlobRef> {
        self.layers.iter().find(|l| l.is_webc())
    }

    /// A wasm artifact's module: its one wasm layer.
    pub fn wasm_module(&self) -> Option<&BlobRef> {
        self.layers.iter().find(|l| l.is_wasm())
    }

    /// The volume (tar layer) named `name`.
    pub fn volume(&self, name: &str) -> Option<&BlobRef> {
        self.layers
            .iter()
            .find(|l| l.is_tar() && l.title.as_deref() == Some(name))
    }

    /// The atom (non-tar layer) named `name`.
    pub fn atom(&self, name: &str) -> Option<&BlobRef> {
        self.layers
            .iter()
            .find(|l| !l.is_tar() && l.title.as_deref() == Some(name))
    }

    /// The titles of the layers, for "no such volume" messages.
    pub fn titles(&self) -> String {
        let titles: Vec<&str> = self
            .layers
            .iter()
            .filter_map(|l| l.title.as_deref())
            .collect();
        if titles.is_empty() {
            "none".to_owned()
        } else {
            titles.join(", ")
        }
    }
}

/// The blobs an OCI manifest or index refers to (config, layers, manifests), or nothing
/// when `bytes` is not one. Cheap on anything else: only a JSON object is parsed, and only
/// when it is small enough to be a manifest.
pub fn referenced_blobs(bytes: &[u8]) -> Vec<Digest> {
    #[derive(serde::Deserialize)]
    struct Doc {
        #[serde(rename = "schemaVersion")]
        _schema: u32,
        config: Option<Ref>,
        #[serde(default)]
        layers: Vec<Ref>,
        #[serde(default)]
        manifests: Vec<Ref>,
    }
    #[derive(serde::Deserialize)]
    struct Ref {
        digest: String,
    }
    let looks_like_json = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    if !looks_like_json || bytes.len() as u64 > fetch_http::MANIFEST_LIMIT {
        return Vec::new();
    }
    let Ok(doc) = serde_json::from_slice::<Doc>(bytes) else {
        return Vec::new();
    };
    doc.config
        .iter()
        .chain(&doc.layers)
        .chain(&doc.manifests)
        .filter_map(|r| Digest::parse(&r.digest).ok())
        .collect()
}

/// The part of an image config we use: the uncompressed digests of its layers, and what it
/// runs (to prefetch it).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ImageConfig {
    pub(crate) rootfs: RootFs,
    #[serde(default)]
    pub(crate) config: Option<RunConfig>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct RunConfig {
    #[serde(rename = "Entrypoint", default)]
    pub(crate) entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub(crate) cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    pub(crate) env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    pub(crate) working_dir: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct RootFs {
    #[serde(default)]
    pub(crate) diff_ids: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(config_type: &str, layers: &[(&str, Option<&str>)]) -> ImageManifest {
        let empty = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
        let layers: Vec<serde_json::Value> = layers
            .iter()
            .map(|(media, title)| {
                let mut d = serde_json::json!({"mediaType": media, "digest": empty, "size": 2});
                if let Some(t) = title {
                    d["annotations"] = serde_json::json!({ TITLE_ANNOTATION: t });
                }
                d
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": config_type, "digest": empty, "size": 2},
            "layers": layers,
        }))
        .unwrap()
    }

    fn classify(m: &ImageManifest) -> Result<Artifact> {
        Artifact::classify(m, cache_core::Algorithm::Sha256.digest(b"m"), "test/ref")
    }

    #[test]
    fn referenced_blobs_of_manifests_only() {
        let m = manifest(PACKAGE_CONFIG_MEDIA_TYPE, &[(WASM_MEDIA_TYPE, Some("a"))]);
        let bytes = serde_json::to_vec(&m).unwrap();
        let refs = referenced_blobs(&bytes);
        assert_eq!(refs.len(), 2);
        assert!(referenced_blobs(b"\0asm").is_empty());
        assert!(referenced_blobs(b"{\"a\": 1}").is_empty());
    }

    #[test]
    fn kinds_and_lookup() {
        let pkg = manifest(
            PACKAGE_CONFIG_MEDIA_TYPE,
            &[
                ("application/vnd.oci.image.layer.v1.tar+zstd", Some("app")),
                (WASM_MEDIA_TYPE, Some("app")),
            ],
        );
        let a = classify(&pkg).unwrap();
        assert_eq!(a.kind, ArtifactKind::Package);
        assert!(a.volume("app").unwrap().is_tar());
        assert_eq!(a.atom("app").unwrap().media_type, WASM_MEDIA_TYPE);
        assert!(a.volume("data").is_none());
        assert_eq!(a.titles(), "app, app");

        let image = manifest(
            IMAGE_CONFIG_MEDIA_TYPES[1],
            &[("application/vnd.docker.image.rootfs.diff.tar.gzip", None)],
        );
        assert_eq!(classify(&image).unwrap().kind, ArtifactKind::Image);

        let wasm = manifest(
            "application/vnd.wasm.config.v0+json",
            &[(WASM_MEDIA_TYPE, None)],
        );
        assert_eq!(classify(&wasm).unwrap().kind, ArtifactKind::Wasm);

        // runwasi: an OCI image config, a component layer and a tar layer beside it.
        let runwasi = manifest(
            IMAGE_CONFIG_MEDIA_TYPES[0],
            &[
                ("application/vnd.oci.image.layer.v1.tar+gzip", None),
                (WASM_LAYER_MEDIA_TYPES[1], None),
            ],
        );
        let a = classify(&runwasi).unwrap();
        assert_eq!(a.kind, ArtifactKind::Wasm);
        assert_eq!(
            a.wasm_module().unwrap().media_type,
            WASM_LAYER_MEDIA_TYPES[1]
        );
        // wasm-to-oci.
        let w2o = manifest(
            "application/vnd.wasm.config.v1+json",
            &[(WASM_LAYER_MEDIA_TYPES[2], None)],
        );
        assert_eq!(classify(&w2o).unwrap().kind, ArtifactKind::Wasm);

        let other = manifest("application/x-thing", &[("text/plain", None)]);
        let err = classify(&other).unwrap_err().to_string();
        assert!(
            err.contains("test/ref")
                && err.contains("text/plain")
                && WASM_LAYER_MEDIA_TYPES.iter().all(|t| err.contains(t)),
            "{err}"
        );
        let two = manifest(
            "application/vnd.wasm.config.v0+json",
            &[(WASM_MEDIA_TYPE, None), (WASM_LAYER_MEDIA_TYPES[2], None)],
        );
        let err = classify(&two).unwrap_err().to_string();
        assert!(err.contains("several wasm layers"), "{err}");
    }
    /// A package manifest whose config descriptor embeds `data` (base64 as given).
    fn with_config_data(config: &[u8], data: &str) -> ImageManifest {
        let digest = cache_core::Algorithm::Sha256.digest(config);
        serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": PACKAGE_CONFIG_MEDIA_TYPE,
                "digest": digest.to_string(),
                "size": config.len(),
                "data": data,
            },
            "layers": [],
        }))
        .unwrap()
    }

    #[test]
    fn embedded_config_is_used_only_when_it_is_the_blob() {
        let config = br#"{"schemaVersion":1,"name":"acme/x","version":"1.0.0"}"#;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);

        let good = classify(&with_config_data(config, &b64(config))).unwrap();
        assert_eq!(good.config.embedded.as_deref(), Some(&config[..]));

        // Same length, other bytes: the digest check refuses it.
        let mut other = config.to_vec();
        other[2] ^= 1;
        let forged = classify(&with_config_data(config, &b64(&other))).unwrap();
        assert_eq!(forged.config.embedded, None);

        // A prefix of the blob: the size check refuses it.
        let short = classify(&with_config_data(config, &b64(&config[..10]))).unwrap();
        assert_eq!(short.config.embedded, None);

        // Not base64, or far longer than the declared size: ignored, not an error.
        let garbage = classify(&with_config_data(config, "not base64!")).unwrap();
        assert_eq!(garbage.config.embedded, None);
        let long = b64(&vec![b'x'; config.len() * 2]);
        let too_long = classify(&with_config_data(config, &long)).unwrap();
        assert_eq!(too_long.config.embedded, None);
    }
}

//! Wasmer webc packages as OCI artifacts, so any OCI registry (or layout) distributes them.
//!
//! The manifest pkgload writes (`pkgload push FILE.webc REGISTRY/PREFIX/ns/name[:TAG]`):
//!
//! ```text
//! artifactType  application/vnd.pkgload.webc.v1
//! config        application/vnd.oci.empty.v1+json   ({}; embedded as `data`)
//! layers        one application/webc layer, titled `<name>-<version>.webc`: the file, as is
//! ```
//!
//! Reading accepts any manifest with exactly one `application/webc` layer (whatever its
//! config), since the container itself carries everything the package says. The tag is
//! the version; a webc whose annotation disagrees with the name and tag it was found under
//! is refused, as an OCI package config is.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use cache_core::Algorithm;
use fetch_http::Repository;
use resolve_graph::{GLOBAL_NAMESPACE, PackageName};
use semver::Version;
use serde_json::json;
use webc_package::Identity;

use crate::artifact::{Artifact, TITLE_ANNOTATION};
use crate::direct::{DirectPackages, Links};
use crate::error::{LoadError, Result};
use crate::pack::{MANIFEST_MEDIA_TYPE, Packed};
use crate::remote::{Found, Located};
use crate::webc::{Base, Parsed, WEBC_MEDIA_TYPE, WebcFile};

/// `artifactType` of a webc package pkgload pushes.
pub const WEBC_ARTIFACT_TYPE: &str = "application/vnd.pkgload.webc.v1";

/// The OCI 1.1 empty config.
const EMPTY_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";

impl WebcFile {
    /// The webc package of `artifact` (classified as webc, found at `at`): its container
    /// fetched into the store (cache-first, verified) and read. `placed` is the name and
    /// version it was found under, when known.
    pub(crate) async fn from_artifact(
        direct: &Arc<DirectPackages>,
        at: &Located,
        artifact: Arc<Artifact>,
        placed: Option<(PackageName, Version)>,
    ) -> Result<WebcFile> {
        let layer = artifact
            .webc_file()
            .ok_or_else(|| LoadError::Inconsistent {
                reference: artifact.reference.clone(),
                reason: format!("classified as webc, but it has no {WEBC_MEDIA_TYPE} layer"),
            })?
            .clone();
        let blob = direct.remote().blob(at, &layer).await?;
        let found = Found {
            at: at.clone(),
            artifact: artifact.clone(),
        };
        let shown = format!("{}@{}", artifact.reference, layer.digest);
        // A path in its `use` would point nowhere; URLs are absolute.
        let store = &direct.remote().store;
        let parsed = Parsed::new(store, blob, shown, placed, found, Base::Nowhere).await?;
        Links::new(direct, Base::Nowhere).read(parsed).await
    }
}

/// Pushes the webc file `bytes` (named `shown` in errors) to `target` under `tag`, or its
/// version when it carries one.
///
/// # Errors
/// [`LoadError::Webc`] for a malformed file, [`LoadError::PackageDir`] when there is no
/// tag and no version, [`LoadError::Fetch`] when the target refuses.
pub async fn push_webc(
    bytes: Bytes,
    shown: &str,
    target: &Repository,
    tag: Option<&str>,
) -> Result<Packed> {
    let (_, spec) = crate::webc::parse(bytes.clone(), shown).await?;
    if let (Repository::Registry { reference, .. }, Some(Identity::Named { name, .. })) =
        (target, &spec.identity)
    {
        check_repository(name, reference.repository(), shown)?;
    }
    let (name, version) = match spec.identity {
        Some(Identity::Named { name, version }) => (name, version.to_string()),
        _ => ("package".to_owned(), String::new()),
    };
    let tag = match (tag, version.as_str()) {
        (Some(tag), _) => tag.to_owned(),
        (None, "") => {
            return Err(LoadError::PackageDir {
                path: shown.to_owned(),
                reason: "it carries no version (no `wapm` annotation): give the tag, \
                         REGISTRY/REPO:TAG"
                    .to_owned(),
            });
        }
        (None, version) => version.to_owned(),
    };
    let digest = Algorithm::Sha256.digest(&bytes);
    let empty = Bytes::from_static(b"{}");
    let empty_digest = Algorithm::Sha256.digest(&empty);
    let title = format!("{}-{tag}.webc", name.replace('/', "-"));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": WEBC_ARTIFACT_TYPE,
        "config": {
            "mediaType": EMPTY_CONFIG_MEDIA_TYPE,
            "digest": empty_digest.to_string(),
            "size": 2,
            "data": base64::engine::general_purpose::STANDARD.encode(&empty),
        },
        "layers": [{
            "mediaType": WEBC_MEDIA_TYPE,
            "digest": digest.to_string(),
            "size": bytes.len(),
            "annotations": { TITLE_ANNOTATION: title },
        }],
    });
    let manifest = serde_json::to_vec(&manifest).map_err(|e| LoadError::Inconsistent {
        reference: shown.to_owned(),
        reason: format!("cannot write the manifest: {e}"),
    })?;
    let at = match target {
        Repository::Registry { reference, .. } => {
            format!("{}/{}", reference.registry(), reference.repository())
        }
        Repository::Layout(l) => format!("oci:{}", l.root().display()),
    };
    for (d, data) in [(empty_digest, empty), (digest, bytes.clone())] {
        target
            .put_blob(&d, data)
            .await
            .map_err(|e| LoadError::fetch(format!("pushing {d} to {at}"), e))?;
    }
    let pushed = target
        .put_manifest(Some(&tag), MANIFEST_MEDIA_TYPE, Bytes::from(manifest))
        .await
        .map_err(|e| LoadError::fetch(format!("pushing the manifest to {at}:{tag}"), e))?;
    Ok(Packed {
        name,
        version,
        tag,
        digest: pushed.to_string(),
        blobs: 2,
        bytes: bytes.len() as u64 + 2,
    })
}

/// A package its annotation names goes to `…/<namespace>/<name>`: where it is found is
/// checked against that name when it is loaded, so a push anywhere else would only fail
/// later. (A package without the annotation is named by where it is found.)
fn check_repository(name: &str, repository: &str, shown: &str) -> Result<()> {
    let refuse = |reason: String| {
        Err(LoadError::PackageDir {
            path: shown.to_owned(),
            reason,
        })
    };
    if let Some(bare) = name
        .strip_prefix(GLOBAL_NAMESPACE)
        .and_then(|n| n.strip_prefix('/'))
    {
        return refuse(format!(
            "it is {name}, a package without a namespace (wapm's global namespace `_`), and \
             no OCI repository can be named after it; load it from the file, a `dir:` \
             registry or a URL, or publish it with a namespace (`<namespace>/{bare}`)"
        ));
    }
    let fits = repository == name
        || repository
            .strip_suffix(name)
            .is_some_and(|prefix| prefix.ends_with('/'));
    if fits {
        Ok(())
    } else {
        refuse(format!(
            "it is {name}, so it goes to REGISTRY[/PREFIX]/{name}, not to the repository \
             {repository:?} (a load checks the package's name against where it was found)"
        ))
    }
}

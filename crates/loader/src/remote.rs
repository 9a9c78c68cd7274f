//! Cache-first access to registries and layouts: tag lists, manifests and blobs.
//!
//! Everything a load reads goes through here, so the rules live in one place:
//! - a manifest named by digest is immutable: the store's copy is used without a request;
//! - a tag → digest pointer and a tag list are reused while younger than the TTL (and
//!   whatever their age in offline mode or when a lockfile pins the result);
//! - manifests are stored as blobs under their own digest, so a warm load reads them from
//!   the store and the store's gc keeps what its refs point to;
//! - offline, a miss is [`LoadError::Offline`] naming what is missing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cache_core::{Blob, Digest, RefKey, Store};
use fetch_http::{HttpClient, Manifest, ManifestKind, OciLayout};

use crate::artifact::{Artifact, ArtifactKind, BlobRef};
use crate::config::{LoadEvent, ProgressSink};
use crate::error::{LoadError, Result};

/// Where a set of packages lives: a registry and repository prefix, or a directory of OCI
/// layouts laid out like a registry (`ROOT/acme/python` is the layout of `acme/python`,
/// its tags are its versions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    Registry {
        registry: String,
        prefix: String,
    },
    Layouts {
        root: PathBuf,
    },
    /// A directory of webc files (see `webc_dir.rs`).
    WebcDir {
        root: PathBuf,
    },
}

impl Place {
    /// The registry and prefix, or the layouts' directory, for messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Place::Registry { registry, prefix } if prefix.is_empty() => registry.clone(),
            Place::Registry { registry, prefix } => format!("{registry}/{prefix}"),
            Place::Layouts { root } => format!("oci:{}", root.display()),
            Place::WebcDir { root } => format!("dir:{}", root.display()),
        }
    }

    /// Where the dependencies of a root that is not in a registry (a package directory, a
    /// webc file or URL, shown as `shown`) are looked up: the configured places; without
    /// any, a root with dependencies is an error saying how to name one (and `beside`, a
    /// place never asked, stands for a root without any).
    pub(crate) fn for_local_root(
        places: &[Place],
        no_dependencies: bool,
        beside: PathBuf,
        shown: &str,
    ) -> Result<Vec<Place>> {
        match (places.is_empty(), no_dependencies) {
            (false, _) => Ok(places.to_vec()),
            (true, true) => Ok(vec![Place::Layouts { root: beside }]),
            (true, false) => Err(LoadError::PackageDir {
                path: shown.to_owned(),
                reason: "it has dependencies: say where they come from with --registry \
                         HOST[/PREFIX] or --registry dir:DIR (or LoaderBuilder::registry)"
                    .to_owned(),
            }),
        }
    }

    /// Where the package `name` lives.
    pub(crate) fn locate(&self, name: &str) -> Located {
        match self {
            Place::Registry { registry, prefix } => Located::Registry {
                registry: registry.clone(),
                repository: if prefix.is_empty() {
                    name.to_owned()
                } else {
                    format!("{prefix}/{name}")
                },
            },
            Place::Layouts { root } | Place::WebcDir { root } => Located::Layout(root.join(name)),
        }
    }
}

/// One repository: a registry repository or a layout directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Located {
    Registry {
        registry: String,
        repository: String,
    },
    Layout(PathBuf),
}

impl Located {
    pub(crate) fn describe(&self) -> String {
        match self {
            Located::Registry {
                registry,
                repository,
            } => format!("{registry}/{repository}"),
            Located::Layout(dir) => format!("oci:{}", dir.display()),
        }
    }

    fn layout(&self) -> Result<OciLayout> {
        match self {
            Located::Layout(dir) => {
                OciLayout::open(dir).map_err(|e| LoadError::fetch(self.describe(), e))
            }
            Located::Registry { .. } => Err(LoadError::Inconsistent {
                reference: self.describe(),
                reason: "not a layout".to_owned(),
            }),
        }
    }
}

/// What the loader knows about one resolved package: where it is and what it carries.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) at: Located,
    pub(crate) artifact: Arc<Artifact>,
}

/// The shared machinery of one [`Loader`](crate::Loader).
pub(crate) struct Remote {
    pub(crate) store: Store,
    pub(crate) client: HttpClient,
    pub(crate) offline: bool,
    pub(crate) ttl: Duration,
    pub(crate) progress: Option<ProgressSink>,
    pub(crate) platform: fetch_http::platform::PlatformMatcher,
    /// Tag lists fetched by this load and not yet in the store, by (registry, repository):
    /// written with the repository's tag digest when one is fetched (one refs file write
    /// instead of two, see `cache_core::refs`), else by [`Remote::write_tag_lists`].
    pub(crate) unwritten_tags: std::sync::Mutex<HashMap<(String, String), Vec<String>>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("store", &self.store.root())
            .field("offline", &self.offline)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Remote {
    pub(crate) fn offline_miss(&self, what: String) -> LoadError {
        LoadError::Offline {
            what,
            cache: self.store.root().display().to_string(),
        }
    }

    /// Every tag of a registry repository (cached list when fresh or offline).
    pub(crate) async fn registry_tags(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<Vec<String>> {
        let key = (registry.to_owned(), repository.to_owned());
        if let Some(tags) = self.unwritten_tags().get(&key) {
            return Ok(tags.clone());
        }
        let cached = self.store.get_tag_list(registry, repository)?;
        if let Some(list) = &cached
            && (self.offline || list.is_fresh(self.ttl))
        {
            return Ok(list.tags.clone());
        }
        if self.offline {
            return Err(self.offline_miss(format!("the tag list of {registry}/{repository}")));
        }
        let tags = match self.client.list_tags(registry, repository).await {
            Ok(tags) => tags,
            // A repository that does not exist has no versions: that is an answer.
            Err(fetch_http::Error::Status { status: 404, .. }) => Vec::new(),
            Err(e) => {
                return Err(LoadError::fetch(
                    format!("tags of {registry}/{repository}"),
                    e,
                ));
            }
        };
        self.unwritten_tags().insert(key, tags.clone());
        Ok(tags)
    }

    fn unwritten_tags(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Vec<String>>> {
        self.unwritten_tags
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Write the tag lists this load fetched and has not written yet.
    pub(crate) async fn write_tag_lists(&self) -> Result<()> {
        let unwritten = std::mem::take(&mut *self.unwritten_tags());
        for ((registry, repository), tags) in unwritten {
            self.store
                .set_tag_list(&registry, &repository, &tags)
                .await?;
        }
        Ok(())
    }

    /// A registry manifest by tag or digest, cache-first. `trust_ref`: use a cached tag
    /// pointer whatever its age (a lockfile pinned this load).
    pub(crate) async fn registry_manifest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
        trust_ref: bool,
    ) -> Result<Manifest> {
        let shown = || format!("{registry}/{repository}:{reference}");
        if let Ok(digest) = Digest::parse(reference) {
            if let Some(m) = self.stored_manifest(&digest, &shown())? {
                return Ok(m);
            }
        } else {
            let key = RefKey::new(registry, repository, reference)?;
            if let Some(entry) = self.store.get_ref(&key)?
                && (self.offline || trust_ref || entry.is_fresh(self.ttl))
                && let Some(m) = self.stored_manifest(&entry.digest, &shown())?
            {
                return Ok(m);
            }
        }
        if self.offline {
            return Err(self.offline_miss(format!("the manifest of {}", shown())));
        }
        let manifest = self
            .client
            .pull_manifest(registry, repository, reference)
            .await
            .map_err(|e| LoadError::fetch(shown(), e))?;
        self.keep_manifest(&manifest).await?;
        if Digest::parse(reference).is_err() {
            let key = RefKey::new(registry, repository, reference)?;
            let tags = self
                .unwritten_tags()
                .remove(&(registry.to_owned(), repository.to_owned()));
            self.store
                .set_tags_and_ref(&key, tags, &manifest.digest)
                .await?;
        }
        Ok(manifest)
    }

    fn stored_manifest(&self, digest: &Digest, shown: &str) -> Result<Option<Manifest>> {
        let Some(blob) = self.store.get(digest)? else {
            return Ok(None);
        };
        Manifest::from_verified_bytes(*digest, blob.into_bytes(), None, shown)
            .map(Some)
            .map_err(|e| LoadError::fetch(shown.to_owned(), e))
    }

    async fn keep_manifest(&self, manifest: &Manifest) -> Result<()> {
        put_bytes(&self.store, manifest.digest, manifest.bytes.clone()).await?;
        Ok(())
    }

    /// A manifest at `at` (tag, digest or, for a layout, none), with an index resolved to
    /// this platform's image.
    pub(crate) async fn image_manifest(
        &self,
        at: &Located,
        reference: Option<&str>,
        trust_ref: bool,
    ) -> Result<Manifest> {
        let top = self.manifest(at, reference, trust_ref).await?;
        let ManifestKind::Index(index) = &top.kind else {
            return Ok(top);
        };
        let entry = self
            .platform
            .select(index.manifests(), fetch_http::descriptor_platform)
            .ok_or_else(|| {
                LoadError::unsupported(
                    at.describe(),
                    format!(
                        "the index has no manifest for platform {}",
                        self.platform.wanted()
                    ),
                )
            })?;
        let digest = entry.digest().to_string();
        let image = self.manifest(at, Some(&digest), true).await?;
        if !matches!(image.kind, ManifestKind::Image(_)) {
            return Err(LoadError::unsupported(
                format!("{}@{digest}", at.describe()),
                "the index entry for this platform is not an image manifest",
            ));
        }
        Ok(image)
    }

    async fn manifest(
        &self,
        at: &Located,
        reference: Option<&str>,
        trust_ref: bool,
    ) -> Result<Manifest> {
        match at {
            Located::Registry {
                registry,
                repository,
            } => {
                let reference = reference.unwrap_or(fetch_http::reference::DEFAULT_TAG);
                self.registry_manifest(registry, repository, reference, trust_ref)
                    .await
            }
            Located::Layout(_) => {
                let layout = at.layout()?;
                let reference = reference.map(str::to_owned);
                let shown = format!("{}:{}", at.describe(), reference.as_deref().unwrap_or(""));
                blocking(&shown.clone(), move || {
                    layout
                        .read_manifest(reference.as_deref())
                        .map_err(|e| LoadError::fetch(shown, e))
                })
                .await
            }
        }
    }

    /// Every tag of a repository (an absent repository has none).
    pub(crate) async fn tags(&self, at: &Located) -> Result<Vec<String>> {
        match at {
            Located::Registry {
                registry,
                repository,
            } => self.registry_tags(registry, repository).await,
            Located::Layout(dir) if !dir.join("index.json").is_file() => Ok(Vec::new()),
            Located::Layout(_) => {
                let layout = at.layout()?;
                let shown = at.describe();
                blocking(&shown.clone(), move || {
                    layout.list_tags().map_err(|e| LoadError::fetch(shown, e))
                })
                .await
            }
        }
    }

    /// The classified artifact at `at`.
    pub(crate) async fn artifact(
        &self,
        at: &Located,
        reference: Option<&str>,
        trust_ref: bool,
    ) -> Result<Artifact> {
        let manifest = self.image_manifest(at, reference, trust_ref).await?;
        let shown = match reference {
            Some(r) if Digest::parse(r).is_ok() => format!("{}@{r}", at.describe()),
            Some(r) => format!("{}:{r}", at.describe()),
            None => at.describe(),
        };
        let ManifestKind::Image(image) = &manifest.kind else {
            return Err(LoadError::unsupported(shown, "not an image manifest"));
        };
        Artifact::classify(image, manifest.digest, &shown)
    }

    /// The request that fetches one blob of `at`.
    pub(crate) fn blob_request(
        &self,
        at: &Located,
        blob: &BlobRef,
    ) -> Result<fetch_http::BlobRequest> {
        let mut request = match at {
            Located::Registry {
                registry,
                repository,
            } => self
                .client
                .registry_blob(registry, repository, blob.digest, Some(blob.size))
                .map_err(|e| LoadError::fetch(format!("{}@{}", at.describe(), blob.digest), e))?,
            Located::Layout(_) => at.layout()?.blob_request(blob.digest, Some(blob.size)),
        };
        if let Some(sink) = &self.progress {
            let sink = sink.clone();
            request.progress = Some(Arc::new(move |p| sink(LoadEvent::Blob(p))));
        }
        Ok(request)
    }

    /// One blob, from the store or fetched into it.
    pub(crate) async fn blob(&self, at: &Located, blob: &BlobRef) -> Result<Blob> {
        if let Some(b) = self.store.get(&blob.digest)? {
            return Ok(b);
        }
        if self.offline {
            return Err(self.offline_miss(format!("blob {} of {}", blob.digest, at.describe())));
        }
        let request = self.blob_request(at, blob)?;
        self.client
            .fetch_blob(request, &self.store)
            .await
            .map_err(|e| LoadError::fetch(format!("{}@{}", at.describe(), blob.digest), e))
    }

    /// A blob read whole (a config): the copy its descriptor embeds, else [`Self::blob`].
    /// An embedded copy is not written to the store: the manifest that holds it is.
    async fn small_blob(&self, at: &Located, blob: &BlobRef) -> Result<Bytes> {
        match &blob.embedded {
            Some(data) => Ok(data.clone()),
            None => Ok(self.blob(at, blob).await?.into_bytes()),
        }
    }

    /// A package's config blob, parsed and checked against the name and version it was
    /// found under (when known).
    pub(crate) async fn package_config(
        &self,
        at: &Located,
        artifact: &Artifact,
    ) -> Result<resolve_graph::Manifest> {
        debug_assert_eq!(artifact.kind, ArtifactKind::Package);
        let config = self.small_blob(at, &artifact.config).await?;
        resolve_graph::Manifest::from_json(&config).map_err(|source| LoadError::Config {
            reference: artifact.reference.clone(),
            source,
        })
    }

    /// The diff_ids to check an image's layers against, one per layer (none under
    /// [`Validation::NoValidate`](crate::Validation::NoValidate), or when the config lists
    /// none).
    pub(crate) async fn layer_diff_ids(
        &self,
        found: &Found,
        validation: crate::Validation,
    ) -> Result<Vec<Digest>> {
        if validation == crate::Validation::NoValidate {
            return Ok(Vec::new());
        }
        let diff_ids = self.diff_ids(&found.at, &found.artifact).await?;
        if !diff_ids.is_empty() && diff_ids.len() != found.artifact.layers.len() {
            return Err(LoadError::Inconsistent {
                reference: found.artifact.reference.clone(),
                reason: format!(
                    "its config lists {} diff_ids for {} layers",
                    diff_ids.len(),
                    found.artifact.layers.len()
                ),
            });
        }
        Ok(diff_ids)
    }

    /// An image's config (the parts pkgload uses).
    async fn image_config(
        &self,
        at: &Located,
        artifact: &Artifact,
    ) -> Result<crate::artifact::ImageConfig> {
        if artifact.config.size > crate::artifact::CONFIG_LIMIT {
            return Err(LoadError::Inconsistent {
                reference: artifact.reference.clone(),
                reason: "its image config is over the 4 MiB limit".to_owned(),
            });
        }
        let config = self.small_blob(at, &artifact.config).await?;
        serde_json::from_slice(&config).map_err(|e| LoadError::Inconsistent {
            reference: artifact.reference.clone(),
            reason: format!("its image config is not valid JSON: {e}"),
        })
    }

    /// Where the program an image starts may be: its `Entrypoint` (else `Cmd`) program,
    /// as a path or looked up on the config's `PATH`, in the order a shell would try.
    pub(crate) async fn image_program(
        &self,
        found: &Found,
    ) -> Result<Vec<Vec<vfs_overlay::VfsPath>>> {
        let config = self.image_config(&found.at, &found.artifact).await?;
        Ok(crate::lazy_prefetch::program_paths(
            &config.config.unwrap_or_default(),
        ))
    }

    /// An image's diff_ids (empty when its config lists none).
    pub(crate) async fn diff_ids(&self, at: &Located, artifact: &Artifact) -> Result<Vec<Digest>> {
        let config = self.image_config(at, artifact).await?;
        config
            .rootfs
            .diff_ids
            .iter()
            .map(|d| {
                Digest::parse(d).map_err(|e| LoadError::Inconsistent {
                    reference: artifact.reference.clone(),
                    reason: format!("its image config lists an unusable diff_id: {e}"),
                })
            })
            .collect()
    }
}

/// Run file work off the runtime's threads; `what` names it if the worker dies.
pub(crate) async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LoadError::Inconsistent {
            reference: what.to_owned(),
            reason: format!("a worker task failed: {e}"),
        })?
}

/// Put bytes already in memory into the store under `digest` (verified by the store).
pub(crate) async fn put_bytes(store: &Store, digest: Digest, bytes: Bytes) -> Result<Blob> {
    let writer = store.clone();
    Ok(store
        .get_or_fetch(digest, move || async move {
            writer.put_bytes(digest, bytes).await
        })
        .await?)
}

/// The place a package was found in, given where it was found and its name: strip the
/// name from the end of the repository (or layout path). A package pushed under another
/// name finds its dependencies beside it, in the same parent.
pub(crate) fn place_of(at: &Located, name: &str) -> Place {
    match at {
        Located::Registry {
            registry,
            repository,
        } => {
            let prefix = match repository.strip_suffix(name) {
                Some("") => "",
                Some(p) if p.ends_with('/') => p.trim_end_matches('/'),
                _ => repository.rsplit_once('/').map_or("", |(parent, _)| parent),
            };
            Place::Registry {
                registry: registry.clone(),
                prefix: prefix.to_owned(),
            }
        }
        Located::Layout(dir) => {
            let depth = name.split('/').count();
            let named = dir.ends_with(name);
            let mut root = dir.clone();
            for _ in 0..if named { depth } else { 1 } {
                root.pop();
            }
            Place::Layouts { root }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places() {
        let reg = |repo: &str| Located::Registry {
            registry: "127.0.0.1:5000".into(),
            repository: repo.into(),
        };
        let prefix = |p: &str| Place::Registry {
            registry: "127.0.0.1:5000".into(),
            prefix: p.into(),
        };
        assert_eq!(place_of(&reg("team/acme/app"), "acme/app"), prefix("team"));
        assert_eq!(place_of(&reg("acme/app"), "acme/app"), prefix(""));
        assert_eq!(place_of(&reg("xacme/app"), "acme/app"), prefix("xacme"));
        assert_eq!(prefix("team").locate("acme/py"), reg("team/acme/py"));
        let layouts = place_of(&Located::Layout("/u/acme/app".into()), "acme/app");
        assert_eq!(layouts, Place::Layouts { root: "/u".into() });
        assert_eq!(
            layouts.locate("acme/py"),
            Located::Layout("/u/acme/py".into())
        );
        assert_eq!(
            place_of(&Located::Layout("/u/hello".into()), "acme/app"),
            Place::Layouts { root: "/u".into() }
        );
    }
}

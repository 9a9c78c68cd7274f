//! [`Repository`]: one interface over a registry repository and an OCI layout directory, so
//! callers read and write packages the same way wherever they live.

use bytes::Bytes;
use cache_core::Digest;

use crate::HttpClient;
use crate::blob::BlobRequest;
use crate::error::Result;
use crate::layout::OciLayout;
use crate::reference::RegistryRef;
use crate::registry::Manifest;

/// Where manifests and blobs are read from and written to.
#[derive(Debug, Clone)]
pub enum Repository {
    /// A repository of an OCI registry (its tag or digest in the reference is ignored here:
    /// each call names what it wants).
    Registry {
        /// The client to talk through.
        client: HttpClient,
        /// Registry and repository.
        reference: RegistryRef,
    },
    /// An OCI image layout directory.
    Layout(OciLayout),
}

impl Repository {
    /// The manifest under `reference` (a tag or a digest; `None`: the registry reference's
    /// own tag/digest, or a layout's only manifest).
    pub async fn manifest(&self, reference: Option<&str>) -> Result<Manifest> {
        match self {
            Repository::Registry {
                client,
                reference: r,
            } => {
                let wanted = reference.map_or_else(|| r.reference_str(), str::to_owned);
                client
                    .pull_manifest(r.registry(), r.repository(), &wanted)
                    .await
            }
            Repository::Layout(layout) => {
                let layout = layout.clone();
                let reference = reference.map(str::to_owned);
                blocking(move || layout.read_manifest(reference.as_deref())).await
            }
        }
    }

    /// A request for one blob, to hand to [`HttpClient::fetch_blob`].
    pub fn blob(&self, digest: Digest, size: Option<u64>) -> Result<BlobRequest> {
        match self {
            Repository::Registry { client, reference } => {
                client.registry_blob(reference.registry(), reference.repository(), digest, size)
            }
            Repository::Layout(layout) => Ok(layout.blob_request(digest, size)),
        }
    }

    /// Every tag.
    pub async fn tags(&self) -> Result<Vec<String>> {
        match self {
            Repository::Registry { client, reference } => {
                client
                    .list_tags(reference.registry(), reference.repository())
                    .await
            }
            Repository::Layout(layout) => {
                let layout = layout.clone();
                blocking(move || layout.list_tags()).await
            }
        }
    }

    /// Store a blob (verified against `digest`; skipped when already there).
    pub async fn put_blob(&self, digest: &Digest, data: Bytes) -> Result<()> {
        match self {
            Repository::Registry { client, reference } => client
                .push_blob(
                    reference.registry(),
                    reference.repository(),
                    digest,
                    data,
                    None,
                    None,
                )
                .await
                .map(|_| ()),
            Repository::Layout(layout) => {
                let (layout, digest) = (layout.clone(), *digest);
                blocking(move || layout.write_blob(&digest, &data)).await
            }
        }
    }

    /// Store a manifest under `tag` (or untagged); returns its digest.
    pub async fn put_manifest(
        &self,
        tag: Option<&str>,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest> {
        match self {
            Repository::Registry { client, reference } => {
                let digest = cache_core::Algorithm::Sha256.digest(&bytes);
                let target = tag.map_or_else(|| digest.to_string(), str::to_owned);
                client
                    .push_manifest(
                        reference.registry(),
                        reference.repository(),
                        &target,
                        media_type,
                        bytes,
                    )
                    .await
            }
            Repository::Layout(layout) => {
                let layout = layout.clone();
                let (tag, media_type) = (tag.map(str::to_owned), media_type.to_owned());
                blocking(move || layout.write_manifest(tag.as_deref(), &media_type, &bytes)).await
            }
        }
    }
}

/// Layout I/O is plain file work: keep it off the async runtime's threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| crate::Error::Transport {
            url: String::new(),
            message: format!("layout task failed: {e}"),
        })?
}

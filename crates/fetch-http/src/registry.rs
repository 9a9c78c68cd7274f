//! The OCI distribution API on top of [`HttpClient`]: manifests, blobs, tags, push.
//!
//! Paths follow the distribution spec (`/v2/<name>/manifests/<reference>`, …). Registries on
//! loopback hosts, and hosts configured as insecure, are spoken to over plain HTTP; every
//! other registry over HTTPS.

use std::sync::Arc;

use bytes::Bytes;
use cache_core::{Algorithm, Digest};
use oci_spec::image::{ImageIndex, ImageManifest};
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode, Url};

use crate::blob::{BlobHost, BlobRequest, BlobSource};
use crate::client::{Endpoint, Failure, HttpClient, Request};
use crate::error::{Error, Result, redact};
use crate::hosts::Host;

/// Manifests and indexes larger than this are refused.
pub const MANIFEST_LIMIT: u64 = 4 << 20;

/// Media types of the manifests we understand, for `Accept`.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// A manifest as pulled: its exact bytes (what the digest covers) and their meaning.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The digest of `bytes`.
    pub digest: Digest,
    /// The media type (from `Content-Type`, else the document's `mediaType`).
    pub media_type: String,
    /// The raw document.
    pub bytes: Bytes,
    /// The parsed document.
    pub kind: ManifestKind,
}

impl Manifest {
    /// Parse a document already known to hash to `digest` (e.g. read back from a cache);
    /// `declared` is the media type recorded with it, `source` names it in errors.
    pub fn from_verified_bytes(
        digest: Digest,
        bytes: Bytes,
        declared: Option<&str>,
        source: &str,
    ) -> Result<Manifest> {
        Manifest::new(digest, bytes, declared, source.to_owned())
    }

    /// Parse a verified document (`digest` is already known to be its digest); `declared` is
    /// the media type its source announced, `source` names it in errors.
    pub(crate) fn new(
        digest: Digest,
        bytes: Bytes,
        declared: Option<&str>,
        source: String,
    ) -> Result<Manifest> {
        let (media_type, kind) =
            parse_manifest(&bytes, declared).map_err(|reason| Error::Refused {
                url: source,
                reason,
            })?;
        Ok(Manifest {
            digest,
            media_type,
            bytes,
            kind,
        })
    }
}

/// A parsed manifest document.
#[derive(Debug, Clone)]
pub enum ManifestKind {
    /// An image (or artifact) manifest: config + layers.
    Image(Box<ImageManifest>),
    /// An index (or Docker manifest list): one manifest per platform.
    Index(Box<ImageIndex>),
}

/// What [`HttpClient::push_blob`] had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The registry already had it.
    Existed,
    /// Mounted from another repository of the same registry, without upload.
    Mounted,
    /// Uploaded.
    Uploaded,
}

/// What a request needs a host to be allowed (a `hosts.toml` capability).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Content by digest.
    Pull,
    /// A tag (its answer is trusted).
    Resolve,
}

/// One host to ask, with its settings when a `hosts.toml` configures it.
struct Via {
    /// Its API root (`https://host/v2/`).
    root: Url,
    mirror: bool,
    endpoint: Option<Arc<Endpoint>>,
}

impl Via {
    /// A registry no `hosts.toml` configures, at `root`.
    fn unconfigured(root: Url) -> Via {
        Via {
            root,
            mirror: false,
            endpoint: None,
        }
    }

    /// A configured host; `mirror` when it is not the registry itself.
    fn configured(host: &Host, endpoint: &Arc<Endpoint>, mirror: bool) -> Via {
        Via {
            root: host.api.clone(),
            mirror,
            endpoint: Some(endpoint.clone()),
        }
    }

    /// `path` on this host. A mirror is told which registry is meant (`?ns=`, as
    /// containerd does), so one mirror may serve several.
    fn url(&self, registry: &str, path: &str) -> Result<Url> {
        let mut url = self.root.join(path).map_err(|e| Error::Refused {
            url: format!("{}{path}", self.root),
            reason: format!("invalid registry path: {e}"),
        })?;
        if self.mirror {
            url.query_pairs_mut().append_pair("ns", registry);
        }
        Ok(url)
    }
}

fn pull_scope(repository: &str) -> Option<String> {
    Some(format!("repository:{repository}:pull"))
}

fn push_scope(repository: &str) -> Option<String> {
    Some(format!("repository:{repository}:pull,push"))
}

impl HttpClient {
    /// The registry's API root: its `hosts.toml` `server` when it has one, else
    /// `http(s)://<registry>/v2/` (plain HTTP only for loopback and insecure hosts).
    pub fn registry_base(&self, registry: &str) -> Result<Url> {
        if let Some(hosts) = self.registry_hosts(registry)? {
            return Ok(hosts.origin.api.clone());
        }
        let scheme = if self.allows_plain_http(registry) {
            "http"
        } else {
            "https"
        };
        // Docker Hub's API is not served on the name its images are known by.
        let host = if registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            registry
        };
        Url::parse(&format!("{scheme}://{host}/v2/")).map_err(|e| Error::Refused {
            url: registry.chars().take(200).collect(),
            reason: format!("not a registry host: {e}"),
        })
    }

    /// The hosts to ask for what `need` allows, in order: the registry's mirrors that have
    /// the capability, then the registry itself.
    fn hosts_for(&self, registry: &str, need: Need) -> Result<Vec<Via>> {
        let Some(configured) = self.configured(registry)? else {
            return Ok(vec![Via::unconfigured(self.registry_base(registry)?)]);
        };
        let mut hosts: Vec<Via> = configured
            .mirrors()
            .filter(|(h, _)| match need {
                Need::Pull => h.capabilities.pull,
                Need::Resolve => h.capabilities.resolve,
            })
            .map(|(h, endpoint)| Via::configured(h, endpoint, true))
            .collect();
        let (origin, endpoint) = configured.origin();
        hosts.push(Via::configured(origin, endpoint, false));
        Ok(hosts)
    }

    /// Where pushes for `registry` go: the first mirror with the `push` capability, else
    /// the registry itself. One host only, as containerd does: an upload is not split
    /// across hosts.
    fn push_host(&self, registry: &str) -> Result<Via> {
        let Some(configured) = self.configured(registry)? else {
            return Ok(Via::unconfigured(self.registry_base(registry)?));
        };
        if let Some((mirror, endpoint)) = configured.mirrors().find(|(h, _)| h.capabilities.push) {
            tracing::info!(host = mirror.authority, "pushing to a mirror");
            return Ok(Via::configured(mirror, endpoint, true));
        }
        let (origin, endpoint) = configured.origin();
        Ok(Via::configured(origin, endpoint, false))
    }

    /// Pull a manifest by tag or digest. A digest reference is verified against the body;
    /// so is `Docker-Content-Digest` when the registry sends one.
    #[tracing::instrument(level = "info", skip(self))]
    pub async fn pull_manifest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
    ) -> Result<Manifest> {
        let pinned = Digest::parse(reference).ok();
        // A manifest by digest is verified, so any mirror may serve it; a tag's answer is
        // trusted, so only hosts allowed to resolve are asked.
        let need = if pinned.is_some() {
            Need::Pull
        } else {
            Need::Resolve
        };
        let hosts = self.hosts_for(registry, need)?;
        let path = format!("{repository}/manifests/{reference}");
        let mut last = None;
        for (index, host) in hosts.iter().enumerate() {
            let url = host.url(registry, &path)?;
            match self
                .manifest_from(host, &url, repository, pinned, index + 1 < hosts.len())
                .await
            {
                Ok(manifest) => {
                    tracing::info!(host = url.authority(), "manifest served");
                    return Ok(manifest);
                }
                Err(e @ Error::Store(_)) => return Err(e),
                Err(e) => {
                    if index + 1 < hosts.len() {
                        tracing::warn!(host = url.authority(), error = %e, "host failed; trying the next");
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Refused {
            url: format!("{registry}/{repository}"),
            reason: "no host to ask".to_owned(),
        }))
    }

    /// One host's answer for a manifest; `more` when other hosts remain (an unreachable
    /// one is then left at once).
    async fn manifest_from(
        &self,
        host: &Via,
        url: &Url,
        repository: &str,
        pinned: Option<Digest>,
        more: bool,
    ) -> Result<Manifest> {
        let req = Request::get(url.clone())
            .via(host.endpoint.clone())
            .header(header::ACCEPT, &MANIFEST_MEDIA_TYPES.join(", "))
            .scope(pull_scope(repository));
        let (bytes, headers, _) = self
            .fetch_bytes_from(req, MANIFEST_LIMIT, "a manifest", more)
            .await?;
        let announced = headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v.trim()).ok());
        let algorithm = pinned
            .or(announced)
            .map_or(Algorithm::Sha256, |d| d.algorithm());
        let digest = algorithm.digest(&bytes);
        for expected in [pinned, announced].into_iter().flatten() {
            if expected.algorithm() == algorithm && expected != digest {
                return Err(Error::Corrupt {
                    url: redact(url),
                    source: cache_core::Error::DigestMismatch {
                        expected,
                        actual: digest,
                    },
                });
            }
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        Manifest::new(digest, bytes, content_type.as_deref(), redact(url))
    }

    /// A [`BlobRequest`] for a blob of `repository` (URL and token scope filled in).
    pub fn registry_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: Digest,
        size: Option<u64>,
    ) -> Result<BlobRequest> {
        let path = format!("{repository}/blobs/{digest}");
        let hosts = self.hosts_for(registry, Need::Pull)?;
        let source = match hosts.as_slice() {
            [
                only @ Via {
                    endpoint: None,
                    mirror: false,
                    ..
                },
            ] => BlobSource::Url {
                url: only.url(registry, &path)?,
                scope: pull_scope(repository),
            },
            _ => BlobSource::Hosts(
                hosts
                    .iter()
                    .map(|host| {
                        let url = host.url(registry, &path)?;
                        Ok(BlobHost::new(url, pull_scope(repository)).via(host.endpoint.clone()))
                    })
                    .collect::<Result<_>>()?,
            ),
        };
        Ok(BlobRequest::new(source, digest, size))
    }

    /// Every tag of a repository, following `Link` pagination.
    pub async fn list_tags(&self, registry: &str, repository: &str) -> Result<Vec<String>> {
        self.list_tags_paged(registry, repository, 1000).await
    }

    /// [`list_tags`](Self::list_tags), asking for `page` tags per request.
    #[tracing::instrument(level = "info", skip(self))]
    pub async fn list_tags_paged(
        &self,
        registry: &str,
        repository: &str,
        page: usize,
    ) -> Result<Vec<String>> {
        let page = page.max(1);
        let hosts = self.hosts_for(registry, Need::Resolve)?;
        let path = format!("{repository}/tags/list?n={page}");
        let mut last = None;
        for (index, host) in hosts.iter().enumerate() {
            let url = host.url(registry, &path)?;
            let more = index + 1 < hosts.len();
            match self.tags_from(host, url.clone(), repository, more).await {
                Ok(tags) => {
                    tracing::info!(host = url.authority(), "tags served");
                    return Ok(tags);
                }
                Err(e) => {
                    if more {
                        tracing::warn!(host = url.authority(), error = %e, "host failed; trying the next");
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Refused {
            url: format!("{registry}/{repository}"),
            reason: "no host to ask".to_owned(),
        }))
    }

    /// Every page of one host's tag list, starting at `url`.
    async fn tags_from(
        &self,
        host: &Via,
        mut url: Url,
        repository: &str,
        more: bool,
    ) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        const MAX_PAGES: usize = 10_000;
        let mut tags = Vec::new();
        for _ in 0..MAX_PAGES {
            let req = Request::get(url.clone())
                .via(host.endpoint.clone())
                .header(header::ACCEPT, "application/json")
                .scope(pull_scope(repository));
            let (body, headers, _) = self
                .fetch_bytes_from(req, MANIFEST_LIMIT, "a tag list", more)
                .await?;
            let page: TagList = serde_json::from_slice(&body).map_err(|e| Error::Refused {
                url: redact(&url),
                reason: format!("the tag list is not valid JSON: {e}"),
            })?;
            tags.extend(page.tags.unwrap_or_default());
            match next_link(&headers, &url) {
                Some(next) if next != url => url = next,
                _ => return Ok(tags),
            }
        }
        Err(Error::Refused {
            url: redact(&url),
            reason: format!("more than {MAX_PAGES} pages of tags"),
        })
    }

    /// True when the registry holds the blob (`HEAD`).
    pub async fn blob_exists(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
    ) -> Result<bool> {
        let host = self.push_host(registry)?;
        let url = host.url(registry, &format!("{repository}/blobs/{digest}"))?;
        let mut req = Request::get(url)
            .via(host.endpoint)
            .scope(push_scope(repository));
        req.method = Method::HEAD;
        match self.send(req).await {
            Ok(_) => Ok(true),
            Err(Failure::Final(Error::Status { status: 404, .. })) => Ok(false),
            Err(Failure::Final(e)) => Err(e),
            Err(Failure::Retry { cause, .. }) => Err(Error::Transport {
                url: registry.to_owned(),
                message: cause,
            }),
        }
    }

    /// Upload a blob unless the registry has it: first try to mount it from `mount_from` (a
    /// repository of the same registry), else upload in one request, or in `chunk_size`
    /// pieces when given.
    #[tracing::instrument(level = "info", skip(self, data), fields(bytes = data.len()))]
    pub async fn push_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        data: Bytes,
        mount_from: Option<&str>,
        chunk_size: Option<usize>,
    ) -> Result<Pushed> {
        if self.blob_exists(registry, repository, digest).await? {
            return Ok(Pushed::Existed);
        }
        let host = self.push_host(registry)?;
        let mut start = host.url(registry, &format!("{repository}/blobs/uploads/"))?;
        if let Some(from) = mount_from {
            start
                .query_pairs_mut()
                .append_pair("mount", &digest.to_string())
                .append_pair("from", from);
        }
        let mut post = Request::get(start)
            .via(host.endpoint.clone())
            .scope(push_scope(repository));
        post.method = Method::POST;
        post.headers.insert(
            header::CONTENT_LENGTH,
            header::HeaderValue::from_static("0"),
        );
        let resp = self.send(post).await.map_err(final_error)?;
        if resp.inner.status() == StatusCode::CREATED && mount_from.is_some() {
            return Ok(Pushed::Mounted);
        }
        let mut location = upload_location(&resp.inner)?;
        drop(resp);
        if let Some(chunk) = chunk_size.filter(|c| *c > 0 && *c < data.len()) {
            let mut offset = 0;
            while offset < data.len() {
                let end = (offset + chunk).min(data.len());
                let mut patch = Request::get(location.clone())
                    .via(host.endpoint.clone())
                    .scope(push_scope(repository));
                patch.method = Method::PATCH;
                patch.body = Some(data.slice(offset..end));
                patch = patch
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_RANGE, &format!("{offset}-{}", end - 1));
                let resp = self.send(patch).await.map_err(final_error)?;
                location = upload_location(&resp.inner)?;
                offset = end;
            }
            let mut finish = location;
            finish
                .query_pairs_mut()
                .append_pair("digest", &digest.to_string());
            let mut put = Request::get(finish)
                .via(host.endpoint.clone())
                .scope(push_scope(repository));
            put.method = Method::PUT;
            put.headers.insert(
                header::CONTENT_LENGTH,
                header::HeaderValue::from_static("0"),
            );
            self.send(put).await.map_err(final_error)?;
        } else {
            let mut finish = location;
            finish
                .query_pairs_mut()
                .append_pair("digest", &digest.to_string());
            let mut put = Request::get(finish)
                .via(host.endpoint.clone())
                .scope(push_scope(repository));
            put.method = Method::PUT;
            put.body = Some(data);
            put = put.header(header::CONTENT_TYPE, "application/octet-stream");
            self.send(put).await.map_err(final_error)?;
        }
        Ok(Pushed::Uploaded)
    }

    /// Upload a manifest under `reference` (a tag, or its digest). Returns its digest.
    #[tracing::instrument(level = "info", skip(self, bytes))]
    pub async fn push_manifest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest> {
        if bytes.len() as u64 > MANIFEST_LIMIT {
            return Err(Error::TooLarge {
                url: format!("{registry}/{repository}:{reference}"),
                what: "a manifest",
                limit: MANIFEST_LIMIT,
            });
        }
        let digest = Algorithm::Sha256.digest(&bytes);
        let host = self.push_host(registry)?;
        let url = host.url(registry, &format!("{repository}/manifests/{reference}"))?;
        let mut put = Request::get(url.clone())
            .via(host.endpoint)
            .scope(push_scope(repository));
        put.method = Method::PUT;
        put.body = Some(bytes);
        put = put.header(header::CONTENT_TYPE, media_type);
        let resp = self.send(put).await.map_err(final_error)?;
        if let Some(announced) = resp
            .inner
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v.trim()).ok())
            && announced.algorithm() == digest.algorithm()
            && announced != digest
        {
            return Err(Error::Corrupt {
                url: redact(&url),
                source: cache_core::Error::DigestMismatch {
                    expected: digest,
                    actual: announced,
                },
            });
        }
        Ok(digest)
    }
}

/// Pushes are not retried piecemeal (an upload session does not survive every failure);
/// a transient failure is reported as such and the caller pushes again.
fn final_error(f: Failure) -> Error {
    match f {
        Failure::Final(e) => e,
        Failure::Retry { cause, .. } => Error::Transport {
            url: String::new(),
            message: format!("{cause} (transient: pushing again may succeed)"),
        },
    }
}

fn upload_location(resp: &reqwest::Response) -> Result<Url> {
    resp.headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|loc| resp.url().join(loc).ok())
        .ok_or_else(|| Error::Refused {
            url: redact(resp.url()),
            reason: "the registry started an upload without a Location".into(),
        })
}

/// `Link: </v2/x/tags/list?n=2&last=b>; rel="next"` → the next page's URL.
fn next_link(headers: &HeaderMap, base: &Url) -> Option<Url> {
    for value in headers.get_all(header::LINK) {
        let text = value.to_str().ok()?;
        for link in text.split(',') {
            let (target, params) = link.split_once(';').unwrap_or((link, ""));
            let is_next = params
                .split(';')
                .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next");
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            if is_next {
                return base.join(target).ok();
            }
        }
    }
    None
}

/// Decide what a manifest document is, from its media type or, failing that, its shape.
pub(crate) fn parse_manifest(
    bytes: &[u8],
    content_type: Option<&str>,
) -> std::result::Result<(String, ManifestKind), String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes)
        .map_err(|e| format!("the manifest is not valid JSON: {e}"))?;
    let media_type = content_type
        .filter(|t| MANIFEST_MEDIA_TYPES.contains(t))
        .map(str::to_owned)
        .or(probe.media_type)
        .unwrap_or_else(|| {
            if probe.manifests.is_some() {
                MANIFEST_MEDIA_TYPES[1].to_owned()
            } else {
                MANIFEST_MEDIA_TYPES[0].to_owned()
            }
        });
    let is_index = media_type.ends_with("index.v1+json") || media_type.ends_with("list.v2+json");
    let kind = if is_index {
        ManifestKind::Index(Box::new(
            serde_json::from_slice(bytes).map_err(|e| format!("invalid image index: {e}"))?,
        ))
    } else {
        ManifestKind::Image(Box::new(
            serde_json::from_slice(bytes).map_err(|e| format!("invalid image manifest: {e}"))?,
        ))
    };
    Ok((media_type, kind))
}

/// Our [`Platform`](crate::platform::Platform) of an index entry, if it declares one.
pub fn descriptor_platform(d: &oci_spec::image::Descriptor) -> Option<crate::platform::Platform> {
    let p = d.platform().as_ref()?;
    Some(crate::platform::Platform {
        os: p.os().to_string(),
        architecture: p.architecture().to_string(),
        variant: p.variant().clone(),
        os_version: p.os_version().clone(),
        os_features: p.os_features().clone().unwrap_or_default(),
    })
}

impl HttpClient {
    /// Pull the image manifest for `reference`: when the reference names an index (or a
    /// Docker manifest list), pick the entry `matcher` prefers and pull that. Returns the
    /// image manifest and, if there was one, the index it came from.
    pub async fn pull_image_manifest(
        &self,
        reference: &crate::reference::RegistryRef,
        matcher: &crate::platform::PlatformMatcher,
    ) -> Result<(Manifest, Option<Manifest>)> {
        let registry = reference.registry();
        let repository = reference.repository();
        let top = self
            .pull_manifest(registry, repository, &reference.reference_str())
            .await?;
        let ManifestKind::Index(index) = &top.kind else {
            return Ok((top, None));
        };
        let entry = matcher
            .select(index.manifests(), descriptor_platform)
            .ok_or_else(|| Error::Refused {
                url: reference.to_string(),
                reason: format!(
                    "no manifest for platform {} in the index (it has: {})",
                    matcher.wanted(),
                    index
                        .manifests()
                        .iter()
                        .filter_map(descriptor_platform)
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        let digest = entry.digest().to_string();
        let image = self.pull_manifest(registry, repository, &digest).await?;
        if !matches!(image.kind, ManifestKind::Image(_)) {
            return Err(Error::Refused {
                url: format!("{reference}@{digest}"),
                reason: "the index entry for this platform is not an image manifest".into(),
            });
        }
        Ok((image, Some(top)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_pagination() {
        let base = Url::parse("http://127.0.0.1:5000/v2/a/tags/list?n=2").unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::LINK,
            "</v2/a/tags/list?n=2&last=b>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&h, &base).unwrap().as_str(),
            "http://127.0.0.1:5000/v2/a/tags/list?n=2&last=b"
        );
        assert_eq!(next_link(&HeaderMap::new(), &base), None);
    }

    #[test]
    fn manifest_kinds() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert!(matches!(
            parse_manifest(index, None),
            Ok((_, ManifestKind::Index(_)))
        ));
        let image = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;
        assert!(matches!(
            parse_manifest(image, None),
            Ok((_, ManifestKind::Image(_)))
        ));
        assert!(parse_manifest(b"{", None).is_err());
        assert!(parse_manifest(br#"{"schemaVersion":2}"#, Some(MANIFEST_MEDIA_TYPES[0])).is_err());
    }
}

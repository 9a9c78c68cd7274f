//! Packages a `use` entry names by where they are — an `http(s)://` URL, with or without
//! `#sha256=<hex>`, or a file path — instead of by name through the configured place.
//!
//! A webc package's manifest needs each dependency's name and version, which for a URL or
//! a path only the file itself knows. So when a file is read, the files its `use` entries
//! point at are *identified* first: fetched (or stored, for a path), parsed, and named by
//! the usual identity rules (`webc.rs`), all of them at once, each location once per
//! resolution however many packages name it. Identifying never reads a dependency's own
//! dependencies; those are identified when the solver asks for that package's summary.
//! That keeps the work proportional to what the solution uses and makes a `use` cycle an
//! ordinary graph cycle (reported by the graph check), never a wait on itself.
//!
//! To the solver these packages are one more place, consulted before the configured one: a
//! name met by location has exactly the versions found at those locations.
//!
//! A URL without a sha256 is stored under the sha256 of what it served, and remembered
//! with its ETag: within the loader's ref TTL (as for tags) a later load asks nothing;
//! after it, `If-None-Match` costs one round trip when nothing changed. Offline, the
//! remembered file is used whatever its age.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_core::{Algorithm, Blob, Digest};
use futures::future::try_join_all;
use resolve_graph::{PackageId, PackageName, Summary};
use semver::Version;
use tokio::sync::OnceCell;
use webc_package::{DependencySource, PackageSpec};

use crate::error::{LoadError, Result};
use crate::local::LocalRoot;
use crate::remote::{Found, Remote};
use crate::webc::{Base, Parsed, WebcFile};

/// How a webc file being read reaches the packages it names by location.
#[derive(Clone)]
pub(crate) struct Links {
    pub(crate) direct: Arc<DirectPackages>,
    pub(crate) base: Base,
}

impl Links {
    pub(crate) fn new(direct: &Arc<DirectPackages>, base: Base) -> Links {
        Links {
            direct: direct.clone(),
            base,
        }
    }

    /// The package of `parsed`, once the files its `use` entries name by location are
    /// identified.
    pub(crate) async fn read(&self, parsed: Parsed) -> Result<WebcFile> {
        let direct = self.identify(&parsed.spec, &parsed.shown).await?;
        WebcFile::from_parsed(parsed, &direct)
    }

    /// The name and version of every dependency of `spec` given by location, by alias;
    /// `shown` names the file that says so.
    pub(crate) async fn identify(
        &self,
        spec: &PackageSpec,
        shown: &str,
    ) -> Result<HashMap<String, PackageId>> {
        let named = spec.dependencies.iter().filter_map(|dep| {
            let location = match &dep.source {
                DependencySource::Registry { .. } => return None,
                DependencySource::Url { url, sha256 } => self.url(url, sha256.as_deref()),
                DependencySource::Path(path) => self.path(path),
            };
            Some(async move {
                let location = location.map_err(|reason| LoadError::PackageDir {
                    path: shown.to_owned(),
                    reason: format!("dependency {:?}: {reason}", dep.alias),
                })?;
                let id = self.direct.identify(location).await?;
                Ok::<_, LoadError>((dep.alias.clone(), id))
            })
        });
        Ok(try_join_all(named).await?.into_iter().collect())
    }

    fn url(&self, url: &str, sha256: Option<&str>) -> std::result::Result<Location, String> {
        let parsed =
            fetch_http::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let sha256 = sha256
            .map(|hex| Digest::parse(&format!("sha256:{hex}")))
            .transpose()
            .map_err(|e| format!("its #sha256= fragment: {e}"))?
            .or_else(|| self.direct.pinned(&parsed));
        Ok(Location::Url {
            url: parsed,
            sha256,
        })
    }

    fn path(&self, path: &str) -> std::result::Result<Location, String> {
        match &self.base {
            Base::Dir(dir) => Ok(Location::File(absolute(&dir.join(path)))),
            Base::Url(url) => {
                let joined = url
                    .join(path)
                    .map_err(|e| format!("{path:?} relative to {url}: {e}"))?;
                let sha256 = self.direct.pinned(&joined);
                Ok(Location::Url {
                    url: joined,
                    sha256,
                })
            }
            Base::Nowhere => Err(format!(
                "{path:?} is a path, but this package came from a registry, where a path \
                 points nowhere; name the dependency as namespace/name@version or by URL"
            )),
        }
    }
}

/// Where a package named by location is.
#[derive(Debug, Clone)]
pub(crate) enum Location {
    Url {
        url: fetch_http::Url,
        sha256: Option<Digest>,
    },
    File(PathBuf),
}

impl Location {
    /// The location a lockfile recorded for a package (`source`, see [`Location::source`])
    /// and the digest it pinned; `None` for a package that was not named by location.
    fn from_locked(source: &str, digest: &str) -> Option<Location> {
        if source.starts_with("http://") || source.starts_with("https://") {
            return Some(Location::Url {
                url: fetch_http::Url::parse(source).ok()?,
                sha256: Digest::parse(digest).ok(),
            });
        }
        let url = fetch_http::Url::parse(source).ok()?;
        (url.scheme() == "file")
            .then(|| url.to_file_path().ok())
            .flatten()
            .map(Location::File)
    }

    /// Where the package came from, as a summary (and so a lockfile) records it: the URL,
    /// or the file as a `file://` URL (a bare path would read as a directory of webc
    /// files' entry).
    fn source(&self) -> String {
        match self {
            Location::Url { url, .. } => url.to_string(),
            Location::File(path) => fetch_http::Url::from_file_path(path)
                .map_or_else(|()| path.display().to_string(), |u| u.to_string()),
        }
    }

    /// The location as written in messages and as the key of one resolution's memo.
    fn key(&self) -> String {
        match self {
            Location::Url { url, sha256: None } => url.to_string(),
            Location::Url {
                url,
                sha256: Some(d),
            } => format!("{url}#sha256={}", d.hex()),
            Location::File(path) => path.display().to_string(),
        }
    }
}

/// A file named by location, read and named.
struct Met {
    parsed: Parsed,
    location: Location,
}

/// The packages of one resolution that were named by location.
pub(crate) struct DirectPackages {
    remote: Arc<Remote>,
    /// Where a lockfile says each package named by location came from (a URL with the
    /// digest it pinned), so a locked load fetches exactly that file.
    locked: HashMap<PackageId, Location>,
    /// Each location's file, parsed once and shared by every `use` that names it.
    located: Mutex<HashMap<String, Arc<OnceCell<Arc<Met>>>>>,
    /// Every package identified so far.
    identified: Mutex<HashMap<PackageId, Arc<Met>>>,
    /// The files the solver has read a summary of (their dependencies identified).
    summarized: Mutex<HashMap<PackageId, Arc<WebcFile>>>,
    /// The oldest time a server confirmed one of the URLs read without a sha256 (what a
    /// tree snapshot's freshness counts from).
    confirmed: Mutex<Option<SystemTime>>,
    /// Whether a URL was found serving another file than its memo said.
    saw_change: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for DirectPackages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectPackages").finish_non_exhaustive()
    }
}

impl DirectPackages {
    pub(crate) fn new(
        remote: Arc<Remote>,
        lock: Option<&resolve_graph::Lockfile>,
    ) -> Arc<DirectPackages> {
        let locked = lock
            .map(|lock| {
                lock.packages
                    .iter()
                    .filter_map(|p| {
                        let location = Location::from_locked(&p.source, &p.digest)?;
                        Some((PackageId::new(p.name.clone(), p.version.clone()), location))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Arc::new(DirectPackages {
            remote,
            locked,
            located: Mutex::new(HashMap::new()),
            identified: Mutex::new(HashMap::new()),
            summarized: Mutex::new(HashMap::new()),
            confirmed: Mutex::new(None),
            saw_change: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub(crate) fn remote(&self) -> &Arc<Remote> {
        &self.remote
    }

    /// The webc file at `path` (stored under its sha256) and its package.
    pub(crate) async fn open_file(self: &Arc<Self>, path: &Path) -> Result<WebcFile> {
        let parsed = Parsed::from_file(&self.remote.store, path).await?;
        Links::new(self, parsed.base.clone()).read(parsed).await
    }

    /// The webc file at `url`, which must hash to `sha256` when one is given, and its
    /// package (see [`stored_url`]).
    pub(crate) async fn open_url(
        self: &Arc<Self>,
        url: &str,
        sha256: Option<Digest>,
    ) -> Result<WebcFile> {
        let parsed_url = fetch_http::Url::parse(url).map_err(|e| LoadError::Reference {
            input: url.to_owned(),
            reason: format!("not a URL: {e}"),
        })?;
        let blob = self.stored_url(&parsed_url, sha256).await?;
        let parsed = Parsed::from_url(&self.remote.store, blob, &parsed_url).await?;
        Links::new(self, parsed.base.clone()).read(parsed).await
    }

    /// [`stored_url`], remembering when the server last confirmed what it holds.
    async fn stored_url(&self, url: &fetch_http::Url, sha256: Option<Digest>) -> Result<Blob> {
        let stored = stored_url(&self.remote, url, sha256).await?;
        if let Some(at) = stored.confirmed {
            let mut oldest = self
                .confirmed
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *oldest = Some(oldest.map_or(at, |o| o.min(at)));
        }
        if stored.changed {
            self.saw_change
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(stored.blob)
    }

    /// Whether this resolution found a URL serving another file than its memo said.
    pub(crate) fn saw_change(&self) -> bool {
        self.saw_change.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The oldest time a server confirmed one of the URLs this resolution read without a
    /// sha256; `None` when it read none.
    pub(crate) fn oldest_confirmation(&self) -> Option<SystemTime> {
        *self
            .confirmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The digest a lockfile pinned for the file at `url`.
    fn pinned(&self, url: &fetch_http::Url) -> Option<Digest> {
        self.locked.values().find_map(|location| match location {
            Location::Url {
                url: locked,
                sha256,
            } if locked == url => *sha256,
            _ => None,
        })
    }

    /// The package at `location`: stored, parsed and named (its own dependencies are not
    /// looked at yet).
    async fn identify(&self, location: Location) -> Result<PackageId> {
        let key = location.key();
        let cell = self
            .located
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .clone();
        let met = cell
            .get_or_try_init(|| self.read(&location, key.clone()))
            .await?
            .clone();
        let id = met.parsed.id();
        let mut identified = self
            .identified
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(other) = identified.get(&id)
            && other.parsed.blob.digest() != met.parsed.blob.digest()
        {
            return Err(LoadError::PackageDir {
                path: key,
                reason: format!(
                    "it is {id} ({}), but {} is also {id} ({}); one version of a package \
                     must be one file",
                    met.parsed.blob.digest(),
                    other.parsed.shown,
                    other.parsed.blob.digest()
                ),
            });
        }
        identified.entry(id.clone()).or_insert(met);
        Ok(id)
    }

    async fn read(&self, location: &Location, key: String) -> Result<Arc<Met>> {
        let parsed = match location {
            Location::Url { url, sha256 } => {
                let blob = self.stored_url(url, *sha256).await?;
                Parsed::from_url(&self.remote.store, blob, url).await?
            }
            Location::File(path) => Parsed::from_file(&self.remote.store, path).await?,
        };
        tracing::debug!(location = %key, package = %parsed.id(), "identified a package named by location");
        Ok(Arc::new(Met {
            parsed,
            location: location.clone(),
        }))
    }

    /// The versions of `name` met by location; `None` when none was.
    pub(crate) fn versions(&self, name: &PackageName) -> Option<Vec<Version>> {
        let identified = self
            .identified
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let versions: BTreeSet<Version> = identified
            .keys()
            .filter(|id| id.name == *name)
            .map(|id| id.version.clone())
            .collect();
        (!versions.is_empty()).then(|| versions.into_iter().collect())
    }

    /// The summary of `id`, when it was met by location (its own dependencies named by
    /// location are identified now).
    pub(crate) async fn summary(self: &Arc<Self>, id: &PackageId) -> Option<Result<Summary>> {
        let known = self
            .identified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned();
        let met = match known {
            Some(met) => met,
            // A locked load asks for every locked package at once, before the package that
            // names this one was read: the lockfile says where it is.
            None => {
                let location = self.locked.get(id)?.clone();
                match self.identify_as(location, id).await {
                    Ok(met) => met,
                    Err(e) => return Some(Err(e)),
                }
            }
        };
        Some(self.summarize(id, &met).await)
    }

    async fn identify_as(&self, location: Location, id: &PackageId) -> Result<Arc<Met>> {
        let key = location.key();
        let found = self.identify(location).await?;
        if found != *id {
            return Err(LoadError::PackageDir {
                path: key,
                reason: format!("the lockfile says it is {id}, but it is {found}"),
            });
        }
        self.identified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
            .ok_or_else(|| LoadError::Inconsistent {
                reference: key,
                reason: "identified, then forgotten".to_owned(),
            })
    }

    async fn summarize(self: &Arc<Self>, id: &PackageId, met: &Met) -> Result<Summary> {
        let links = Links::new(self, met.parsed.base.clone());
        let file = Arc::new(links.read(met.parsed.clone()).await?);
        file.precheck();
        let summary = Summary {
            manifest: file.manifest.clone(),
            digest: file.blob.digest().to_string(),
            source: met.location.source(),
        };
        self.summarized
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), file);
        Ok(summary)
    }

    /// Where `id` was found, with its container, if the solver read its summary.
    pub(crate) fn found(&self, id: &PackageId) -> Option<(Found, LocalRoot)> {
        let summarized = self
            .summarized
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let file = summarized.get(id)?;
        Some((file.found.clone(), file.local_root()))
    }
}

/// The derived entry that remembers what a URL without a sha256 served.
const URL_MEMO_KIND: &str = "webcurl";

/// What a URL served last: the stored file, its ETag, and when the server last confirmed
/// it.
struct UrlMemo {
    digest: Digest,
    etag: Option<String>,
    checked: SystemTime,
}

impl UrlMemo {
    fn encode(&self) -> String {
        let secs = self
            .checked
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        format!(
            "{}\n{secs}\n{}",
            self.digest,
            self.etag.as_deref().unwrap_or("")
        )
    }

    /// `None` for anything unreadable: the memo is a cache, and a bad one costs a fetch.
    fn decode(bytes: &[u8]) -> Option<UrlMemo> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.splitn(3, '\n');
        let digest = Digest::parse(lines.next()?).ok()?;
        let secs: u64 = lines.next()?.parse().ok()?;
        let etag = lines.next().filter(|e| !e.is_empty()).map(str::to_owned);
        Some(UrlMemo {
            digest,
            etag,
            checked: UNIX_EPOCH + Duration::from_secs(secs),
        })
    }

    fn is_fresh(&self, ttl: Duration) -> bool {
        SystemTime::now()
            .duration_since(self.checked)
            .is_ok_and(|age| age < ttl)
    }
}

/// What [`stored_url`] found.
pub(crate) struct StoredUrl {
    pub(crate) blob: Blob,
    /// When the server last confirmed it (`None` when pinned by a sha256).
    pub(crate) confirmed: Option<SystemTime>,
    /// The URL now serves another file than its memo said.
    pub(crate) changed: bool,
}

impl StoredUrl {
    fn pinned(blob: Blob) -> StoredUrl {
        StoredUrl {
            blob,
            confirmed: None,
            changed: false,
        }
    }
}

/// The file at `url` in the store: by its sha256 when one is given (downloaded, verified,
/// resumable), else as the URL last served it, revalidated by ETag once the memo is older
/// than the ref TTL; with the time the server last confirmed it (`None` when pinned by
/// `sha256`: content-addressed, it needs no confirming).
pub(crate) async fn stored_url(
    remote: &Remote,
    url: &fetch_http::Url,
    sha256: Option<Digest>,
) -> Result<StoredUrl> {
    let shown = url.to_string();
    if let Some(digest) = sha256 {
        if let Some(blob) = remote.store.get(&digest)? {
            return Ok(StoredUrl::pinned(blob));
        }
        if remote.offline {
            return Err(LoadError::Offline {
                what: format!("{shown} ({digest})"),
                cache: remote.store.root().display().to_string(),
            });
        }
        let source = fetch_http::BlobSource::Url {
            url: url.clone(),
            scope: None,
        };
        let request = fetch_http::BlobRequest::new(source, digest, None);
        return remote
            .client
            .fetch_blob(request, &remote.store)
            .await
            .map(StoredUrl::pinned)
            .map_err(|e| LoadError::fetch(shown, e));
    }
    let key = Algorithm::Sha256.digest(format!("webc url\0{url}").as_bytes());
    let kind = cache_core::DerivedKind::new(URL_MEMO_KIND)?;
    let memo = remote
        .store
        .get_derived(&key, &kind)?
        .and_then(|bytes| UrlMemo::decode(&bytes));
    let kept = match &memo {
        Some(memo) => remote.store.get(&memo.digest)?.map(|blob| (memo, blob)),
        None => None,
    };
    if let Some((memo, blob)) = &kept
        && (remote.offline || memo.is_fresh(remote.ttl))
    {
        return Ok(StoredUrl {
            blob: blob.clone(),
            confirmed: Some(memo.checked),
            changed: false,
        });
    }
    if remote.offline {
        return Err(LoadError::Offline {
            what: shown,
            cache: remote.store.root().display().to_string(),
        });
    }
    let etag = kept.as_ref().and_then(|(memo, _)| memo.etag.as_deref());
    let fetched = remote
        .client
        .fetch_url_file(url, etag, &remote.store, MAX_WEBC_FILE)
        .await
        .map_err(|e| LoadError::fetch(shown.clone(), e))?;
    let (blob, etag) = match (fetched, kept) {
        (fetch_http::UrlFile::Fetched { blob, etag }, _) => (blob, etag),
        (fetch_http::UrlFile::Unchanged, Some((memo, blob))) => {
            tracing::debug!(url = %shown, "unchanged since it was stored (ETag)");
            (blob, memo.etag.clone())
        }
        (fetch_http::UrlFile::Unchanged, None) => {
            return Err(LoadError::fetch(
                shown,
                fetch_http::Error::Refused {
                    url: url.to_string(),
                    reason: "answered 304 Not Modified to a request that was not conditional"
                        .to_owned(),
                },
            ));
        }
    };
    let changed = memo
        .as_ref()
        .is_some_and(|old| old.digest != *blob.digest());
    let memo = UrlMemo {
        digest: *blob.digest(),
        etag,
        checked: SystemTime::now(),
    };
    remote.store.put_memo(&key, &kind, memo.encode()).await?;
    if changed {
        tracing::info!(url = %shown, digest = %blob.digest(), "the URL serves another file than before");
        let mark = format!("{} {}", blob.digest(), nanos_now());
        remote
            .store
            .put_memo(&url_change_key(), &url_change_kind()?, mark)
            .await?;
    }
    Ok(StoredUrl {
        blob,
        confirmed: Some(memo.checked),
        changed,
    })
}

/// The derived entry that changes whenever a URL without a sha256 is found to serve another
/// file than its memo said: what a tree snapshot made before then may hold stale content
/// (`tree_snapshot.rs`), even if its own URLs' memos are still fresh.
const URL_CHANGE_KIND: &str = "webcurlchange";

fn url_change_key() -> Digest {
    Algorithm::Sha256.digest(b"webc url change")
}

fn url_change_kind() -> Result<cache_core::DerivedKind> {
    Ok(cache_core::DerivedKind::new(URL_CHANGE_KIND)?)
}

/// The current URL change mark (empty before any change was seen).
pub(crate) fn url_change_mark(store: &cache_core::Store) -> String {
    url_change_kind()
        .ok()
        .and_then(|kind| store.get_derived(&url_change_key(), &kind).ok().flatten())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

fn nanos_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The largest webc file fetched by URL without a known digest: a server cannot fill the
/// disk by streaming forever.
const MAX_WEBC_FILE: u64 = 16 << 30;

/// A `use` path made absolute, so two spellings of one file are one location.
fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_memos_round_trip_and_garbage_is_a_miss() {
        let memo = UrlMemo {
            digest: Algorithm::Sha256.digest(b"webc"),
            etag: Some("\"abc\"".to_owned()),
            checked: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        };
        let back = UrlMemo::decode(memo.encode().as_bytes()).unwrap();
        assert_eq!(
            (back.digest, back.etag, back.checked),
            (memo.digest, memo.etag, memo.checked)
        );
        let without = UrlMemo { etag: None, ..back };
        assert_eq!(
            UrlMemo::decode(without.encode().as_bytes()).unwrap().etag,
            None
        );
        assert!(!without.is_fresh(Duration::from_secs(60)));
        for garbage in ["", "sha256:zz\n1\n", "\n\n", "sha256:00\nnot-a-number\n"] {
            assert!(UrlMemo::decode(garbage.as_bytes()).is_none(), "{garbage:?}");
        }
    }
}

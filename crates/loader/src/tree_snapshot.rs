//! A warm load of a webc tree named by URL, from one file.
//!
//! A tree of webc files linked by URL is resolved from the files themselves: each one is
//! looked up in its URL memo, mapped, parsed (framing, CBOR manifest, section index), its
//! `use` entries identified, then the solver runs, and assembly walks each volume's header
//! into an index. Every step is small, but a tree of fifty packages takes them fifty times,
//! and a warm load did nothing else. So after a load of such a tree, what the steps
//! produced is written into one derived entry of the store, keyed by the root URL and the
//! places: each package's manifest (in the solver's terms), the store blob holding its
//! file, its volumes' indexes and its atoms' ranges. A later load within the freshness
//! window reads that entry and maps the blobs; it parses no container and runs no solver.
//!
//! Invariants:
//! - **As fresh as the URL memos it was made from.** The entry records the oldest time a
//!   server confirmed one of the tree's URLs (URLs pinned by `#sha256=` need none); past the
//!   loader's ref TTL from then, the normal path runs, revalidating by ETag, and writes a
//!   new entry. Offline, as for the memos, any age is used. And stale at once when any
//!   load finds one of the cache's URLs serving another file than its memo said (the
//!   `webcurlchange` mark in `direct.rs`): that URL may be one of this tree's, and the
//!   cache keeps one view of a URL whichever tree asks.
//! - **Only what was checked.** It is written after a load succeeded, so every volume and
//!   atom it lists had been checked against its hashes, as the store's `webcchecked`
//!   record would vouch.
//! - **A miss, never an error.** An entry that is unreadable, from another format, or that
//!   names a blob the store no longer holds (`cache gc`) is ignored: the normal path runs.
//!   Indexes are read with [`TarIndex::from_bytes`], which checks them as outside data, and
//!   every atom range is checked against its blob.
//! - Only trees whose every package came from a URL are kept, without a lockfile (a locked
//!   load checks the lock's digests on the normal path).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cache_core::{Algorithm, Blob, Digest, Store};
use resolve_graph::{Manifest, PackageId, Resolution, Summary};
use serde::{Deserialize, Serialize};
use vfs_overlay::{Footprint, TarIndex};

use crate::local::LocalRoot;
use crate::remote::{Found, Located, Place};
use crate::webc::found_as_file;

/// The derived entry holding a tree's snapshot.
const SNAPSHOT_KIND: &str = "webctree";

/// The first bytes of an entry: another format is a miss.
const MAGIC: &[u8] = b"pkgload webc tree snapshot 1\n";

/// Where a tree's snapshot is kept, and from when its URLs were last confirmed.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotPlan {
    key: Digest,
    /// The oldest confirmation by a server of one of the tree's unpinned URLs.
    confirmed: Option<SystemTime>,
    /// The URL change mark when the resolution started (`direct::url_change_mark`).
    mark: String,
    /// Whether the resolution itself found a URL serving another file (and so moved the
    /// mark).
    changed: bool,
}

/// The key of the snapshot of the tree rooted at `url` (pinned to `sha256`), resolved with
/// `places`.
pub(crate) fn key(url: &str, sha256: Option<&Digest>, places: &[Place]) -> Digest {
    let mut text = String::from_utf8_lossy(MAGIC).into_owned();
    text.push_str(url);
    text.push('\0');
    if let Some(digest) = sha256 {
        text.push_str(&digest.to_string());
    }
    for place in places {
        text.push('\0');
        text.push_str(&place.describe());
    }
    Algorithm::Sha256.digest(text.as_bytes())
}

impl SnapshotPlan {
    pub(crate) fn new(
        key: Digest,
        confirmed: Option<SystemTime>,
        mark: String,
        changed: bool,
    ) -> SnapshotPlan {
        SnapshotPlan {
            key,
            confirmed,
            mark,
            changed,
        }
    }
}

/// One package of a snapshot, ready to join a [`crate::Resolved`].
pub(crate) struct SnapshotPackage {
    pub(crate) summary: Summary,
    pub(crate) found: Found,
    pub(crate) local: LocalRoot,
}

/// A tree read back from its snapshot: the root first.
pub(crate) struct SnapshotTree {
    pub(crate) packages: Vec<SnapshotPackage>,
    pub(crate) rounds: usize,
    /// What the assembled tree holds (counted when the snapshot was made: counting again
    /// would read every volume's index).
    pub(crate) footprint: Footprint,
}

/// The parts of a webc package as a snapshot kept them: its stored file, its volumes'
/// indexes (serialized, read when the volume is; ranges into that file) and its atoms (a
/// range and the sha256 it was checked against).
#[derive(Debug, Clone)]
pub(crate) struct KeptParts {
    pub(crate) blob: Blob,
    pub(crate) volumes: HashMap<String, Bytes>,
    pub(crate) atoms: HashMap<String, KeptAtom>,
}

/// An atom inside its package's stored file.
#[derive(Debug, Clone)]
pub(crate) struct KeptAtom {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) sha256: Digest,
}

impl KeptParts {
    /// The error for a part the tree uses that the snapshot does not hold (it was made
    /// from the same resolution, so this is a bug or a damaged cache).
    pub(crate) fn lacks(&self, key: &crate::local::PartKey) -> crate::LoadError {
        crate::LoadError::Inconsistent {
            reference: key.0.to_string(),
            reason: format!(
                "its tree snapshot lacks {:?} (run `pkgload cache gc` to drop it)",
                key.1
            ),
        }
    }

    /// The atom `name` as a blob named by its sha256, a slice of the package's file.
    pub(crate) fn atom(&self, name: &str) -> Option<Blob> {
        let kept = self.atoms.get(name)?;
        let bytes = self.blob.bytes().slice(kept.start..kept.end);
        Some(Blob::verified_part(&self.blob, kept.sha256, bytes))
    }
}

/// What a package's load opened, for the snapshot: its volumes' indexes and its atoms.
#[derive(Debug, Default)]
pub(crate) struct OpenedParts {
    pub(crate) volumes: Vec<(String, Arc<TarIndex>)>,
    pub(crate) atoms: Vec<(String, KeptAtom)>,
}

impl KeptAtom {
    /// `atom`, a slice of `file` (the bytes of the blob it was cut from), as kept.
    pub(crate) fn of(file: &Bytes, atom: &Blob) -> Option<KeptAtom> {
        let part = atom.bytes();
        let start = (part.as_ptr() as usize).checked_sub(file.as_ptr() as usize)?;
        let end = start.checked_add(part.len())?;
        (end <= file.len() || part.is_empty()).then_some(KeptAtom {
            start: if part.is_empty() { 0 } else { start },
            end: if part.is_empty() { 0 } else { end },
            sha256: *atom.digest(),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    /// Seconds since the epoch of the oldest confirmation (see [`SnapshotPlan`]).
    confirmed: Option<u64>,
    rounds: usize,
    /// The assembled tree's files, dirs, symlinks, others and bytes.
    footprint: [u64; 5],
    /// The sha256 of the body.
    body_sha256: String,
    /// The URL change mark it was made under: once another load finds one of the cache's
    /// URLs serving another file, it is stale (that URL may be one of this tree's).
    url_change_mark: String,
    /// The root first.
    packages: Vec<PackageHeader>,
}

#[derive(Serialize, Deserialize)]
struct PackageHeader {
    /// The URL, as messages and the fetch plan name the package.
    shown: String,
    /// Where it came from, as the solver's summary (and a lockfile) says.
    source: String,
    /// The stored blob holding the webc file.
    blob: String,
    size: u64,
    /// Its manifest as a config (schema v1).
    manifest: Section,
    volumes: Vec<(String, Section)>,
    atoms: Vec<AtomHeader>,
}

#[derive(Serialize, Deserialize)]
struct AtomHeader {
    name: String,
    start: u64,
    end: u64,
    sha256: String,
}

/// A range of the entry's body.
#[derive(Serialize, Deserialize, Clone, Copy)]
struct Section {
    start: u64,
    len: u64,
}

/// The snapshot under `key`, when there is a usable one: fresh for `ttl` (or `offline`),
/// readable, and every blob it names still stored.
pub(crate) fn read(
    store: &Store,
    key: &Digest,
    ttl: Duration,
    offline: bool,
    mark: &str,
) -> Option<SnapshotTree> {
    let kind = cache_core::DerivedKind::new(SNAPSHOT_KIND).ok()?;
    let entry = store.get_derived(key, &kind).ok().flatten()?;
    match decode(store, &entry, ttl, offline, mark) {
        Ok(tree) => tree,
        Err(reason) => {
            tracing::debug!(%key, reason, "tree snapshot unusable; resolving");
            None
        }
    }
}

/// `Ok(None)` for a stale snapshot or a blob no longer stored; `Err` for a damaged one.
fn decode(
    store: &Store,
    entry: &Bytes,
    ttl: Duration,
    offline: bool,
    mark: &str,
) -> Result<Option<SnapshotTree>, String> {
    let rest = entry.strip_prefix(MAGIC).ok_or("another format")?;
    let (header_len, rest) = rest.split_at_checked(8).ok_or("truncated")?;
    let header_len = u64::from_le_bytes(header_len.try_into().map_err(|_| "truncated")?);
    let header_len = usize::try_from(header_len).map_err(|_| "header too long")?;
    let (header, _) = rest
        .split_at_checked(header_len)
        .ok_or("truncated header")?;
    let body = entry.slice(entry.len() - rest.len() + header_len..);
    let header: Header = serde_json::from_slice(header).map_err(|e| e.to_string())?;
    if header.url_change_mark != mark {
        tracing::debug!("a URL changed since the tree snapshot was made; resolving");
        return Ok(None);
    }
    if let Some(secs) = header.confirmed {
        let confirmed = UNIX_EPOCH + Duration::from_secs(secs);
        let fresh = SystemTime::now()
            .duration_since(confirmed)
            .is_ok_and(|age| age < ttl);
        if !fresh && !offline {
            tracing::debug!("tree snapshot older than the ref TTL; resolving");
            return Ok(None);
        }
    }
    // The body is read lazily (a volume's index when the volume is first read), so it is
    // checked whole now: what is read later is exactly what was written.
    if Algorithm::Sha256.digest(&body).to_string() != header.body_sha256 {
        return Err("its body does not match its sha256".to_owned());
    }
    let Some(packages) = decode_packages(store, &body, header.packages)? else {
        return Ok(None);
    };
    if packages.is_empty() {
        return Err("no packages".to_owned());
    }
    let [files, dirs, symlinks, others, bytes] = header.footprint;
    Ok(Some(SnapshotTree {
        packages,
        rounds: header.rounds,
        footprint: Footprint {
            files,
            dirs,
            symlinks,
            others,
            bytes,
        },
    }))
}

/// The packages `headers` describe; `Ok(None)` when a blob is no longer stored.
fn decode_packages(
    store: &Store,
    body: &Bytes,
    headers: Vec<PackageHeader>,
) -> Result<Option<Vec<SnapshotPackage>>, String> {
    let section = |s: Section| -> Result<Bytes, String> {
        let start = usize::try_from(s.start).map_err(|_| "section out of range")?;
        let end = start
            .checked_add(usize::try_from(s.len).map_err(|_| "section out of range")?)
            .filter(|end| *end <= body.len())
            .ok_or("section out of range")?;
        Ok(body.slice(start..end))
    };
    let mut packages = Vec::with_capacity(headers.len());
    for p in headers {
        let digest = Digest::parse(&p.blob).map_err(|e| e.to_string())?;
        let Some(blob) = store.get(&digest).ok().flatten() else {
            tracing::debug!(%digest, "a blob of the tree snapshot is gone; resolving");
            return Ok(None);
        };
        if blob.len() != p.size {
            return Err(format!("{digest} is not {} bytes", p.size));
        }
        let manifest =
            Manifest::from_json(&section(p.manifest)?).map_err(|e| format!("{}: {e}", p.shown))?;
        let mut volumes = HashMap::with_capacity(p.volumes.len());
        for (name, s) in p.volumes {
            volumes.insert(name, section(s)?);
        }
        let mut atoms = HashMap::with_capacity(p.atoms.len());
        for a in p.atoms {
            let (Ok(start), Ok(end)) = (usize::try_from(a.start), usize::try_from(a.end)) else {
                return Err("atom out of range".to_owned());
            };
            if start > end || end as u64 > blob.len() {
                return Err(format!("atom {:?} out of range", a.name));
            }
            let sha256 = Digest::parse(&a.sha256).map_err(|e| e.to_string())?;
            atoms.insert(a.name, KeptAtom { start, end, sha256 });
        }
        let found = found_as_file(&p.shown, Located::Layout(PathBuf::from(&p.shown)), &blob);
        let summary = Summary {
            manifest,
            digest: digest.to_string(),
            source: p.source,
        };
        let parts = KeptParts {
            blob,
            volumes,
            atoms,
        };
        packages.push(SnapshotPackage {
            summary,
            found,
            local: LocalRoot::Kept(parts),
        });
    }
    Ok(Some(packages))
}

/// Writes the snapshot of a tree just loaded: `resolution`, where each package was found
/// (`found`, its file as one blob) and what its load opened (`opened`). A tree with a
/// package that did not come from a URL is not kept.
pub(crate) async fn write(
    store: &Store,
    plan: &SnapshotPlan,
    resolution: &Resolution,
    found: &HashMap<PackageId, Found>,
    opened: &HashMap<PackageId, OpenedParts>,
    footprint: Footprint,
) -> crate::Result<()> {
    // A URL that changed while this tree was resolved may be one it read before the
    // change: its snapshot would hold the old file under the new mark. Unless the change
    // was this resolution's own, the next load makes the snapshot.
    let mark = crate::direct::url_change_mark(store);
    if mark != plan.mark && !plan.changed {
        return Ok(());
    }
    let Some(entry) = encode(plan, resolution, found, opened, footprint, mark) else {
        return Ok(());
    };
    let kind = cache_core::DerivedKind::new(SNAPSHOT_KIND)?;
    store.put_memo(&plan.key, &kind, entry).await?;
    Ok(())
}

fn encode(
    plan: &SnapshotPlan,
    resolution: &Resolution,
    found: &HashMap<PackageId, Found>,
    opened: &HashMap<PackageId, OpenedParts>,
    footprint: Footprint,
    url_change_mark: String,
) -> Option<Vec<u8>> {
    if !resolution.warnings.is_empty() {
        return None;
    }
    let root_source = found.get(&resolution.root.id())?.artifact.reference.clone();
    let packages = std::iter::once((&resolution.root, root_source)).chain(
        resolution
            .packages
            .values()
            .map(|s| (&s.manifest, s.source.clone())),
    );
    let mut body = Vec::new();
    let mut push = |bytes: &[u8]| {
        let section = Section {
            start: body.len() as u64,
            len: bytes.len() as u64,
        };
        body.extend_from_slice(bytes);
        section
    };
    let mut headers = Vec::new();
    for (manifest, source) in packages {
        if !(source.starts_with("http://") || source.starts_with("https://")) {
            return None;
        }
        let id = manifest.id();
        let found = found.get(&id)?;
        let parts = opened.get(&id);
        let file = &found.artifact.config;
        let mut volumes = Vec::new();
        let mut atoms = Vec::new();
        if let Some(parts) = parts {
            for (name, index) in &parts.volumes {
                volumes.push((name.clone(), push(&index.to_bytes().ok()?)));
            }
            for (name, atom) in &parts.atoms {
                atoms.push(AtomHeader {
                    name: name.clone(),
                    start: atom.start as u64,
                    end: atom.end as u64,
                    sha256: atom.sha256.to_string(),
                });
            }
        }
        headers.push(PackageHeader {
            shown: found.artifact.reference.clone(),
            source,
            blob: file.digest.to_string(),
            size: file.size,
            manifest: push(&manifest.to_json()),
            volumes,
            atoms,
        });
    }
    let header = Header {
        confirmed: plan
            .confirmed
            .map(|t| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()),
        rounds: resolution.rounds,
        footprint: [
            footprint.files,
            footprint.dirs,
            footprint.symlinks,
            footprint.others,
            footprint.bytes,
        ],
        body_sha256: Algorithm::Sha256.digest(&body).to_string(),
        url_change_mark,
        packages: headers,
    };
    let header = serde_json::to_vec(&header).ok()?;
    let mut entry = Vec::with_capacity(MAGIC.len() + 8 + header.len() + body.len());
    entry.extend_from_slice(MAGIC);
    entry.extend_from_slice(&(header.len() as u64).to_le_bytes());
    entry.extend_from_slice(&header);
    entry.extend_from_slice(&body);
    Some(entry)
}

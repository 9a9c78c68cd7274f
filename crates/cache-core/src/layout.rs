//! Where everything lives under the store root.
//!
//! ```text
//! <root>/.lock                                   shared by users, exclusive for gc/clean
//! <root>/v1/blobs/<alg>/<hex[0..2]>/<hex>        immutable, read-only, verified
//! <root>/v1/ingest/<alg>-<hex>.partial           resumable download of a known digest,
//!                                                also its lock (one ingest at a time)
//! <root>/v1/ingest/tmp-<unique>                  anonymous ingests and atomic-write temps
//! <root>/v1/refs/<registry>/<repo+>               the repository's tag list and tag -> digest
//!                                                 pointers, with fetch times (see refs.rs)
//! <root>/v1/derived/<alg>/<hex>.<kind>           data computed from a blob
//! ```
//!
//! Only a parsed [`Digest`] or a validated name ever becomes a path component, so nothing
//! here can be steered outside the root.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Digest;

#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: PathBuf,
    v1: PathBuf,
}

impl Layout {
    pub(crate) fn new(root: PathBuf) -> Self {
        let v1 = root.join("v1");
        Layout { root, v1 }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Tells backup and archiving tools (borg, restic, `tar --exclude-caches`) that
    /// nothing under the root needs saving: everything in it can be fetched again.
    pub(crate) fn cachedir_tag(&self) -> PathBuf {
        self.root.join("CACHEDIR.TAG")
    }

    pub(crate) fn lock_file(&self) -> PathBuf {
        self.root.join(".lock")
    }

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.v1.join("blobs")
    }

    pub(crate) fn ingest_dir(&self) -> PathBuf {
        self.v1.join("ingest")
    }

    pub(crate) fn refs_dir(&self) -> PathBuf {
        self.v1.join("refs")
    }

    pub(crate) fn derived_dir(&self) -> PathBuf {
        self.v1.join("derived")
    }

    pub(crate) fn blob(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        let fan = hex.get(..2).unwrap_or("00");
        self.blobs_dir()
            .join(digest.algorithm().name())
            .join(fan)
            .join(&hex)
    }

    pub(crate) fn partial(&self, digest: &Digest) -> PathBuf {
        self.ingest_dir()
            .join(format!("{}-{}.partial", digest.algorithm(), digest.hex()))
    }

    /// A fresh, unique temporary path in `ingest/` (same filesystem as the blobs, so the
    /// final rename is atomic).
    pub(crate) fn temp(&self) -> PathBuf {
        self.ingest_dir().join(format!("tmp-{}", unique_suffix()))
    }

    pub(crate) fn derived(&self, digest: &Digest, kind: &DerivedKind) -> PathBuf {
        self.derived_dir()
            .join(digest.algorithm().name())
            .join(format!("{}.{}", digest.hex(), kind.as_str()))
    }

    /// `refs/<registry>/<repo+>`, where `<repo+>` is the repository with `+` for `/`: one
    /// file per repository holding its tag list and its tags' digests. Flat, so that
    /// remembering a new repository creates one file and no directory: file creation is
    /// what a cold load of many small packages spends its time on. `+` cannot occur in a
    /// repository, so names cannot collide.
    pub(crate) fn repo_refs(&self, registry: &str, repository: &str) -> crate::Result<PathBuf> {
        validate_registry(registry)?;
        validate_repository(repository)?;
        Ok(self
            .refs_dir()
            .join(registry)
            .join(flat_repository(repository)))
    }

    /// The repository of a refs file `refs/<registry>/<name>`, or `None` when `name` is not
    /// one (a file of an older layout, with `:` or `@` in its name, or anything else).
    pub(crate) fn repository_of(registry: &str, name: &str) -> Option<String> {
        let repository = name.replace('+', "/");
        (validate_registry(registry).is_ok() && validate_repository(&repository).is_ok())
            .then_some(repository)
    }

    pub(crate) fn check_tag(tag: &str) -> bool {
        validate_tag(tag).is_ok()
    }
}

fn flat_repository(repository: &str) -> String {
    repository.replace('/', "+")
}

/// Unique within this machine: process id, a per-process counter and the clock.
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{n}-{nanos:08x}", std::process::id())
}

/// The kind of a derived entry (`index`, `tar`, `blake3`, …): `[a-z0-9][a-z0-9-]{0,31}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DerivedKind(String);

impl DerivedKind {
    /// Validate a kind name.
    pub fn new(kind: &str) -> crate::Result<Self> {
        let ok = !kind.is_empty()
            && kind.len() <= 32
            && kind
                .bytes()
                .enumerate()
                .all(|(i, b)| b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && b == b'-'));
        if ok {
            Ok(DerivedKind(kind.to_owned()))
        } else {
            Err(crate::Error::InvalidName {
                what: "derived kind",
                value: shorten(kind),
                reason: "use 1-32 characters of `a-z`, `0-9` and `-`, not starting with `-`",
            })
        }
    }

    /// The kind as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Identifies a tag pointer: `registry/repository:tag`.
///
/// Each part is validated against the OCI distribution grammar before it becomes a path.
///
/// ```
/// use cache_core::RefKey;
/// assert!(RefKey::new("127.0.0.1:5000", "team/acme/app", "1.0.0").is_ok());
/// assert!(RefKey::new("registry", "../etc", "latest").is_err());
/// assert!(RefKey::new("registry", "a/b", "..").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefKey {
    registry: String,
    repository: String,
    tag: String,
}

impl RefKey {
    /// Validate and build a key.
    pub fn new(registry: &str, repository: &str, tag: &str) -> crate::Result<Self> {
        validate_registry(registry)?;
        validate_repository(repository)?;
        validate_tag(tag)?;
        Ok(RefKey {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: tag.to_owned(),
        })
    }

    /// The registry host (with port).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }
}

impl std::fmt::Display for RefKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}:{}", self.registry, self.repository, self.tag)
    }
}

fn invalid(what: &'static str, value: &str, reason: &'static str) -> crate::Error {
    crate::Error::InvalidName {
        what,
        value: shorten(value),
        reason,
    }
}

fn shorten(value: &str) -> String {
    value.chars().take(120).collect()
}

fn validate_registry(registry: &str) -> crate::Result<()> {
    // host[:port], where host is a DNS name, an IPv4 address or a bracketed IPv6 address.
    let ok = !registry.is_empty()
        && registry.len() <= 255
        && registry
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
        && !registry.starts_with(['.', '-', ':'])
        && !registry.contains("..");
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "registry",
            registry,
            "expected host[:port] made of letters, digits, `.`, `-`, `:` and `[]`",
        ))
    }
}

fn validate_repository(repository: &str) -> crate::Result<()> {
    // OCI: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
    let component_ok = |c: &str| {
        let bytes = c.as_bytes();
        let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
            return false;
        };
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if !alnum(first) || !alnum(last) {
            return false;
        }
        let mut prev_sep: Option<u8> = None;
        let mut underscores = 0;
        for b in bytes {
            if alnum(b) {
                prev_sep = None;
                underscores = 0;
                continue;
            }
            match (b, prev_sep) {
                (b'.', None) | (b'-', None | Some(b'-')) => prev_sep = Some(*b),
                (b'_', None | Some(b'_')) if underscores < 2 => {
                    underscores += 1;
                    prev_sep = Some(b'_');
                }
                _ => return false,
            }
        }
        true
    };
    let ok = !repository.is_empty()
        && repository.len() <= 255
        && repository.split('/').all(component_ok);
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "repository",
            repository,
            "expected `/`-separated components of `a-z0-9` joined by `.`, `_`, `__` or `-`",
        ))
    }
}

fn validate_tag(tag: &str) -> crate::Result<()> {
    // OCI: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
    let bytes = tag.as_bytes();
    let ok = matches!(bytes.first(), Some(b) if b.is_ascii_alphanumeric() || *b == b'_')
        && bytes.len() <= 128
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "tag",
            tag,
            "expected up to 128 of `A-Za-z0-9._-`, starting with a letter, digit or `_`",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn repository_grammar() {
        for good in ["a", "acme/app", "a-b/c.d/e__f", "x--y", "0/1/2"] {
            assert!(validate_repository(good).is_ok(), "{good}");
        }
        for bad in [
            "", "/a", "a/", "a//b", "../a", "a/..", "A", "a/.b", "a_", "a___b", "a..b", "a b",
            "a/b\0", "-a",
        ] {
            assert!(validate_repository(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tag_and_registry_grammar() {
        assert!(validate_tag("v1.2.3-rc_1").is_ok());
        for bad in ["", ".", "..", "-x", "a/b", &"x".repeat(129)] {
            assert!(validate_tag(bad).is_err(), "{bad:?}");
        }
        for good in ["docker.io", "127.0.0.1:5000", "[::1]:5000", "localhost"] {
            assert!(validate_registry(good).is_ok(), "{good}");
        }
        for bad in ["", "..", "a/b", ".hidden", "a..b", "a\\b"] {
            assert!(validate_registry(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        /// Whatever is accepted stays a plain relative path below `refs/`.
        #[test]
        fn accepted_refs_stay_inside(reg in "[a-z0-9.:\\[\\]/-]{1,12}", repo in "[a-z0-9._/-]{1,16}", tag in "[A-Za-z0-9._/-]{1,8}") {
            if let Ok(key) = RefKey::new(&reg, &repo, &tag) {
                let layout = Layout::new(PathBuf::from("/root"));
                let path = layout.repo_refs(key.registry(), key.repository()).unwrap();
                let rel = path.strip_prefix("/root/v1/refs").unwrap();
                for c in rel.components() {
                    prop_assert!(matches!(c, std::path::Component::Normal(_)), "{path:?}");
                }
            }
        }
    }
}

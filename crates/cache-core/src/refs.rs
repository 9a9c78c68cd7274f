//! What a repository's tags pointed to, one file per repository.
//!
//! A cold load of a package tree meets hundreds of repositories, and for each it learns
//! the tag list and one tag's digest. One file per fact made that two files (two inodes,
//! two renames) per package; one file per repository makes it one, and
//! [`Store::set_tags_and_ref`](crate::Store::set_tags_and_ref) records both facts in one
//! write (each write is a temp file and so a new inode). The file is a cache of what a registry said, so it is written without `fsync`:
//! after a power cut it may be empty or torn, and the checksum line at its end
//! (the torn-write guard) turns that into "nothing remembered", which costs a request.
//!
//! ```text
//! pkgload-refs 1
//! tags <fetched unix ms> <tag> <tag> …        (when the tag list was fetched)
//! ref <tag> <digest> <fetched unix ms>        (one per tag resolved)
//! sum <blake3 hex of every line above>
//! ```
//!
//! Writers read, change and replace the file (temp file + rename), so a reader sees the
//! old or the new file, never a mix. Within a process they take turns; two processes
//! writing one repository at once may lose one's update, which, again, costs a request.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::Digest;
use crate::error::{Error, IoContext, Result};

const MAGIC: &str = "pkgload-refs 1";

/// Everything remembered about one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RepoRefs {
    /// The tag list and when it was fetched (unix ms).
    pub(crate) tags: Option<(u64, Vec<String>)>,
    /// Tag → (digest, fetched unix ms).
    pub(crate) refs: BTreeMap<String, (Digest, u64)>,
}

impl RepoRefs {
    /// The file at `path`; empty when it is missing, torn or not ours (with a debug log:
    /// a damaged cache of refs is not an error, the registry is asked again).
    pub(crate) fn read(path: &Path) -> Result<RepoRefs> {
        let text = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RepoRefs::default()),
            Err(e) => return Err(Error::io("read", path, e)),
        };
        match parse(&text) {
            Some(refs) => Ok(refs),
            None => {
                tracing::debug!(path = %path.display(), "ignoring a torn or foreign refs file");
                Ok(RepoRefs::default())
            }
        }
    }

    /// Replaces the file at `path` with this content (through `temp`), without `fsync`.
    pub(crate) fn write(&self, temp: &Path, path: &Path) -> Result<()> {
        let parent = path.parent().unwrap_or(Path::new("."));
        crate::ingest::ensure_dir(parent)?;
        let result = std::fs::write(temp, self.render())
            .at("write", temp)
            .and_then(|()| std::fs::rename(temp, path).at("rename into", path));
        if result.is_err() {
            let _ = std::fs::remove_file(temp);
        }
        result
    }

    fn render(&self) -> String {
        let mut body = format!("{MAGIC}\n");
        if let Some((millis, tags)) = &self.tags {
            let _ = write!(body, "tags {millis}");
            for tag in tags {
                body.push(' ');
                body.push_str(tag);
            }
            body.push('\n');
        }
        for (tag, (digest, millis)) in &self.refs {
            let _ = writeln!(body, "ref {tag} {digest} {millis}");
        }
        let sum = blake3::hash(body.as_bytes()).to_hex();
        let _ = writeln!(body, "sum {sum}");
        body
    }
}

/// `None` for anything but a complete file this module wrote.
fn parse(bytes: &[u8]) -> Option<RepoRefs> {
    let text = std::str::from_utf8(bytes).ok()?;
    let body_end = text.strip_suffix('\n')?.rfind('\n')? + 1;
    let (body, last) = text.split_at(body_end);
    let sum = last.strip_prefix("sum ")?.strip_suffix('\n')?;
    if blake3::hash(body.as_bytes()).to_hex().as_str() != sum {
        return None;
    }
    let mut lines = body.lines();
    if lines.next()? != MAGIC {
        return None;
    }
    let mut out = RepoRefs::default();
    for line in lines {
        let mut words = line.split(' ');
        match words.next()? {
            "tags" => {
                let millis = words.next()?.parse().ok()?;
                // A tag that is not a valid tag can only come from damage: drop it rather
                // than hand it to a caller that will build a path or URL from it.
                let tags = words
                    .filter(|t| crate::layout::Layout::check_tag(t))
                    .map(str::to_owned)
                    .collect();
                out.tags = Some((millis, tags));
            }
            "ref" => {
                let tag = words.next()?;
                let digest = words.next()?.parse().ok()?;
                let millis = words.next()?.parse().ok()?;
                if crate::layout::Layout::check_tag(tag) {
                    out.refs.insert(tag.to_owned(), (digest, millis));
                }
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Unix milliseconds → a time.
pub(crate) fn time_of(millis: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Algorithm;

    fn sample() -> RepoRefs {
        let mut refs = RepoRefs {
            tags: Some((1_700_000_000_000, vec!["1.0.0".into(), "latest".into()])),
            ..RepoRefs::default()
        };
        refs.refs.insert(
            "latest".into(),
            (Algorithm::Sha256.digest(b"m"), 1_700_000_000_001),
        );
        refs
    }

    #[test]
    fn round_trips_and_refuses_every_torn_prefix() {
        let refs = sample();
        let text = refs.render();
        assert_eq!(parse(text.as_bytes()), Some(refs));
        // A power cut may leave any prefix (or an empty file): never believed.
        for cut in 0..text.len() {
            assert_eq!(parse(&text.as_bytes()[..cut]), None, "cut at {cut}");
        }
        // Nor a changed byte.
        let flipped = text.replacen("1.0.0", "1.0.1", 1);
        assert_eq!(parse(flipped.as_bytes()), None);
        assert_eq!(parse(b"\xff\xfe"), None);
    }

    #[test]
    fn read_of_a_missing_or_torn_file_is_empty_and_write_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reg/repo");
        assert_eq!(RepoRefs::read(&path).unwrap(), RepoRefs::default());
        let refs = sample();
        refs.write(&dir.path().join("tmp"), &path).unwrap();
        assert_eq!(RepoRefs::read(&path).unwrap(), refs);
        assert!(!dir.path().join("tmp").exists());
        let text = std::fs::read(&path).unwrap();
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        assert_eq!(RepoRefs::read(&path).unwrap(), RepoRefs::default());
    }
}

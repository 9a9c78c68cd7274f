//! One webc container, opened over bytes pkgload owns (usually the memory map of a cached
//! blob): checked framing, the `webc` crate's parse behind a panic guard, atoms verified
//! against their manifest signatures before they are handed out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use vfs_overlay::TarVolume;
use webc::metadata::{AtomSignature, Manifest};
use webc::{Container, Version};

use crate::error::WebcError;
use crate::frame;

/// An atom: its bytes (a slice of the container) and their sha256, checked against the
/// manifest's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Atom {
    /// The module.
    pub bytes: Bytes,
    /// sha256 of `bytes`.
    pub sha256: [u8; 32],
}

/// A parsed webc container; cheap to clone.
#[derive(Clone)]
pub struct WebcContainer {
    origin: Arc<str>,
    bytes: Bytes,
    version: u8,
    container: Container,
    /// Atoms whose signature has been checked, with their sha256.
    verified: Arc<Mutex<HashMap<String, [u8; 32]>>>,
    /// Volumes whose files have been checked against their hashes (v3), or were vouched
    /// for (see [`WebcContainer::vouch`]).
    checked_volumes: Arc<Mutex<BTreeSet<String>>>,
    /// The file `bytes` were mapped from, when known: hashing reads it with `pread`
    /// instead of touching the map, so checking a large container does not make its every
    /// page resident in this process.
    file: Option<Arc<std::fs::File>>,
}

/// What has been checked in one container: atoms against their signatures (with their
/// sha256, hex), volumes' files against their hashes. A record of it kept beside a
/// content-addressed copy of the container spares the next reader the hashing (see
/// [`WebcContainer::vouch`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checked {
    /// Atom name → sha256 (lowercase hex).
    pub atoms: BTreeMap<String, String>,
    /// Volume names.
    pub volumes: BTreeSet<String>,
}

impl std::fmt::Debug for WebcContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebcContainer")
            .field("origin", &self.origin)
            .field("version", &self.version)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// Runs `f`, which calls into the `webc` crate, turning a panic into `Err(message)`.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("the parser panicked")
            .to_owned()
    })
}

impl WebcContainer {
    /// Parses `bytes` as a webc file of any version this crate reads (v1, v2, v3).
    /// `origin` names the file or URL in every error.
    ///
    /// Nothing is copied: atoms and volume files are slices of `bytes`.
    ///
    /// # Errors
    /// [`WebcError::NotWebc`] for other files, [`WebcError::Framing`] when the container's
    /// lengths point outside it, [`WebcError::Malformed`] when the `webc` crate refuses it.
    pub fn parse(bytes: Bytes, origin: impl Into<String>) -> Result<WebcContainer, WebcError> {
        let origin: String = origin.into();
        let version = frame::version(&bytes).ok_or_else(|| WebcError::NotWebc {
            origin: origin.clone(),
            reason: match bytes.get(..5) {
                Some(b"\0webc") => format!(
                    "version {:?} (this build reads 001, 002 and 003)",
                    String::from_utf8_lossy(bytes.get(5..8).unwrap_or_default())
                ),
                _ => "it does not start with the webc magic bytes".to_owned(),
            },
        })?;
        frame::check(&bytes, version).map_err(|e| WebcError::Framing {
            origin: origin.clone(),
            version,
            what: e.what,
            offset: e.offset,
            len: bytes.len() as u64,
        })?;
        let malformed = |message: String| WebcError::Malformed {
            origin: origin.clone(),
            version,
            message,
        };
        let webc_version = match version {
            1 => Version::V1,
            2 => Version::V2,
            _ => Version::V3,
        };
        let container = guarded(|| Container::from_bytes_and_version(bytes.clone(), webc_version))
            .map_err(malformed)?
            .map_err(|e| malformed(error_chain(&e)))?;
        Ok(WebcContainer {
            origin: origin.into(),
            bytes,
            version,
            container,
            verified: Arc::default(),
            checked_volumes: Arc::default(),
            file: None,
        })
    }

    /// Declares that the container's bytes are exactly the contents of `file` (from
    /// offset 0): checks then hash by reading the file rather than the memory map.
    #[must_use]
    pub fn with_file(mut self, file: std::fs::File) -> Self {
        self.file = Some(Arc::new(file));
        self
    }

    /// The sha256 of `part`, a slice of the container: read from the file when there is
    /// one (see [`WebcContainer::with_file`]), else hashed in place.
    pub(crate) fn sha256_of(&self, part: &[u8]) -> [u8; 32] {
        if let (Some(file), Some(offset)) = (&self.file, self.offset_of(part))
            && let Ok(digest) = sha256_of_range(file, offset, part.len())
        {
            return digest;
        }
        Sha256::digest(part).into()
    }

    /// What has been checked so far (atoms handed out, volumes indexed).
    pub fn checked(&self) -> Checked {
        let atoms = self
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, sha256)| (name.clone(), hex(sha256)))
            .collect();
        let volumes = self
            .checked_volumes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Checked { atoms, volumes }
    }

    /// Takes `checked` as already done for exactly these bytes: those atoms are handed out
    /// with the recorded sha256 and those volumes indexed without hashing their files.
    ///
    /// Only a caller that knows the bytes are the ones checked may vouch, e.g. with a
    /// record kept under the sha256 of the whole container in a content-addressed store;
    /// a record for other bytes would let mismatched atoms or files through. Entries that
    /// are not well-formed are ignored (they are checked again).
    pub fn vouch(&self, checked: &Checked) {
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        for (name, sha256) in &checked.atoms {
            if let Some(raw) = unhex32(sha256) {
                verified.insert(name.clone(), raw);
            }
        }
        drop(verified);
        self.checked_volumes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(checked.volumes.iter().cloned());
    }

    /// Whether [`Self::atom`] would hand `name` out without hashing it (checked before, or
    /// vouched for): then it costs microseconds and need not leave the caller's thread.
    pub fn atom_is_checked(&self, name: &str) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(name)
    }

    /// Whether [`Self::volume`] would index `name` without hashing its files.
    pub fn volume_is_checked(&self, name: &str) -> bool {
        self.checked_volumes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(name)
    }

    /// The file or URL this came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// 1, 2 or 3.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The whole container.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The manifest: package annotations, `use` map, atoms, commands, entrypoint.
    pub fn manifest(&self) -> &Manifest {
        self.container.manifest()
    }

    /// The atom names, sorted.
    pub fn atom_names(&self) -> Vec<String> {
        guarded(|| self.container.atoms().into_keys().collect()).unwrap_or_default()
    }

    /// The volume names, sorted.
    pub fn volume_names(&self) -> Vec<String> {
        guarded(|| self.container.volumes().into_keys().collect()).unwrap_or_default()
    }

    /// The atom `name`, a zero-copy slice of the container, checked against the sha256 its
    /// manifest entry declares (once per container).
    ///
    /// # Errors
    /// [`WebcError::Missing`] if there is no such atom (or the manifest does not list it),
    /// [`WebcError::AtomSignature`] if its bytes do not match.
    pub fn atom(&self, name: &str) -> Result<Atom, WebcError> {
        let missing = || WebcError::Missing {
            origin: self.origin.to_string(),
            kind: "atom",
            name: name.to_owned(),
            available: self.atom_names().join(", "),
        };
        let buffer = guarded(|| self.container.get_atom(name))
            .ok()
            .flatten()
            .ok_or_else(missing)?;
        let bytes = self.slice_of(&buffer).ok_or_else(|| WebcError::Malformed {
            origin: self.origin.to_string(),
            version: self.version,
            message: format!("atom {name:?} does not lie inside the file"),
        })?;
        let known = self
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .copied();
        if let Some(sha256) = known {
            return Ok(Atom { bytes, sha256 });
        }
        let declared = self
            .manifest()
            .atoms
            .get(name)
            .map(|a| a.signature.clone())
            .ok_or_else(missing)?;
        let actual: [u8; 32] = self.sha256_of(&bytes);
        let matches = match self.manifest().atom_signature(name) {
            Ok(AtomSignature::Sha256(expected)) => expected == actual,
            Err(_) => false,
        };
        if !matches {
            return Err(WebcError::AtomSignature {
                origin: self.origin.to_string(),
                atom: name.to_owned(),
                declared,
                actual: hex(&actual),
            });
        }
        self.verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), actual);
        Ok(Atom {
            bytes,
            sha256: actual,
        })
    }

    /// The volume `name` as a read-only filesystem whose files are slices of the
    /// container; see [`crate::volume`].
    ///
    /// # Errors
    /// [`WebcError::Missing`], or what [`crate::volume::index`] finds wrong.
    pub fn volume(&self, name: &str) -> Result<TarVolume, WebcError> {
        let volume = guarded(|| self.container.get_volume(name))
            .ok()
            .flatten()
            .ok_or_else(|| WebcError::Missing {
                origin: self.origin.to_string(),
                kind: "volume",
                name: name.to_owned(),
                available: self.volume_names().join(", "),
            })?;
        let vouched = self
            .checked_volumes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(name);
        let indexed = crate::volume::index(self, name, &volume, !vouched)?;
        self.checked_volumes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned());
        Ok(indexed)
    }

    /// `part` as a slice of [`Self::bytes`], if that is where it lies (the `webc` crate
    /// hands out views of the buffer it was given).
    pub(crate) fn slice_of(&self, part: &[u8]) -> Option<Bytes> {
        let base = self.bytes.as_ptr() as usize;
        let start = (part.as_ptr() as usize).checked_sub(base)?;
        let end = start.checked_add(part.len())?;
        if part.is_empty() {
            return Some(Bytes::new());
        }
        (end <= self.bytes.len()).then(|| self.bytes.slice(start..end))
    }

    /// Where `part` starts in [`Self::bytes`]; see [`Self::slice_of`].
    pub(crate) fn offset_of(&self, part: &[u8]) -> Option<u64> {
        // An empty view may point anywhere (a static empty buffer); it needs no range.
        if part.is_empty() {
            return Some(0);
        }
        let base = self.bytes.as_ptr() as usize;
        let start = (part.as_ptr() as usize).checked_sub(base)?;
        (start.checked_add(part.len())? <= self.bytes.len()).then_some(start as u64)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 hex digits as 32 bytes.
fn unhex32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16);
        let value = digit(*pair.first()?)? * 16 + digit(*pair.get(1)?)?;
        *out.get_mut(i)? = u8::try_from(value).ok()?;
    }
    Some(out)
}

/// The sha256 of `len` bytes of `file` from `offset`, read through a bounded buffer.
fn sha256_of_range(file: &std::fs::File, offset: u64, len: usize) -> std::io::Result<[u8; 32]> {
    use std::os::unix::fs::FileExt as _;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; len.clamp(1, 256 << 10)];
    let mut done = 0usize;
    while done < len {
        let want = (len - done).min(buffer.len());
        let chunk = buffer
            .get_mut(..want)
            .ok_or_else(|| std::io::Error::other("buffer too small"))?;
        let read = file.read_at(chunk, offset + done as u64)?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        hasher.update(chunk.get(..read).unwrap_or_default());
        done += read;
    }
    Ok(hasher.finalize().into())
}

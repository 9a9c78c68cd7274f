//! OCI references: where an image or a package comes from.
//!
//! Two spellings are understood:
//!
//! - `REGISTRY/REPOSITORY[:TAG][@DIGEST]`, a repository in an OCI registry, with the defaults
//!   Docker users expect: `ubuntu` means `docker.io/library/ubuntu:latest`;
//! - `oci:DIR[:TAG]`, an OCI image layout directory on disk (the format skopeo and umoci
//!   write).
//!
//! Parsing is strict and never panics, whatever the input. Every error names the input (cut
//! to a readable length) and says what is wrong with it. [`Display`](fmt::Display) prints the
//! canonical form, with every default filled in, and that form parses back to the same value:
//!
//! ```text
//! ubuntu                       -> docker.io/library/ubuntu:latest
//! index.docker.io/org/img:1    -> docker.io/org/img:1
//! LOCALHOST:05000/a@sha256:…   -> localhost:5000/a@sha256:…
//! [0:0::1]:5000/x              -> [::1]:5000/x:latest
//! oci:/tmp/layout:v1           -> oci:/tmp/layout:v1
//! ```
//!
//! The grammar is the one of the distribution project's reference package: the registry is
//! `host[:port]` (a DNS name, an IPv4 address or a bracketed IPv6 address); the repository is
//! `/`-separated components `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, and `registry/repository`
//! together are at most 255 characters; a tag is `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`; a digest
//! is whatever [`Digest::parse`] accepts. Where this module is stricter than that grammar it
//! says so: ports must be 1-65535, IPv6 addresses must be real addresses.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cache_core::{Digest, ParseDigestError};

/// The registry of a reference that names none (`ubuntu`, `org/image`).
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// The tag of a registry reference that has neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";

/// The longest `registry/repository` name accepted, counted after the defaults are applied.
pub const NAME_MAX_LEN: usize = 255;

/// The longest tag accepted.
pub const TAG_MAX_LEN: usize = 128;

/// The prefix that makes a reference an OCI image layout directory.
pub const LAYOUT_PREFIX: &str = "oci:";

/// Another spelling of Docker Hub, normalized to [`DEFAULT_REGISTRY`].
const DOCKER_HUB_ALIAS: &str = "index.docker.io";

/// The host that actually serves the distribution API for Docker Hub.
const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// Docker Hub's namespace for single-component ("official") repositories.
const DOCKER_HUB_OFFICIAL: &str = "library";

/// How much of a rejected input an error message repeats.
const SHOWN_MAX_CHARS: usize = 120;

/// Why a string is not a reference.
///
/// Every variant that carries an `input` holds the whole rejected text, cut to about 120
/// characters, so that the message points at what the user typed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseReferenceError {
    /// The input is empty.
    #[error("empty reference: expected `REGISTRY/REPOSITORY[:TAG][@DIGEST]` or `oci:DIR[:TAG]`")]
    Empty,

    /// The input holds a character that no reference may contain.
    #[error(
        "invalid reference {input:?}: it contains {found:?}; references may not contain control \
         characters, and registry references no whitespace at all"
    )]
    InvalidCharacter {
        /// The rejected input (shortened).
        input: String,
        /// The first offending character.
        found: char,
    },

    /// There is no repository name (`:tag`, `@sha256:…`, `localhost:5000/`).
    #[error(
        "invalid reference {input:?}: the repository name is missing; expected \
         `REGISTRY/REPOSITORY[:TAG][@DIGEST]`, e.g. `docker.io/library/ubuntu:22.04`"
    )]
    MissingRepository {
        /// The rejected input (shortened).
        input: String,
    },

    /// The registry component is not `host[:port]`.
    #[error("invalid reference {input:?}: invalid registry {registry:?}: {reason}")]
    InvalidRegistry {
        /// The rejected input (shortened).
        input: String,
        /// The registry component as written (shortened).
        registry: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A repository component holds upper-case letters.
    #[error(
        "invalid reference {input:?}: repository names must be lowercase, \
         {component:?} is not"
    )]
    UppercaseRepository {
        /// The rejected input (shortened).
        input: String,
        /// The offending path component (shortened).
        component: String,
    },

    /// A repository component does not follow the OCI grammar.
    #[error("invalid reference {input:?}: invalid repository component {component:?}: {reason}")]
    InvalidRepository {
        /// The rejected input (shortened).
        input: String,
        /// The offending path component (shortened; empty for `a//b`).
        component: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// `registry/repository` is longer than [`NAME_MAX_LEN`].
    #[error(
        "invalid reference {input:?}: the name `registry/repository` is {len} characters long \
         (after defaults), the limit is {NAME_MAX_LEN}"
    )]
    NameTooLong {
        /// The rejected input (shortened).
        input: String,
        /// The length of the full name.
        len: usize,
    },

    /// The tag does not follow the OCI grammar.
    #[error(
        "invalid reference {input:?}: invalid tag {tag:?}: a tag is 1 to {TAG_MAX_LEN} of \
         `A-Za-z0-9._-` and starts with a letter, a digit or `_`"
    )]
    InvalidTag {
        /// The rejected input (shortened).
        input: String,
        /// The tag as written (shortened; empty for `repo:`).
        tag: String,
    },

    /// The part after `@` is not a digest.
    #[error("invalid reference {input:?}: {source}")]
    InvalidDigest {
        /// The rejected input (shortened).
        input: String,
        /// Why the digest was rejected.
        #[source]
        source: ParseDigestError,
    },

    /// `oci:` is not followed by a directory.
    #[error(
        "invalid OCI layout reference {input:?}: the directory is missing; expected \
         `oci:DIR[:TAG]`, e.g. `oci:./layout:v1`"
    )]
    MissingLayoutDir {
        /// The rejected input (shortened).
        input: String,
    },

    /// A directory given to [`LayoutRef::new`] cannot be written as `oci:DIR[:TAG]`.
    #[error("invalid OCI layout directory {dir:?}: {reason}")]
    InvalidLayoutDir {
        /// The directory (lossily converted and shortened).
        dir: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A parsed reference: a registry repository or a layout directory.
///
/// ```text
/// "ghcr.io/org/img:1.0"  -> Reference::Registry(..)
/// "oci:./dir:v1"         -> Reference::Layout(..)
/// ```
///
/// Anything that starts with `oci:` is a layout reference, so a registry host literally
/// named `oci` has to be written by a longer name (`oci.lan:5000/repo`) or by its address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reference {
    /// `REGISTRY/REPOSITORY[:TAG][@DIGEST]`.
    Registry(RegistryRef),
    /// `oci:DIR[:TAG]`.
    Layout(LayoutRef),
}

impl Reference {
    /// Parse either form; see the [module documentation](self).
    pub fn parse(input: &str) -> Result<Self, ParseReferenceError> {
        if input.starts_with(LAYOUT_PREFIX) {
            LayoutRef::parse(input).map(Reference::Layout)
        } else {
            RegistryRef::parse(input).map(Reference::Registry)
        }
    }

    /// The registry reference, if this is one.
    pub fn as_registry(&self) -> Option<&RegistryRef> {
        match self {
            Reference::Registry(r) => Some(r),
            Reference::Layout(_) => None,
        }
    }

    /// The layout reference, if this is one.
    pub fn as_layout(&self) -> Option<&LayoutRef> {
        match self {
            Reference::Registry(_) => None,
            Reference::Layout(l) => Some(l),
        }
    }
}

impl FromStr for Reference {
    type Err = ParseReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Registry(r) => r.fmt(f),
            Reference::Layout(l) => l.fmt(f),
        }
    }
}

impl From<RegistryRef> for Reference {
    fn from(r: RegistryRef) -> Self {
        Reference::Registry(r)
    }
}

impl From<LayoutRef> for Reference {
    fn from(l: LayoutRef) -> Self {
        Reference::Layout(l)
    }
}

/// A repository in an OCI registry, optionally pinned to a tag and/or a digest.
///
/// Always normalized: the registry is lower case, with `index.docker.io` folded into
/// `docker.io`, ports without leading zeros and IPv6 addresses in their short form; Docker
/// Hub repositories of one component live under `library/`; and a reference has at least
/// one of tag and digest (`latest` when neither was given).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegistryRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl RegistryRef {
    /// Parse `REGISTRY/REPOSITORY[:TAG][@DIGEST]`, applying Docker's defaults.
    ///
    /// The first path component is the registry when it contains `.` or `:` or is exactly
    /// `localhost`; otherwise the registry is [`DEFAULT_REGISTRY`] and the whole name is the
    /// repository.
    pub fn parse(input: &str) -> Result<Self, ParseReferenceError> {
        if input.is_empty() {
            return Err(ParseReferenceError::Empty);
        }
        if let Some(found) = input.chars().find(|c| c.is_control() || c.is_whitespace()) {
            return Err(ParseReferenceError::InvalidCharacter {
                input: shown(input),
                found,
            });
        }

        // Neither names nor tags contain `@`, so the first one starts the digest; a tag is
        // whatever follows the last `:` unless a `/` comes after it (then that `:` belonged
        // to the registry's port).
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (input, None),
        };
        let (name, tag) = match rest.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
            _ => (rest, None),
        };
        let (registry, remote) = match name.split_once('/') {
            Some((first, remote)) if names_registry(first) => (first, remote),
            _ => (DEFAULT_REGISTRY, name),
        };
        if remote.is_empty() {
            return Err(ParseReferenceError::MissingRepository {
                input: shown(input),
            });
        }

        let mut reference = RegistryRef::from_parts(input, registry, remote)?;
        if let Some(tag) = tag {
            if !is_valid_tag(tag) {
                return Err(ParseReferenceError::InvalidTag {
                    input: shown(input),
                    tag: shown(tag),
                });
            }
            reference.tag = Some(tag.to_owned());
        }
        if let Some(digest) = digest {
            let digest =
                Digest::parse(digest).map_err(|source| ParseReferenceError::InvalidDigest {
                    input: shown(input),
                    source,
                })?;
            reference.digest = Some(digest);
        }
        if reference.tag.is_none() && reference.digest.is_none() {
            reference.tag = Some(DEFAULT_TAG.to_owned());
        }
        Ok(reference)
    }

    /// A reference to `repository` in `registry`, tagged [`DEFAULT_TAG`].
    ///
    /// Both parts are validated and normalized as [`parse`](Self::parse) does, so
    /// `new("docker.io", "ubuntu")` is `docker.io/library/ubuntu:latest`. This is how a
    /// dependency is looked up next to its dependent: same registry, another repository.
    pub fn new(registry: &str, repository: &str) -> Result<Self, ParseReferenceError> {
        let input = format!("{registry}/{repository}");
        if let Some(found) = input.chars().find(|c| c.is_control() || c.is_whitespace()) {
            return Err(ParseReferenceError::InvalidCharacter {
                input: shown(&input),
                found,
            });
        }
        if repository.is_empty() {
            return Err(ParseReferenceError::MissingRepository {
                input: shown(&input),
            });
        }
        if !names_registry(registry) {
            // Written out, `registry/repository` would read as a Docker Hub repository.
            return Err(ParseReferenceError::InvalidRegistry {
                input: shown(&input),
                registry: shown(registry),
                reason: "a registry needs a `.` or a `:PORT` (or must be `localhost`), \
                         else it reads as the first part of a Docker Hub repository",
            });
        }
        let mut reference = RegistryRef::from_parts(&input, registry, repository)?;
        reference.tag = Some(DEFAULT_TAG.to_owned());
        Ok(reference)
    }

    /// Validate and normalize registry and repository; tag and digest are left empty.
    fn from_parts(input: &str, registry: &str, remote: &str) -> Result<Self, ParseReferenceError> {
        let registry = canonical_registry(registry).map_err(|reason| {
            ParseReferenceError::InvalidRegistry {
                input: shown(input),
                registry: shown(registry),
                reason,
            }
        })?;
        // Canonical hosts are lower case, and `oci:…` is how a layout reference starts: a
        // registry host `oci` with a port would print as something that parses as a layout.
        if registry.starts_with(LAYOUT_PREFIX) {
            return Err(ParseReferenceError::InvalidRegistry {
                input: shown(input),
                registry: shown(&registry),
                reason: "a registry host `oci` with a port reads as an `oci:DIR` layout \
                         reference; use the host's address or another name",
            });
        }
        for component in remote.split('/') {
            check_repository_component(component).map_err(|problem| match problem {
                ComponentProblem::Uppercase => ParseReferenceError::UppercaseRepository {
                    input: shown(input),
                    component: shown(component),
                },
                ComponentProblem::Invalid(reason) => ParseReferenceError::InvalidRepository {
                    input: shown(input),
                    component: shown(component),
                    reason,
                },
            })?;
        }
        let repository = if registry == DEFAULT_REGISTRY && !remote.contains('/') {
            format!("{DOCKER_HUB_OFFICIAL}/{remote}")
        } else {
            remote.to_owned()
        };
        let len = registry.len() + 1 + repository.len();
        if len > NAME_MAX_LEN {
            return Err(ParseReferenceError::NameTooLong {
                input: shown(input),
                len,
            });
        }
        Ok(RegistryRef {
            registry,
            repository,
            tag: None,
            digest: None,
        })
    }

    /// The registry, `host[:port]`: `docker.io`, `ghcr.io`, `localhost:5000`, `[::1]:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry: `library/ubuntu`, `team/acme/app`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The tag, if the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference is pinned to one.
    pub fn digest(&self) -> Option<Digest> {
        self.digest
    }

    /// What identifies the manifest in `/v2/<repository>/manifests/<reference>`: the digest
    /// if there is one, else the tag.
    pub fn reference_str(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            // Unreachable through the constructors; fall back to what a registry would assume.
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }

    /// The same repository at another tag. The digest is dropped: it pinned the old tag's
    /// manifest, not necessarily the new one's.
    pub fn with_tag(mut self, tag: &str) -> Result<Self, ParseReferenceError> {
        if !is_valid_tag(tag) {
            return Err(ParseReferenceError::InvalidTag {
                input: shown(&format!("{}/{}:{tag}", self.registry, self.repository)),
                tag: shown(tag),
            });
        }
        self.tag = Some(tag.to_owned());
        self.digest = None;
        Ok(self)
    }

    /// The same reference pinned to `digest`; the tag (if any) is kept for display and for
    /// the tag cache.
    pub fn with_digest(mut self, digest: Digest) -> Self {
        self.digest = Some(digest);
        self
    }

    /// The registry host without the port: `localhost`, `ghcr.io`, `[::1]` (IPv6 keeps its
    /// brackets, as in a URL).
    pub fn host(&self) -> &str {
        split_host_port(&self.registry).0
    }

    /// The registry port, if one was given.
    pub fn port(&self) -> Option<u16> {
        split_host_port(&self.registry)
            .1
            .and_then(|p| p.parse().ok())
    }

    /// Whether the registry is on this machine: `localhost`, `127.x.x.x` or `[::1]`.
    pub fn is_loopback(&self) -> bool {
        let host = self.host();
        if host == "localhost" {
            return true;
        }
        if let Some(v6) = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .and_then(|h| h.parse::<Ipv6Addr>().ok())
        {
            return v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback());
        }
        host.parse::<Ipv4Addr>().is_ok_and(|v4| v4.is_loopback())
    }

    /// The base URL of the registry's API, without the `/v2/` path: `https://ghcr.io`.
    ///
    /// Plain `http://` is used for a loopback registry or when `insecure` is set (the
    /// registry is listed as insecure in the configuration); everything else is `https://`.
    /// Docker Hub's API is served by `registry-1.docker.io`, not by `docker.io`.
    pub fn api_base(&self, insecure: bool) -> String {
        let scheme = if insecure || self.is_loopback() {
            "http"
        } else {
            "https"
        };
        let authority = if self.registry == DEFAULT_REGISTRY {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        };
        format!("{scheme}://{authority}")
    }
}

impl FromStr for RegistryRef {
    type Err = ParseReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RegistryRef::parse(s)
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// An OCI image layout directory, optionally with the tag (the
/// `org.opencontainers.image.ref.name` annotation) of one manifest in its index.
///
/// Written `oci:DIR[:TAG]`. A directory may itself contain `:`, so only the *last* `:`
/// separates a tag, and only when what follows it is a valid tag (which never contains
/// `/`): `oci:/srv/a:b/layout` is the directory `/srv/a:b/layout` without a tag, and
/// `oci:C:\layouts\app` is a Windows path without a tag. Directories may contain spaces, but
/// no control characters and no leading or trailing whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LayoutRef {
    dir: PathBuf,
    tag: Option<String>,
}

impl LayoutRef {
    /// Parse `oci:DIR[:TAG]`.
    pub fn parse(input: &str) -> Result<Self, ParseReferenceError> {
        if input.is_empty() {
            return Err(ParseReferenceError::Empty);
        }
        if let Some(found) = first_bad_layout_char(input) {
            return Err(ParseReferenceError::InvalidCharacter {
                input: shown(input),
                found,
            });
        }
        let Some(rest) = input.strip_prefix(LAYOUT_PREFIX) else {
            return Err(ParseReferenceError::MissingLayoutDir {
                input: shown(input),
            });
        };
        let (dir, tag) = split_layout_tag(rest);
        if dir.is_empty() {
            return Err(ParseReferenceError::MissingLayoutDir {
                input: shown(input),
            });
        }
        if let Some(found) = first_bad_layout_char(dir) {
            // Whitespace right before the tag separator: `oci:dir :v1`.
            return Err(ParseReferenceError::InvalidCharacter {
                input: shown(input),
                found,
            });
        }
        Ok(LayoutRef {
            dir: PathBuf::from(dir),
            tag: tag.map(str::to_owned),
        })
    }

    /// A layout reference from its parts.
    ///
    /// Fails when the result could not be written as `oci:DIR[:TAG]` and read back: a
    /// directory that is empty, not UTF-8, holds control characters or starts or ends with
    /// whitespace; an invalid tag; or, without a tag, a directory whose name ends in
    /// `:TAG` (that would read back as a tag).
    pub fn new(dir: impl Into<PathBuf>, tag: Option<&str>) -> Result<Self, ParseReferenceError> {
        let dir = dir.into();
        let invalid = |reason| ParseReferenceError::InvalidLayoutDir {
            dir: shown(&dir.to_string_lossy()),
            reason,
        };
        let Some(text) = dir.to_str() else {
            return Err(invalid("the path is not valid UTF-8"));
        };
        if text.is_empty() {
            return Err(invalid("the path is empty"));
        }
        if first_bad_layout_char(text).is_some() {
            return Err(invalid(
                "the path holds control characters or starts or ends with whitespace",
            ));
        }
        match tag {
            Some(tag) if !is_valid_tag(tag) => Err(ParseReferenceError::InvalidTag {
                input: shown(&format!("{LAYOUT_PREFIX}{text}:{tag}")),
                tag: shown(tag),
            }),
            None if split_layout_tag(text).1.is_some() => Err(invalid(
                "without a tag, a directory name ending in `:TAG` would read back as that tag; \
                 pass the tag explicitly or rename the directory",
            )),
            _ => Ok(LayoutRef {
                dir,
                tag: tag.map(str::to_owned),
            }),
        }
    }

    /// The layout directory, as written (relative paths stay relative).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The tag, if one was given.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The same directory with another tag.
    pub fn with_tag(mut self, tag: &str) -> Result<Self, ParseReferenceError> {
        if !is_valid_tag(tag) {
            return Err(ParseReferenceError::InvalidTag {
                input: shown(&format!("{LAYOUT_PREFIX}{}:{tag}", self.dir.display())),
                tag: shown(tag),
            });
        }
        self.tag = Some(tag.to_owned());
        Ok(self)
    }
}

impl FromStr for LayoutRef {
    type Err = ParseReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LayoutRef::parse(s)
    }
}

impl fmt::Display for LayoutRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{LAYOUT_PREFIX}{}", self.dir.display())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        Ok(())
    }
}

/// Split `DIR[:TAG]` at the last `:` when a valid tag follows it.
fn split_layout_tag(rest: &str) -> (&str, Option<&str>) {
    match rest.rsplit_once(':') {
        Some((dir, tag)) if is_valid_tag(tag) => (dir, Some(tag)),
        _ => (rest, None),
    }
}

/// A control character anywhere, or whitespace at either end.
fn first_bad_layout_char(s: &str) -> Option<char> {
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Some(c);
    }
    let first = s.chars().next().filter(|c| c.is_whitespace());
    first.or_else(|| s.chars().next_back().filter(|c| c.is_whitespace()))
}

/// Whether the first path component names a registry rather than a repository.
fn names_registry(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost"
}

/// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn is_valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    first_ok
        && tag.len() <= TAG_MAX_LEN
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Why a repository component was rejected.
enum ComponentProblem {
    Uppercase,
    Invalid(&'static str),
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn check_repository_component(component: &str) -> Result<(), ComponentProblem> {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return Err(ComponentProblem::Invalid(
            "the component is empty (look for `//`, or a `/` at the start or end)",
        ));
    };
    if bytes.iter().any(u8::is_ascii_uppercase) {
        return Err(ComponentProblem::Uppercase);
    }
    if let Some(&bad) = bytes
        .iter()
        .find(|&&b| !alnum(b) && !matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(ComponentProblem::Invalid(if bad.is_ascii() {
            "only `a-z`, `0-9`, `.`, `_` and `-` are allowed"
        } else {
            "only ASCII `a-z`, `0-9`, `.`, `_` and `-` are allowed"
        }));
    }
    if !alnum(first) || !alnum(last) {
        return Err(ComponentProblem::Invalid(
            "a component must start and end with a letter or digit",
        ));
    }
    // Every maximal run of separators must be `.`, `_`, `__` or any number of `-`.
    let runs_ok = component
        .split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        .all(|run| {
            run.is_empty() || matches!(run, "." | "_" | "__") || run.bytes().all(|b| b == b'-')
        });
    if runs_ok {
        Ok(())
    } else {
        Err(ComponentProblem::Invalid(
            "letters and digits may only be joined by `.`, `_`, `__` or a run of `-`",
        ))
    }
}

/// Validate `host[:port]` and return its canonical spelling.
fn canonical_registry(raw: &str) -> Result<String, &'static str> {
    let (mut out, port) = if let Some(bracketed) = raw.strip_prefix('[') {
        let (addr, after) = bracketed
            .split_once(']')
            .ok_or("an IPv6 address must be closed with `]`")?;
        let ip: Ipv6Addr = addr
            .parse()
            .map_err(|_| "the part in `[]` is not an IPv6 address")?;
        let port = if after.is_empty() {
            None
        } else {
            Some(
                after
                    .strip_prefix(':')
                    .ok_or("only `:PORT` may follow an IPv6 address")?,
            )
        };
        (format!("[{ip}]"), port)
    } else {
        let (host, port) = match raw.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (raw, None),
        };
        check_host_name(host)?;
        (host.to_ascii_lowercase(), port)
    };
    if let Some(port) = port {
        let number = port
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| port.parse::<u16>().ok())
            .flatten()
            .filter(|&n| n != 0)
            .ok_or(if port.is_empty() {
                "the port after `:` is empty"
            } else {
                "the port must be a number from 1 to 65535"
            })?;
        out.push(':');
        out.push_str(&number.to_string());
    }
    if out == DOCKER_HUB_ALIAS {
        out = DEFAULT_REGISTRY.to_owned();
    }
    Ok(out)
}

/// A DNS name or IPv4 address: `.`-separated labels of letters, digits and inner `-`.
fn check_host_name(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("the host name is empty");
    }
    for label in host.split('.') {
        let bytes = label.as_bytes();
        let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
            return Err(
                "a host name has an empty part (look for `..`, or a `.` at the start or end)",
            );
        };
        if !bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        {
            return Err("a host name may only hold letters, digits, `-` and `.`");
        }
        if first == b'-' || last == b'-' {
            return Err("a part of a host name may not start or end with `-`");
        }
    }
    Ok(())
}

/// Split a canonical registry into host and port.
fn split_host_port(registry: &str) -> (&str, Option<&str>) {
    if registry.starts_with('[') {
        match registry.split_once("]:") {
            Some((host, port)) => (
                registry.get(..host.len() + 1).unwrap_or(registry),
                Some(port),
            ),
            None => (registry, None),
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        }
    }
}

/// The input for an error message: at most [`SHOWN_MAX_CHARS`] characters.
fn shown(input: &str) -> String {
    match input.char_indices().nth(SHOWN_MAX_CHARS) {
        Some((cut, _)) => format!("{}…", input.get(..cut).unwrap_or_default()),
        None => input.to_owned(),
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SHA: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn reg(s: &str) -> RegistryRef {
        match Reference::parse(s) {
            Ok(Reference::Registry(r)) => r,
            other => panic!("{s:?} did not parse as a registry reference: {other:?}"),
        }
    }

    fn layout(s: &str) -> LayoutRef {
        match Reference::parse(s) {
            Ok(Reference::Layout(l)) => l,
            other => panic!("{s:?} did not parse as a layout reference: {other:?}"),
        }
    }

    fn err(s: &str) -> ParseReferenceError {
        Reference::parse(s).expect_err(s)
    }

    /// (input, registry, repository, tag, canonical display)
    #[test]
    fn real_world_registry_forms() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, &str, Option<&str>, &str)] = &[
            ("ubuntu", "docker.io", "library/ubuntu", Some("latest"), "docker.io/library/ubuntu:latest"),
            ("ubuntu:22.04", "docker.io", "library/ubuntu", Some("22.04"), "docker.io/library/ubuntu:22.04"),
            ("library/ubuntu", "docker.io", "library/ubuntu", Some("latest"), "docker.io/library/ubuntu:latest"),
            ("docker.io/ubuntu", "docker.io", "library/ubuntu", Some("latest"), "docker.io/library/ubuntu:latest"),
            ("index.docker.io/ubuntu", "docker.io", "library/ubuntu", Some("latest"), "docker.io/library/ubuntu:latest"),
            ("index.docker.io/org/img:1", "docker.io", "org/img", Some("1"), "docker.io/org/img:1"),
            ("bitnami/redis:7.2", "docker.io", "bitnami/redis", Some("7.2"), "docker.io/bitnami/redis:7.2"),
            ("localhost/a", "localhost", "a", Some("latest"), "localhost/a:latest"),
            ("localhost:5000/a/b", "localhost:5000", "a/b", Some("latest"), "localhost:5000/a/b:latest"),
            ("127.0.0.1:5000/team/acme/app:1.0.0", "127.0.0.1:5000", "team/acme/app", Some("1.0.0"), "127.0.0.1:5000/team/acme/app:1.0.0"),
            ("[::1]:5000/x", "[::1]:5000", "x", Some("latest"), "[::1]:5000/x:latest"),
            ("[0:0:0:0:0:0:0:1]:5000/x", "[::1]:5000", "x", Some("latest"), "[::1]:5000/x:latest"),
            ("[fe80::1]/x", "[fe80::1]", "x", Some("latest"), "[fe80::1]/x:latest"),
            ("Registry.Example.COM:0443/a", "registry.example.com:443", "a", Some("latest"), "registry.example.com:443/a:latest"),
            ("quay.io/coreos/etcd:v3.5.0", "quay.io", "coreos/etcd", Some("v3.5.0"), "quay.io/coreos/etcd:v3.5.0"),
            ("gcr.io/distroless/static-debian12:nonroot", "gcr.io", "distroless/static-debian12", Some("nonroot"), "gcr.io/distroless/static-debian12:nonroot"),
            ("my-registry:8080/a__b/c--d/e.f_g", "my-registry:8080", "a__b/c--d/e.f_g", Some("latest"), "my-registry:8080/a__b/c--d/e.f_g:latest"),
            ("registry.local/x:_private", "registry.local", "x", Some("_private"), "registry.local/x:_private"),
        ];
        for &(input, registry, repository, tag, display) in cases {
            let r = reg(input);
            assert_eq!(r.registry(), registry, "{input}");
            assert_eq!(r.repository(), repository, "{input}");
            assert_eq!(r.tag(), tag, "{input}");
            assert_eq!(r.digest(), None, "{input}");
            assert_eq!(r.to_string(), display, "{input}");
            assert_eq!(reg(display), r, "{input}: canonical form must parse back");
        }
    }

    #[test]
    fn digests() {
        let full = format!("ghcr.io/org/img:tag@{SHA}");
        let r = reg(&full);
        assert_eq!(r.registry(), "ghcr.io");
        assert_eq!(r.repository(), "org/img");
        assert_eq!(r.tag(), Some("tag"));
        assert_eq!(r.digest(), Some(Digest::parse(SHA).unwrap()));
        assert_eq!(r.reference_str(), SHA);
        assert_eq!(r.to_string(), full);

        // A digest alone does not get the default tag.
        let r = reg(&format!("ubuntu@{SHA}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.reference_str(), SHA);
        assert_eq!(r.to_string(), format!("docker.io/library/ubuntu@{SHA}"));

        let r = reg(&format!("localhost:5000/a@{SHA}"));
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.tag(), None);
    }

    #[test]
    fn builders_and_accessors() {
        let r = reg("127.0.0.1:5000/team/acme/app:1.0.0");
        assert_eq!(r.reference_str(), "1.0.0");
        assert_eq!(r.name(), "127.0.0.1:5000/team/acme/app");
        assert_eq!(r.host(), "127.0.0.1");
        assert_eq!(r.port(), Some(5000));

        let d = Digest::parse(SHA).unwrap();
        let pinned = r.clone().with_digest(d);
        assert_eq!(pinned.tag(), Some("1.0.0"));
        assert_eq!(pinned.reference_str(), SHA);

        let retagged = pinned.with_tag("2.0.0").unwrap();
        assert_eq!(retagged.digest(), None, "a new tag drops the old digest");
        assert_eq!(retagged.to_string(), "127.0.0.1:5000/team/acme/app:2.0.0");
        assert!(matches!(
            r.clone().with_tag("-bad"),
            Err(ParseReferenceError::InvalidTag { .. })
        ));

        let dep = RegistryRef::new(r.registry(), "team/acme/python").unwrap();
        assert_eq!(dep.to_string(), "127.0.0.1:5000/team/acme/python:latest");
        let hub = RegistryRef::new("index.docker.io", "ubuntu").unwrap();
        assert_eq!(hub.to_string(), "docker.io/library/ubuntu:latest");
        assert!(RegistryRef::new("docker.io", "").is_err());
        assert!(RegistryRef::new("docker.io", "A").is_err());
        assert!(RegistryRef::new("bad host", "a").is_err());
        assert!(matches!(
            RegistryRef::new("myhost", "a"),
            Err(ParseReferenceError::InvalidRegistry { .. })
        ));
        assert_eq!(
            RegistryRef::new("myhost:80", "a").unwrap().to_string(),
            "myhost:80/a:latest"
        );
        assert!(RegistryRef::new("", "a").is_err());
    }

    #[test]
    fn loopback_and_api_base() {
        // (input, loopback, host, api_base(false), api_base(true))
        #[rustfmt::skip]
        let cases = [
            ("localhost/a", true, "localhost", "http://localhost", "http://localhost"),
            ("localhost:5000/a", true, "localhost", "http://localhost:5000", "http://localhost:5000"),
            ("127.0.0.1:5000/a", true, "127.0.0.1", "http://127.0.0.1:5000", "http://127.0.0.1:5000"),
            ("127.8.9.10/a", true, "127.8.9.10", "http://127.8.9.10", "http://127.8.9.10"),
            ("[::1]:5000/a", true, "[::1]", "http://[::1]:5000", "http://[::1]:5000"),
            ("[::ffff:127.0.0.1]/a", true, "[::ffff:127.0.0.1]", "http://[::ffff:127.0.0.1]", "http://[::ffff:127.0.0.1]"),
            ("[fe80::1]:5000/a", false, "[fe80::1]", "https://[fe80::1]:5000", "http://[fe80::1]:5000"),
            ("128.0.0.1/a", false, "128.0.0.1", "https://128.0.0.1", "http://128.0.0.1"),
            ("localhost.example.com/a", false, "localhost.example.com", "https://localhost.example.com", "http://localhost.example.com"),
            ("ghcr.io/a", false, "ghcr.io", "https://ghcr.io", "http://ghcr.io"),
            ("ubuntu", false, "docker.io", "https://registry-1.docker.io", "http://registry-1.docker.io"),
        ];
        for (input, loopback, host, base, insecure_base) in cases {
            let r = reg(input);
            assert_eq!(r.is_loopback(), loopback, "{input}");
            assert_eq!(r.host(), host, "{input}");
            assert_eq!(r.api_base(false), base, "{input}");
            assert_eq!(r.api_base(true), insecure_base, "{input}");
        }
        assert_eq!(reg("ghcr.io/a").port(), None);
        assert_eq!(reg("[::1]:5000/a").port(), Some(5000));
    }

    #[test]
    fn layout_forms() {
        let l = layout("oci:/tmp/layout:v1");
        assert_eq!(l.dir(), Path::new("/tmp/layout"));
        assert_eq!(l.tag(), Some("v1"));
        assert_eq!(l.to_string(), "oci:/tmp/layout:v1");

        let l = layout("oci:./dir");
        assert_eq!(l.dir(), Path::new("./dir"));
        assert_eq!(l.tag(), None);
        assert_eq!(l.to_string(), "oci:./dir");

        for (input, dir, tag) in [
            ("oci:dir", "dir", None),
            ("oci:/srv/a:b/layout", "/srv/a:b/layout", None),
            ("oci:/srv/a:b/layout:1.0", "/srv/a:b/layout", Some("1.0")),
            ("oci:/tmp/x:", "/tmp/x:", None),
            ("oci:/tmp/x:-nope", "/tmp/x:-nope", None),
            ("oci:/tmp/x:v1:v2", "/tmp/x:v1", Some("v2")),
            (r"oci:C:\layouts\app", r"C:\layouts\app", None),
            ("oci:C:/layouts/app:v1", "C:/layouts/app", Some("v1")),
            (
                "oci:/home/me/My Images:latest",
                "/home/me/My Images",
                Some("latest"),
            ),
        ] {
            let l = layout(input);
            assert_eq!(l.dir(), Path::new(dir), "{input}");
            assert_eq!(l.tag(), tag, "{input}");
            assert_eq!(l.to_string(), input, "{input}");
        }

        let l = LayoutRef::new("/tmp/layout", Some("v1")).unwrap();
        assert_eq!(l, layout("oci:/tmp/layout:v1"));
        assert_eq!(
            LayoutRef::new("/tmp/layout", None)
                .unwrap()
                .with_tag("v2")
                .unwrap()
                .to_string(),
            "oci:/tmp/layout:v2"
        );
        // Only expressible with a tag.
        assert!(LayoutRef::new("/tmp/x:v1", None).is_err());
        assert!(LayoutRef::new("/tmp/x:v1", Some("v2")).is_ok());
        assert!(LayoutRef::new("", None).is_err());
        assert!(LayoutRef::new("/tmp/x", Some("")).is_err());
        assert!(LayoutRef::new("/tmp/\0x", None).is_err());
        assert!(LayoutRef::new(" /tmp/x", None).is_err());
    }

    #[test]
    fn rejections() {
        use ParseReferenceError as E;
        assert!(matches!(err(""), E::Empty));
        assert!(matches!(
            err("UPPER/case"),
            E::UppercaseRepository { ref component, .. } if component == "UPPER"
        ));
        assert!(matches!(err("Ubuntu"), E::UppercaseRepository { .. }));
        assert!(matches!(
            err("ghcr.io/Org/img"),
            E::UppercaseRepository { .. }
        ));
        assert!(matches!(
            err("a//b"),
            E::InvalidRepository { ref component, .. } if component.is_empty()
        ));
        assert!(matches!(err("a/b:"), E::InvalidTag { ref tag, .. } if tag.is_empty()));
        assert!(matches!(err("a/b:.x"), E::InvalidTag { .. }));
        assert!(matches!(
            err(&format!("a:{}", "x".repeat(129))),
            E::InvalidTag { .. }
        ));
        assert!(reg(&format!("a:{}", "x".repeat(128))).tag().is_some());
        assert!(matches!(
            err("a@sha256:short"),
            E::InvalidDigest {
                source: ParseDigestError::WrongLength { .. },
                ..
            }
        ));
        assert!(matches!(err("a@md5:abcd"), E::InvalidDigest { .. }));
        assert!(matches!(
            err(&format!("a@{}", SHA.to_uppercase())),
            E::InvalidDigest { .. }
        ));
        assert!(matches!(
            err(&format!("a@{SHA}@{SHA}")),
            E::InvalidDigest { .. }
        ));
        assert!(matches!(err(":tag"), E::MissingRepository { .. }));
        assert!(matches!(
            err(&format!("@{SHA}")),
            E::MissingRepository { .. }
        ));
        assert!(matches!(
            err("localhost:5000/"),
            E::MissingRepository { .. }
        ));
        assert!(matches!(err("oci:"), E::MissingLayoutDir { .. }));
        assert!(matches!(err("oci::v1"), E::MissingLayoutDir { .. }));
        assert!(matches!(
            err("ubuntu 22.04"),
            E::InvalidCharacter { found: ' ', .. }
        ));
        assert!(matches!(err(" ubuntu"), E::InvalidCharacter { .. }));
        assert!(matches!(err("ubuntu\n"), E::InvalidCharacter { .. }));
        assert!(matches!(
            err("ubu\0ntu"),
            E::InvalidCharacter { found: '\0', .. }
        ));
        assert!(matches!(
            err("oci:/tmp/\0x"),
            E::InvalidCharacter { found: '\0', .. }
        ));
        assert!(matches!(err("oci: /tmp/x"), E::InvalidCharacter { .. }));
        assert!(matches!(err("oci:/tmp/x :v1"), E::InvalidCharacter { .. }));
        for bad in [
            "a/-b", "a/b-", "a/.b", "a/b_", "a___b", "a..b", "a._b", "a/b/", "/a", "ünï/x",
        ] {
            assert!(matches!(err(bad), E::InvalidRepository { .. }), "{bad:?}");
        }
        for bad in [
            "localhost:/a",
            "localhost:0/a",
            "localhost:65536/a",
            "localhost:50a/a",
            "a:1:2/b",
            ".example.com/a",
            "ex..ample.com/a",
            "-x.com/a",
            "x-.com/a",
            "ex_ample.com/a",
            "[::1/a",
            "[::1]x/a",
            "[zz::1]/a",
            "[:]/a",
            "[fe80::1%eth0]/a",
        ] {
            assert!(matches!(err(bad), E::InvalidRegistry { .. }), "{bad:?}");
        }
        // Found by the fuzzer: it printed as `oci:255/…`, a layout reference.
        for bad in ["Oci:00255/team/acme/app:1.0.0", "OCI:5000/a"] {
            assert!(matches!(err(bad), E::InvalidRegistry { .. }), "{bad:?}");
        }
        // Without `.` or `:` the first component is part of the repository.
        assert!(matches!(err("[]/a"), E::InvalidRepository { .. }));
    }

    #[test]
    fn name_length_limit() {
        // docker.io/library/ is 18 characters, so 237 more reach exactly 255.
        let ok = "a".repeat(NAME_MAX_LEN - "docker.io/library/".len());
        assert_eq!(reg(&ok).name().len(), NAME_MAX_LEN);
        let long = format!("{ok}a");
        assert!(matches!(
            err(&long),
            ParseReferenceError::NameTooLong { len: 256, .. }
        ));
        let long = format!("ghcr.io/{}", "b".repeat(NAME_MAX_LEN));
        assert!(matches!(
            err(&long),
            ParseReferenceError::NameTooLong { .. }
        ));
    }

    #[test]
    fn error_messages_quote_a_shortened_input() {
        let message = err(&format!("Ubuntu{}", "x".repeat(10_000))).to_string();
        assert!(
            message.contains("repository names must be lowercase"),
            "{message}"
        );
        assert!(message.contains('…'), "{message}");
        assert!(message.len() < 600, "{} bytes: {message}", message.len());

        let message = err("a//b").to_string();
        assert!(message.contains("\"a//b\""), "{message}");
        let message = err("a@sha256:short").to_string();
        assert!(
            message.contains("sha256:short") && message.contains("64"),
            "{message}"
        );
        let message = err("oci:").to_string();
        assert!(message.contains("oci:DIR"), "{message}");
    }

    #[test]
    fn oci_prefix_wins_over_a_host_named_oci() {
        assert!(matches!(
            Reference::parse("oci:5000/repo"),
            Ok(Reference::Layout(_))
        ));
        assert_eq!(reg("oci.lan:5000/repo").registry(), "oci.lan:5000");
    }

    // Strategies for valid registry references.

    fn component() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,4}(([._]|__|-{1,3})[a-z0-9]{1,4}){0,2}"
    }

    fn repository() -> impl Strategy<Value = String> {
        prop::collection::vec(component(), 1..4).prop_map(|c| c.join("/"))
    }

    fn registry() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("docker.io".to_owned()),
            Just("localhost".to_owned()),
            (1u16..).prop_map(|p| format!("localhost:{p}")),
            "[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?){1,3}",
            ("[a-z][a-z0-9]{0,6}", 1u16..).prop_map(|(h, p)| format!("{h}:{p}")),
            (any::<[u8; 4]>(), 1u16..)
                .prop_map(|(ip, p)| { format!("{}:{p}", std::net::Ipv4Addr::from(ip)) }),
            (any::<[u16; 8]>(), proptest::option::of(1u16..)).prop_map(|(ip, p)| {
                let ip = Ipv6Addr::from(ip);
                match p {
                    Some(p) => format!("[{ip}]:{p}"),
                    None => format!("[{ip}]"),
                }
            }),
        ]
    }

    fn tag() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,20}"
    }

    fn digest() -> impl Strategy<Value = Digest> {
        any::<[u8; 32]>().prop_map(|raw| {
            cache_core::Digest::from_raw(cache_core::Algorithm::Sha256, &raw).unwrap()
        })
    }

    fn registry_ref() -> impl Strategy<Value = RegistryRef> {
        (
            registry(),
            repository(),
            proptest::option::of(tag()),
            proptest::option::of(digest()),
        )
            .prop_filter_map("name too long", |(registry, repository, tag, digest)| {
                let mut r = RegistryRef::new(&registry, &repository).ok()?;
                if let Some(tag) = tag {
                    r = r.with_tag(&tag).ok()?;
                }
                if let Some(digest) = digest {
                    r = r.with_digest(digest);
                    if r.tag().is_some() && r.tag() == Some(DEFAULT_TAG) {
                        // Keep some digest-only references in the mix.
                        r.tag = None;
                    }
                }
                Some(r)
            })
    }

    /// Text built from the characters references are made of, and valid references with a
    /// few characters spliced in, to reach deep parser paths.
    fn reference_like() -> impl Strategy<Value = String> {
        prop_oneof![
            "(oci:)?[a-zA-Z0-9:/@._ \\[\\]-]{0,48}",
            (
                registry_ref(),
                any::<prop::sample::Index>(),
                0usize..4,
                "[a-zA-Z0-9:/@._\\[\\]-]{0,3}",
            )
                .prop_map(|(r, at, remove, insert)| {
                    let mut chars: Vec<char> = r.to_string().chars().collect();
                    let at = at.index(chars.len() + 1);
                    let end = (at + remove).min(chars.len());
                    chars.splice(at..end, insert.chars());
                    chars.into_iter().collect()
                }),
        ]
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(r in registry_ref()) {
            let text = r.to_string();
            let parsed = RegistryRef::parse(&text);
            prop_assert_eq!(parsed.as_ref(), Ok(&r), "{}", text);
            prop_assert_eq!(Reference::parse(&text), Ok(Reference::Registry(r.clone())));
            // Everything a registry reference holds is also a valid cache key.
            if let Some(tag) = r.tag() {
                prop_assert!(cache_core::RefKey::new(r.registry(), r.repository(), tag).is_ok());
            }
        }

        #[test]
        fn written_references_parse_to_their_parts(
            registry in proptest::option::of(registry()),
            repository in repository(),
            tag in proptest::option::of(tag()),
        ) {
            // Without a registry, a first component with `.` is read as a host (Docker's rule).
            let expected_repository = match (&registry, repository.split_once('/')) {
                (None, Some((first, rest))) if names_registry(first) => rest.to_owned(),
                _ => repository.clone(),
            };
            let mut text = match &registry {
                Some(registry) => format!("{registry}/{repository}"),
                None => repository.clone(),
            };
            if let Some(tag) = &tag {
                text = format!("{text}:{tag}");
            }
            if let Ok(r) = RegistryRef::parse(&text) {
                prop_assert!(r.repository().ends_with(&expected_repository));
                prop_assert_eq!(r.tag(), Some(tag.as_deref().unwrap_or(DEFAULT_TAG)));
                prop_assert_eq!(RegistryRef::parse(&r.to_string()), Ok(r));
            } else {
                // A well-formed reference may only fail on the length limit, or when its
                // first component was taken for a host and is not a valid host name.
                let e = RegistryRef::parse(&text).unwrap_err();
                let host_like = expected_repository != repository;
                prop_assert!(
                    matches!(e, ParseReferenceError::NameTooLong { .. })
                        || (host_like && matches!(e, ParseReferenceError::InvalidRegistry { .. })),
                    "{}: {}", text, e
                );
            }
        }

        #[test]
        fn constructed_references_round_trip(
            registry in "[a-zA-Z0-9.:\\[\\]-]{1,16}",
            repository in repository(),
        ) {
            if let Ok(r) = RegistryRef::new(&registry, &repository) {
                prop_assert_eq!(RegistryRef::parse(&r.to_string()), Ok(r));
            }
        }

        #[test]
        fn layout_round_trip(dir in "[a-zA-Z0-9/._: -]{1,30}", tag in proptest::option::of(tag())) {
            if let Ok(l) = LayoutRef::new(&dir, tag.as_deref()) {
                let text = l.to_string();
                prop_assert_eq!(Reference::parse(&text), Ok(Reference::Layout(l)), "{}", text);
            }
        }

        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = Reference::parse(&s);
            let _ = RegistryRef::parse(&s);
            let _ = LayoutRef::parse(&s);
        }

        #[test]
        fn whatever_parses_re_displays_to_itself(s in reference_like()) {
            if let Ok(r) = Reference::parse(&s) {
                let text = r.to_string();
                let again = Reference::parse(&text);
                prop_assert_eq!(again.as_ref(), Ok(&r), "{:?} -> {:?}", s, text);
                prop_assert_eq!(again.map(|a| a.to_string()), Ok(text));
                if let Reference::Registry(r) = &r {
                    prop_assert!(r.name().len() <= NAME_MAX_LEN);
                    if let Some(tag) = r.tag() {
                        prop_assert!(cache_core::RefKey::new(r.registry(), r.repository(), tag).is_ok());
                    }
                }
            }
        }

        #[test]
        fn arbitrary_text_that_parses_re_displays_to_itself(s in any::<String>()) {
            if let Ok(r) = Reference::parse(&s) {
                prop_assert_eq!(Reference::parse(&r.to_string()), Ok(r));
            }
        }
    }
}

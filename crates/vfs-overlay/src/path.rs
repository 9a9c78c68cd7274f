//! Normalized, rooted paths.
//!
//! Every path that enters the VFS goes through [`VfsPath::new`] once. After that the rest of
//! the crate can compare, split and join paths as plain strings, because the representation
//! is canonical: it starts with `/`, has no empty, `.` or `..` components and no trailing `/`
//! (except the root itself).

use std::fmt;

use crate::error::VfsError;

/// An absolute, lexically normalized path inside a virtual filesystem.
///
/// `..` is applied lexically and stops at `/`, so no `VfsPath` can name anything above the
/// root whatever the input says. Symlinks are not consulted here; they are resolved later
/// by [`crate::resolve`] against a concrete filesystem.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VfsPath(String);

impl VfsPath {
    /// The root, `/`.
    pub fn root() -> Self {
        VfsPath("/".to_owned())
    }

    /// Normalizes `raw`. Relative input is taken relative to `/`.
    ///
    /// # Errors
    /// [`VfsError::InvalidPath`] if `raw` contains a NUL byte, which no real filesystem can
    /// store and which would truncate the name when handed to the OS.
    pub fn new(raw: &str) -> Result<Self, VfsError> {
        Self::root().join(raw)
    }

    /// The path as a string, always starting with `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is `/`.
    pub fn is_root(&self) -> bool {
        self.0.len() == 1
    }

    /// The names from the root down; empty for `/`.
    pub fn components(&self) -> impl DoubleEndedIterator<Item = &str> + '_ {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// The last component, or `None` for `/`.
    pub fn file_name(&self) -> Option<&str> {
        self.components().next_back()
    }

    /// The containing directory, or `None` for `/`.
    pub fn parent(&self) -> Option<VfsPath> {
        if self.is_root() {
            return None;
        }
        match self.0.rfind('/') {
            Some(0) | None => Some(Self::root()),
            Some(i) => self.0.get(..i).map(|p| VfsPath(p.to_owned())),
        }
    }

    /// Appends `rel` and normalizes the result. As with [`std::path::Path::join`], an
    /// absolute `rel` replaces `self`; `..` in `rel` can climb out of `self` but never out
    /// of `/`.
    ///
    /// # Errors
    /// [`VfsError::InvalidPath`] if `rel` contains a NUL byte.
    pub fn join(&self, rel: &str) -> Result<VfsPath, VfsError> {
        if rel.contains('\0') {
            return Err(VfsError::InvalidPath {
                path: rel.to_owned(),
                reason: "contains a NUL byte",
            });
        }
        let mut parts: Vec<&str> = if rel.starts_with('/') {
            Vec::new()
        } else {
            self.components().collect()
        };
        for c in rel.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                name => parts.push(name),
            }
        }
        Ok(Self::from_parts(parts))
    }

    /// `self/name` for a single, already valid component. Used by code that walks a tree
    /// and therefore knows `name` came from a directory listing or a split path.
    pub(crate) fn child(&self, name: &str) -> VfsPath {
        debug_assert!(!name.contains('/') && name != "." && name != ".." && !name.is_empty());
        if self.is_root() {
            VfsPath(format!("/{name}"))
        } else {
            VfsPath(format!("{}/{name}", self.0))
        }
    }

    /// Whether `prefix` is `self` or one of its ancestors, compared by component (so `/opt`
    /// is not a prefix of `/optional`).
    pub fn starts_with(&self, prefix: &VfsPath) -> bool {
        prefix.is_root()
            || self.0 == prefix.0
            || (self.0.starts_with(&prefix.0)
                && self.0.as_bytes().get(prefix.0.len()) == Some(&b'/'))
    }

    /// The part of `self` below `prefix`, as a path rooted at `/` (so that it can be handed
    /// to the filesystem mounted at `prefix`). `None` if `prefix` is not an ancestor.
    pub fn strip_prefix(&self, prefix: &VfsPath) -> Option<VfsPath> {
        if !self.starts_with(prefix) {
            return None;
        }
        if prefix.is_root() {
            return Some(self.clone());
        }
        match self.0.get(prefix.0.len()..) {
            Some("") | None => Some(Self::root()),
            Some(rest) => Some(VfsPath(rest.to_owned())),
        }
    }

    /// `self` followed by the components of `rest`: maps a path inside a mounted
    /// filesystem back to the path in the union.
    pub(crate) fn concat(&self, rest: &VfsPath) -> VfsPath {
        if rest.is_root() {
            self.clone()
        } else if self.is_root() {
            rest.clone()
        } else {
            VfsPath(format!("{}{}", self.0, rest.0))
        }
    }

    /// `self` followed by `names`, each an already valid component (as [`VfsPath::child`]),
    /// built in one allocation.
    pub(crate) fn with_components<'b>(&self, names: impl Iterator<Item = &'b str>) -> VfsPath {
        let mut s = if self.is_root() {
            String::new()
        } else {
            self.0.clone()
        };
        for name in names {
            debug_assert!(!name.contains('/') && name != "." && name != ".." && !name.is_empty());
            s.push('/');
            s.push_str(name);
        }
        if s.is_empty() {
            return Self::root();
        }
        VfsPath(s)
    }

    /// The containing directory as a string (`/` for `/` and its children), without
    /// allocating: maps keyed by `VfsPath` can be probed with it (see the `Borrow` impl).
    pub(crate) fn parent_str(&self) -> &str {
        match self.0.rfind('/') {
            Some(0) | None => "/",
            Some(i) => self.0.get(..i).unwrap_or("/"),
        }
    }

    /// The first `end` bytes of the path (`end` at a component boundary, `0` for `/`).
    pub(crate) fn prefix_str(&self, end: usize) -> &str {
        match self.0.get(..end) {
            Some("") | None => "/",
            Some(p) => p,
        }
    }

    /// The part after the first `end` bytes (`end` at a component boundary), rooted at `/`.
    pub(crate) fn tail(&self, end: usize) -> VfsPath {
        match self.0.get(end..) {
            Some("") | None => Self::root(),
            Some(rest) => VfsPath(rest.to_owned()),
        }
    }

    fn from_parts(parts: Vec<&str>) -> VfsPath {
        if parts.is_empty() {
            return Self::root();
        }
        let mut s = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
        for p in parts {
            s.push('/');
            s.push_str(p);
        }
        VfsPath(s)
    }
}

impl fmt::Display for VfsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for VfsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Hashes, compares and orders as the string it holds, so maps keyed by `VfsPath` can be
/// probed with a `&str` (a parent or prefix slice) without building a path.
impl std::borrow::Borrow<str> for VfsPath {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for VfsPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> VfsPath {
        VfsPath::new(s).unwrap()
    }

    #[test]
    fn normalizes() {
        assert_eq!(p("").as_str(), "/");
        assert_eq!(p("a/b").as_str(), "/a/b");
        assert_eq!(p("//a/./b//c/").as_str(), "/a/b/c");
        assert_eq!(p("/a/b/../c").as_str(), "/a/c");
        assert_eq!(p("/../../etc/passwd").as_str(), "/etc/passwd");
        assert_eq!(p("a/../../..").as_str(), "/");
        assert_eq!(p("/...").as_str(), "/...");
    }

    #[test]
    fn rejects_nul() {
        let err = VfsPath::new("/a\0b").unwrap_err();
        assert!(matches!(err, VfsError::InvalidPath { .. }));
        assert!(err.to_string().contains("a\\0b"));
    }

    #[test]
    fn parent_and_name() {
        assert_eq!(p("/").parent(), None);
        assert_eq!(p("/a").parent(), Some(p("/")));
        assert_eq!(p("/a/b/c").parent(), Some(p("/a/b")));
        assert_eq!(p("/a/b").file_name(), Some("b"));
        assert_eq!(p("/").file_name(), None);
        assert_eq!(p("/a/b").components().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn prefixes() {
        assert!(p("/opt/a").starts_with(&p("/opt")));
        assert!(p("/opt").starts_with(&p("/opt")));
        assert!(!p("/optional").starts_with(&p("/opt")));
        assert!(p("/x").starts_with(&p("/")));
        assert_eq!(p("/opt/a/b").strip_prefix(&p("/opt")), Some(p("/a/b")));
        assert_eq!(p("/opt").strip_prefix(&p("/opt")), Some(p("/")));
        assert_eq!(p("/opt").strip_prefix(&p("/")), Some(p("/opt")));
        assert_eq!(p("/optional").strip_prefix(&p("/opt")), None);
    }

    #[test]
    fn join_absolute_replaces() {
        assert_eq!(p("/a/b").join("/c").unwrap(), p("/c"));
        assert_eq!(p("/a/b").join("../c").unwrap(), p("/a/c"));
        assert_eq!(p("/a").join("../../../c").unwrap(), p("/c"));
    }

    fn raw_path() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                Just("".to_owned()),
                Just(".".to_owned()),
                Just("..".to_owned()),
                "[a-c.]{1,3}",
            ],
            0..8,
        )
        .prop_flat_map(|parts| (Just(parts.join("/")), any::<bool>()))
        .prop_map(|(s, abs)| if abs { format!("/{s}") } else { s })
    }

    proptest! {
        #[test]
        fn idempotent(raw in raw_path()) {
            let once = VfsPath::new(&raw).unwrap();
            let twice = VfsPath::new(once.as_str()).unwrap();
            prop_assert_eq!(&once, &twice);
        }

        #[test]
        fn canonical_shape(raw in raw_path()) {
            let n = VfsPath::new(&raw).unwrap();
            prop_assert!(n.as_str().starts_with('/'));
            prop_assert!(n.is_root() || !n.as_str().ends_with('/'));
            for c in n.components() {
                prop_assert!(!c.is_empty() && c != "." && c != "..");
            }
        }

        #[test]
        fn never_escapes_root(raw in raw_path(), base in raw_path()) {
            // Whatever is joined, the result is still a descendant of `/` and stripping the
            // root gives it back: there is no representation of "above the root".
            let j = VfsPath::new(&base).unwrap().join(&raw).unwrap();
            prop_assert_eq!(j.strip_prefix(&VfsPath::root()), Some(j.clone()));
            prop_assert!(!j.components().any(|c| c == ".."));
        }

        #[test]
        fn join_matches_concatenation(base in raw_path(), rel in raw_path()) {
            let b = VfsPath::new(&base).unwrap();
            let joined = b.join(&rel).unwrap();
            let concat = VfsPath::new(&format!("{}/{}", b.as_str(), rel)).unwrap();
            if rel.starts_with('/') {
                prop_assert_eq!(joined, VfsPath::new(&rel).unwrap());
            } else {
                prop_assert_eq!(joined, concat);
            }
        }

        #[test]
        fn strip_then_join_roundtrips(a in raw_path(), b in raw_path()) {
            let prefix = VfsPath::new(&a).unwrap();
            let full = prefix.join(VfsPath::new(&b).unwrap().as_str().trim_start_matches('/')).unwrap();
            if let Some(rest) = full.strip_prefix(&prefix) {
                let back = prefix.join(rest.as_str().trim_start_matches('/')).unwrap();
                prop_assert_eq!(back, full);
            }
        }
    }
}

//! Absolute, normalized paths for mount points and sub-paths inside volumes.
//!
//! Choice: harmless spellings are *normalized* (`//x` → `/x`, `/a/./b` → `/a/b`, a
//! trailing slash is dropped), while `..` is *rejected* anywhere. `..` is never needed in
//! a well-formed manifest, and silently clamping `/../../x` to `/x` would hide a hostile or
//! broken manifest instead of reporting it.

use std::fmt;

/// An absolute path with no `.`, `..` or empty components; `/` is the root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AbsPath(String);

impl AbsPath {
    /// The root, `/`.
    pub fn root() -> Self {
        Self("/".to_owned())
    }

    /// Normalizes `text`, or says why it cannot be a mount path.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        if !text.starts_with('/') {
            return Err("must be absolute (start with `/`)");
        }
        if text.contains('\0') {
            return Err("must not contain NUL");
        }
        let mut out = String::with_capacity(text.len());
        for part in text.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err("must not contain `..`"),
                part => {
                    out.push('/');
                    out.push_str(part);
                }
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        Ok(Self(out))
    }

    /// The normalized text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AbsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalizes_and_rejects() {
        for (input, want) in [
            ("/", "/"),
            ("//x", "/x"),
            ("/a/./b", "/a/b"),
            ("/a/b/", "/a/b"),
            ("/./", "/"),
        ] {
            assert_eq!(AbsPath::parse(input).unwrap().as_str(), want, "{input}");
        }
        for bad in ["", "x", "a/b", "/../../x", "/a/../b", "/a/..", "/a\0b"] {
            assert!(AbsPath::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    proptest! {
        #[test]
        fn parse_is_idempotent_and_clean(s in "[/a.]{0,12}") {
            if let Ok(p) = AbsPath::parse(&s) {
                let again = AbsPath::parse(p.as_str()).unwrap();
                prop_assert_eq!(&again, &p);
                prop_assert!(p.as_str().starts_with('/'));
                prop_assert!(p.as_str() == "/" || !p.as_str().ends_with('/'));
                prop_assert!(!p.as_str().contains("//"));
                prop_assert!(p.as_str().split('/').all(|c| c != "." && c != ".."));
            } else {
                prop_assert!(!s.starts_with('/') || s.split('/').any(|c| c == ".."));
            }
        }
    }
}

//! Package names: `namespace/name`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid [`PackageName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid package name `{name}`: {reason}")]
pub struct NameError {
    /// The rejected text.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A package name, `namespace/name`, each part `[a-z0-9][a-z0-9._-]*`, or `_/name`.
///
/// The grammar is deliberately narrow: names become OCI repository path components and
/// must round-trip through registries that lower-case or reject anything else. The one
/// exception is the namespace `_`, wapm's global namespace: packages published without a
/// namespace (`python`, many webc v1 packages) live there, and Wasmer's registry still
/// answers `_/python` for them. Such a package has no OCI repository of its own name; it
/// is pushed under a repository the user names.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackageName {
    // Kept whole so `as_str` and `Display` need no allocation; `slash` splits it.
    full: String,
    slash: usize,
}

impl PackageName {
    /// Parses and checks a name.
    pub fn new(text: &str) -> Result<Self, NameError> {
        let err = |reason| NameError {
            name: text.to_owned(),
            reason,
        };
        let (namespace, name) = text
            .split_once('/')
            .ok_or_else(|| err("expected `namespace/name`"))?;
        if namespace != GLOBAL_NAMESPACE {
            check_part(namespace).map_err(err)?;
        }
        check_part(name).map_err(err)?;
        Ok(Self {
            full: text.to_owned(),
            slash: namespace.len(),
        })
    }

    /// The part before the slash.
    pub fn namespace(&self) -> &str {
        self.full.get(..self.slash).unwrap_or_default()
    }

    /// The part after the slash.
    pub fn name(&self) -> &str {
        self.full.get(self.slash + 1..).unwrap_or_default()
    }

    /// `namespace/name`.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

/// wapm's namespace for packages published without one.
pub const GLOBAL_NAMESPACE: &str = "_";

fn check_part(part: &str) -> Result<(), &'static str> {
    let mut bytes = part.bytes();
    match bytes.next() {
        None => return Err("empty namespace or name"),
        Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit() => {}
        Some(_) => return Err("each part must start with a-z or 0-9"),
    }
    if bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)) {
        Ok(())
    } else {
        // A second slash lands here too, which is what we want: exactly two parts.
        Err("only a-z, 0-9, `.`, `_` and `-` are allowed")
    }
}

impl FromStr for PackageName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Solver diagnostics print packages with `{:?}`; keep them readable.
        f.write_str(&self.full)
    }
}

impl Serialize for PackageName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.full)
    }
}

impl<'de> Deserialize<'de> for PackageName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::new(&text).map_err(serde::de::Error::custom)
    }
}

/// One exact package version: what the solver picks and what a lockfile pins.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackageId {
    /// The package.
    pub name: PackageName,
    /// Its version.
    pub version: semver::Version,
}

impl PackageId {
    /// Pairs a name with a version.
    pub fn new(name: PackageName, version: semver::Version) -> Self {
        Self { name, version }
    }
}

impl fmt::Display for PackageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_and_splits() {
        let n = PackageName::new("acme/py-thon_3.12").unwrap();
        assert_eq!(n.namespace(), "acme");
        assert_eq!(n.name(), "py-thon_3.12");
        assert_eq!(n.to_string(), "acme/py-thon_3.12");
    }

    #[test]
    fn the_global_namespace_is_a_namespace_only() {
        let n = PackageName::new("_/python").unwrap();
        assert_eq!((n.namespace(), n.name()), ("_", "python"));
        for bad in ["_x/python", "__/python", "acme/_", "_/_", "_/"] {
            assert!(PackageName::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn rejects() {
        for bad in [
            "", "acme", "/x", "acme/", "Acme/x", "acme/X", "acme/-x", "acme/.x", "a/b/c",
            "acme/x y", "acme/é",
        ] {
            assert!(PackageName::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn serde_round_trip_and_error() {
        let n: PackageName = serde_json::from_str("\"acme/app\"").unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"acme/app\"");
        let e = serde_json::from_str::<PackageName>("\"ACME/app\"").unwrap_err();
        assert!(e.to_string().contains("ACME/app"), "{e}");
    }

    proptest! {
        #[test]
        fn valid_grammar_is_accepted(ns in "[a-z0-9][a-z0-9._-]{0,12}", n in "[a-z0-9][a-z0-9._-]{0,12}") {
            let name = PackageName::new(&format!("{ns}/{n}")).unwrap();
            prop_assert_eq!(name.namespace(), ns.as_str());
            prop_assert_eq!(name.name(), n.as_str());
        }

        #[test]
        fn accepted_names_match_grammar(s in "\\PC{0,20}") {
            if let Ok(name) = PackageName::new(&s) {
                let ok = |p: &str| {
                    if p == GLOBAL_NAMESPACE && s.starts_with("_/") {
                        return true;
                    }
                    let mut c = p.chars();
                    c.next().is_some_and(|f| f.is_ascii_lowercase() || f.is_ascii_digit())
                        && c.all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || "._-".contains(x))
                };
                prop_assert!(ok(name.namespace()) && ok(name.name()));
                prop_assert_eq!(name.as_str(), s.as_str());
            }
        }
    }
}

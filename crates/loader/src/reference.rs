//! What a user may ask to load (DESIGN.md "References"), parsed before anything is fetched.

use std::fmt;
use std::path::PathBuf;

use fetch_http::reference::{LayoutRef, RegistryRef};
use resolve_graph::PackageName;
use semver::VersionReq;

use crate::error::{LoadError, Result};

/// The file that makes a directory a package under development.
pub const PACKAGE_FILE: &str = "pkgload.toml";

/// One thing to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageRef {
    /// `REGISTRY/REPO[:TAG][@DIGEST]`.
    Registry(RegistryRef),
    /// `oci:DIR[:TAG]`.
    Layout(LayoutRef),
    /// `namespace/name@REQ` through the configured registry and prefix, newest match.
    Named {
        /// The package.
        name: PackageName,
        /// Which versions will do.
        req: VersionReq,
    },
    /// A directory holding `pkgload.toml` (a package under development).
    Directory(PathBuf),
    /// A Wasmer webc file (`*.webc`).
    WebcFile(PathBuf),
    /// A webc file at an `http(s)://` URL, written `URL#sha256=<hex>`.
    WebcUrl {
        /// The URL, without the fragment.
        url: String,
        /// The sha256 the file must have.
        sha256: Option<cache_core::Digest>,
    },
}

impl PackageRef {
    /// Parse a reference. In order: `http(s)://` is a webc file at a URL (with an optional
    /// `#sha256=<hex>`); `oci:` is a layout; a path to a directory that holds
    /// `pkgload.toml` is a package directory; a path to a file ending in `.webc` is a webc
    /// package; `namespace/name@REQ` where `REQ` is not a
    /// digest is a named requirement; anything else must be a registry reference.
    pub fn parse(input: &str) -> Result<PackageRef> {
        let invalid = |reason: String| LoadError::Reference {
            input: input.chars().take(200).collect(),
            reason,
        };
        if input.starts_with("http://") || input.starts_with("https://") {
            let (url, sha256) = match input.split_once("#sha256=") {
                Some((url, hex)) => {
                    let digest = cache_core::Digest::parse(&format!("sha256:{hex}"))
                        .map_err(|e| invalid(format!("the #sha256= fragment: {e}")))?;
                    (url, Some(digest))
                }
                None if input.contains('#') => {
                    return Err(invalid(
                        "the only fragment a URL may carry is #sha256=<64 hex digits>".to_owned(),
                    ));
                }
                None => (input, None),
            };
            return Ok(PackageRef::WebcUrl {
                url: url.to_owned(),
                sha256,
            });
        }
        if input.starts_with(fetch_http::reference::LAYOUT_PREFIX) {
            return LayoutRef::parse(input)
                .map(PackageRef::Layout)
                .map_err(|e| invalid(e.to_string()));
        }
        let path = PathBuf::from(input);
        if path.join(PACKAGE_FILE).is_file() {
            return Ok(PackageRef::Directory(path));
        }
        if input.ends_with(".webc") && path.is_file() {
            return Ok(PackageRef::WebcFile(path));
        }
        if let Some((name, req)) = input.split_once('@')
            && cache_core::Digest::parse(req).is_err()
            && !req.contains(':')
        {
            let name = PackageName::new(name).map_err(|e| invalid(e.to_string()))?;
            let req = VersionReq::parse(req).map_err(|e| {
                invalid(format!("{req:?} is not a semver version requirement: {e}"))
            })?;
            return Ok(PackageRef::Named { name, req });
        }
        RegistryRef::parse(input)
            .map(PackageRef::Registry)
            .map_err(|e| invalid(e.to_string()))
    }
}

impl fmt::Display for PackageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackageRef::Registry(r) => write!(f, "{r}"),
            PackageRef::Layout(l) => write!(f, "{l}"),
            PackageRef::Named { name, req } => write!(f, "{name}@{req}"),
            PackageRef::Directory(d) | PackageRef::WebcFile(d) => write!(f, "{}", d.display()),
            PackageRef::WebcUrl { url, sha256: None } => write!(f, "{url}"),
            PackageRef::WebcUrl {
                url,
                sha256: Some(d),
            } => write!(f, "{url}#sha256={}", d.hex()),
        }
    }
}

impl std::str::FromStr for PackageRef {
    type Err = LoadError;
    fn from_str(s: &str) -> Result<Self> {
        PackageRef::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert!(matches!(
            PackageRef::parse("oci:/tmp/x:v1"),
            Ok(PackageRef::Layout(_))
        ));
        assert!(matches!(
            PackageRef::parse("127.0.0.1:5000/team/acme/app:1.0.0"),
            Ok(PackageRef::Registry(_))
        ));
        let named = PackageRef::parse("acme/app@^1.2").unwrap();
        assert_eq!(named.to_string(), "acme/app@^1.2");
        let digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(
            PackageRef::parse(&format!("127.0.0.1:5000/a@{digest}")),
            Ok(PackageRef::Registry(_))
        ));
        let hex = "ab".repeat(32);
        let url = PackageRef::parse(&format!("https://x.test/a.webc#sha256={hex}")).unwrap();
        assert_eq!(
            url.to_string(),
            format!("https://x.test/a.webc#sha256={hex}")
        );
        assert!(PackageRef::parse("https://x.test/a.webc#md5=00").is_err());
        assert!(PackageRef::parse("https://x.test/a.webc#sha256=00").is_err());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PACKAGE_FILE), "").unwrap();
        assert_eq!(
            PackageRef::parse(dir.path().to_str().unwrap()).unwrap(),
            PackageRef::Directory(dir.path().to_owned())
        );
    }

    #[test]
    fn errors_name_the_input() {
        for bad in ["", "acme/app@not a req", "Acme/App@1", "oci:", "a b c"] {
            let err = PackageRef::parse(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}

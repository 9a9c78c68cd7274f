//! Which hosts serve a registry, and how to speak to each: containerd's `hosts.toml`.
//!
//! The convention pull-through caches and peer-to-peer mirrors document (distribution in
//! proxy mode, Harbor, Zot, Spegel, Dragonfly): a directory holding, per registry,
//! `<dir>/<host[:port]>/hosts.toml` (or `<dir>/_default/hosts.toml` for any registry
//! without its own):
//!
//! ```toml
//! server = "https://registry.example:5000"     # the origin (default https://<host>)
//! ca = "origin-ca.pem"                          # settings of the origin itself
//!
//! [host."http://mirror.local:5000"]             # mirrors, tried in this order
//! capabilities = ["pull", "resolve"]            # default: pull, resolve, push
//! ca = ["/etc/certs/mirror-ca.pem"]             # PEM files, relative to this file
//! client = [["client.crt", "client.key"]]       # or "both.pem", or ["crt", "key"]
//! skip_verify = false
//! override_path = false                         # true: the URL path is the API root
//! [host."http://mirror.local:5000".header]
//! x-mirror-token = "abc"                        # or ["a", "b"]
//! ```
//!
//! This module only reads and checks the files; [`crate::HttpClient`] applies them. A
//! malformed file is [`HostsError`] naming the file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use reqwest::Url;
use serde::Deserialize;
use toml::Spanned;

/// A `hosts.toml` that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct HostsError {
    /// The file.
    pub file: String,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// What a host may be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Blobs and manifests by digest.
    pub pull: bool,
    /// Tags (a tag resolves to a digest: only trusted hosts should answer).
    pub resolve: bool,
    /// Uploads.
    pub push: bool,
}

impl Capabilities {
    /// Everything (the origin, and a host that does not say).
    pub const ALL: Capabilities = Capabilities {
        pull: true,
        resolve: true,
        push: true,
    };
}

/// How to verify a host and prove ourselves to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsSettings {
    /// Extra CA certificates (PEM files) to trust, besides the system's.
    pub ca: Vec<PathBuf>,
    /// Client certificates: the certificate (PEM) and its key, when not in the same file.
    pub client: Vec<(PathBuf, Option<PathBuf>)>,
    /// Accept any certificate (never the default; for throwaway test setups).
    pub skip_verify: bool,
}

/// One host serving a registry: a mirror, or the origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The API root, ending in `/` (`https://mirror:5000/v2/`, or the URL as written with
    /// `override_path`).
    pub api: Url,
    /// `host[:port]`, for messages and per-host limits.
    pub authority: String,
    /// What it may be asked for.
    pub capabilities: Capabilities,
    /// Its TLS settings.
    pub tls: TlsSettings,
    /// Headers sent with every request to it.
    pub headers: Vec<(String, String)>,
}

/// The hosts of one registry: mirrors in order, then the origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryHosts {
    /// The file they came from, for messages.
    pub file: PathBuf,
    /// Mirrors, in the order the file lists them.
    pub mirrors: Vec<Host>,
    /// The registry itself (`server`).
    pub origin: Host,
}

/// Where `hosts.toml` files are looked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostsDirs {
    dirs: Vec<PathBuf>,
}

impl HostsDirs {
    /// Exactly `dir` (`--hosts-dir`, `$PKGLOAD_HOSTS_DIR`).
    pub fn pinned(dir: impl Into<PathBuf>) -> Self {
        HostsDirs {
            dirs: vec![dir.into()],
        }
    }

    /// The first of these that has a file for the registry (the platform config dir +
    /// `pkgload/certs.d`, then `/etc/containerd/certs.d`).
    pub fn search(dirs: Vec<PathBuf>) -> Self {
        HostsDirs { dirs }
    }

    /// No configuration anywhere: every registry is its own only host.
    pub fn none() -> Self {
        HostsDirs::default()
    }

    /// The hosts configured for `registry` (`host[:port]`), if a file names them.
    ///
    /// # Errors
    /// [`HostsError`] for a file that exists but cannot be read or understood.
    pub fn for_registry(&self, registry: &str) -> Result<Option<RegistryHosts>, HostsError> {
        for dir in &self.dirs {
            for name in [registry, "_default"] {
                let file = dir.join(name).join("hosts.toml");
                match std::fs::read_to_string(&file) {
                    Ok(text) => return parse(&text, &file, registry).map(Some),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(HostsError {
                            file: file.display().to_string(),
                            line: None,
                            message: format!("cannot read it: {e}"),
                        });
                    }
                }
            }
        }
        Ok(None)
    }
}

/// The default origin of `registry`: `https://<registry>`, Docker Hub's real endpoint for
/// `docker.io`.
pub fn default_server(registry: &str) -> String {
    match registry {
        "docker.io" => "https://registry-1.docker.io".to_owned(),
        other => format!("https://{other}"),
    }
}

/// The file: the origin's settings at the top level, beside `server` and the mirrors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    server: Option<Spanned<String>>,
    capabilities: Option<Spanned<Vec<String>>>,
    ca: Option<Spanned<OneOrMany>>,
    client: Option<Spanned<ClientShape>>,
    skip_verify: Option<bool>,
    override_path: Option<bool>,
    header: Option<BTreeMap<String, Spanned<OneOrMany>>>,
    #[serde(default)]
    host: BTreeMap<String, Spanned<HostShape>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostShape {
    capabilities: Option<Spanned<Vec<String>>>,
    ca: Option<Spanned<OneOrMany>>,
    client: Option<Spanned<ClientShape>>,
    skip_verify: Option<bool>,
    override_path: Option<bool>,
    header: Option<BTreeMap<String, Spanned<OneOrMany>>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `"both.pem"`, `["crt", "key"]` or `[["crt", "key"], ...]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum ClientShape {
    One(String),
    Pair(Vec<String>),
    Pairs(Vec<Vec<String>>),
}

/// Parses `text`, the `hosts.toml` at `file`, for `registry`.
///
/// # Errors
/// [`HostsError`] naming the file and line of what is wrong.
pub fn parse(text: &str, file: &Path, registry: &str) -> Result<RegistryHosts, HostsError> {
    let shown = file.display().to_string();
    let line_of = |offset: usize| {
        Some(
            text.get(..offset)
                .map_or(1, |t| t.matches('\n').count() + 1),
        )
    };
    let error_at = |span: Option<std::ops::Range<usize>>, message: String| HostsError {
        file: shown.clone(),
        line: span.and_then(|s| line_of(s.start)),
        message,
    };
    let shape: FileShape =
        toml::from_str(text).map_err(|e| error_at(e.span(), e.message().to_owned()))?;
    let beside = file.parent().unwrap_or(Path::new("."));
    let (server, server_span) = match &shape.server {
        Some(s) => (s.get_ref().clone(), Some(s.span())),
        None => (default_server(registry), None),
    };
    let settings = HostShape {
        capabilities: shape.capabilities,
        ca: shape.ca,
        client: shape.client,
        skip_verify: shape.skip_verify,
        override_path: shape.override_path,
        header: shape.header,
    };
    let origin = host(&server, server_span, settings, beside, &error_at)?;
    // The file's order is the order mirrors are tried in; a map does not keep it, the
    // spans do.
    let mut tables: Vec<(String, Spanned<HostShape>)> = shape.host.into_iter().collect();
    tables.sort_by_key(|(_, table)| table.span().start);
    let mirrors = tables
        .into_iter()
        .map(|(url, table)| {
            let span = table.span();
            host(&url, Some(span), table.into_inner(), beside, &error_at)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RegistryHosts {
        file: file.to_owned(),
        mirrors,
        origin,
    })
}

fn host(
    url: &str,
    span: Option<std::ops::Range<usize>>,
    shape: HostShape,
    beside: &Path,
    error_at: &dyn Fn(Option<std::ops::Range<usize>>, String) -> HostsError,
) -> Result<Host, HostsError> {
    let parsed = Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or_else(|| error_at(span.clone(), format!("{url:?} is not an http(s) URL")))?;
    let authority = match parsed.port() {
        Some(port) => format!("{}:{port}", parsed.host_str().unwrap_or_default()),
        None => parsed.host_str().unwrap_or_default().to_owned(),
    };
    let mut path = parsed.path().trim_end_matches('/').to_owned();
    if !shape.override_path.unwrap_or(false) {
        path.push_str("/v2");
    }
    let mut api = parsed.clone();
    api.set_path(&format!("{path}/"));
    api.set_query(None);
    let capabilities = match shape.capabilities {
        None => Capabilities::ALL,
        Some(listed) => {
            let span = listed.span();
            let mut caps = Capabilities {
                pull: false,
                resolve: false,
                push: false,
            };
            for cap in listed.into_inner() {
                match cap.as_str() {
                    "pull" => caps.pull = true,
                    "resolve" => caps.resolve = true,
                    "push" => caps.push = true,
                    other => {
                        return Err(error_at(
                            Some(span),
                            format!(
                                "unknown capability {other:?} (expected pull, resolve or push)"
                            ),
                        ));
                    }
                }
            }
            caps
        }
    };
    let resolve = |p: &str| beside.join(p);
    let ca = shape
        .ca
        .map(|ca| {
            ca.into_inner()
                .into_vec()
                .iter()
                .map(|p| resolve(p))
                .collect()
        })
        .unwrap_or_default();
    let client = match shape.client {
        None => Vec::new(),
        Some(client) => {
            let span = client.span();
            let pair = |parts: Vec<String>| match parts.as_slice() {
                [cert] => Ok((resolve(cert), None)),
                [cert, key] => Ok((resolve(cert), Some(resolve(key)))),
                _ => Err(error_at(
                    Some(span.clone()),
                    "a client certificate is \"cert.pem\" or [\"cert.pem\", \"key.pem\"]"
                        .to_owned(),
                )),
            };
            match client.into_inner() {
                ClientShape::One(both) => vec![(resolve(&both), None)],
                ClientShape::Pair(parts) => vec![pair(parts)?],
                ClientShape::Pairs(pairs) => {
                    pairs.into_iter().map(pair).collect::<Result<_, _>>()?
                }
            }
        }
    };
    let mut headers = Vec::new();
    for (name, values) in shape.header.unwrap_or_default() {
        let span = values.span();
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(error_at(
                Some(span),
                format!("{name:?} is not a header name"),
            ));
        }
        for value in values.into_inner().into_vec() {
            if reqwest::header::HeaderValue::from_str(&value).is_err() {
                return Err(error_at(
                    Some(span.clone()),
                    format!("header {name}: {value:?} is not a header value"),
                ));
            }
            headers.push((name.clone(), value));
        }
    }
    Ok(Host {
        api,
        authority,
        capabilities,
        tls: TlsSettings {
            ca,
            client,
            skip_verify: shape.skip_verify.unwrap_or(false),
        },
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<RegistryHosts, HostsError> {
        parse(
            text,
            Path::new("/etc/pkgload/certs.d/reg:5000/hosts.toml"),
            "reg:5000",
        )
    }

    #[test]
    fn mirrors_keep_their_order_and_settings() {
        let hosts = parsed(
            r#"
server = "https://reg:5000"
ca = "origin.pem"

[host."http://zeta.local:5000"]
capabilities = ["pull"]

[host."https://alpha.local/cache"]
capabilities = ["pull", "resolve"]
ca = ["a.pem", "/abs/b.pem"]
client = [["c.crt", "c.key"], ["both.pem"]]
skip_verify = true
[host."https://alpha.local/cache".header]
x-token = "t"
x-multi = ["1", "2"]

[host."https://raw.local/api/v2/"]
override_path = true
"#,
        )
        .unwrap();
        let dir = Path::new("/etc/pkgload/certs.d/reg:5000");
        assert_eq!(hosts.origin.api.as_str(), "https://reg:5000/v2/");
        assert_eq!(hosts.origin.tls.ca, [dir.join("origin.pem")]);
        let apis: Vec<&str> = hosts.mirrors.iter().map(|h| h.api.as_str()).collect();
        assert_eq!(
            apis,
            [
                "http://zeta.local:5000/v2/",
                "https://alpha.local/cache/v2/",
                "https://raw.local/api/v2/"
            ]
        );
        let [zeta, alpha, raw] = hosts.mirrors.as_slice() else {
            panic!()
        };
        assert_eq!(zeta.authority, "zeta.local:5000");
        assert!(zeta.capabilities.pull && !zeta.capabilities.resolve && !zeta.capabilities.push);
        assert_eq!(raw.capabilities, Capabilities::ALL);
        assert_eq!(
            alpha.tls.ca,
            [dir.join("a.pem"), PathBuf::from("/abs/b.pem")]
        );
        assert_eq!(
            alpha.tls.client,
            [
                (dir.join("c.crt"), Some(dir.join("c.key"))),
                (dir.join("both.pem"), None)
            ]
        );
        assert!(alpha.tls.skip_verify);
        assert_eq!(alpha.headers.len(), 3);
    }

    #[test]
    fn docker_hub_and_a_missing_server_use_the_real_endpoint() {
        let hosts = parse("", Path::new("/d/docker.io/hosts.toml"), "docker.io").unwrap();
        assert_eq!(
            hosts.origin.api.as_str(),
            "https://registry-1.docker.io/v2/"
        );
        let hosts = parse("", Path::new("/d/x/hosts.toml"), "quay.io").unwrap();
        assert_eq!(hosts.origin.api.as_str(), "https://quay.io/v2/");
        assert!(hosts.mirrors.is_empty());
    }

    #[test]
    fn malformed_files_name_the_file_and_line() {
        for (text, line, needle) in [
            (
                "server = \"https://reg\"\n\n[host.\"http://m\"]\ncapabilities = [\"pul\"]\n",
                4,
                "pul",
            ),
            ("server = \"ftp://reg\"\n", 1, "not an http(s) URL"),
            ("\n\nserver = [\n", 3, ""),
            ("\nunknown_key = 1\n", 2, "unknown"),
            (
                "[host.\"http://m\"]\nclient = [\"a\", \"b\", \"c\"]\n",
                2,
                "client certificate",
            ),
        ] {
            let err = parsed(text).unwrap_err();
            assert_eq!(err.line, Some(line), "{text:?}: {err}");
            assert!(err.to_string().contains(needle), "{err}");
            assert!(
                err.to_string()
                    .starts_with("/etc/pkgload/certs.d/reg:5000/hosts.toml:")
            );
        }
    }

    #[test]
    fn a_registry_file_wins_over_default_and_dirs_are_searched_in_order() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        let write = |dir: &Path, name: &str, server: &str| {
            std::fs::create_dir_all(dir.join(name)).unwrap();
            std::fs::write(
                dir.join(name).join("hosts.toml"),
                format!("server = \"{server}\"\n"),
            )
            .unwrap();
        };
        write(second.path(), "reg:5000", "https://second");
        write(second.path(), "_default", "https://default");
        let dirs = HostsDirs::search(vec![first.path().to_owned(), second.path().to_owned()]);
        let origin = |r: &str| {
            dirs.for_registry(r)
                .unwrap()
                .map(|h| h.origin.api.to_string())
        };
        assert_eq!(origin("reg:5000").as_deref(), Some("https://second/v2/"));
        assert_eq!(origin("other").as_deref(), Some("https://default/v2/"));
        write(first.path(), "reg:5000", "https://first");
        assert_eq!(origin("reg:5000").as_deref(), Some("https://first/v2/"));
        assert_eq!(HostsDirs::none().for_registry("reg:5000").unwrap(), None);
    }
}

//! Credentials, `WWW-Authenticate` challenges and the bearer-token cache.
//!
//! Credentials are looked up by registry host (`host[:port]`). They come from code
//! ([`Credentials::insert`]) and from Docker's `config.json` (`auths` entries with `auth` or
//! `identitytoken`; credential helpers are not supported). A registry that answers 401 with
//! `WWW-Authenticate: Bearer realm=…,service=…,scope=…` gets a token from its realm, and the
//! token is cached per (host, scope) until shortly before it expires.
//!
//! Secrets never appear in `Debug` output, logs or errors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::error::{Error, Result};

/// One way to authenticate to a registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// Username and password (or access token used as a password).
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// A bearer token to send as is.
    Bearer(String),
    /// An OAuth2 refresh token (`identitytoken` in Docker's config), exchanged at the
    /// registry's token realm.
    IdentityToken(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credential::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

/// Credentials by registry host.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    by_host: HashMap<String, Credential>,
}

impl Credentials {
    /// No credentials.
    pub fn new() -> Self {
        Self::default()
    }

    /// Use `credential` for `host` (`host[:port]`, or a URL from which the host is taken).
    pub fn insert(&mut self, host: &str, credential: Credential) {
        self.by_host.insert(normalize_host(host), credential);
    }

    /// The credential for `host`, if any.
    pub fn get(&self, host: &str) -> Option<&Credential> {
        self.by_host.get(&normalize_host(host))
    }

    /// Add the `auths` of a Docker `config.json`. Entries given in code win over the file's.
    pub fn merge_docker_config(&mut self, path: &Path) -> Result<()> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Credentials {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        let config: DockerConfig = serde_json::from_str(&text).map_err(|e| Error::Credentials {
            path: shown.clone(),
            // serde_json's message names line/column, never the values.
            message: format!("not valid Docker config JSON: {e}"),
        })?;
        // Several keys may name one host (`reg`, `https://reg/v1/`): the key written exactly
        // as the host wins, then the first in byte order, so the same file always gives
        // the same credentials (a map's iteration order would not).
        let mut entries: Vec<_> = config
            .auths
            .into_iter()
            .map(|(key, entry)| (normalize_host(&key), key, entry))
            .collect();
        entries.sort_by(|a, b| (a.1 != a.0, &a.1).cmp(&(b.1 != b.0, &b.1)));
        for (host, key, entry) in entries {
            if self.by_host.contains_key(&host) {
                continue;
            }
            if let Some(token) = entry.identitytoken.filter(|t| !t.is_empty()) {
                self.by_host.insert(host, Credential::IdentityToken(token));
            } else if let Some(auth) = entry.auth.filter(|a| !a.is_empty()) {
                let cred = decode_basic(&auth).ok_or_else(|| Error::Credentials {
                    path: shown.clone(),
                    message: format!("the `auth` of {key:?} is not base64 of `user:password`"),
                })?;
                self.by_host.insert(host, cred);
            } else if let (Some(username), Some(password)) = (entry.username, entry.password) {
                self.by_host
                    .insert(host, Credential::Basic { username, password });
            }
        }
        Ok(())
    }

    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, if it exists.
    pub fn docker_config_path() -> Option<PathBuf> {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|h| !h.is_empty())
                    .map(|h| PathBuf::from(h).join(".docker"))
            })?;
        let path = dir.join("config.json");
        path.is_file().then_some(path)
    }

    /// Credentials from the default Docker config, if there is one.
    pub fn from_docker_config() -> Result<Self> {
        let mut creds = Credentials::new();
        if let Some(path) = Self::docker_config_path() {
            creds.merge_docker_config(&path)?;
        }
        Ok(creds)
    }
}

#[derive(serde::Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, DockerAuth>,
}

#[derive(serde::Deserialize, Default)]
struct DockerAuth {
    auth: Option<String>,
    identitytoken: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

fn decode_basic(auth: &str) -> Option<Credential> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (username, password) = text.split_once(':')?;
    Some(Credential::Basic {
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

/// `https://index.docker.io/v1/` → `docker.io`; `Host:5000/x` → `host:5000`.
pub(crate) fn normalize_host(key: &str) -> String {
    let without_scheme = key.split_once("://").map_or(key, |(_, rest)| rest);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or(without_scheme)
        .to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        _ => host,
    }
}

/// `Authorization: Basic …` for a username and password.
pub(crate) fn basic_header(username: &str, password: &str) -> String {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    format!("Basic {encoded}")
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parse the first challenge we understand (`Bearer` preferred over `Basic`).
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let (scheme, params) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(params);
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    Some(Challenge::Bearer {
        realm: get("realm")?,
        service: get("service"),
        scope: get("scope"),
    })
}

/// `k1="v1",k2=v2` with quoted strings that may contain commas and `\"`.
fn parse_params(input: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
        }
        out.push((key.trim().to_owned(), value.trim().to_owned()));
    }
    out
}

/// A bearer token and when to stop using it.
#[derive(Clone)]
pub(crate) struct Token {
    pub(crate) value: String,
    pub(crate) refresh_at: Instant,
}

impl Token {
    /// From a token response's `expires_in` (seconds; 60 when absent, per the distribution
    /// spec), renewed a little early so a request never carries an expiring token.
    pub(crate) fn new(value: String, expires_in: Option<u64>) -> Self {
        let lifetime = Duration::from_secs(expires_in.unwrap_or(60).max(1));
        let margin = (lifetime / 10).min(Duration::from_secs(30));
        Token {
            value,
            refresh_at: Instant::now() + lifetime - margin,
        }
    }

    pub(crate) fn is_valid(&self) -> bool {
        Instant::now() < self.refresh_at
    }
}

/// The JSON a token realm answers with.
#[derive(serde::Deserialize)]
pub(crate) struct TokenResponse {
    pub(crate) token: Option<String>,
    pub(crate) access_token: Option<String>,
    pub(crate) expires_in: Option<u64>,
}

/// One (host, scope)'s token, behind an async lock held while it is being fetched.
pub(crate) type TokenSlot = Arc<tokio::sync::Mutex<Option<Token>>>;

/// Tokens per (host, scope). Each key has its own async lock, so parallel pulls that need the
/// same token wait for one fetch instead of each asking the realm.
#[derive(Default)]
pub(crate) struct TokenCache {
    slots: Mutex<HashMap<(String, String), TokenSlot>>,
    /// The last Bearer challenge seen per host, so later requests can get a token up front.
    challenges: Mutex<HashMap<String, Challenge>>,
}

impl TokenCache {
    pub(crate) fn slot(&self, host: &str, scope: &str) -> TokenSlot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .entry((host.to_owned(), scope.to_owned()))
            .or_default()
            .clone()
    }

    pub(crate) fn remember_challenge(&self, host: &str, challenge: Challenge) {
        self.challenges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(host.to_owned(), challenge);
    }

    pub(crate) fn challenge(&self, host: &str) -> Option<Challenge> {
        self.challenges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(host)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="x""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge("bearer realm=http://127.0.0.1:1/t"),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/t".into(),
                service: None,
                scope: None
            })
        );
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge(""), None);
    }

    #[test]
    fn docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret:with:colons");
        std::fs::write(
            &path,
            format!(
                r#"{{"auths": {{
                    "https://index.docker.io/v1/": {{"auth": "{auth}"}},
                    "127.0.0.1:5000": {{"identitytoken": "refresh-me"}},
                    "ghcr.io": {{}}
                }}, "credsStore": "desktop"}}"#
            ),
        )
        .unwrap();
        let mut creds = Credentials::new();
        creds.insert("ghcr.io", Credential::Bearer("from-code".into()));
        creds.merge_docker_config(&path).unwrap();
        assert_eq!(
            creds.get("registry-1.docker.io"),
            Some(&Credential::Basic {
                username: "alice".into(),
                password: "s3cret:with:colons".into()
            })
        );
        assert_eq!(
            creds.get("127.0.0.1:5000"),
            Some(&Credential::IdentityToken("refresh-me".into()))
        );
        assert_eq!(
            creds.get("ghcr.io"),
            Some(&Credential::Bearer("from-code".into()))
        );
        let shown = format!("{creds:?}");
        assert!(
            !shown.contains("s3cret")
                && !shown.contains("refresh-me")
                && !shown.contains("from-code")
        );

        // Found by the fuzzer: two keys for one host must not depend on map order.
        std::fs::write(
            &path,
            r#"{"auths": {"https://r.example/v2/": {"identitytoken": "url-form"},
                          "r.example": {"identitytoken": "exact"}}}"#,
        )
        .unwrap();
        for _ in 0..20 {
            let mut creds = Credentials::new();
            creds.merge_docker_config(&path).unwrap();
            assert_eq!(
                creds.get("r.example"),
                Some(&Credential::IdentityToken("exact".into()))
            );
        }

        std::fs::write(&path, r#"{"auths": {"x": {"auth": "!!!"}}}"#).unwrap();
        let err = Credentials::new().merge_docker_config(&path).unwrap_err();
        assert!(err.to_string().contains("not base64"), "{err}");
        std::fs::write(&path, r#"{"auths": {"x": {"auth": "c2VjcmV0"#).unwrap();
        let err = Credentials::new().merge_docker_config(&path).unwrap_err();
        assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
    }

    #[test]
    fn token_lifetime() {
        let t = Token::new("t".into(), Some(300));
        assert!(t.is_valid());
        // Renewed 30 s early (10% capped at 30 s).
        let left = t.refresh_at - Instant::now();
        assert!(
            left > Duration::from_secs(265) && left <= Duration::from_secs(270),
            "{left:?}"
        );
        let default = Token::new("t".into(), None).refresh_at - Instant::now();
        assert!(default > Duration::from_secs(50) && default <= Duration::from_secs(54));
    }
}

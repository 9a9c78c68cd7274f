//! Credentials, `WWW-Authenticate` challenges and the bearer-token cache.
//!
//! Credentials are looked up by registry host (`host[:port]`). They come from code
//! ([`Credentials::insert`]), which wins, and from Docker's `config.json`: first a
//! credential helper (`credHelpers` for the host, else `credsStore`), as the Docker CLI
//! asks one; when the helper has nothing for the host or is not installed, the `auths`
//! entry (`auth`, `identitytoken`, or `username` + `password`). A helper
//! (`docker-credential-<name> get`, the host on stdin) is asked once per host and process,
//! when the first request to that host is made. A registry that answers 401 with
//! `WWW-Authenticate: Bearer realm=…,service=…,scope=…` gets a token from its realm, and the
//! token is cached per (host, scope) until shortly before it expires.
//!
//! Secrets never appear in `Debug` output, logs or errors.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

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
    /// Given in code: they win over everything in a Docker config.
    by_host: HashMap<String, Credential>,
    /// The `auths` of a Docker config, used for hosts no helper serves.
    from_file: HashMap<String, Credential>,
    /// `credHelpers`: host → helper name.
    helpers: HashMap<String, String>,
    /// `credsStore`: the helper for every host not in `helpers`.
    store: Option<String>,
    /// Where helper programs are looked up (`PATH` when `None`).
    helper_path: Option<OsString>,
    /// What helpers answered, one cell per host so parallel requests ask once.
    asked: Arc<Mutex<HashMap<String, Arc<HelperAnswerCell>>>>,
}

/// One host's helper answer: empty until asked, `None` when the helper had nothing.
type HelperAnswerCell = OnceCell<Option<Credential>>;

/// How long a credential helper may take (it may be waiting on a keychain prompt).
const HELPER_TIMEOUT: Duration = Duration::from_secs(60);

impl Credentials {
    /// No credentials.
    pub fn new() -> Self {
        Self::default()
    }

    /// Use `credential` for `host` (`host[:port]`, or a URL from which the host is taken).
    pub fn insert(&mut self, host: &str, credential: Credential) {
        self.by_host.insert(normalize_host(host), credential);
    }

    /// The credential for `host` known without asking a helper: given in code, else from
    /// the `auths` of a Docker config.
    pub fn get(&self, host: &str) -> Option<&Credential> {
        let host = normalize_host(host);
        self.by_host
            .get(&host)
            .or_else(|| self.from_file.get(&host))
    }

    /// Look credential helpers up in `path` (a `PATH`-style list) instead of `PATH`.
    pub fn set_helper_path(&mut self, path: impl Into<OsString>) {
        self.helper_path = Some(path.into());
    }

    /// The credential for `host`: given in code, else what its credential helper answers
    /// (asked once per host; later calls reuse the answer), else the `auths` entry. A
    /// helper that has nothing for the host, or that is not installed (a warning: a config
    /// copied from another machine must not stop anonymous pulls), falls through to the
    /// `auths` entry; a helper that fails otherwise is an error naming it.
    pub async fn lookup(&self, host: &str) -> Result<Option<Credential>> {
        let host = normalize_host(host);
        if let Some(given) = self.by_host.get(&host) {
            return Ok(Some(given.clone()));
        }
        if let Some(helper) = self.helper_for(&host) {
            let cell = {
                let mut asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
                Arc::clone(asked.entry(host.clone()).or_default())
            };
            let answer = cell
                .get_or_try_init(|| ask_helper(helper, &host, self.helper_path.clone()))
                .await?;
            if let Some(answer) = answer {
                return Ok(Some(answer.clone()));
            }
        }
        Ok(self.from_file.get(&host).cloned())
    }

    fn helper_for(&self, host: &str) -> Option<&str> {
        self.helpers
            .get(host)
            .or(self.store.as_ref())
            .map(String::as_str)
    }

    /// Add a Docker `config.json`: its `auths`, `credHelpers` and `credsStore`. Credentials
    /// given in code win over all of them.
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
            if self.from_file.contains_key(&host) {
                continue;
            }
            if let Some(token) = entry.identitytoken.filter(|t| !t.is_empty()) {
                self.from_file
                    .insert(host, Credential::IdentityToken(token));
            } else if let Some(auth) = entry.auth.filter(|a| !a.is_empty()) {
                let cred = decode_basic(&auth).ok_or_else(|| Error::Credentials {
                    path: shown.clone(),
                    message: format!("the `auth` of {key:?} is not base64 of `user:password`"),
                })?;
                self.from_file.insert(host, cred);
            } else if let (Some(username), Some(password)) = (entry.username, entry.password) {
                self.from_file
                    .insert(host, Credential::Basic { username, password });
            }
        }
        let usable = |name: &str| {
            // The name becomes part of a program name: nothing that could leave the
            // `docker-credential-` prefix or the search path.
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        };
        for (key, helper) in config.cred_helpers {
            if !usable(&helper) {
                return Err(Error::Credentials {
                    path: shown,
                    message: format!("credHelpers of {key:?} names an unusable helper {helper:?}"),
                });
            }
            self.helpers.entry(normalize_host(&key)).or_insert(helper);
        }
        if let Some(store) = config.creds_store.filter(|s| !s.is_empty()) {
            if !usable(&store) {
                return Err(Error::Credentials {
                    path: shown,
                    message: format!("credsStore names an unusable helper {store:?}"),
                });
            }
            self.store.get_or_insert(store);
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
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

/// What `docker-credential-<name> get` prints.
#[derive(serde::Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Runs `docker-credential-<helper> get` for `host`.
async fn ask_helper(
    helper: &str,
    host: &str,
    search: Option<OsString>,
) -> Result<Option<Credential>> {
    use tokio::io::AsyncWriteExt as _;
    let program = format!("docker-credential-{helper}");
    let failed = |message: String| Error::CredentialHelper {
        program: program.clone(),
        host: host.to_owned(),
        message,
    };
    let Some(path) = find_program(&program, search) else {
        tracing::warn!(%host, "credential helper {program} is not installed (not on PATH); \
            going on without credentials");
        return Ok(None);
    };
    let mut child = tokio::process::Command::new(&path)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("cannot run it: {e}")))?;
    // Docker stores Docker Hub under its v1 URL and every other registry under its host.
    let server = if host == "docker.io" {
        "https://index.docker.io/v1/"
    } else {
        host
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that fails without reading its input (a locked keychain) closes the pipe
        // first: its exit status and what it said are the error to report, not the EPIPE.
        match stdin.write_all(server.as_bytes()).await {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(failed(format!("cannot write to it: {e}")));
            }
            _ => {}
        }
    }
    let output = tokio::time::timeout(HELPER_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| failed(format!("no answer within {} s", HELPER_TIMEOUT.as_secs())))?
        .map_err(|e| failed(format!("cannot read its answer: {e}")))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        // docker-credential-helpers' "credentials not found in native keychain".
        if said.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        let said: String = said.trim().chars().take(200).collect();
        return Err(failed(format!(
            "it exited with {}: {said} (try `echo {server} | {program} get`)",
            output.status
        )));
    }
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout)
        // serde_json names line and column, never the values.
        .map_err(|e| failed(format!("its answer is not the expected JSON: {e}")))?;
    Ok(match (answer.username.as_str(), answer.secret) {
        (_, secret) if secret.is_empty() => None,
        ("<token>", secret) => Some(Credential::IdentityToken(secret)),
        (username, password) => Some(Credential::Basic {
            username: username.to_owned(),
            password,
        }),
    })
}

/// `program` in the first directory of `search` (default `PATH`) that holds it.
fn find_program(program: &str, search: Option<OsString>) -> Option<PathBuf> {
    let search = search.or_else(|| std::env::var_os("PATH"))?;
    std::env::split_paths(&search)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
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

    /// A Docker config naming helpers, and a fake `docker-credential-fake` beside it that
    /// logs every host it is asked about to `asked.log`.
    fn helper_world(config: &str) -> (tempfile::TempDir, Credentials) {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("docker-credential-fake");
        std::fs::write(
            &script,
            r#"#!/bin/sh
[ "$1" = get ] || exit 9
read -r host
echo "$host" >> "$(dirname "$0")/asked.log"
case "$host" in
  reg.example:5000) echo '{"ServerURL":"reg.example:5000","Username":"alice","Secret":"s3cret"}' ;;
  https://index.docker.io/v1/) echo '{"ServerURL":"x","Username":"<token>","Secret":"refresh-tok"}' ;;
  broken.example) echo "the keychain is locked" >&2; exit 3 ;;
  garbled.example) echo "not json" ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
"#,
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, config).unwrap();
        let mut creds = Credentials::new();
        creds.set_helper_path(dir.path().as_os_str());
        creds.merge_docker_config(&path).unwrap();
        (dir, creds)
    }

    fn asked(dir: &tempfile::TempDir) -> Vec<String> {
        std::fs::read_to_string(dir.path().join("asked.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn credential_helpers_are_asked_once_per_host() {
        let file_auth = base64::engine::general_purpose::STANDARD.encode("file:pw");
        let (dir, mut creds) = helper_world(&format!(
            r#"{{"credsStore": "fake",
                 "credHelpers": {{"only-file.example": "absent"}},
                 "auths": {{"other.example": {{"auth": "{file_auth}"}},
                            "only-file.example": {{"auth": "{file_auth}"}}}}}}"#
        ));
        creds.insert("code.example", Credential::Bearer("from-code".into()));

        // Eight parallel requests to one host run the helper once.
        let lookups = (0..8).map(|_| {
            let creds = creds.clone();
            tokio::spawn(async move { creds.lookup("reg.example:5000").await })
        });
        for lookup in lookups {
            assert_eq!(
                lookup.await.unwrap().unwrap(),
                Some(Credential::Basic {
                    username: "alice".into(),
                    password: "s3cret".into()
                })
            );
        }
        assert_eq!(asked(&dir), ["reg.example:5000"]);

        // Docker Hub is asked for under its v1 URL; `<token>` means an identity token.
        assert_eq!(
            creds.lookup("registry-1.docker.io").await.unwrap(),
            Some(Credential::IdentityToken("refresh-tok".into()))
        );
        // Nothing in the helper: the `auths` entry, else nothing.
        let from_file = Some(Credential::Basic {
            username: "file".into(),
            password: "pw".into(),
        });
        assert_eq!(creds.lookup("other.example").await.unwrap(), from_file);
        assert_eq!(creds.lookup("anonymous.example").await.unwrap(), None);
        // A helper that is not installed falls through to the file as well.
        assert_eq!(creds.lookup("only-file.example").await.unwrap(), from_file);
        // Code wins, and the helper is never asked for it.
        assert_eq!(
            creds.lookup("code.example").await.unwrap(),
            Some(Credential::Bearer("from-code".into()))
        );
        assert_eq!(
            asked(&dir),
            [
                "reg.example:5000",
                "https://index.docker.io/v1/",
                "other.example",
                "anonymous.example"
            ]
        );

        // A helper that fails says which, for which host, and why; garbage is refused.
        let err = creds.lookup("broken.example").await.unwrap_err();
        let shown = err.to_string();
        assert!(matches!(err, Error::CredentialHelper { .. }), "{shown}");
        assert!(
            shown.contains("docker-credential-fake")
                && shown.contains("broken.example")
                && shown.contains("the keychain is locked"),
            "{shown}"
        );
        let err = creds.lookup("garbled.example").await.unwrap_err();
        assert!(err.to_string().contains("not the expected JSON"), "{err}");

        // Answers are cached, never shown.
        let shown = format!("{creds:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("refresh-tok"),
            "{shown}"
        );
    }

    #[test]
    fn helper_names_cannot_leave_the_prefix() {
        for bad in [
            r#"{"credsStore": "../../bin/sh"}"#,
            r#"{"credHelpers": {"h": "a b"}}"#,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("config.json");
            std::fs::write(&path, bad).unwrap();
            let err = Credentials::new().merge_docker_config(&path).unwrap_err();
            assert!(err.to_string().contains("unusable helper"), "{err}");
        }
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

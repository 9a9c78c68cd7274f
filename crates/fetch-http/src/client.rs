//! [`HttpClient`]: one pooled client, its limits, redirects and authentication.
//!
//! Every request goes through [`HttpClient::send`]: it takes a global and a per-host
//! permit, adds credentials for the request's origin only, follows redirects itself (so the
//! `Authorization` header provably never leaves the origin it was meant for), answers one
//! `401` challenge, and classifies every failure as worth retrying or final.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::{self, Challenge, Credential, Credentials, Token, TokenCache, TokenResponse};
use crate::error::{Error, Result, redact};
use crate::hosts::{Host, HostsDirs, RegistryHosts, TlsSettings};
use crate::retry::{self, RetryPolicy};

/// How the client behaves; build once, share the [`HttpClient`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `User-Agent` of every request.
    pub user_agent: String,
    /// Time to establish a connection (TCP + TLS).
    pub connect_timeout: Duration,
    /// Longest silence while reading a response before the attempt fails.
    pub read_timeout: Duration,
    /// Longest a whole request may take, body included (`None`: no limit, as a multi-GiB
    /// layer on a slow link can legitimately take hours; the read timeout still applies).
    pub request_timeout: Option<Duration>,
    /// Requests in flight at once, across all hosts.
    pub max_concurrent: usize,
    /// Requests in flight at once to one host.
    pub max_per_host: usize,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// Hosts (`host[:port]`) that may be spoken to over plain HTTP. Loopback always may.
    pub insecure_hosts: Vec<String>,
    /// Redirects followed per request.
    pub max_redirects: usize,
    /// Where per-registry host configuration (`hosts.toml`) is read from.
    pub hosts: HostsDirs,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            user_agent: format!("pkgload/{}", env!("CARGO_PKG_VERSION")),
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
            request_timeout: None,
            max_concurrent: 16,
            max_per_host: 8,
            retry: RetryPolicy::default(),
            insecure_hosts: Vec::new(),
            max_redirects: 10,
            hosts: HostsDirs::none(),
        }
    }
}

/// A failed attempt: try again (after a delay), or give up.
#[derive(Debug)]
pub(crate) enum Failure {
    Retry {
        cause: String,
        retry_after: Option<Duration>,
        /// No connection could be made: a mirror that is down is left at once.
        unreachable: bool,
    },
    Final(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Final(e)
    }
}

/// A request to send.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Bytes>,
    /// The token scope this request needs (e.g. `repository:acme/app:pull`), so a token
    /// can be fetched before the first 401.
    pub(crate) scope: Option<String>,
    /// The configured host it is addressed to (its TLS client, its headers), when a
    /// `hosts.toml` names it.
    pub(crate) endpoint: Option<Arc<Endpoint>>,
}

impl Request {
    pub(crate) fn get(url: Url) -> Self {
        Request {
            method: Method::GET,
            url,
            headers: HeaderMap::new(),
            body: None,
            scope: None,
            endpoint: None,
        }
    }

    pub(crate) fn via(mut self, endpoint: Option<Arc<Endpoint>>) -> Self {
        self.endpoint = endpoint;
        self
    }

    pub(crate) fn header(mut self, name: header::HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    pub(crate) fn scope(mut self, scope: Option<String>) -> Self {
        self.scope = scope;
        self
    }
}

/// A successful response, holding its concurrency permits until dropped.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) inner: reqwest::Response,
    _permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

/// The shared HTTP client. Cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// Built on first use: building it loads the system's root certificates (hundreds of
    /// files, several milliseconds), which a load served from the cache never needs.
    http: OnceLock<std::result::Result<reqwest::Client, String>>,
    /// The same limited to HTTP/1.1, for the rare request that needs it (see `send_inner`).
    http1: OnceLock<std::result::Result<reqwest::Client, String>>,
    /// Each registry's `hosts.toml`, read once, with an endpoint per host (`None`: it has
    /// none).
    registries: Mutex<HashMap<String, Option<Arc<ConfiguredHosts>>>>,
    /// The endpoint for a URL that does not say which configured host it is for (a
    /// redirect, a plain URL): a registry's `server` settings win over a mirror table
    /// naming the same `host[:port]`.
    endpoints: Mutex<HashMap<String, Arc<Endpoint>>>,
    config: ClientConfig,
    credentials: Credentials,
    tokens: TokenCache,
    global: Arc<Semaphore>,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("config", &self.inner.config)
            .field("credentials", &self.inner.credentials)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client with `config` and `credentials`.
    pub fn new(config: ClientConfig, credentials: Credentials) -> Result<Self> {
        // reqwest is built without a bundled crypto provider; ring is ours. An application
        // that installed another provider first keeps it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(HttpClient {
            inner: Arc::new(Inner {
                http: OnceLock::new(),
                http1: OnceLock::new(),
                registries: Mutex::new(HashMap::new()),
                endpoints: Mutex::new(HashMap::new()),
                global: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
                config,
                credentials,
                tokens: TokenCache::default(),
                hosts: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The shared client (hosts without a `hosts.toml` of their own), built on first use.
    fn http(&self, url: &Url) -> Result<&reqwest::Client> {
        self.inner
            .http
            .get_or_init(|| {
                base_builder(&self.inner.config)
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| Error::Transport {
                url: redact(url),
                message: format!("cannot build the HTTP client: {e}"),
            })
    }

    /// The client for `url` limited to HTTP/1.1 (`endpoint`'s when it has one), built on
    /// first use.
    fn http1<'a>(
        &'a self,
        url: &Url,
        endpoint: Option<&'a Endpoint>,
    ) -> Result<&'a reqwest::Client> {
        let built = match endpoint {
            Some(endpoint) => endpoint.http1(&self.inner.config),
            None => self
                .inner
                .http1
                .get_or_init(|| {
                    base_builder(&self.inner.config)
                        .http1_only()
                        .build()
                        .map_err(|e| e.to_string())
                })
                .as_ref()
                .map_err(Clone::clone),
        };
        built.map_err(|e| Error::Transport {
            url: redact(url),
            message: format!("cannot build the HTTP/1.1 client: {e}"),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// True when `host` (`host[:port]`) may be spoken to over plain HTTP: loopback, a
    /// host marked insecure, or one a `hosts.toml` names with an `http://` URL.
    pub fn allows_plain_http(&self, host: &str) -> bool {
        is_loopback(host)
            || self.inner.config.insecure_hosts.iter().any(|h| h == host)
            || self.endpoint(host).is_some_and(|e| e.plain_http)
    }

    /// The hosts `registry` (`host[:port]`) is configured with, read from its `hosts.toml`
    /// once; `None` when it has none (it is then its own only host).
    ///
    /// # Errors
    /// [`Error::Hosts`] for a file that cannot be used, [`Error::Transport`] when a
    /// host's TLS settings cannot be loaded (a missing or malformed PEM file).
    pub fn registry_hosts(&self, registry: &str) -> Result<Option<Arc<RegistryHosts>>> {
        Ok(self.configured(registry)?.map(|c| c.hosts.clone()))
    }

    /// [`registry_hosts`](Self::registry_hosts), each host with its endpoint.
    pub(crate) fn configured(&self, registry: &str) -> Result<Option<Arc<ConfiguredHosts>>> {
        if let Some(known) = self
            .inner
            .registries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(registry)
        {
            return Ok(known.clone());
        }
        let configured = match self.inner.config.hosts.for_registry(registry)? {
            None => None,
            Some(hosts) => {
                let endpoint = |host: &Host| {
                    Endpoint::new(&self.inner.config, host, &hosts.file).map(Arc::new)
                };
                let mirrors = hosts
                    .mirrors
                    .iter()
                    .map(endpoint)
                    .collect::<Result<Vec<_>>>()?;
                let origin = endpoint(&hosts.origin)?;
                let mut by_authority = self
                    .inner
                    .endpoints
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                for (host, endpoint) in hosts.mirrors.iter().zip(&mirrors) {
                    by_authority
                        .entry(host.authority.clone())
                        .or_insert_with(|| endpoint.clone());
                }
                by_authority.insert(hosts.origin.authority.clone(), origin.clone());
                drop(by_authority);
                tracing::debug!(registry, file = %hosts.file.display(), mirrors = hosts.mirrors.len(), "host configuration");
                Some(Arc::new(ConfiguredHosts {
                    hosts: Arc::new(hosts),
                    mirrors,
                    origin,
                }))
            }
        };
        self.inner
            .registries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(registry.to_owned(), configured.clone());
        Ok(configured)
    }

    fn endpoint(&self, authority: &str) -> Option<Arc<Endpoint>> {
        self.inner
            .endpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(authority)
            .cloned()
    }

    async fn permits(&self, host: &str) -> (OwnedSemaphorePermit, OwnedSemaphorePermit) {
        let per_host = {
            let mut hosts = self.inner.hosts.lock().unwrap_or_else(|p| p.into_inner());
            hosts
                .entry(host.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.inner.config.max_per_host.max(1))))
                .clone()
        };
        // Neither semaphore is ever closed, so acquiring cannot fail; the fallback keeps the
        // types honest without a panic path.
        loop {
            if let (Ok(g), Ok(h)) = (
                self.inner.global.clone().acquire_owned().await,
                per_host.clone().acquire_owned().await,
            ) {
                return (g, h);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Send one request: permits, credentials, redirects, one auth round trip.
    pub(crate) async fn send(&self, req: Request) -> Result<Response, Failure> {
        use tracing::Instrument as _;
        // The URL without its query: pre-signed URLs carry credentials there.
        let span = tracing::debug_span!("http", method = %req.method, url = %redact(&req.url));
        self.send_inner(req).instrument(span).await
    }

    async fn send_inner(&self, req: Request) -> Result<Response, Failure> {
        let shown = redact(&req.url);
        let origin = Origin::of(&req.url).ok_or_else(|| Error::Refused {
            url: shown.clone(),
            reason: "not an http(s) URL with a host".into(),
        })?;
        self.check_scheme(&req.url, self.endpoint_for(&req.url, &req).as_deref())?;
        let queued = std::time::Instant::now();
        let permits = self.permits(&origin.host_port).await;
        let started = std::time::Instant::now();
        let mut authorization = self
            .authorization(&origin.host_port, req.scope.as_deref())
            .await?;
        let mut auth_rounds = 0;
        let mut method = req.method.clone();
        let mut body = req.body.clone();
        let mut url = req.url.clone();
        let mut redirects = 0;
        loop {
            // A host a hosts.toml configures has its own client (its CA, its client
            // certificate) and headers; any other host, the shared one.
            let endpoint = self.endpoint_for(&url, &req);
            let http = match &endpoint {
                Some(e) => &e.http,
                None => self.http(&url).map_err(Failure::Final)?,
            };
            let build = |http: &reqwest::Client| {
                let mut builder = http
                    .request(method.clone(), url.clone())
                    .headers(req.headers.clone());
                if let Some(endpoint) = &endpoint {
                    for (name, value) in &endpoint.headers {
                        builder = builder.header(name, value);
                    }
                }
                // Credentials go to the origin they belong to, never to a redirect target.
                if Origin::of(&url).as_ref() == Some(&origin)
                    && let Some(value) = &authorization
                {
                    builder = builder.header(header::AUTHORIZATION, value);
                }
                if let Some(b) = &body {
                    builder = builder.body(b.clone());
                }
                builder
            };
            let resp = match build(http).send().await {
                Ok(resp) => resp,
                // A server that refuses our client certificate (or its absence) says so
                // with an alert after the TLS handshake. Over HTTP/2 the connection reads
                // it before any request is written, and a request queued on it then fails
                // as "channel closed", the alert's words lost, so the refusal would be
                // retried as if transient. Once more over HTTP/1.1, the request is written
                // first and the alert comes back as its answer.
                Err(e) if url.scheme() == "https" && connection_closed_unheard(&e) => {
                    let http1 = self
                        .http1(&url, endpoint.as_deref())
                        .map_err(Failure::Final)?;
                    tracing::debug!(error = %e, "the connection closed before the request was sent; asking over HTTP/1.1");
                    build(http1)
                        .send()
                        .await
                        .map_err(|e| transport_failure(&url, e))?
                }
                Err(e) => return Err(transport_failure(&url, e)),
            };
            let status = resp.status();
            tracing::debug!(
                %status,
                version = ?resp.version(),
                queued_ms = started.duration_since(queued).as_millis() as u64,
                ms = started.elapsed().as_millis() as u64,
                "response"
            );
            if status.is_redirection()
                && let Some(next) = location(&resp, &url)
            {
                redirects += 1;
                if redirects > self.inner.config.max_redirects {
                    return Err(Failure::Final(Error::Refused {
                        url: shown,
                        reason: format!("more than {} redirects", self.inner.config.max_redirects),
                    }));
                }
                self.check_scheme(&next, self.endpoint_for(&next, &req).as_deref())?;
                tracing::debug!(from = %redact(&url), to = %redact(&next), "redirect");
                if status == StatusCode::SEE_OTHER {
                    method = Method::GET;
                    body = None;
                }
                url = next;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED && Origin::of(&url).as_ref() == Some(&origin) {
                let rejected = || {
                    Failure::Final(Error::Auth {
                        url: redact(&url),
                        host: origin.host_port.clone(),
                        reason: "the registry rejected the credentials or token we sent".into(),
                    })
                };
                // Round one may answer with a cached token; if that is rejected, round two
                // fetches a fresh one (the registry may have revoked the cached one).
                if auth_rounds >= 2 {
                    return Err(rejected());
                }
                let challenge = resp
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(auth::parse_challenge);
                let used = authorization.take();
                let next = self
                    .answer_challenge(&origin, &url, challenge, req.scope.as_deref(), used.clone())
                    .await?;
                if used.as_ref() == Some(&next) {
                    // Nothing new to offer (static credentials): the rejection is final.
                    return Err(rejected());
                }
                authorization = Some(next);
                auth_rounds += 1;
                continue;
            }
            // A 304 answers a conditional request the caller made on purpose.
            if status.is_success() || status == StatusCode::NOT_MODIFIED {
                return Ok(Response {
                    inner: resp,
                    _permits: permits,
                });
            }
            let code = status.as_u16();
            if retry::retryable_status(code) {
                let retry_after = resp
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(retry::parse_retry_after);
                return Err(Failure::Retry {
                    cause: format!("HTTP {code} from {}", redact(&url)),
                    retry_after,
                    unreachable: false,
                });
            }
            return Err(Failure::Final(Error::Status {
                method: method.to_string(),
                url: redact(&url),
                status: code,
            }));
        }
    }

    /// Send with retries, for small bodies (manifests, tag lists): read at most `limit`
    /// bytes. Returns the body and the response headers. With `leave_unreachable`, a host
    /// no connection can be made to is given up on at once (a mirror that is down: the
    /// next host may answer).
    pub(crate) async fn fetch_bytes_from(
        &self,
        req: Request,
        limit: u64,
        what: &'static str,
        leave_unreachable: bool,
    ) -> Result<(Bytes, HeaderMap, StatusCode)> {
        self.fetch_checked(req, limit, what, leave_unreachable, |_| Ok(()))
            .await
    }

    /// [`Self::fetch_bytes_from`], with `check` run on each response before its body is
    /// read: a failure it returns is handled like any other (retried or final).
    pub(crate) async fn fetch_checked(
        &self,
        req: Request,
        limit: u64,
        what: &'static str,
        leave_unreachable: bool,
        check: impl Fn(&Response) -> std::result::Result<(), Failure>,
    ) -> Result<(Bytes, HeaderMap, StatusCode)> {
        let policy = &self.inner.config.retry;
        let start = std::time::Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.send(req.clone()).await {
                Ok(resp) => match check(&resp) {
                    Ok(()) => match read_limited(resp, limit, what).await {
                        Ok(done) => return Ok(done),
                        Err(f) => f,
                    },
                    Err(f) => f,
                },
                Err(f) => f,
            };
            match failure {
                Failure::Final(e) => return Err(e),
                Failure::Retry {
                    cause,
                    retry_after,
                    unreachable,
                } => {
                    if unreachable && leave_unreachable {
                        return Err(Error::Transport {
                            url: redact(&req.url),
                            message: cause,
                        });
                    }
                    if attempt >= policy.max_attempts || start.elapsed() >= policy.max_elapsed {
                        return Err(Error::RetriesExhausted {
                            what: what.to_owned(),
                            url: redact(&req.url),
                            attempts: attempt,
                            without_progress: None,
                            elapsed: start.elapsed(),
                            last: cause,
                        });
                    }
                    tracing::debug!(attempt, %cause, "retrying");
                    tokio::time::sleep(policy.delay(attempt, retry_after)).await;
                }
            }
        }
    }

    /// The endpoint for `url` within `req`: the configured host `req` is addressed to while
    /// `url` stays on it, else whatever is configured for `url`'s `host[:port]`.
    fn endpoint_for(&self, url: &Url, req: &Request) -> Option<Arc<Endpoint>> {
        let origin = Origin::of(url)?;
        match &req.endpoint {
            Some(addressed) if addressed.origin == origin => Some(addressed.clone()),
            _ => self.endpoint(&origin.host_port),
        }
    }

    /// Refuse plain HTTP to a host that has not been allowed it (`endpoint`: the configured
    /// host `url` is for, whose `http://` URL allows it).
    fn check_scheme(&self, url: &Url, endpoint: Option<&Endpoint>) -> Result<(), Failure> {
        match url.scheme() {
            "https" => Ok(()),
            "http" => {
                let host = Origin::of(url).map(|o| o.host_port).unwrap_or_default();
                if endpoint.is_some_and(|e| e.plain_http) || self.allows_plain_http(&host) {
                    Ok(())
                } else {
                    Err(Failure::Final(Error::Refused {
                        url: redact(url),
                        reason: format!(
                            "refusing plain HTTP to {host}: use https, or mark the host insecure \
                             (--insecure-registry {host})"
                        ),
                    }))
                }
            }
            other => Err(Failure::Final(Error::Refused {
                url: redact(url),
                reason: format!("unsupported URL scheme {other:?}"),
            })),
        }
    }

    /// What to send before any challenge: a token we already hold for this scope (or can
    /// get, when the host is known to want tokens), else a static credential.
    async fn authorization(
        &self,
        host: &str,
        scope: Option<&str>,
    ) -> Result<Option<String>, Failure> {
        let credential = self.credential(host).await?;
        if let Some(Credential::Bearer(token)) = &credential {
            return Ok(Some(format!("Bearer {token}")));
        }
        match self.inner.tokens.challenge(host) {
            Some(Challenge::Bearer {
                realm,
                service,
                scope: challenged,
            }) => {
                let Some(scope) = scope.map(str::to_owned).or(challenged) else {
                    return Ok(None);
                };
                let token = self
                    .token(host, &realm, service.as_deref(), &scope, None)
                    .await?;
                Ok(Some(format!("Bearer {token}")))
            }
            Some(Challenge::Basic) => Ok(basic(credential.as_ref())),
            None => Ok(None),
        }
    }

    /// The credential for `host` (asking its Docker credential helper the first time).
    async fn credential(&self, host: &str) -> Result<Option<Credential>, Failure> {
        self.inner
            .credentials
            .lookup(host)
            .await
            .map_err(Failure::Final)
    }

    async fn answer_challenge(
        &self,
        origin: &Origin,
        url: &Url,
        challenge: Option<Challenge>,
        scope: Option<&str>,
        used: Option<String>,
    ) -> Result<String, Failure> {
        let host = &origin.host_port;
        let auth_error = |reason: &str| {
            Failure::Final(Error::Auth {
                url: redact(url),
                host: host.clone(),
                reason: reason.to_owned(),
            })
        };
        match challenge {
            Some(Challenge::Basic) => {
                self.inner.tokens.remember_challenge(host, Challenge::Basic);
                let credential = self.credential(host).await?;
                basic(credential.as_ref()).ok_or_else(|| {
                    auth_error(
                        "the registry requires a username and password and none is configured",
                    )
                })
            }
            Some(Challenge::Bearer {
                realm,
                service,
                scope: challenged,
            }) => {
                self.inner.tokens.remember_challenge(
                    host,
                    Challenge::Bearer {
                        realm: realm.clone(),
                        service: service.clone(),
                        scope: None,
                    },
                );
                let scope = challenged
                    .or_else(|| scope.map(str::to_owned))
                    .unwrap_or_default();
                let stale = used.as_deref().and_then(|u| u.strip_prefix("Bearer "));
                let token = self
                    .token(host, &realm, service.as_deref(), &scope, stale)
                    .await?;
                Ok(format!("Bearer {token}"))
            }
            None => Err(auth_error(
                "HTTP 401 without a usable WWW-Authenticate challenge",
            )),
        }
    }

    /// A token for (host, scope): the cached one unless it is `stale` or expired, else a
    /// fresh one from the realm. One fetch per key at a time.
    async fn token(
        &self,
        host: &str,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        stale: Option<&str>,
    ) -> Result<String, Failure> {
        let slot = self.inner.tokens.slot(host, scope);
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref()
            && token.is_valid()
            && Some(token.value.as_str()) != stale
        {
            return Ok(token.value.clone());
        }
        let token = self.fetch_token(host, realm, service, scope).await?;
        let value = token.value.clone();
        *cached = Some(token);
        Ok(value)
    }

    async fn fetch_token(
        &self,
        host: &str,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<Token, Failure> {
        let refused = |reason: String| {
            Failure::Final(Error::Auth {
                url: realm.to_owned(),
                host: host.to_owned(),
                reason,
            })
        };
        let mut url = Url::parse(realm)
            .map_err(|_| refused("the token realm in WWW-Authenticate is not a URL".into()))?;
        self.check_scheme(&url, self.endpoint(&host.to_ascii_lowercase()).as_deref())?;
        let mut params =
            Url::parse("http://form.invalid/").map_err(|_| refused("internal".into()))?;
        {
            let mut q = params.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            if !scope.is_empty() {
                q.append_pair("scope", scope);
            }
        }
        let credential = self.credential(host).await?;
        let mut req = match &credential {
            Some(Credential::IdentityToken(refresh)) => {
                params
                    .query_pairs_mut()
                    .append_pair("grant_type", "refresh_token")
                    .append_pair("client_id", "pkgload")
                    .append_pair("refresh_token", refresh);
                let mut r = Request::get(url);
                r.method = Method::POST;
                r.body = Some(Bytes::from(params.query().unwrap_or_default().to_owned()));
                r.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            }
            other => {
                url.set_query(params.query());
                let r = Request::get(url);
                match other {
                    Some(Credential::Basic { username, password }) => r.header(
                        header::AUTHORIZATION,
                        &auth::basic_header(username, password),
                    ),
                    _ => r,
                }
            }
        };
        req.headers
            .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        // The realm is a different endpoint; its own 401 means our credentials are wrong.
        let resp = self.send_plain(req).await?;
        let (body, _, _) = read_limited(resp, 1 << 20, "a token response").await?;
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|_| refused("the token endpoint did not answer with token JSON".into()))?;
        let value = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| refused("the token endpoint answered without a token".into()))?;
        tracing::debug!(%host, %scope, "obtained registry token");
        Ok(Token::new(value, parsed.expires_in))
    }

    /// A request with its own headers only: no redirects, no challenge handling (token
    /// realms). Still limited by the host permits.
    async fn send_plain(&self, req: Request) -> Result<Response, Failure> {
        let host = Origin::of(&req.url)
            .map(|o| o.host_port)
            .unwrap_or_default();
        let permits = self.permits(&host).await;
        let mut builder = self
            .http(&req.url)
            .map_err(Failure::Final)?
            .request(req.method.clone(), req.url.clone())
            .headers(req.headers.clone());
        if let Some(b) = req.body {
            builder = builder.body(b);
        }
        let resp = builder
            .send()
            .await
            .map_err(|e| transport_failure(&req.url, e))?;
        let code = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(Response {
                inner: resp,
                _permits: permits,
            });
        }
        if retry::retryable_status(code) {
            return Err(Failure::Retry {
                cause: format!("HTTP {code} from the token endpoint {}", redact(&req.url)),
                retry_after: None,
                unreachable: false,
            });
        }
        Err(Failure::Final(Error::Auth {
            url: redact(&req.url),
            host,
            reason: format!("the token endpoint answered HTTP {code}"),
        }))
    }
}

/// Read a whole body, refusing more than `limit` bytes (checked against Content-Length
/// first, then while reading).
pub(crate) async fn read_limited(
    resp: Response,
    limit: u64,
    what: &'static str,
) -> Result<(Bytes, HeaderMap, StatusCode), Failure> {
    use futures::StreamExt;
    let url = redact(resp.inner.url());
    let too_large = || {
        Failure::Final(Error::TooLarge {
            url: url.clone(),
            what,
            limit,
        })
    };
    if resp.inner.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let headers = resp.inner.headers().clone();
    let status = resp.inner.status();
    let mut body = Vec::new();
    let mut stream = resp.inner.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Failure::Retry {
            cause: format!("reading {what} from {url}: {}", e.without_url()),
            retry_after: None,
            unreachable: false,
        })?;
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok((Bytes::from(body), headers, status))
}

/// Scheme, host and port: where credentials may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    scheme: String,
    pub(crate) host_port: String,
}

impl Origin {
    pub(crate) fn of(url: &Url) -> Option<Origin> {
        let host = url.host_str()?;
        let host_port = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        Some(Origin {
            scheme: url.scheme().to_owned(),
            host_port: host_port.to_ascii_lowercase(),
        })
    }
}

/// `Authorization: Basic …` from a username-and-password credential.
fn basic(credential: Option<&Credential>) -> Option<String> {
    match credential {
        Some(Credential::Basic { username, password }) => {
            Some(auth::basic_header(username, password))
        }
        _ => None,
    }
}

fn location(resp: &reqwest::Response, base: &Url) -> Option<Url> {
    let value = resp.headers().get(header::LOCATION)?.to_str().ok()?;
    base.join(value).ok()
}

/// `localhost`, `127.0.0.0/8` and `[::1]`, with or without a port.
pub(crate) fn is_loopback(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The settings every client shares, before any host's TLS settings.
fn base_builder(config: &ClientConfig) -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder()
        .user_agent(config.user_agent.clone())
        .connect_timeout(config.connect_timeout)
        .read_timeout(config.read_timeout)
        // We follow redirects ourselves: see `send`.
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(config.max_per_host.max(1))
        .tcp_nodelay(true);
    if let Some(total) = config.request_timeout {
        builder = builder.timeout(total);
    }
    builder
}

/// A registry's configured hosts, each with its endpoint.
pub(crate) struct ConfiguredHosts {
    pub(crate) hosts: Arc<RegistryHosts>,
    /// One per mirror, in order.
    mirrors: Vec<Arc<Endpoint>>,
    origin: Arc<Endpoint>,
}

impl ConfiguredHosts {
    /// Each mirror, in file order, with its endpoint.
    pub(crate) fn mirrors(&self) -> impl Iterator<Item = (&Host, &Arc<Endpoint>)> {
        self.hosts.mirrors.iter().zip(&self.mirrors)
    }

    /// The registry itself (`server`), with its endpoint.
    pub(crate) fn origin(&self) -> (&Host, &Arc<Endpoint>) {
        (&self.hosts.origin, &self.origin)
    }
}

/// A host a `hosts.toml` configures, ready to be spoken to. Requests carry it, rather than
/// finding it by `host[:port]`: two tables may name one `host[:port]` with different
/// settings (a `[host."https://registry"]` table repeating the `server` to give it a `ca`,
/// or two registries' files naming one mirror), and each is spoken to as written.
pub(crate) struct Endpoint {
    origin: Origin,
    http: reqwest::Client,
    headers: Vec<(String, String)>,
    /// Its URL says `http://`: plain HTTP was asked for explicitly.
    plain_http: bool,
    /// What its clients are built from, for the HTTP/1.1 one (see `send_inner`).
    host: Host,
    file: std::path::PathBuf,
    http1: OnceLock<std::result::Result<reqwest::Client, String>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.origin.scheme, self.origin.host_port)
    }
}

impl Endpoint {
    fn new(config: &ClientConfig, host: &Host, file: &std::path::Path) -> Result<Endpoint> {
        let failed = |message: String| Error::Transport {
            url: host.api.to_string(),
            message: format!("{message} (configured in {})", file.display()),
        };
        let http = with_tls(base_builder(config), &host.tls, &failed)?
            .build()
            .map_err(|e| failed(format!("cannot build its HTTP client: {e}")))?;
        let origin = Origin::of(&host.api).ok_or_else(|| failed("not an http(s) URL".into()))?;
        Ok(Endpoint {
            origin,
            http,
            headers: host.headers.clone(),
            plain_http: host.api.scheme() == "http",
            host: host.clone(),
            file: file.to_owned(),
            http1: OnceLock::new(),
        })
    }

    /// Its client limited to HTTP/1.1, built on first use.
    fn http1(&self, config: &ClientConfig) -> std::result::Result<&reqwest::Client, String> {
        self.http1
            .get_or_init(|| {
                let failed = |message: String| Error::Transport {
                    url: self.host.api.to_string(),
                    message,
                };
                with_tls(base_builder(config).http1_only(), &self.host.tls, &failed)
                    .and_then(|b| b.build().map_err(|e| failed(e.to_string())))
                    .map_err(|e| format!("{e} (configured in {})", self.file.display()))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// `builder` trusting `tls.ca` besides the system's roots and presenting `tls.client`.
fn with_tls(
    mut builder: reqwest::ClientBuilder,
    tls: &TlsSettings,
    failed: &dyn Fn(String) -> Error,
) -> Result<reqwest::ClientBuilder> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| failed(format!("cannot read {}: {e}", path.display())))
    };
    for ca in &tls.ca {
        let certs = reqwest::Certificate::from_pem_bundle(&read(ca)?)
            .map_err(|e| failed(format!("{} is not a PEM certificate: {e}", ca.display())))?;
        builder = builder.tls_certs_merge(certs);
    }
    // rustls presents one client identity; the first that loads is it.
    if let Some((cert, key)) = tls.client.first() {
        let mut pem = read(cert)?;
        if let Some(key) = key {
            pem.push(b'\n');
            pem.extend(read(key)?);
        }
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
            failed(format!(
                "{} is not a PEM certificate with its private key: {e}",
                cert.display()
            ))
        })?;
        builder = builder.identity(identity);
    }
    if tls.skip_verify {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    Ok(builder)
}

/// Why a TLS connection was refused, in the TLS layer's words.
#[derive(Debug, PartialEq, Eq)]
enum TlsRefusal {
    /// We do not trust the server's certificate.
    Untrusted(String),
    /// The server sent an alert: it refused our client certificate, or the lack of one.
    RefusedUs(String),
}

/// The alerts a server sends about the client's certificate. Under TLS 1.3 they come after
/// the handshake, on the first read, and over HTTP/2 the `h2` crate keeps only the words of
/// the I/O error that carried them; those words are rustls's own for these alerts.
const CERTIFICATE_ALERTS: [rustls::AlertDescription; 7] = [
    rustls::AlertDescription::BadCertificate,
    rustls::AlertDescription::UnsupportedCertificate,
    rustls::AlertDescription::CertificateRevoked,
    rustls::AlertDescription::CertificateExpired,
    rustls::AlertDescription::CertificateUnknown,
    rustls::AlertDescription::UnknownCA,
    rustls::AlertDescription::CertificateRequired,
];

/// The host's certificate was refused, or ours, if that is what `e` is.
fn tls_refusal(e: &(dyn std::error::Error + 'static)) -> Option<TlsRefusal> {
    let mut source = Some(e);
    while let Some(mut inner) = source {
        // An io::Error's `source` skips the error it wraps (and the connector wraps the
        // TLS error in two of them); look inside.
        while let Some(wrapped) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            inner = wrapped;
        }
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return match tls {
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                    Some(TlsRefusal::Untrusted(tls.to_string()))
                }
                rustls::Error::AlertReceived(_) => Some(TlsRefusal::RefusedUs(tls.to_string())),
                _ => None,
            };
        }
        let words = inner.to_string();
        if CERTIFICATE_ALERTS
            .iter()
            .any(|&alert| words == rustls::Error::AlertReceived(alert).to_string())
        {
            return Some(TlsRefusal::RefusedUs(words));
        }
        source = inner.source();
    }
    None
}

/// True when `e` says the connection closed before the request went out, without saying
/// why: hyper's words for a request whose connection task ended first.
fn connection_closed_unheard(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(inner) = source {
        if inner.to_string() == "channel closed" {
            return true;
        }
        source = inner.source();
    }
    false
}

fn transport_failure(url: &Url, e: reqwest::Error) -> Failure {
    let shown = redact(url);
    // `without_url`: reqwest's own message would repeat the URL, query and all.
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        message = format!("{message}: {inner}");
        source = inner.source();
    }
    if e.is_builder() {
        return Failure::Final(Error::Transport {
            url: shown,
            message,
        });
    }
    // Trust is not transient: a certificate refused now is refused on every retry.
    if let Some(refusal) = tls_refusal(&e) {
        let host = Origin::of(url).map(|o| o.host_port).unwrap_or_default();
        return Failure::Final(match refusal {
            TlsRefusal::Untrusted(message) => Error::Tls {
                url: shown,
                host,
                message,
            },
            TlsRefusal::RefusedUs(message) => Error::TlsClientRefused {
                url: shown,
                host,
                message,
            },
        });
    }
    // Connect errors, timeouts, resets and broken bodies are all worth another attempt.
    Failure::Retry {
        cause: format!("{shown}: {message}"),
        retry_after: None,
        unreachable: e.is_connect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]:5000",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "example.com",
            "10.0.0.1:5000",
            "[::2]:1",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn a_certificate_alert_is_a_refusal_even_when_only_its_words_came_through() {
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate);
        // How hyper's HTTP/1 path hands it on: the rustls error inside an io::Error.
        let typed = std::io::Error::new(std::io::ErrorKind::InvalidData, alert.clone());
        assert_eq!(
            tls_refusal(&typed),
            Some(TlsRefusal::RefusedUs(alert.to_string()))
        );
        // How h2 hands it on: the words alone.
        let words = std::io::Error::new(std::io::ErrorKind::InvalidData, alert.to_string());
        assert_eq!(
            tls_refusal(&words),
            Some(TlsRefusal::RefusedUs(alert.to_string()))
        );
        // Other alerts and other errors stay transient.
        let close = rustls::Error::AlertReceived(rustls::AlertDescription::InternalError);
        let words = std::io::Error::new(std::io::ErrorKind::InvalidData, close.to_string());
        assert_eq!(tls_refusal(&words), None);
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        assert_eq!(tls_refusal(&reset), None);
    }

    #[test]
    fn origins_differ_by_port_and_scheme() {
        let a = Origin::of(&Url::parse("http://127.0.0.1:5000/v2/").unwrap());
        let b = Origin::of(&Url::parse("http://127.0.0.1:5001/v2/").unwrap());
        let c = Origin::of(&Url::parse("https://127.0.0.1:5000/v2/").unwrap());
        assert_ne!(a, b);
        assert_ne!(a, c);
    }
}

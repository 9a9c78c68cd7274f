//! A throwaway `docker-registry` (CNCF distribution 2.x, Debian package `docker-registry`)
//! on a free loopback port, for tests against a real OCI registry.
//!
//! ```no_run
//! use test_servers::registry::Registry;
//!
//! let registry = Registry::start()?;
//! let image = registry.push_image(
//!     "demo/app",
//!     "v1",
//!     br#"{"architecture":"amd64","os":"linux"}"#,
//!     &[("application/vnd.oci.image.layer.v1.tar", b"layer bytes".as_slice())],
//! )?;
//! // A client under test now pulls `{registry.host()}/demo/app:v1`.
//! assert!(image.manifest_digest.starts_with("sha256:"));
//! # Ok::<(), test_servers::registry::RegistryError>(())
//! ```
//!
//! Each [`Registry`] is its own process with its own storage; it starts in well under a
//! second, so tests need not share one.

mod http;

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use http::Response;

use crate::text::{json_string, sha256_digest};

/// Where Debian installs the binary; `PATH` is searched first.
const DEFAULT_BINARY: &str = "/usr/bin/docker-registry";
/// How long a starting registry may take to answer `GET /v2/`.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Per-request timeout of the helper client.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at a free port: another process may take the port between our probe and the
/// registry's bind.
const PORT_ATTEMPTS: usize = 3;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Why a registry could not be started or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The binary is not installed.
    #[error(
        "docker-registry is not installed (looked for {looked_for}): run `cargo xtask test`, \
         which installs it, or `apt-get install docker-registry`"
    )]
    NotInstalled {
        /// The places searched.
        looked_for: String,
    },
    /// Preparing, starting or talking to the registry failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The process exited before it was ready.
    #[error("docker-registry exited during startup ({status}); its stderr:\n{stderr}")]
    Exited {
        /// How it exited.
        status: ExitStatus,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// The process did not answer `GET /v2/` with `200` in time.
    #[error(
        "docker-registry did not answer 200 at http://{addr}/v2/ within {waited:?}; its stderr:\n{stderr}"
    )]
    NotReady {
        /// Where it should have listened.
        addr: SocketAddr,
        /// How long we waited.
        waited: Duration,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// A request got an unexpected status.
    #[error("{request} answered {status}: {body}")]
    Status {
        /// Method and target.
        request: String,
        /// The status received.
        status: u16,
        /// The response body, as text.
        body: String,
    },
    /// A response lacked something the protocol promises.
    #[error("{request}: {problem}")]
    Protocol {
        /// Method and target.
        request: String,
        /// What was wrong.
        problem: String,
    },
}

fn io_error(action: impl Into<String>) -> impl FnOnce(io::Error) -> RegistryError {
    let action = action.into();
    move |source| RegistryError::Io { action, source }
}

/// Digests of what [`Registry::push_image`] stored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PushedImage {
    /// `sha256:…` of the manifest.
    pub manifest_digest: String,
    /// The manifest as pushed (an OCI image manifest).
    pub manifest: Vec<u8>,
    /// `sha256:…` of the config blob.
    pub config_digest: String,
    /// `sha256:…` of each layer, in order.
    pub layer_digests: Vec<String>,
}

/// A running `docker-registry`; stopped (killed) and its storage deleted on drop.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    addr: SocketAddr,
    /// Served over TLS (see [`Registry::start_tls`]).
    tls: bool,
    // Dropped after `child` is killed (see `Drop`), so the process never sees its files go.
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry on a free `127.0.0.1` port with storage in a new temporary
    /// directory, and waits until `GET /v2/` answers `200`.
    pub fn start() -> Result<Registry, RegistryError> {
        Registry::start_with(Mode::Plain)
    }

    /// Starts a registry that speaks only TLS with `tls`'s certificate (and requires a
    /// client certificate signed by `tls.client_ca`, when given). It is filled through the
    /// client under test: the plain-HTTP helpers below ([`Registry::push_blob`], …) do not
    /// speak TLS.
    pub fn start_tls(tls: &RegistryTls) -> Result<Registry, RegistryError> {
        Registry::start_with(Mode::Tls(tls))
    }

    /// Starts a pull-through cache (distribution's proxy mode) of the registry at `remote`
    /// (`http://host:port`): it fetches what it lacks from there and keeps it. It refuses
    /// pushes.
    pub fn start_proxy(remote: &str) -> Result<Registry, RegistryError> {
        Registry::start_with(Mode::Proxy(remote))
    }

    fn start_with(mode: Mode<'_>) -> Result<Registry, RegistryError> {
        let binary = find_binary()?;
        let mut attempt = 1;
        loop {
            match Registry::launch(&binary, mode) {
                Err(RegistryError::Exited { stderr, .. })
                    if attempt < PORT_ATTEMPTS && stderr.contains("address already in use") =>
                {
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    fn launch(binary: &Path, mode: Mode<'_>) -> Result<Registry, RegistryError> {
        let port = free_port()?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let dir = tempfile::Builder::new()
            .prefix("pkgload-registry-")
            .tempdir()
            .map_err(io_error("creating the registry's temporary directory"))?;
        let storage = dir.path().join("storage");
        let config = dir.path().join("config.yml");
        std::fs::write(&config, config_yaml(&storage, addr, mode))
            .map_err(io_error(format!("writing {}", config.display())))?;
        let log = dir.path().join("stderr.log");
        let stderr = File::create(&log).map_err(io_error(format!("creating {}", log.display())))?;

        let mut command = Command::new(binary);
        command
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        // REGISTRY_* variables override the config file; ours must win.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("REGISTRY_") {
                command.env_remove(name);
            }
        }
        let child = command
            .spawn()
            .map_err(io_error(format!("starting {}", binary.display())))?;
        let mut registry = Registry {
            child,
            addr,
            tls: matches!(mode, Mode::Tls(_)),
            dir,
        };
        registry.wait_ready()?;
        Ok(registry)
    }

    fn wait_ready(&mut self) -> Result<(), RegistryError> {
        let started = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(io_error("checking on docker-registry"))?
            {
                return Err(RegistryError::Exited {
                    status,
                    stderr: self.stderr(),
                });
            }
            let probe = http::send(self.addr, "GET", "/v2/", &[], b"", Duration::from_secs(1));
            // A TLS listener answers plain HTTP with 400: it is up.
            let ready = if self.tls { 400 } else { 200 };
            if probe.is_ok_and(|response| response.status == ready) {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(RegistryError::NotReady {
                    addr: self.addr,
                    waited: started.elapsed(),
                    stderr: self.stderr(),
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http(s)://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The registry's storage root, e.g. to corrupt or delete a blob behind its back.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// What the registry wrote to stderr so far (warnings and errors only).
    pub fn stderr(&self) -> String {
        std::fs::read(self.dir.path().join("stderr.log"))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// `GET target` (a path such as `/v2/_catalog`), whatever the status.
    pub fn get(&self, target: &str) -> Result<Response, RegistryError> {
        self.request("GET", target, &[], b"")
    }

    /// Any request, on a fresh connection, whatever the status. Note that distribution
    /// 2.x answers `404` for an OCI manifest unless `Accept` lists its media type.
    pub fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, RegistryError> {
        http::send(self.addr, method, target, headers, body, REQUEST_TIMEOUT)
            .map_err(io_error(format!("{method} {target}")))
    }

    /// Uploads `data` as a blob of `repository` (monolithic upload) and returns its digest.
    pub fn push_blob(&self, repository: &str, data: &[u8]) -> Result<String, RegistryError> {
        let start = format!("/v2/{repository}/blobs/uploads/");
        let session = self.expect("POST", &start, &[], b"", 202)?;
        let location = session
            .header("location")
            .ok_or_else(|| RegistryError::Protocol {
                request: format!("POST {start}"),
                problem: "202 without Location".to_owned(),
            })?;
        let digest = sha256_digest(data);
        let separator = if location.contains('?') { '&' } else { '?' };
        let target = format!("{}{separator}digest={digest}", request_target(location));
        let headers = [("Content-Type", "application/octet-stream")];
        self.expect("PUT", &target, &headers, data, 201)?;
        Ok(digest)
    }

    /// Stores `manifest` under `reference` (a tag or digest) of `repository` and returns its
    /// digest. The blobs it refers to must be pushed first.
    pub fn push_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        manifest: &[u8],
    ) -> Result<String, RegistryError> {
        let target = format!("/v2/{repository}/manifests/{reference}");
        self.expect(
            "PUT",
            &target,
            &[("Content-Type", media_type)],
            manifest,
            201,
        )?;
        Ok(sha256_digest(manifest))
    }

    /// Pushes an OCI image: the `config` blob, the `layers` (media type and bytes each),
    /// then a manifest listing them, tagged `tag`.
    pub fn push_image(
        &self,
        repository: &str,
        tag: &str,
        config: &[u8],
        layers: &[(&str, &[u8])],
    ) -> Result<PushedImage, RegistryError> {
        let config_digest = self.push_blob(repository, config)?;
        let mut layer_digests = Vec::with_capacity(layers.len());
        let mut descriptors = Vec::with_capacity(layers.len());
        for (media_type, data) in layers {
            let digest = self.push_blob(repository, data)?;
            descriptors.push(descriptor(media_type, &digest, data.len()));
            layer_digests.push(digest);
        }
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":{},"config":{},"layers":[{}]}}"#,
            json_string(OCI_MANIFEST),
            descriptor(OCI_CONFIG, &config_digest, config.len()),
            descriptors.join(",")
        )
        .into_bytes();
        let manifest_digest = self.push_manifest(repository, tag, OCI_MANIFEST, &manifest)?;
        Ok(PushedImage {
            manifest_digest,
            manifest,
            config_digest,
            layer_digests,
        })
    }

    fn expect(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        status: u16,
    ) -> Result<Response, RegistryError> {
        let response = self.request(method, target, headers, body)?;
        if response.status != status {
            return Err(RegistryError::Status {
                request: format!("{method} {target}"),
                status: response.status,
                body: response.text(),
            });
        }
        Ok(response)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Already gone is fine; `wait` reaps it so no zombie outlives the test.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The request target for a `Location`, which the registry may give as an absolute URL.
fn request_target(location: &str) -> &str {
    match location.split_once("://") {
        Some((_, rest)) => rest.find('/').and_then(|at| rest.get(at..)).unwrap_or("/"),
        None => location,
    }
}

fn descriptor(media_type: &str, digest: &str, size: usize) -> String {
    format!(
        r#"{{"mediaType":{},"digest":{},"size":{size}}}"#,
        json_string(media_type),
        json_string(digest)
    )
}

/// The registry's configuration: storage in `storage`, listening on `addr`, quiet.
/// How a registry serves.
#[derive(Debug, Clone, Copy)]
enum Mode<'a> {
    Plain,
    Tls(&'a RegistryTls),
    /// A pull-through cache of this remote.
    Proxy(&'a str),
}

/// The certificate a TLS registry serves with, and the CA its clients must be signed by.
#[derive(Debug, Clone)]
pub struct RegistryTls {
    /// PEM certificate.
    pub certificate: PathBuf,
    /// PEM key.
    pub key: PathBuf,
    /// When set, a client certificate signed by this CA is required.
    pub client_ca: Option<PathBuf>,
}

fn config_yaml(storage: &Path, addr: SocketAddr, mode: Mode<'_>) -> String {
    // A JSON string is a valid YAML double-quoted scalar, whatever the path holds.
    let root = json_string(&storage.to_string_lossy());
    let path = |p: &Path| json_string(&p.to_string_lossy());
    let (tls, proxy) = match mode {
        Mode::Plain => (String::new(), String::new()),
        Mode::Proxy(remote) => (
            String::new(),
            format!("proxy:\n  remoteurl: {}\n", json_string(remote)),
        ),
        Mode::Tls(tls) => {
            let mut section = format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                path(&tls.certificate),
                path(&tls.key)
            );
            if let Some(ca) = &tls.client_ca {
                section += &format!("    clientcas:\n      - {}\n", path(ca));
            }
            (section, String::new())
        }
    };
    format!(
        "version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
  # A fixed secret silences the warning about a generated one.
  secret: pkgload-test-registry
{tls}{proxy}health:
  storagedriver:
    enabled: false
"
    )
}

fn find_binary() -> Result<PathBuf, RegistryError> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("docker-registry"))
                .collect()
        })
        .unwrap_or_default();
    candidates.push(PathBuf::from(DEFAULT_BINARY));
    candidates
        .into_iter()
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| RegistryError::NotInstalled {
            looked_for: format!("docker-registry in PATH and {DEFAULT_BINARY}"),
        })
}

/// A port that was free a moment ago (the OS picks it; the registry binds it next).
fn free_port() -> Result<u16, RegistryError> {
    let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(io_error("finding a free loopback port"))?;
    probe
        .local_addr()
        .map(|addr| addr.port())
        .map_err(io_error("finding a free loopback port"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_error_says_how_to_install() {
        let message = RegistryError::NotInstalled {
            looked_for: "here".to_owned(),
        }
        .to_string();
        assert!(message.contains("cargo xtask test"), "{message}");
        assert!(
            message.contains("apt-get install docker-registry"),
            "{message}"
        );
    }

    #[test]
    fn config_quotes_the_storage_path() {
        let config = config_yaml(
            Path::new("/tmp/a \"b\""),
            SocketAddr::from(([127, 0, 0, 1], 5000)),
            Mode::Plain,
        );
        assert!(
            config.contains(r#"rootdirectory: "/tmp/a \"b\"""#),
            "{config}"
        );
        assert!(config.contains("addr: 127.0.0.1:5000"), "{config}");
        assert!(!config.contains("tls:"), "{config}");
        let tls = RegistryTls {
            certificate: "/c/s.pem".into(),
            key: "/c/s.key".into(),
            client_ca: Some("/c/ca.pem".into()),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], 5000));
        let config = config_yaml(Path::new("/s"), addr, Mode::Tls(&tls));
        let expected = "  tls:\n    certificate: \"/c/s.pem\"\n    key: \"/c/s.key\"\n    \
                        clientcas:\n      - \"/c/ca.pem\"\n";
        assert!(config.contains(expected), "{config}");
    }

    #[test]
    fn locations_become_request_targets() {
        assert_eq!(
            request_target("http://127.0.0.1:5000/v2/a/blobs/uploads/u?x=1"),
            "/v2/a/blobs/uploads/u?x=1"
        );
        assert_eq!(
            request_target("/v2/a/blobs/uploads/u"),
            "/v2/a/blobs/uploads/u"
        );
        assert_eq!(request_target("http://host"), "/");
    }
}

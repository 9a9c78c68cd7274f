//! JSON and TOML documents: OCI manifests and indexes, artifact classification, package
//! configs, lockfiles and Docker's `config.json`.

use std::fmt::Write as _;
use std::path::PathBuf;

use base64::Engine as _;
use bytes::Bytes;
use cache_core::Algorithm;
use fetch_http::platform::{Platform, PlatformMatcher};
use fetch_http::{Credential, Credentials, MANIFEST_MEDIA_TYPES, Manifest, ManifestKind};
use oci_spec::image::ImageManifest;

use super::{Feedback, Target, utf8};

const CONFIG_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
const LAYER_DIGEST: &str =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

const JSON_TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"null",
    b"true",
    b"0",
    b"-1",
    b"1e999",
    b"\\u0000",
    b"\\ud800",
    b"\"mediaType\":",
    b"\"digest\":",
    b"\"size\":",
    b"\"layers\":",
    b"\"manifests\":",
    b"\"config\":",
    b"\"annotations\":",
    b"\"artifactType\":",
    b"\"platform\":",
    b"\"schemaVersion\":2",
    b"\"org.opencontainers.image.title\":",
    b"\"application/vnd.oci.image.layer.v1.tar\"",
    b"\"application/vnd.oci.image.layer.v1.tar+gzip\"",
    b"\"application/wasm\"",
    b"\"application/vnd.oci.image.config.v1+json\"",
    b"\"application/vnd.pkgload.package.config.v1+json\"",
    b"\"application/vnd.pkgload.package.v1\"",
    b"\"application/vnd.oci.image.index.v1+json\"",
    b"\"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"",
    b"\"os\":\"linux\"",
    b"\"architecture\":\"arm64\"",
    b"\"variant\":\"v8\"",
];

fn image_manifest_json(config_media_type: &str, layers: &[(&str, Option<&str>)]) -> String {
    let layers: Vec<String> = layers
        .iter()
        .map(|(media_type, title)| {
            let annotations = title.map_or(String::new(), |t| {
                format!(r#","annotations":{{"org.opencontainers.image.title":"{t}"}}"#)
            });
            format!(
                r#"{{"mediaType":"{media_type}","digest":"{LAYER_DIGEST}","size":0{annotations}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"{config_media_type}","digest":"{CONFIG_DIGEST}","size":2}},"layers":[{}]}}"#,
        layers.join(",")
    )
}

fn manifest_documents() -> Vec<String> {
    vec![
        image_manifest_json(
            "application/vnd.oci.image.config.v1+json",
            &[
                ("application/vnd.oci.image.layer.v1.tar+gzip", None),
                ("application/vnd.oci.image.layer.v1.tar", None),
            ],
        ),
        image_manifest_json(
            "application/vnd.pkgload.package.config.v1+json",
            &[
                ("application/vnd.oci.image.layer.v1.tar", Some("app")),
                ("application/wasm", Some("app")),
            ],
        ),
        image_manifest_json("application/vnd.unknown", &[("application/wasm", None)]),
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{LAYER_DIGEST}","size":7,"platform":{{"os":"linux","architecture":"amd64"}}}},{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{CONFIG_DIGEST}","size":7,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#
        ),
    ]
}

pub(super) const MANIFEST: Target = Target {
    name: "manifest",
    about: "fetch_http::Manifest::from_verified_bytes (first byte picks the declared media \
            type): what parses re-serializes to a fixpoint; platform selection stays in range",
    run: manifest,
    seeds: manifest_seeds,
    dictionary: JSON_TOKENS,
    max_len: 8192,
};

fn manifest(data: &[u8]) -> Feedback {
    let Some((&selector, document)) = data.split_first() else {
        return Feedback::new("empty");
    };
    let declared = MANIFEST_MEDIA_TYPES
        .get(usize::from(selector % 6))
        .copied()
        .or((selector % 6 == 5).then_some("text/plain"));
    let digest = Algorithm::Sha256.digest(document);
    let parsed = match Manifest::from_verified_bytes(
        digest,
        Bytes::copy_from_slice(document),
        declared,
        "fuzz",
    ) {
        Ok(parsed) => parsed,
        Err(e) => return Feedback::err("manifest", &e),
    };
    assert_eq!(parsed.digest, digest);
    assert_eq!(parsed.bytes.as_ref(), document);
    if let Some(declared) = declared.filter(|d| MANIFEST_MEDIA_TYPES.contains(d)) {
        assert_eq!(parsed.media_type, declared, "a known declared type wins");
    }
    // Serializing what was parsed and parsing that must reach a fixpoint at once.
    let written = match &parsed.kind {
        ManifestKind::Image(image) => serde_json::to_vec(image),
        ManifestKind::Index(index) => serde_json::to_vec(index),
    }
    .unwrap_or_else(|e| panic!("a parsed manifest does not serialize: {e}"));
    let reparsed = Manifest::from_verified_bytes(
        Algorithm::Sha256.digest(&written),
        Bytes::from(written.clone()),
        Some(&parsed.media_type),
        "fuzz",
    )
    .unwrap_or_else(|e| {
        panic!(
            "a parsed manifest, serialized, does not parse again: {e}\n{}",
            String::from_utf8_lossy(&written)
        )
    });
    let rewritten = match &reparsed.kind {
        ManifestKind::Image(image) => serde_json::to_vec(image),
        ManifestKind::Index(index) => serde_json::to_vec(index),
    }
    .unwrap_or_else(|e| panic!("a parsed manifest does not serialize: {e}"));
    // Compared as JSON values: oci-spec keeps annotations in a HashMap, so their order in
    // the text changes from one serialization to the next.
    let as_value = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).ok();
    assert_eq!(
        as_value(&rewritten),
        as_value(&written),
        "serialize -> parse -> serialize must be a fixpoint"
    );
    match &parsed.kind {
        ManifestKind::Image(image) => Feedback::ok("image", image.layers().len())
            .with(media_type_feedback(&parsed.media_type)),
        ManifestKind::Index(index) => {
            let manifests = index.manifests();
            for wanted in [
                Platform::new("linux", "amd64"),
                Platform::new("linux", "arm64").with_variant("v8"),
                Platform::new("windows", "amd64").with_os_version("10.0.17763.1"),
            ] {
                let matcher = PlatformMatcher::new(&wanted);
                if let Some(i) = matcher.select_index(manifests, fetch_http::descriptor_platform) {
                    let chosen = manifests
                        .get(i)
                        .unwrap_or_else(|| panic!("select_index gave {i} of {}", manifests.len()));
                    let platform = fetch_http::descriptor_platform(chosen)
                        .unwrap_or_else(|| panic!("entry {i} has no platform but was chosen"));
                    assert!(
                        matcher.matches(&platform),
                        "{platform:?} chosen for {wanted:?}"
                    );
                }
            }
            Feedback::ok("index", manifests.len()).with(media_type_feedback(&parsed.media_type))
        }
    }
}

/// A known media type by name, any other as one value (the document's own `mediaType` is
/// arbitrary text).
fn media_type_feedback(media_type: &str) -> Feedback {
    Feedback::new(if MANIFEST_MEDIA_TYPES.contains(&media_type) {
        media_type
    } else {
        "other"
    })
}

fn manifest_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (i, doc) in manifest_documents().into_iter().enumerate() {
        let mut seed = vec![if i == 3 { 4 } else { (i % 6) as u8 }];
        seed.extend_from_slice(doc.as_bytes());
        seeds.push(seed);
    }
    seeds
}

pub(super) const ARTIFACT: Target = Target {
    name: "artifact",
    about: "loader::Artifact::classify over a parsed oci_spec ImageManifest: the kind agrees \
            with the layers, volumes are tars and atoms are not, titles are found",
    run: artifact,
    seeds: artifact_seeds,
    dictionary: JSON_TOKENS,
    max_len: 8192,
};

fn artifact(data: &[u8]) -> Feedback {
    let manifest: ImageManifest = match serde_json::from_slice(data) {
        Ok(m) => m,
        Err(e) => return Feedback::err("json", &e),
    };
    let digest = Algorithm::Sha256.digest(data);
    let artifact = match loader::Artifact::classify(&manifest, digest, "fuzz") {
        Ok(a) => a,
        Err(e) => return Feedback::err("classify", &e),
    };
    assert_eq!(artifact.layers.len(), manifest.layers().len());
    assert_eq!(artifact.digest, digest);
    assert_eq!(
        artifact.config.digest.to_string(),
        manifest.config().digest().to_string(),
        "the config digest must be kept verbatim"
    );
    match artifact.kind {
        loader::ArtifactKind::Image => {
            assert!(artifact.layers.iter().all(loader::BlobRef::is_tar));
        }
        loader::ArtifactKind::Wasm => {
            // Exactly one wasm layer, whatever else there is: that layer is the module.
            assert_eq!(artifact.layers.iter().filter(|l| l.is_wasm()).count(), 1);
            assert!(artifact.wasm_module().is_some_and(loader::BlobRef::is_wasm));
        }
        loader::ArtifactKind::Webc => {
            assert_eq!(artifact.layers.iter().filter(|l| l.is_webc()).count(), 1);
            assert!(artifact.webc_file().is_some_and(loader::BlobRef::is_webc));
        }
        loader::ArtifactKind::Package => {}
    }
    for layer in &artifact.layers {
        let Some(title) = layer.title.as_deref() else {
            continue;
        };
        let (found, other) = if layer.is_tar() {
            (artifact.volume(title), artifact.atom(title))
        } else {
            (artifact.atom(title), artifact.volume(title))
        };
        let found = found.unwrap_or_else(|| panic!("layer titled {title:?} is not found"));
        assert_eq!(found.title.as_deref(), Some(title));
        assert_eq!(found.is_tar(), layer.is_tar());
        if let Some(other) = other {
            assert_ne!(other.is_tar(), layer.is_tar());
        }
    }
    let _ = artifact.titles();
    Feedback::ok(&format!("{:?}", artifact.kind), artifact.layers.len())
}

fn artifact_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = manifest_documents()
        .into_iter()
        .take(3)
        .map(String::into_bytes)
        .collect();
    seeds.push(
        image_manifest_json(
            "application/vnd.docker.container.image.v1+json",
            &[("application/vnd.docker.image.rootfs.diff.tar.gzip", None)],
        )
        .into_bytes(),
    );
    seeds
}

pub(super) const PACKAGE_CONFIG: Target = Target {
    name: "package_config",
    about: "resolve_graph::Manifest::from_json: an accepted config, written back as JSON \
            (version requirements printed), parses to the same manifest",
    run: package_config,
    seeds: package_config_seeds,
    dictionary: &[
        b"{",
        b"}",
        b"\"",
        b":",
        b",",
        b"null",
        b"\"schemaVersion\":1",
        b"\"name\":",
        b"\"version\":",
        b"\"dependencies\":",
        b"\"commands\":",
        b"\"entrypoint\":",
        b"\"fs\":",
        b"\"package\":",
        b"\"runner\":",
        b"\"atom\":",
        b"\"dependency\":",
        b"\"volume\":",
        b"\"mount\":",
        b"\"path\":",
        b"\"annotations\":",
        b"\"acme/app\"",
        b"\"1.0.0\"",
        b"\">=3.11, <3.14\"",
        b"\"^1\"",
        b"\"*\"",
        b"\"=1.2.3-alpha.1+build\"",
        b"\"/app\"",
        b"\"/..\"",
        b"\"wasi\"",
    ],
    max_len: 4096,
};

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|e| panic!("a string does not serialize: {e}"))
}

fn package_config(data: &[u8]) -> Feedback {
    let manifest = match resolve_graph::Manifest::from_json(data) {
        Ok(m) => m,
        Err(e) => return Feedback::err("config", &e),
    };
    assert!(
        manifest.validate().is_ok(),
        "a parsed manifest must validate"
    );
    let mut out = format!(
        r#"{{"schemaVersion":1,"name":{},"version":{},"dependencies":{{"#,
        json_str(manifest.name.as_str()),
        json_str(&manifest.version.to_string())
    );
    for (i, dep) in manifest.dependencies.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(
            out,
            r#"{sep}{}:{{"package":{},"version":{}}}"#,
            json_str(&dep.alias),
            json_str(dep.package.as_str()),
            json_str(&dep.req.to_string())
        );
    }
    out.push_str(r#"},"commands":{"#);
    for (i, c) in manifest.commands.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let dependency = c.dependency.as_deref().map_or(String::new(), |d| {
            format!(r#","dependency":{}"#, json_str(d))
        });
        let annotations = serde_json::to_string(&c.annotations)
            .unwrap_or_else(|e| panic!("annotations do not serialize: {e}"));
        let _ = write!(
            out,
            r#"{sep}{}:{{"runner":{},"atom":{}{dependency},"annotations":{annotations}}}"#,
            json_str(&c.name),
            json_str(&c.runner),
            json_str(&c.atom)
        );
    }
    out.push_str("},\"fs\":[");
    for (i, m) in manifest.fs.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let dependency = m.dependency.as_deref().map_or(String::new(), |d| {
            format!(r#","dependency":{}"#, json_str(d))
        });
        let _ = write!(
            out,
            r#"{sep}{{"volume":{},"mount":{},"path":{}{dependency}}}"#,
            json_str(&m.volume),
            json_str(m.mount.as_str()),
            json_str(m.path.as_str())
        );
    }
    out.push(']');
    if let Some(entrypoint) = &manifest.entrypoint {
        let _ = write!(out, r#","entrypoint":{}"#, json_str(entrypoint));
    }
    out.push('}');
    let again = resolve_graph::Manifest::from_json(out.as_bytes()).unwrap_or_else(|e| {
        panic!("an accepted config, written back as {out}, does not parse: {e}")
    });
    assert_eq!(again, manifest, "written back as {out}");
    Feedback::ok("config", manifest.dependencies.len())
        .and(super::size_class(manifest.commands.len()))
        .and(super::size_class(manifest.fs.len()))
}

fn package_config_seeds() -> Vec<Vec<u8>> {
    [
        r#"{
  "schemaVersion": 1,
  "name": "acme/app",
  "version": "1.0.0",
  "dependencies": {
    "py":    { "package": "acme/python", "version": ">=3.11, <3.14" },
    "tools": { "package": "acme/tools",  "version": "^1" }
  },
  "commands": {
    "app":    { "runner": "wasi", "atom": "app" },
    "python": { "runner": "wasi", "atom": "python", "dependency": "py", "annotations": {"k": [1, null]} }
  },
  "entrypoint": "app",
  "fs": [
    { "volume": "app",    "mount": "/app" },
    { "volume": "data",   "mount": "/app/data" },
    { "volume": "stdlib", "mount": "/opt/python", "dependency": "py", "path": "/lib/json" }
  ]
}"#,
        r#"{"schemaVersion":1,"name":"a/b","version":"0.1.0-rc.1+x"}"#,
        r#"{"schemaVersion":2,"name":"a/b"}"#,
        r#"{"schemaVersion":1,"name":"a/b","version":"1.0.0","dependencies":{"x":{"package":"c/d","version":"*"},"x":{"package":"e/f","version":"=1"}}}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

pub(super) const LOCKFILE: Target = Target {
    name: "lockfile",
    about: "resolve_graph::Lockfile::from_toml: an accepted lockfile writes back (to_toml) \
            to text that parses equal, and writing is deterministic",
    run: lockfile,
    seeds: lockfile_seeds,
    dictionary: &[
        b"version = 1\n",
        b"[root]\n",
        b"[[package]]\n",
        b"name = ",
        b"version = ",
        b"digest = ",
        b"source = ",
        b"\"acme/app\"",
        b"\"1.0.0\"",
        b"\"1.0.0-alpha+b\"",
        b"'",
        b"\"\"\"",
        b"\\u0000",
        b"=",
        b"\n",
        b"#",
        b"[",
        b"]",
        b"{",
        b"}",
    ],
    max_len: 4096,
};

fn lockfile(data: &[u8]) -> Feedback {
    let Some(text) = utf8(data) else {
        return Feedback::new("not UTF-8");
    };
    let lock = match resolve_graph::Lockfile::from_toml(text) {
        Ok(lock) => lock,
        Err(e) => return Feedback::err("lock", &e),
    };
    let written = lock
        .to_toml()
        .unwrap_or_else(|e| panic!("an accepted lockfile does not write: {e}"));
    let again = resolve_graph::Lockfile::from_toml(&written)
        .unwrap_or_else(|e| panic!("a written lockfile does not parse: {e}\n{written}"));
    assert_eq!(again, lock, "written as:\n{written}");
    assert_eq!(again.to_toml().ok().as_deref(), Some(written.as_str()));
    let preferred = lock.preferred();
    assert_eq!(
        preferred.len(),
        lock.packages.len(),
        "package names are unique"
    );
    Feedback::ok("lock", lock.packages.len())
}

fn lockfile_seeds() -> Vec<Vec<u8>> {
    [
        "version = 1\n\n[root]\nname = \"acme/app\"\nversion = \"1.0.0\"\n\n[[package]]\nname = \"acme/python\"\nversion = \"3.12.1\"\ndigest = \"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"\nsource = \"127.0.0.1:5000/team/acme/python:3.12.1\"\n",
        "version = 1\nroot = { name = \"a/b\", version = \"0.0.1-pre+meta\" }\n",
        "version = 2\n[root]\nname = \"a/b\"\nversion = \"1.0.0\"\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

pub(super) const DOCKER_CONFIG: Target = Target {
    name: "docker_config",
    about: "fetch_http::Credentials::merge_docker_config via a temp file: with every secret \
            replaced by a marker, no marker reaches Debug output or an error message",
    run: docker_config,
    seeds: docker_config_seeds,
    dictionary: &[
        b"{",
        b"}",
        b"\"",
        b":",
        b",",
        b"null",
        b"\"auths\":",
        b"\"auth\":",
        b"\"username\":",
        b"\"password\":",
        b"\"identitytoken\":",
        b"\"credsStore\":",
        b"\"credHelpers\":",
        b"\"dXNlcjpwYXNz\"",
        b"\"https://index.docker.io/v1/\"",
        b"\"=\"",
        b"\"\"",
    ],
    max_len: 4096,
};

thread_local! {
    static CONFIG_FILE: PathBuf = std::env::temp_dir().join(format!(
        "pkgload-fuzz-docker-config-{}-{:?}.json",
        std::process::id(),
        std::thread::current().id()
    ).replace(['(', ')'], ""));
}

/// `merge_docker_config` on `text`: the Debug output of the result, or the error message.
fn merge(text: &[u8]) -> (Result<Credentials, String>, String) {
    CONFIG_FILE.with(|path| {
        if let Err(e) = std::fs::write(path, text) {
            panic!("cannot write {}: {e}", path.display());
        }
        let mut creds = Credentials::new();
        let result = creds.merge_docker_config(path);
        let _ = std::fs::remove_file(path);
        match result {
            Ok(()) => {
                let shown = format!("{creds:?}");
                (Ok(creds), shown)
            }
            Err(e) => {
                let shown = format!("{e} / {e:?}");
                (Err(e.to_string()), shown)
            }
        }
    })
}

const MARKER: &str = "Zq9secretZq9";

fn docker_config(data: &[u8]) -> Feedback {
    let (result, _) = merge(data);
    let feedback = match &result {
        Ok(_) => Feedback::new("ok"),
        Err(e) => Feedback::err("config", e),
    };
    // The secret check runs on the document as serde_json reads it, every secret swapped
    // for a marker that cannot appear anywhere else.
    let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(data) else {
        return feedback;
    };
    let Some(auths) = doc.get_mut("auths").and_then(|a| a.as_object_mut()) else {
        return feedback;
    };
    let hosts = auths.len();
    let mut n = 0;
    let mut expect_credential = None;
    for (key, entry) in auths.iter_mut() {
        let Some(entry) = entry.as_object_mut() else {
            continue;
        };
        let mut usable = false;
        for field in ["password", "identitytoken"] {
            if let Some(value) = entry.get_mut(field).filter(|v| v.is_string()) {
                n += 1;
                *value = serde_json::Value::String(format!("{MARKER}{n}"));
            }
        }
        if entry.get("identitytoken").is_some_and(|v| v.is_string()) {
            usable = true;
        }
        if let Some(auth) = entry.get_mut("auth").filter(|v| v.is_string()) {
            n += 1;
            let engine = base64::engine::general_purpose::STANDARD;
            let user = auth
                .as_str()
                .and_then(|a| engine.decode(a.trim()).ok())
                .and_then(|raw| String::from_utf8(raw).ok())
                .and_then(|t| t.split_once(':').map(|(u, _)| u.to_owned()));
            if let Some(user) = user {
                usable = true;
                *auth = serde_json::Value::String(engine.encode(format!("{user}:{MARKER}{n}")));
            } else {
                *auth = serde_json::Value::String(format!("{MARKER}{n}"));
            }
        }
        if entry.get("username").is_some_and(|v| v.is_string())
            && entry.get("password").is_some_and(|v| v.is_string())
        {
            usable = true;
        }
        if hosts == 1 && usable {
            expect_credential = Some(key.clone());
        }
    }
    let text = serde_json::to_vec(&doc).unwrap_or_else(|e| panic!("a Value must serialize: {e}"));
    let (result, shown) = merge(&text);
    assert!(
        !shown.contains(MARKER),
        "a secret leaked into {shown}\nfrom {}",
        String::from_utf8_lossy(&text)
    );
    // Which credential a host gets must not depend on the run.
    if let Ok(creds) = &result {
        let keys: Vec<String> = doc
            .get("auths")
            .and_then(|a| a.as_object())
            .map(|a| a.keys().cloned().collect())
            .unwrap_or_default();
        for _ in 0..3 {
            let (again, _) = merge(&text);
            let Ok(again) = again else {
                panic!(
                    "the same config failed on a second read: {}",
                    String::from_utf8_lossy(&text)
                );
            };
            for key in &keys {
                if creds.get(key) != again.get(key) {
                    panic!(
                        "{key:?} got {:?} once and {:?} once from {}",
                        creds.get(key),
                        again.get(key),
                        String::from_utf8_lossy(&text)
                    );
                }
            }
        }
    }
    if let (Ok(creds), Some(host)) = (&result, expect_credential) {
        let found = creds.get(&host);
        assert!(found.is_some(), "no credential for {host:?}: {creds:?}");
        if let Some(Credential::Basic { password, .. }) = found {
            assert!(password.starts_with(MARKER), "{found:?}");
        }
    }
    feedback.and(n.min(8))
}

fn docker_config_seeds() -> Vec<Vec<u8>> {
    [
        r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNzd29yZA=="},"ghcr.io":{"identitytoken":"tok-123"},"localhost:5000":{"username":"u","password":"p"}}}"#,
        r#"{"auths":{"example.com":{"auth":"not base64!"}}}"#,
        r#"{"credsStore":"desktop","auths":{}}"#,
        r#"{"auths":{"Host:5000/x":{"auth":"","identitytoken":""}}}"#,
        r#"{"auths":{"https://index.docker.io/v1/":{"username":"a","password":"1"},"docker.io":{"username":"b","password":"2"}}}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

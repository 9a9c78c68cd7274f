//! Push and pull against a real `docker-registry` on loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use bytes::Bytes;
use cache_core::{Algorithm, Digest, Store};
use fetch_http::platform::{Platform, PlatformMatcher};
use fetch_http::reference::RegistryRef;
use fetch_http::{
    ClientConfig, Credentials, HttpClient, ManifestKind, OciLayout, Pushed, Repository,
};
use support::{gzip, random_bytes};
use test_servers::registry::Registry;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn client() -> HttpClient {
    HttpClient::new(ClientConfig::default(), Credentials::new()).unwrap()
}

struct Image {
    config: Bytes,
    layers: Vec<Bytes>,
    manifest: Bytes,
}

fn digest(data: &[u8]) -> Digest {
    Algorithm::Sha256.digest(data)
}

/// A small image: a config and `n` gzip tar-ish layers (content does not matter here).
fn image(n: usize, seed: u64, artifact: bool) -> Image {
    let config = if artifact {
        Bytes::from_static(br#"{"schemaVersion":1,"name":"acme/app","version":"1.0.0"}"#)
    } else {
        Bytes::from(format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"seed":{seed}}}"#
        ))
    };
    let layers: Vec<Bytes> = (0..n)
        .map(|i| {
            Bytes::from(gzip(&random_bytes(
                300_000 + i * 1000,
                seed * 10 + i as u64,
            )))
        })
        .collect();
    let layer_json: Vec<String> = layers
        .iter()
        .map(|l| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}"#,
                digest(l),
                l.len()
            )
        })
        .collect();
    let (config_type, extra) = if artifact {
        (
            "application/vnd.pkgload.package.config.v1+json",
            r#""artifactType":"application/vnd.pkgload.package.v1","#,
        )
    } else {
        ("application/vnd.oci.image.config.v1+json", "")
    };
    let manifest = Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}",{extra}"config":{{"mediaType":"{config_type}","digest":"{}","size":{}}},"layers":[{}]}}"#,
        digest(&config),
        config.len(),
        layer_json.join(",")
    ));
    Image {
        config,
        layers,
        manifest,
    }
}

async fn push(client: &HttpClient, host: &str, repo: &str, tag: &str, img: &Image) -> Digest {
    client
        .push_blob(
            host,
            repo,
            &digest(&img.config),
            img.config.clone(),
            None,
            None,
        )
        .await
        .unwrap();
    for (i, layer) in img.layers.iter().enumerate() {
        // Alternate monolithic and chunked uploads.
        let chunk = (i % 2 == 1).then_some(64 * 1024);
        let pushed = client
            .push_blob(host, repo, &digest(layer), layer.clone(), None, chunk)
            .await
            .unwrap();
        assert_eq!(pushed, Pushed::Uploaded);
    }
    client
        .push_manifest(host, repo, tag, MANIFEST, img.manifest.clone())
        .await
        .unwrap()
}

#[tokio::test]
async fn push_then_pull_an_image_and_a_package() {
    let registry = Registry::start().unwrap();
    let host = registry.host();
    let host = host.as_str();
    let client = client();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();

    for (repo, artifact) in [("team/base", false), ("team/acme/app", true)] {
        let img = image(4, if artifact { 2 } else { 1 }, artifact);
        let pushed = push(&client, host, repo, "1.0.0", &img).await;
        assert_eq!(pushed, digest(&img.manifest));

        let by_tag = client.pull_manifest(host, repo, "1.0.0").await.unwrap();
        assert_eq!(by_tag.digest, pushed);
        assert_eq!(by_tag.bytes, img.manifest);
        let by_digest = client
            .pull_manifest(host, repo, &pushed.to_string())
            .await
            .unwrap();
        assert_eq!(by_digest.digest, pushed);
        let ManifestKind::Image(m) = by_tag.kind else {
            panic!("an image manifest")
        };
        if artifact {
            assert_eq!(
                m.artifact_type().as_ref().map(|t| t.to_string()).as_deref(),
                Some("application/vnd.pkgload.package.v1")
            );
        }
        let wanted: Vec<(Digest, u64)> = std::iter::once(m.config())
            .chain(m.layers().iter())
            .map(|d| (Digest::parse(d.digest().as_ref()).unwrap(), d.size()))
            .collect();
        for (d, size) in wanted {
            let req = client.registry_blob(host, repo, d, Some(size)).unwrap();
            let blob = client.fetch_blob(req, &store).await.unwrap();
            assert_eq!(blob.len(), size);
            assert_eq!(blob.digest(), &d);
        }
    }
    assert_eq!(
        store
            .verify(cache_core::VerifyMode::Warn)
            .await
            .unwrap()
            .problems
            .len(),
        0
    );

    // A missing tag is a clear 404.
    let err = client
        .pull_manifest(host, "team/base", "9.9.9")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
}

#[tokio::test]
async fn existing_blobs_are_skipped_and_mounted_across_repositories() {
    let registry = Registry::start().unwrap();
    let host = registry.host();
    let host = host.as_str();
    let client = client();
    let blob = Bytes::from(random_bytes(100_000, 42).to_vec());
    let d = digest(&blob);
    let first = client
        .push_blob(host, "a/one", &d, blob.clone(), None, None)
        .await
        .unwrap();
    assert_eq!(first, Pushed::Uploaded);
    let again = client
        .push_blob(host, "a/one", &d, blob.clone(), None, None)
        .await
        .unwrap();
    assert_eq!(again, Pushed::Existed);
    let mounted = client
        .push_blob(host, "a/two", &d, blob.clone(), Some("a/one"), None)
        .await
        .unwrap();
    assert_eq!(mounted, Pushed::Mounted);
    assert!(client.blob_exists(host, "a/two", &d).await.unwrap());
    // The registry verifies too: a blob pushed under the wrong digest is refused.
    let wrong = digest(b"not this");
    assert!(
        client
            .push_blob(host, "a/one", &wrong, blob, None, None)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn more_than_a_hundred_tags_through_pagination() {
    let registry = Registry::start().unwrap();
    let host = registry.host();
    let host = host.as_str();
    let client = client();
    let img = image(1, 3, false);
    push(&client, host, "many/tags", "v0", &img).await;
    for i in 1..125 {
        client
            .push_manifest(
                host,
                "many/tags",
                &format!("v{i}"),
                MANIFEST,
                img.manifest.clone(),
            )
            .await
            .unwrap();
    }
    let mut tags = client.list_tags_paged(host, "many/tags", 50).await.unwrap();
    tags.sort();
    let mut expected: Vec<String> = (0..125).map(|i| format!("v{i}")).collect();
    expected.sort();
    assert_eq!(tags, expected);
    assert_eq!(
        client.list_tags(host, "many/tags").await.unwrap().len(),
        125
    );
}

#[tokio::test]
async fn an_index_resolves_to_the_platform_manifest() {
    let registry = Registry::start().unwrap();
    let host = registry.host();
    let host = host.as_str();
    let client = client();
    let amd = image(1, 4, false);
    let arm = image(1, 5, false);
    let amd_digest = push(&client, host, "multi/arch", "amd", &amd).await;
    let arm_digest = push(&client, host, "multi/arch", "arm", &arm).await;
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[
            {{"mediaType":"{MANIFEST}","digest":"{amd_digest}","size":{},"platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"mediaType":"{MANIFEST}","digest":"{arm_digest}","size":{},"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}
        ]}}"#,
        amd.manifest.len(),
        arm.manifest.len()
    );
    client
        .push_manifest(host, "multi/arch", "latest", INDEX, Bytes::from(index))
        .await
        .unwrap();
    let reference: RegistryRef = format!("{host}/multi/arch:latest").parse().unwrap();
    for (platform, expected) in [("linux/arm64", arm_digest), ("linux/amd64", amd_digest)] {
        let matcher = PlatformMatcher::new(&platform.parse::<Platform>().unwrap());
        let (image, index) = client
            .pull_image_manifest(&reference, &matcher)
            .await
            .unwrap();
        assert_eq!(image.digest, expected, "{platform}");
        assert!(index.is_some());
    }
    let none = PlatformMatcher::new(&"windows/amd64".parse::<Platform>().unwrap());
    let err = client
        .pull_image_manifest(&reference, &none)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("linux/arm64"), "{err}");
}

/// skopeo puts an image (from an OCI layout we wrote) into the registry; we pull it and see
/// the digest skopeo reports.
#[tokio::test]
async fn an_image_copied_by_skopeo_pulls_with_skopeos_digest() {
    let registry = Registry::start().unwrap();
    let host = registry.host();
    let host = host.as_str();
    let dir = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(dir.path().join("layout")).unwrap();
    let img = image(2, 6, false);
    layout
        .write_blob(&digest(&img.config), &img.config)
        .unwrap();
    for l in &img.layers {
        layout.write_blob(&digest(l), l).unwrap();
    }
    layout
        .write_manifest(Some("v1"), MANIFEST, &img.manifest)
        .unwrap();
    let digest_file = dir.path().join("digest");
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false", "--digestfile"])
        .arg(&digest_file)
        .arg(format!("oci:{}:v1", layout.root().display()))
        .arg(format!("docker://{host}/from/skopeo:v1"))
        .output()
        .expect("skopeo is not installed: run `cargo xtask test`, which installs it");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reported: Digest = std::fs::read_to_string(&digest_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pulled = client()
        .pull_manifest(host, "from/skopeo", "v1")
        .await
        .unwrap();
    assert_eq!(pulled.digest, reported);
    let store = Store::open(dir.path().join("store")).await.unwrap();
    let ManifestKind::Image(m) = pulled.kind else {
        panic!()
    };
    for layer in m.layers() {
        let d = Digest::parse(layer.digest().as_ref()).unwrap();
        let req = client()
            .registry_blob(host, "from/skopeo", d, Some(layer.size()))
            .unwrap();
        client().fetch_blob(req, &store).await.unwrap();
    }
    // And our layout reader reads what we wrote, the way skopeo read it.
    let again = OciLayout::open(layout.root())
        .unwrap()
        .read_manifest(Some("v1"))
        .unwrap();
    assert_eq!(again.digest, digest(&img.manifest));
}

/// The same calls write and read a package in a registry and in an OCI layout.
#[tokio::test]
async fn one_interface_for_registries_and_layouts() {
    let registry = Registry::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reference: RegistryRef = format!("{}/same/api", registry.host()).parse().unwrap();
    let targets = [
        Repository::Registry {
            client: client(),
            reference,
        },
        Repository::Layout(OciLayout::create(dir.path().join("layout")).unwrap()),
    ];
    let img = image(2, 8, true);
    for (i, repo) in targets.iter().enumerate() {
        repo.put_blob(&digest(&img.config), img.config.clone())
            .await
            .unwrap();
        for l in &img.layers {
            repo.put_blob(&digest(l), l.clone()).await.unwrap();
        }
        let d = repo
            .put_manifest(Some("1.0.0"), MANIFEST, img.manifest.clone())
            .await
            .unwrap();
        assert_eq!(d, digest(&img.manifest));
        assert_eq!(repo.tags().await.unwrap(), vec!["1.0.0".to_owned()]);
        let m = repo.manifest(Some("1.0.0")).await.unwrap();
        assert_eq!(m.bytes, img.manifest);
        let store = Store::open(dir.path().join(format!("store{i}")))
            .await
            .unwrap();
        for l in &img.layers {
            let req = repo.blob(digest(l), Some(l.len() as u64)).unwrap();
            let blob = client().fetch_blob(req, &store).await.unwrap();
            assert_eq!(&blob[..], &l[..]);
        }
    }
}

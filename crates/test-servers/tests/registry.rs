//! The docker-registry harness against the real binary.

use std::net::TcpStream;

use test_servers::registry::Registry;

#[test]
fn starts_answers_v2_and_stops_on_drop() {
    let registry = Registry::start().unwrap();
    assert!(registry.host().starts_with("127.0.0.1:"));
    assert_eq!(registry.url(), format!("http://{}", registry.host()));

    let base = registry.get("/v2/").unwrap();
    assert_eq!(base.status, 200);
    assert_eq!(
        base.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    let catalog = registry.get("/v2/_catalog").unwrap();
    assert_eq!(
        (catalog.status, catalog.text().trim()),
        (200, r#"{"repositories":[]}"#)
    );

    let addr = registry.addr();
    let storage = registry.storage_dir();
    drop(registry);
    assert!(TcpStream::connect(addr).is_err(), "the process is gone");
    assert!(!storage.exists(), "its storage is removed");
}

#[test]
fn pushed_image_is_listed_and_served() {
    let registry = Registry::start().unwrap();
    let layer = b"not really a tarball".as_slice();
    let image = registry
        .push_image(
            "demo/app",
            "v1",
            br#"{"architecture":"amd64","os":"linux"}"#,
            &[("application/vnd.oci.image.layer.v1.tar", layer)],
        )
        .unwrap();

    let catalog = registry.get("/v2/_catalog").unwrap();
    assert_eq!(catalog.text().trim(), r#"{"repositories":["demo/app"]}"#);
    let tags = registry.get("/v2/demo/app/tags/list").unwrap();
    assert_eq!(tags.text().trim(), r#"{"name":"demo/app","tags":["v1"]}"#);

    let accept = [("Accept", "application/vnd.oci.image.manifest.v1+json")];
    let manifest = registry
        .request("GET", "/v2/demo/app/manifests/v1", &accept, b"")
        .unwrap();
    assert_eq!(manifest.status, 200);
    assert_eq!(
        manifest.header("docker-content-digest"),
        Some(image.manifest_digest.as_str())
    );
    assert_eq!(manifest.body, image.manifest);

    let blob = registry
        .get(&format!("/v2/demo/app/blobs/{}", image.layer_digests[0]))
        .unwrap();
    assert_eq!((blob.status, blob.body.as_slice()), (200, layer));
    assert!(registry.storage_dir().join("docker").is_dir());
}

#[test]
fn registries_are_independent() {
    let one = Registry::start().unwrap();
    let two = Registry::start().unwrap();
    assert_ne!(one.host(), two.host());
    one.push_blob("only/here", b"x").unwrap();
    let missing = two.get("/v2/_catalog").unwrap();
    assert_eq!(missing.text().trim(), r#"{"repositories":[]}"#);
}

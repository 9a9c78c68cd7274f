//! The `pkgload cache` commands, run as a user would run them.

// Test code: a panic is how a check fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;
use std::process::{Command, Output};

fn pkgload(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pkgload"))
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .env_remove("PKGLOAD_CACHE_DIR")
        // The developer's Docker config and host configuration stay out of tests.
        .env("DOCKER_CONFIG", cache.join("no-docker-config"))
        .env("PKGLOAD_HOSTS_DIR", cache.join("no-hosts-dir"))
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn import_inspect_verify_and_collect() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let file = dir.path().join("data.bin");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &data).unwrap();

    let out = pkgload(&cache, &["cache", "import", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let digest = stdout.split_whitespace().next().unwrap().to_owned();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{stdout}"
    );

    let out = pkgload(&cache, &["cache", "cat", &digest]);
    assert!(out.status.success());
    assert_eq!(out.stdout, data);

    let out = pkgload(&cache, &["cache", "stat", &digest]);
    assert!(
        text(&out.stdout).contains("size:      200000"),
        "{}",
        text(&out.stdout)
    );

    let out = pkgload(&cache, &["cache", "ls"]);
    assert!(text(&out.stdout).contains(&digest));
    let out = pkgload(&cache, &["cache", "du"]);
    assert!(
        text(&out.stdout).contains("195.3 KiB  1 blobs"),
        "{}",
        text(&out.stdout)
    );

    let out = pkgload(&cache, &["cache", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("verified 1 blobs"),
        "{}",
        text(&out.stderr)
    );

    // Damage the blob behind the store's back.
    let hex = &digest["sha256:".len()..];
    let path = cache.join(format!("v1/blobs/sha256/{}/{hex}", &hex[..2]));
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&path, b"tampered").unwrap();
    }
    let out = pkgload(&cache, &["cache", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains(&format!("should be {digest}")),
        "{}",
        text(&out.stdout)
    );
    let out = pkgload(&cache, &["cache", "verify", "--prune"]);
    assert!(out.status.success());
    let out = pkgload(&cache, &["cache", "stat", &digest]);
    assert_eq!(out.status.code(), Some(1));

    // gc: nothing refers to a freshly imported blob, unless it is kept.
    pkgload(&cache, &["cache", "import", file.to_str().unwrap()]);
    let out = pkgload(&cache, &["cache", "gc", "--keep", &digest]);
    assert!(
        text(&out.stdout).contains("removed 0 blobs"),
        "{}",
        text(&out.stdout)
    );
    let out = pkgload(&cache, &["cache", "gc"]);
    assert!(
        text(&out.stdout).contains("removed 1 blobs"),
        "{}",
        text(&out.stdout)
    );
    let out = pkgload(&cache, &["cache", "clean"]);
    assert!(out.status.success());
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = pkgload(&cache, &["cache", "cat", "sha256:../../etc/passwd"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("64 hex digits"),
        "{}",
        text(&out.stderr)
    );
    assert!(!cache.join("v1").exists() || !dir.path().join("etc").exists());

    let out = pkgload(&cache, &["cache", "gc", "--max-size", "ten"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("invalid size"),
        "{}",
        text(&out.stderr)
    );

    let missing = dir.path().join("nope.bin");
    let out = pkgload(&cache, &["cache", "import", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("nope.bin"),
        "{}",
        text(&out.stderr)
    );

    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"").unwrap();
    let out = pkgload(&blocker.join("cache"), &["cache", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("file/cache"),
        "{}",
        text(&out.stderr)
    );
}

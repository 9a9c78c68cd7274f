//! Wasmer webc files (v1, v2 and v3, generated with the `webc` crate's writers) loaded by
//! the real `pkgload` binary: listed, read, unpacked and described as JSON, and refused
//! with an error naming the file when they lie.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::Path;
use std::process::Output;

use common::{pkgload, run, sha256};
use test_servers::webc::{Node, Package, find};
use webc::metadata::annotations::FileSystemMapping;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: Output) -> String {
    assert_eq!(out.status.code(), Some(1), "expected exit 1: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        stderr.starts_with("error: ") && !stderr.contains("panicked"),
        "{stderr}"
    );
    stderr
}

/// Every path `ls -R` printed (it prints `DIR:` and then the names in it).
fn paths(listing: &str) -> Vec<String> {
    let mut dir = String::new();
    let mut out = Vec::new();
    for line in listing.lines().filter(|l| !l.is_empty()) {
        if let Some(d) = line.strip_suffix(':') {
            dir = d.trim_end_matches('/').to_owned();
        } else {
            out.push(format!("{dir}/{line}"));
        }
    }
    out
}

fn hello() -> Package {
    let mut pkg = Package::hello();
    pkg.files.push((
        "atom".into(),
        "/share/doc/README".into(),
        Node::File(b"read me\n".to_vec()),
    ));
    pkg
}

#[test]
fn webc_files_of_every_version_load_list_read_and_unpack() {
    let work = tempfile::tempdir().unwrap();
    for version in [1u8, 2, 3] {
        let cache = work.path().join(format!("cache-{version}"));
        let file = work.path().join(format!("hello-v{version}.webc"));
        let pkg = hello();
        pkg.write(version, &file);
        let file_arg = file.to_str().unwrap();

        // v1 and v2 without `fs` mount their `atom` volume at `/`; v3 needs a mapping.
        let pkg = if version == 3 {
            let mut pkg = pkg;
            pkg.fs = Some(vec![FileSystemMapping {
                from: None,
                volume_name: "atom".into(),
                host_path: None,
                mount_path: "/".into(),
            }]);
            pkg.write(version, &file);
            pkg
        } else {
            pkg
        };

        let listed = paths(&stdout(&run(pkgload(&cache).args(["ls", "-R", file_arg]))));
        for path in ["/etc/motd", "/etc/empty", "/share/doc/README", "/var/log"] {
            assert!(listed.iter().any(|l| l == path), "v{version}: {listed:?}");
        }
        let motd = stdout(&run(pkgload(&cache).args(["cat", file_arg, "/etc/motd"])));
        assert_eq!(motd, "hi there\n", "v{version}");

        let json: serde_json::Value =
            serde_json::from_slice(&run(pkgload(&cache).args(["load", "--json", file_arg])).stdout)
                .unwrap();
        assert_eq!(json["root"]["name"], "acme/hello", "v{version}: {json}");
        assert_eq!(json["root"]["version"], "1.2.3");
        assert_eq!(
            json["root"]["digest"],
            sha256(&std::fs::read(&file).unwrap())
        );
        assert_eq!(json["entrypoint"], "hello");
        // The atom is named by the sha256 of its bytes, as an OCI atom is.
        assert_eq!(json["commands"][0]["name"], "hello");
        assert_eq!(
            json["commands"][0]["atom"],
            sha256(&pkg.atoms[0].1),
            "v{version}"
        );

        let out = work.path().join(format!("out-{version}"));
        run(pkgload(&cache).args(["unpack", file_arg, out.to_str().unwrap()]));
        assert_eq!(
            std::fs::read(out.join("share/doc/README")).unwrap(),
            b"read me\n"
        );
        assert_eq!(std::fs::read(out.join("etc/empty")).unwrap(), b"");
        assert!(out.join("var/log").is_dir());
    }
}

#[test]
fn v3_mappings_mount_sub_directories_and_symlinks_stay_links() {
    let work = tempfile::tempdir().unwrap();
    let mut pkg = hello();
    pkg.files.push((
        "atom".into(),
        "/etc/greeting".into(),
        Node::Symlink("motd".into()),
    ));
    pkg.fs = Some(vec![
        FileSystemMapping {
            from: None,
            volume_name: "atom".into(),
            host_path: Some("/etc".into()),
            mount_path: "/config".into(),
        },
        FileSystemMapping {
            from: None,
            volume_name: "atom".into(),
            host_path: Some("share".into()),
            mount_path: "/config/share".into(),
        },
    ]);
    let file = work.path().join("mapped.webc");
    pkg.write(3, &file);
    let cache = work.path().join("cache");
    let f = file.to_str().unwrap();
    // Only the sub-directory is mounted (Wasmer mounts the whole volume here).
    let listed = paths(&stdout(&run(pkgload(&cache).args(["ls", "-R", f]))));
    assert_eq!(
        listed,
        [
            "/config",
            "/config/empty",
            "/config/greeting",
            "/config/motd",
            "/config/share",
            "/config/share/doc",
            "/config/share/doc/README"
        ]
    );
    // A symlink inside the volume resolves inside it.
    let greeting = stdout(&run(pkgload(&cache).args(["cat", f, "/config/greeting"])));
    assert_eq!(greeting, "hi there\n");
    let out = work.path().join("out");
    run(pkgload(&cache).args(["unpack", f, out.to_str().unwrap()]));
    assert_eq!(
        std::fs::read_link(out.join("config/greeting")).unwrap(),
        Path::new("motd")
    );
}

#[test]
fn hostile_webc_files_are_refused_naming_the_file() {
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");

    // An atom that does not match its manifest signature.
    let bytes = hello().build(2);
    let mut tampered = bytes.to_vec();
    let at = find(&tampered, b"hello-atom");
    tampered[at] = b'J';
    let file = work.path().join("tampered.webc");
    std::fs::write(&file, &tampered).unwrap();
    let err = failed(
        pkgload(&cache)
            .args(["load", file.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("tampered.webc") && err.contains("signature"),
        "{err}"
    );

    // A v1 manifest length far past the end of the file.
    let v1 = hello().build(1);
    let mut lie = v1[..8 + 16 + 256 + 4 + 1024].to_vec();
    lie.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    let file = work.path().join("huge.webc");
    std::fs::write(&file, &lie).unwrap();
    let err = failed(
        pkgload(&cache)
            .args(["ls", file.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("huge.webc") && err.contains("past the end"),
        "{err}"
    );

    // A file and its annotation disagreeing about who it is.
    let file = work.path().join("acme--other@2.0.0.webc");
    hello().write(3, &file);
    let err = failed(
        pkgload(&cache)
            .args(["resolve", file.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("acme/hello@1.2.3") && err.contains("acme/other@2.0.0"),
        "{err}"
    );

    // A dependency with no registry to find it in.
    let mut pkg = hello();
    pkg.uses = vec![("dep".into(), "acme/dep@^1".into())];
    let file = work.path().join("needs-dep.webc");
    pkg.write(3, &file);
    let err = failed(
        pkgload(&cache)
            .args(["load", file.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("needs-dep.webc") && err.contains("--registry"),
        "{err}"
    );

    // Nothing was written outside the cache.
    let mut names: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "acme--other@2.0.0.webc",
            "cache",
            "huge.webc",
            "needs-dep.webc",
            "tampered.webc"
        ]
    );
}

/// A package with one volume `v` holding `/<file>` and one atom `<atom>`, named `name`.
fn small(name: &str, version: &str, file: &str, atom: &str) -> Package {
    Package {
        name: Some((name.into(), version.into())),
        atoms: vec![(
            atom.into(),
            format!("\0asm\x01\0\0\0{name}-{version}").into_bytes(),
        )],
        files: vec![(
            "v".into(),
            format!("/{file}"),
            Node::File(version.as_bytes().to_vec()),
        )],
        fs: Some(vec![FileSystemMapping {
            from: None,
            volume_name: "v".into(),
            host_path: None,
            mount_path: format!("/{}", name.replace('/', "-")),
        }]),
        ..Package::default()
    }
}

#[test]
fn a_directory_of_webc_files_is_a_place_to_find_packages() {
    use webc::metadata::Command as WebcCommand;
    use webc::metadata::annotations::Atom as AtomAnnotation;
    let work = tempfile::tempdir().unwrap();
    let pkgs = work.path().join("pkgs");
    std::fs::create_dir_all(pkgs.join("acme/lib")).unwrap();
    // Versions from the path, in both layouts; the newest matching one wins.
    small("acme/lib", "1.0.0", "lib.txt", "lib").write(3, &pkgs.join("acme/lib/1.0.0.webc"));
    small("acme/lib", "1.5.0", "lib.txt", "lib").write(2, &pkgs.join("acme/lib/1.5.0.webc"));
    small("acme/lib", "2.0.0", "lib.txt", "lib").write(1, &pkgs.join("acme--lib@2.0.0.webc"));
    // A file named neither way: indexed by its annotation.
    let cow = small("acme/cow", "0.1.0", "cow.txt", "moo");
    cow.write(3, &pkgs.join("cowsay.webc"));
    // Not needed by the solution, so never opened: garbage does no harm.
    std::fs::create_dir_all(pkgs.join("acme/broken")).unwrap();
    std::fs::write(pkgs.join("acme/broken/1.0.0.webc"), b"not a webc").unwrap();

    let mut app = small("acme/app", "1.0.0", "app.txt", "app");
    app.uses = vec![
        ("lib".into(), "acme/lib@^1".into()),
        ("cow".into(), "acme/cow".into()),
    ];
    app.commands = vec![(
        "say".into(),
        WebcCommand {
            runner: "https://webc.org/runner/wasi".into(),
            annotations: indexmap::IndexMap::from([(
                AtomAnnotation::KEY.to_owned(),
                test_servers::webc::annotation(&AtomAnnotation::new("moo", Some("cow".into()))),
            )]),
        },
    )];
    app.entrypoint = Some("say".into());
    let root = work.path().join("app.webc");
    app.write(3, &root);
    app.write(3, &pkgs.join("acme--app@1.0.0.webc"));

    let cache = work.path().join("cache");
    let dir = format!("dir:{}", pkgs.display());
    let describe = |args: &[&str]| -> (Vec<String>, serde_json::Value) {
        let json: serde_json::Value =
            serde_json::from_slice(&run(pkgload(&cache).args(args)).stdout).unwrap();
        let names = common::package_names(&json);
        (names, json)
    };
    let want = ["acme/app@1.0.0", "acme/cow@0.1.0", "acme/lib@1.5.0"];
    // The root as a file, and by name from the directory.
    let (names, json) = describe(&["--registry", &dir, "load", "--json", root.to_str().unwrap()]);
    assert_eq!(names, want);
    assert_eq!(json["commands"][0]["name"], "say");
    assert_eq!(json["commands"][0]["atom"], sha256(&cow.atoms[0].1));
    let (names, _) = describe(&["--registry", &dir, "load", "--json", "acme/app@^1"]);
    assert_eq!(names, want);
    let mut listed = paths(&stdout(&run(pkgload(&cache).args([
        "--registry",
        &dir,
        "ls",
        "-R",
        "acme/app@^1",
    ]))));
    listed.sort();
    assert_eq!(
        listed,
        [
            "/acme-app",
            "/acme-app/app.txt",
            "/acme-cow",
            "/acme-cow/cow.txt",
            "/acme-lib",
            "/acme-lib/lib.txt"
        ]
    );
    let lib = stdout(&run(pkgload(&cache).args([
        "--registry",
        &dir,
        "cat",
        "acme/app@^1",
        "/acme-lib/lib.txt",
    ])));
    assert_eq!(lib, "1.5.0");

    // A lockfile pins each file's sha256: a file changed since is named.
    let lock = work.path().join("pkgload.lock");
    let r = root.to_str().unwrap();
    let l = lock.to_str().unwrap();
    run(pkgload(&cache).args(["--registry", &dir, "resolve", "--lock", l, r]));
    let (names, _) = describe(&["--registry", &dir, "load", "--json", "--lock", l, r]);
    assert_eq!(names, want);
    small("acme/lib", "1.5.0", "lib.txt", "changed").write(3, &pkgs.join("acme/lib/1.5.0.webc"));
    let err = failed(
        pkgload(&cache)
            .args(["--registry", &dir, "load", "--lock", l, r])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("1.5.0.webc") && err.contains("changed"),
        "{err}"
    );

    // A requirement nothing in the directory meets.
    let err = failed(
        pkgload(&cache)
            .args(["--registry", &dir, "load", "acme/lib@^3"])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("acme/lib") && err.contains("1.0.0, 1.5.0, 2.0.0"),
        "{err}"
    );
}

#[test]
fn hostile_webc_trees_fail_with_one_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let pkgs = work.path().join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let dir = format!("dir:{}", pkgs.display());

    // A `use` cycle: a -> b -> a.
    let mut a = small("acme/a", "1.0.0", "a.txt", "a");
    a.uses = vec![("b".into(), "acme/b@^1".into())];
    let mut b = small("acme/b", "1.0.0", "b.txt", "b");
    b.uses = vec![("a".into(), "acme/a@^1".into())];
    a.write(3, &pkgs.join("acme--a@1.0.0.webc"));
    b.write(3, &pkgs.join("acme--b@1.0.0.webc"));
    let err = failed(
        pkgload(&cache)
            .args(["--registry", &dir, "load", "acme/a@^1"])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("cycle") && err.contains("acme/a") && err.contains("acme/b"),
        "{err}"
    );

    // A mapping that takes a volume from an alias `use` does not have.
    let mut c = small("acme/c", "1.0.0", "c.txt", "c");
    c.fs.as_mut().unwrap().push(FileSystemMapping {
        from: Some("ghost".into()),
        volume_name: "v".into(),
        host_path: None,
        mount_path: "/ghost".into(),
    });
    let file = work.path().join("ghost.webc");
    c.write(3, &file);
    let err = failed(
        pkgload(&cache)
            .args(["load", file.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("ghost.webc") && err.contains("\"ghost\""),
        "{err}"
    );

    // A 1 KiB file whose sections declare 2 GiB: refused before anything is read or
    // allocated, and the process stays small.
    let mut lie = b"\0webc003".to_vec();
    lie.push(0);
    lie.extend_from_slice(&(2u64 << 30).to_le_bytes());
    lie.resize(1024, 0);
    let file = work.path().join("two-gib.webc");
    std::fs::write(&file, &lie).unwrap();
    let (out, rss_kib) = common::run_measured(
        pkgload(&cache)
            .args(["ls", file.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
    );
    let err = failed(out);
    assert!(
        err.contains("two-gib.webc") && err.contains("past the end"),
        "{err}"
    );
    assert!(rss_kib < 64 * 1024, "peak RSS {rss_kib} KiB");
}

/// A webc file at a URL with its sha256: streamed into the cache (an interrupted transfer
/// resumes), verified, then served from the cache, offline too. A wrong sha256 and a
/// malformed fragment are clear errors naming the URL.
#[test]
fn a_webc_file_loads_from_a_url_with_its_sha256() {
    use test_servers::fault::{FaultServer, Route};
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let mut pkg = hello();
    // Big enough for a mid-body reset to matter.
    pkg.files.push((
        "atom".into(),
        "/share/big.bin".into(),
        Node::File(vec![7u8; 256 * 1024]),
    ));
    let bytes = pkg.build(2);
    let server = FaultServer::start("127.0.0.1".parse().unwrap()).unwrap();
    let path = "/pkgs/acme--hello@1.2.3.webc";
    server.route(path, Route::new(bytes.clone()).reset_after(100_000, 1));
    let hex = sha256(&bytes).trim_start_matches("sha256:").to_owned();
    let url = format!("{}#sha256={hex}", server.url(path));

    let json: serde_json::Value =
        serde_json::from_slice(&run(pkgload(&cache).args(["load", "--json", &url])).stdout)
            .unwrap();
    assert_eq!(json["root"]["name"], "acme/hello");
    assert_eq!(json["root"]["digest"], sha256(&bytes));
    // The reset cost one retry that resumed, not a second whole download.
    let requests = server.requests_to(path);
    assert_eq!(requests.len(), 2, "{requests:?}");
    let motd = stdout(&run(pkgload(&cache).args([
        "--offline",
        "cat",
        &url,
        "/etc/motd",
    ])));
    assert_eq!(motd, "hi there\n");
    assert_eq!(server.requests_to(path).len(), 2);

    let wrong = format!("{}#sha256={}", server.url(path), "0".repeat(64));
    let err = failed(
        pkgload(&work.path().join("c2"))
            .args(["load", &wrong])
            .output()
            .unwrap(),
    );
    assert!(err.contains(path), "{err}");
    let err = failed(
        pkgload(&cache)
            .args(["load", &format!("{}#md5=00", server.url(path))])
            .output()
            .unwrap(),
    );
    assert!(err.contains("#sha256="), "{err}");
}

/// A webc file unchanged since a load is not hashed or copied again, nor are its atoms
/// and files checked again; a changed one (even to the same size) is, and its new content
/// is what is served.
#[test]
fn an_unchanged_webc_file_is_not_read_again() {
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let file = work.path().join("app.webc");
    let pkg = hello();
    pkg.write(2, &file);
    let f = file.to_str().unwrap();
    let cat = |args: &[&str]| run(pkgload(&cache).args(args));
    let first = cat(&["-v", "cat", f, "/etc/motd"]);
    assert_eq!(stdout(&first), "hi there\n");
    assert!(!String::from_utf8_lossy(&first.stderr).contains("using the stored copy"));
    let second = cat(&["-v", "cat", f, "/etc/motd"]);
    assert_eq!(stdout(&second), "hi there\n");
    assert!(String::from_utf8_lossy(&second.stderr).contains("using the stored copy"));
    // Nor are its volumes' files hashed again: the first load recorded its checks.
    assert!(!String::from_utf8_lossy(&first.stderr).contains("not hashed again"));
    assert!(String::from_utf8_lossy(&second.stderr).contains("not hashed again"));

    // Same size, other bytes: read again.
    let mut bytes = std::fs::read(&file).unwrap();
    let at = find(&bytes, b"hi there");
    bytes[at..at + 8].copy_from_slice(b"HI THERE");
    std::fs::write(&file, &bytes).unwrap();
    let third = cat(&["-v", "cat", f, "/etc/motd"]);
    assert_eq!(stdout(&third), "HI THERE\n");
    assert!(!String::from_utf8_lossy(&third.stderr).contains("using the stored copy"));
}

/// The packages a load's JSON lists, as `name@version`, sorted.
fn package_ids(json: &serde_json::Value) -> Vec<String> {
    let mut ids = common::package_names(json);
    ids.sort();
    ids
}

/// `use` entries that are URLs (without a sha256) and paths: each file is fetched once,
/// streamed and resumed, named by its annotation or file name, and relative paths follow
/// the file that wrote them (a directory, or a URL). A warm load asks nothing; past the
/// TTL it revalidates by ETag (a bodiless 304), a changed file is fetched again, and
/// offline the remembered file serves.
#[test]
fn webc_dependencies_by_url_and_path_load_and_revalidate() {
    use test_servers::fault::{FaultServer, Route};
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let server = FaultServer::start("127.0.0.1".parse().unwrap()).unwrap();

    // acme/tool is only reached by a path relative to acme/lib's URL.
    let tool = small("acme/tool", "2.0.0", "tool.txt", "tool");
    let tool_path = "/tools/acme--tool@2.0.0.webc";
    server.route(tool_path, Route::new(tool.build(3)));
    let mut lib = small("acme/lib", "1.0.0", "lib.txt", "lib");
    lib.files.push((
        "v".into(),
        "/big.bin".into(),
        Node::File(vec![3u8; 200 * 1024]),
    ));
    lib.uses = vec![("tool".into(), "../tools/acme--tool@2.0.0.webc".into())];
    let lib_path = "/pkgs/acme--lib@1.0.0.webc";
    // Cut once mid-body: the retry resumes with a range.
    server.route(lib_path, Route::new(lib.build(3)).reset_after(100_000, 1));

    // A file beside the root, named by neither layout: its annotation names it.
    std::fs::create_dir_all(work.path().join("deps")).unwrap();
    small("acme/helper", "0.3.0", "helper.txt", "helper")
        .write(2, &work.path().join("deps/helper.webc"));
    let mut app = small("acme/app", "1.0.0", "app.txt", "app");
    app.uses = vec![
        ("lib".into(), server.url(lib_path)),
        ("helper".into(), "./deps/helper.webc".into()),
    ];
    let root = work.path().join("app.webc");
    app.write(3, &root);
    let root = root.to_str().unwrap();

    let load = |args: &[&str]| -> serde_json::Value {
        let out = run(pkgload(&cache).args(args).args(["load", "--json", root]));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let json = load(&[]);
    assert_eq!(
        package_ids(&json),
        [
            "acme/app@1.0.0",
            "acme/helper@0.3.0",
            "acme/lib@1.0.0",
            "acme/tool@2.0.0"
        ],
        "{json}"
    );
    let lib_requests = server.requests_to(lib_path);
    assert_eq!(
        lib_requests.len(),
        2,
        "one reset, one resumed: {lib_requests:?}"
    );
    assert!(
        lib_requests[1]
            .header("range")
            .is_some_and(|r| r.starts_with("bytes="))
    );
    assert_eq!(server.requests_to(tool_path).len(), 1);
    let listed = paths(&stdout(&run(pkgload(&cache).args(["ls", "-R", root]))));
    for path in [
        "/acme-lib/lib.txt",
        "/acme-tool/tool.txt",
        "/acme-helper/helper.txt",
    ] {
        assert!(listed.iter().any(|l| l == path), "{listed:?}");
    }

    // A lockfile pins what each URL served; a locked load (which asks for every locked
    // package at once) finds each by the URL the lockfile recorded.
    let lock = work.path().join("app.lock");
    run(pkgload(&cache).args(["resolve", "--lock", lock.to_str().unwrap(), root]));
    let recorded = std::fs::read_to_string(&lock).unwrap();
    assert!(recorded.contains(&server.url(lib_path)), "{recorded}");
    assert!(recorded.contains("file://"), "{recorded}");
    let out = run(pkgload(&cache).args(["load", "--json", "--lock", lock.to_str().unwrap(), root]));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(package_ids(&json).len(), 4, "{json}");

    // Warm, within the TTL: nothing asked.
    server.clear_requests();
    load(&[]);
    assert!(server.requests().is_empty(), "{:?}", server.requests());

    // Past the TTL: one conditional request each, answered without a body.
    load(&["--ref-ttl", "0"]);
    for path in [lib_path, tool_path] {
        let requests = server.requests_to(path);
        assert_eq!(requests.len(), 1, "{requests:?}");
        assert!(
            requests[0].header("if-none-match").is_some(),
            "{requests:?}"
        );
    }

    // The server's file changes: fetched again, and its new content is served.
    let mut lib2 = lib.clone();
    lib2.files[0].2 = Node::File(b"changed".to_vec());
    server.route(lib_path, Route::new(lib2.build(3)));
    let text = stdout(&run(pkgload(&cache).args([
        "--ref-ttl",
        "0",
        "cat",
        root,
        "/acme-lib/lib.txt",
    ])));
    assert_eq!(text, "changed");
    // The lockfile pins the file the URL served when it was written: a locked load serves
    // that one (from the cache, without asking), and where the cache lacks it, the
    // changed file is refused, naming the URL.
    let lock = lock.to_str().unwrap();
    let locked =
        run(pkgload(&cache).args(["--ref-ttl", "0", "load", "--json", "--lock", lock, root]));
    let locked: serde_json::Value = serde_json::from_slice(&locked.stdout).unwrap();
    let lib_digest = locked["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "acme/lib")
        .map(|p| p["digest"].clone())
        .unwrap();
    assert_eq!(lib_digest, sha256(&lib.build(3)));
    let err = failed(
        pkgload(&work.path().join("fresh"))
            .args(["load", "--lock", lock, root])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains(lib_path) && err.contains("digest mismatch"),
        "{err}"
    );

    // Offline, what the URLs served last is used.
    server.clear_requests();
    let text = stdout(&run(pkgload(&cache).args([
        "--offline",
        "--ref-ttl",
        "0",
        "cat",
        root,
        "/acme-tool/tool.txt",
    ])));
    assert_eq!(text, "2.0.0");
    assert!(server.requests().is_empty());
}

/// Dependencies by location that cannot work fail with one error naming the file: a wrong
/// sha256, a cycle through URLs, a named dependency with no registry to find it in, two
/// files claiming one package version.
#[test]
fn bad_webc_dependencies_by_location_are_clear_errors() {
    use test_servers::fault::{FaultServer, Route};
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let server = FaultServer::start("127.0.0.1".parse().unwrap()).unwrap();
    let root_with = |name: &str, uses: Vec<(String, String)>| {
        let mut app = small("acme/app", "1.0.0", "app.txt", "app");
        app.uses = uses;
        let file = work.path().join(format!("{name}.webc"));
        app.write(3, &file);
        file.to_str().unwrap().to_owned()
    };
    let load_err = |root: &str| failed(pkgload(&cache).args(["load", root]).output().unwrap());

    let lib = small("acme/lib", "1.0.0", "lib.txt", "lib");
    server.route("/lib.webc", Route::new(lib.build(3)));
    let wrong = format!("{}#sha256={}", server.url("/lib.webc"), "0".repeat(64));
    let err = load_err(&root_with("wrong", vec![("lib".into(), wrong)]));
    assert!(
        err.contains("/lib.webc") && err.contains("digest mismatch"),
        "{err}"
    );

    // a -> b -> a, all by URL.
    let mut a = small("acme/a", "1.0.0", "a.txt", "a");
    a.uses = vec![("b".into(), server.url("/b.webc"))];
    let mut b = small("acme/b", "1.0.0", "b.txt", "b");
    b.uses = vec![("a".into(), server.url("/a.webc"))];
    server.route("/a.webc", Route::new(a.build(3)));
    server.route("/b.webc", Route::new(b.build(3)));
    let err = load_err(&root_with(
        "cycle",
        vec![("a".into(), server.url("/a.webc"))],
    ));
    assert!(
        err.contains("cycle") && err.contains("acme/a") && err.contains("acme/b"),
        "{err}"
    );

    // A package by URL that names a dependency, and no --registry to look it up in.
    let mut needy = small("acme/needy", "1.0.0", "n.txt", "n");
    needy.uses = vec![("x".into(), "acme/x@^1".into())];
    server.route("/needy.webc", Route::new(needy.build(3)));
    let err = load_err(&root_with(
        "needy",
        vec![("n".into(), server.url("/needy.webc"))],
    ));
    assert!(
        err.contains("acme/x") && err.contains("--registry"),
        "{err}"
    );

    // Two different files that both say they are acme/lib 1.0.0.
    let mut other = lib.clone();
    other.files[0].2 = Node::File(b"other".to_vec());
    server.route("/other.webc", Route::new(other.build(3)));
    let err = load_err(&root_with(
        "twins",
        vec![
            ("lib".into(), server.url("/lib.webc")),
            ("other".into(), server.url("/other.webc")),
        ],
    ));
    assert!(
        err.contains("acme/lib")
            && err.contains("/other.webc")
            && err.contains("one version of a package"),
        "{err}"
    );
}

/// `pack DIR --output FILE.webc` is reproducible (the same directory gives the same bytes
/// whatever the files' times), and the file loads as the same tree, commands and
/// entrypoint as the OCI package packed from the same directory.
#[test]
fn a_package_directory_packs_into_a_reproducible_webc_file() {
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello");
    let dir = work.path().join("hello");
    copy_tree(&example, &dir);
    let pack = |output: &Path| -> serde_json::Value {
        let out = run(pkgload(&cache).args([
            "pack",
            dir.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ]));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let first = pack(&work.path().join("a.webc"));
    // New times on every file: the same bytes.
    for file in walk_files(&dir) {
        let f = std::fs::File::options().append(true).open(&file).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1234))
            .unwrap();
    }
    let second = pack(&work.path().join("b.webc"));
    assert_eq!(first["digest"], second["digest"]);
    assert_eq!(
        first["digest"],
        sha256(&std::fs::read(work.path().join("b.webc")).unwrap())
    );

    let layout = format!("oci:{}", work.path().join("layout").display());
    run(pkgload(&cache).args(["pack", dir.to_str().unwrap(), "--output", &layout]));
    let webc = work.path().join("a.webc");
    let webc = webc.to_str().unwrap();
    let describe = |reference: &str| -> serde_json::Value {
        serde_json::from_slice(&run(pkgload(&cache).args(["load", "--json", reference])).stdout)
            .unwrap()
    };
    let (from_webc, from_oci) = (describe(webc), describe(&layout));
    assert_eq!(from_webc["entrypoint"], from_oci["entrypoint"]);
    assert_eq!(
        from_webc["commands"][0]["atom"],
        from_oci["commands"][0]["atom"]
    );
    assert_eq!(from_webc["footprint"], from_oci["footprint"]);
    let listing = |reference: &str| stdout(&run(pkgload(&cache).args(["ls", "-R", reference])));
    assert_eq!(listing(webc), listing(&layout));

    // Somewhere it cannot be written: an error naming the file, nothing left behind.
    let nowhere = work.path().join("missing/dir/c.webc");
    let err = failed(
        pkgload(&cache)
            .args([
                "pack",
                dir.to_str().unwrap(),
                "--output",
                nowhere.to_str().unwrap(),
            ])
            .output()
            .unwrap(),
    );
    assert!(err.contains("missing/dir/c.webc"), "{err}");
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            out.extend(walk_files(&entry.path()));
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The case Wasmer's loader refuses ("rename the command"): a root command that runs a
/// dependency's atom under the name the dependency's own command has. The root's command
/// shadows the dependency's (one command of that name, declared by the root) and runs the
/// dependency's atom.
#[test]
fn a_root_command_may_shadow_the_dependency_command_whose_atom_it_runs() {
    use webc::metadata::Command as WebcCommand;
    use webc::metadata::annotations::Atom as AtomAnnotation;
    let runs = |atom: &str, dependency: Option<&str>| WebcCommand {
        runner: "https://webc.org/runner/wasi".into(),
        annotations: indexmap::IndexMap::from([(
            AtomAnnotation::KEY.to_owned(),
            test_servers::webc::annotation(&AtomAnnotation::new(
                atom,
                dependency.map(str::to_owned),
            )),
        )]),
    };
    let work = tempfile::tempdir().unwrap();
    let pkgs = work.path().join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let mut python = small("acme/python", "3.12.0", "lib.py", "python");
    python.commands = vec![("python".into(), runs("python", None))];
    python.write(3, &pkgs.join("acme--python@3.12.0.webc"));
    let mut app = small("acme/app", "1.0.0", "app.py", "app");
    app.uses = vec![("py".into(), "acme/python@^3".into())];
    app.commands = vec![("python".into(), runs("python", Some("py")))];
    app.entrypoint = Some("python".into());
    let root = work.path().join("app.webc");
    app.write(3, &root);

    let cache = work.path().join("cache");
    let dir = format!("dir:{}", pkgs.display());
    let out =
        run(pkgload(&cache).args(["--registry", &dir, "load", "--json", root.to_str().unwrap()]));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let commands = json["commands"].as_array().unwrap();
    let named: Vec<_> = commands.iter().filter(|c| c["name"] == "python").collect();
    assert_eq!(named.len(), 1, "{json}");
    assert_eq!(named[0]["package"], "acme/app", "{json}");
    assert_eq!(named[0]["atom"], sha256(&python.atoms[0].1), "{json}");
    assert_eq!(json["entrypoint"], "python");
}

/// A tree of webc files linked by URL loads warm from its snapshot: the same packages,
/// commands, files and contents as the load that wrote it, with nothing asked of the
/// server. The snapshot is as fresh as the URLs it came from (past the TTL the files are
/// revalidated and a changed one is served), and one that is damaged, or that names a file
/// the cache lost, or that a lockfile overrides, is passed over for the normal path.
#[test]
fn a_webc_tree_by_url_loads_warm_from_its_snapshot() {
    use test_servers::fault::{FaultServer, Route};
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let server = FaultServer::start("127.0.0.1".parse().unwrap()).unwrap();
    let tool = small("acme/tool", "2.0.0", "tool.txt", "tool");
    let tool_path = "/tools/acme--tool@2.0.0.webc";
    server.route(tool_path, Route::new(tool.build(3)));
    let mut lib = small("acme/lib", "1.0.0", "lib.txt", "lib");
    lib.uses = vec![("tool".into(), "../tools/acme--tool@2.0.0.webc".into())];
    let lib_path = "/pkgs/acme--lib@1.0.0.webc";
    server.route(lib_path, Route::new(lib.build(3)));
    let mut app = small("acme/app", "1.0.0", "app.txt", "app");
    app.uses = vec![("lib".into(), server.url(lib_path))];
    let app_path = "/pkgs/acme--app@1.0.0.webc";
    server.route(app_path, Route::new(app.build(3)));
    let url = server.url(app_path);

    // What a load says and serves, and whether it came from the snapshot.
    let observe = |args: &[&str]| -> (serde_json::Value, String, String, bool) {
        let out = run(pkgload(&cache)
            .args(args)
            .args(["-v", "load", "--json", &url]));
        let from_snapshot =
            String::from_utf8_lossy(&out.stderr).contains("read from the tree snapshot");
        let json = serde_json::from_slice(&out.stdout).unwrap();
        let listing = stdout(&run(pkgload(&cache).args(args).args(["ls", "-R", &url])));
        let text = stdout(&run(pkgload(&cache).args(args).args([
            "cat",
            &url,
            "/acme-lib/lib.txt",
        ])));
        (json, listing, text, from_snapshot)
    };
    let without_served = |mut json: serde_json::Value| {
        json.as_object_mut().unwrap().remove("served");
        json
    };

    let (cold, cold_listing, text, from_snapshot) = observe(&[]);
    assert!(!from_snapshot);
    assert_eq!(text, "1.0.0");
    assert_eq!(
        package_ids(&cold),
        ["acme/app@1.0.0", "acme/lib@1.0.0", "acme/tool@2.0.0"],
        "{cold}"
    );
    let listed = paths(&cold_listing);
    for path in [
        "/acme-app/app.txt",
        "/acme-lib/lib.txt",
        "/acme-tool/tool.txt",
    ] {
        assert!(listed.iter().any(|l| l == path), "{listed:?}");
    }

    // Warm: from the snapshot, the same tree, nothing asked.
    server.clear_requests();
    let (warm, warm_listing, text, from_snapshot) = observe(&[]);
    assert!(from_snapshot);
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    assert_eq!(without_served(warm.clone()), without_served(cold.clone()));
    assert_eq!(warm_listing, cold_listing);
    assert_eq!(text, "1.0.0");
    let unpacked = work.path().join("unpacked");
    run(pkgload(&cache).args(["unpack", &url, unpacked.to_str().unwrap()]));
    assert_eq!(
        std::fs::read_to_string(unpacked.join("acme-tool/tool.txt")).unwrap(),
        "2.0.0"
    );
    let resolved = run(pkgload(&cache).args(["resolve", "--json", &url]));
    let resolved: serde_json::Value = serde_json::from_slice(&resolved.stdout).unwrap();
    assert_eq!(
        resolved["packages"].as_array().unwrap().len(),
        3,
        "{resolved}"
    );

    // The server's file changes. Within the TTL the snapshot still serves what the server
    // last confirmed (as the URL memos would); past it, the files are revalidated and the
    // changed one is fetched and served, and its new snapshot serves it from then on.
    let mut lib2 = lib.clone();
    lib2.files[0].2 = Node::File(b"changed".to_vec());
    server.route(lib_path, Route::new(lib2.build(3)));
    assert_eq!(observe(&[]).2, "1.0.0");
    server.clear_requests();
    let out = run(pkgload(&cache).args(["-v", "--ref-ttl", "0", "cat", &url, "/acme-lib/lib.txt"]));
    assert_eq!(stdout(&out), "changed");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("read from the tree snapshot"));
    let requests = server.requests_to(app_path);
    assert!(
        requests.len() == 1 && requests[0].header("if-none-match").is_some(),
        "{requests:?}"
    );
    server.clear_requests();
    let (_, _, text, from_snapshot) = observe(&[]);
    assert_eq!(text, "changed");
    assert!(from_snapshot);
    assert!(server.requests().is_empty(), "{:?}", server.requests());

    // Offline, a snapshot of any age serves.
    let (_, _, text, from_snapshot) = observe(&["--offline", "--ref-ttl", "0"]);
    assert_eq!((text.as_str(), from_snapshot), ("changed", true));

    // A damaged snapshot is passed over (and written anew).
    let snapshots: Vec<_> = walk_files(&cache)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "webctree"))
        .collect();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    let mut bytes = std::fs::read(&snapshots[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    set_writable(&snapshots[0]);
    std::fs::write(&snapshots[0], &bytes).unwrap();
    let (json, listing, text, from_snapshot) = observe(&[]);
    assert!(!from_snapshot);
    assert_eq!(text, "changed");
    assert_eq!(package_ids(&json), package_ids(&cold));
    assert_eq!(paths(&listing), paths(&cold_listing));
    assert!(
        observe(&[]).3,
        "rewritten after the damaged one was passed over"
    );

    // A file the cache lost (as `cache gc` may remove it) is fetched again.
    let tool_blob = sha256(&tool.build(3));
    let tool_hex = tool_blob.trim_start_matches("sha256:");
    let stored = cache
        .join("v1/blobs/sha256")
        .join(&tool_hex[..2])
        .join(tool_hex);
    assert!(stored.is_file(), "{}", stored.display());
    set_writable(&stored);
    std::fs::remove_file(&stored).unwrap();
    server.clear_requests();
    let (_, listing, _, from_snapshot) = observe(&[]);
    assert!(!from_snapshot);
    assert_eq!(paths(&listing), paths(&cold_listing));
    assert_eq!(server.requests_to(tool_path).len(), 1);

    // A locked load checks the lock on the normal path.
    let lock = work.path().join("app.lock");
    run(pkgload(&cache).args(["resolve", "--lock", lock.to_str().unwrap(), &url]));
    let out = run(pkgload(&cache).args(["-v", "load", "--lock", lock.to_str().unwrap(), &url]));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("read from the tree snapshot"));

    // Another tree shares acme/lib. When a load of it finds the file changed again, this
    // tree's snapshot, still within its TTL, is passed over: the cache has one view of a
    // URL, whichever tree asked.
    let mut other = small("acme/other", "1.0.0", "other.txt", "other");
    other.uses = vec![("lib".into(), server.url(lib_path))];
    let other_path = "/pkgs/acme--other@1.0.0.webc";
    server.route(other_path, Route::new(other.build(3)));
    let other_url = server.url(other_path);
    run(pkgload(&cache).args(["load", &other_url]));
    assert!(observe(&[]).3);
    let mut lib3 = lib.clone();
    lib3.files[0].2 = Node::File(b"changed again".to_vec());
    server.route(lib_path, Route::new(lib3.build(3)));
    let text = stdout(&run(pkgload(&cache).args([
        "--ref-ttl",
        "0",
        "cat",
        &other_url,
        "/acme-lib/lib.txt",
    ])));
    assert_eq!(text, "changed again");
    let (_, _, text, from_snapshot) = observe(&[]);
    assert_eq!((text.as_str(), from_snapshot), ("changed again", false));
    assert!(observe(&[]).3, "a new snapshot, under the new mark");
}

/// Store files are read-only; a test that damages one makes it writable first.
fn set_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

//! End to end: the real `pkgload` binary against a real `docker-registry` on loopback.
//!
//! A package universe is built from directories with `pkgload push` (so packing is tested
//! too), then loaded back: backtracking, a diamond, nested mounts, sub-directory and
//! transitive mappings, command shadowing, a cycle and an unsatisfiable root. A counting
//! proxy in front of the registry shows that a warm load asks nothing and that a locked,
//! offline load works with the registry gone.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use test_servers::proxy::CountingProxy;
use test_servers::registry::Registry;

const PREFIX: &str = "team";

struct World {
    // Field order: the proxy stops before the registry.
    proxy: CountingProxy,
    _registry: Registry,
    work: tempfile::TempDir,
    cache: PathBuf,
}

fn pkgload(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pkgload"))
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .env_remove("RUST_LOG")
        // The developer's Docker config (and its credential helpers) stays out of tests.
        .env("DOCKER_CONFIG", cache.join("no-docker-config"))
        // Nor does the machine's host configuration (mirrors, CAs).
        .env("PKGLOAD_HOSTS_DIR", cache.join("no-hosts-dir"))
        .output()
        .expect("run pkgload")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "pkgload failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// One package directory: `toml` (without name/version) plus files `(relative path,
/// content)`; files under `v/<volume>/…` form volumes, atoms are `<name>.wasm`.
fn package(work: &Path, name: &str, version: &str, toml: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = work.join(format!("{}-{version}", name.replace('/', "_")));
    std::fs::create_dir_all(&dir).unwrap();
    for (path, content) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    std::fs::write(
        dir.join("pkgload.toml"),
        format!("name = \"{name}\"\nversion = \"{version}\"\n{toml}"),
    )
    .unwrap();
    dir
}

impl World {
    fn new() -> World {
        let registry =
            Registry::start().expect("start docker-registry (cargo xtask test installs it)");
        let proxy = CountingProxy::start(registry.addr()).unwrap();
        let work = tempfile::tempdir().unwrap();
        let cache = work.path().join("cache");
        World {
            proxy,
            _registry: registry,
            work,
            cache,
        }
    }

    fn reference(&self, name: &str, version: &str) -> String {
        format!("{}/{PREFIX}/{name}:{version}", self.proxy.host())
    }

    /// `acme/<name>` 1.0.0: one volume at `/<name>` holding `<name>.txt` (its name as
    /// content), needing `acme/<dep>` ^1 if given.
    fn push_one_volume(&self, name: &str, dep: Option<&str>) {
        let mut toml = String::new();
        if let Some(dep) = dep {
            toml += &format!(
                "[dependencies]\n{dep} = {{ package = \"acme/{dep}\", version = \"^1\" }}\n"
            );
        }
        toml +=
            &format!("[[fs]]\nvolume = \"v\"\nmount = \"/{name}\"\n[volumes]\nv = \"v/{name}\"\n");
        let file = format!("v/{name}/{name}.txt");
        self.push(&format!("acme/{name}"), "1.0.0", &toml, &[(&file, name)]);
    }

    fn push(&self, name: &str, version: &str, toml: &str, files: &[(&str, &str)]) {
        let dir = package(self.work.path(), name, version, toml, files);
        let publisher_cache = self.work.path().join("publisher-cache");
        ok(&pkgload(
            &publisher_cache,
            &[
                "push",
                dir.to_str().unwrap(),
                &self.reference(name, version),
            ],
        ));
    }

    fn run(&self, args: &[&str]) -> Output {
        pkgload(&self.cache, args)
    }

    /// The universe every test below loads from.
    fn universe(&self) {
        // libc: 1.2.0 and 2.0.0.
        for v in ["1.2.0", "2.0.0"] {
            self.push(
                "acme/libc",
                v,
                "[[fs]]\nvolume = \"lib\"\nmount = \"/lib/libc\"\n[volumes]\nlib = \"v/lib\"\n",
                &[("v/lib/version.txt", v)],
            );
        }
        // python: the newest needs libc ^2, 3.12 needs libc ^1; both ship a stdlib volume
        // with a json package and a `python` command.
        for (v, libc) in [("3.11.0", "^1"), ("3.12.0", "^1"), ("3.13.0", "^2")] {
            self.push(
                "acme/python",
                v,
                &format!(
                    "[dependencies]\nlibc = {{ package = \"acme/libc\", version = \"{libc}\" }}\n\
                     [commands.python]\nrunner = \"wasi\"\natom = \"python\"\n\
                     [volumes]\nstdlib = \"v/stdlib\"\n[atoms]\npython = \"python.wasm\"\n"
                ),
                &[
                    ("v/stdlib/json/__init__.py", &format!("# json for {v}\n")),
                    ("v/stdlib/os.py", "# os\n"),
                    ("python.wasm", &format!("\0asm python {v}")),
                ],
            );
        }
        // tools pins libc to 1.x.
        self.push(
            "acme/tools",
            "1.0.0",
            "[dependencies]\nlibc = { package = \"acme/libc\", version = \">=1.2, <2\" }\n\
             [commands.fmt]\nrunner = \"wasi\"\natom = \"fmt\"\n[atoms]\nfmt = \"fmt.wasm\"\n",
            &[("fmt.wasm", "\0asm fmt")],
        );
        // The app: nested mounts, a sub-directory of python's stdlib, and its own `python`
        // command shadowing the dependency's.
        self.push(
            "acme/app",
            "1.0.0",
            "entrypoint = \"app\"\n\
             [dependencies]\npy = { package = \"acme/python\", version = \">=3.11\" }\n\
             tools = { package = \"acme/tools\", version = \"^1\" }\n\
             [commands.app]\nrunner = \"wasi\"\natom = \"app\"\n\
             [commands.python]\nrunner = \"wasi\"\natom = \"app\"\n\
             [[fs]]\nvolume = \"app\"\nmount = \"/app\"\n\
             [[fs]]\nvolume = \"data\"\nmount = \"/app/data\"\n\
             [[fs]]\nvolume = \"stdlib\"\nmount = \"/opt/json\"\ndependency = \"py\"\npath = \"/json\"\n\
             [volumes]\napp = \"v/app\"\ndata = \"v/data\"\n[atoms]\napp = \"app.wasm\"\n",
            &[
                ("v/app/main.py", "print('hi')\n"),
                ("v/data/seed.csv", "a,b\n"),
                ("app.wasm", "\0asm app"),
            ],
        );
        // A diamond: left and right both need base, with different ranges.
        for v in ["1.0.0", "1.1.0", "1.2.0", "2.0.0"] {
            self.push("acme/base", v, "", &[]);
        }
        self.push(
            "acme/left",
            "1.0.0",
            "[dependencies]\nbase = { package = \"acme/base\", version = \"^1\" }\n",
            &[],
        );
        self.push(
            "acme/right",
            "1.0.0",
            "[dependencies]\nbase = { package = \"acme/base\", version = \">=1.1, <1.2\" }\n",
            &[],
        );
        self.push(
            "acme/diamond",
            "1.0.0",
            "[dependencies]\nl = { package = \"acme/left\", version = \"1\" }\n\
             r = { package = \"acme/right\", version = \"1\" }\n",
            &[],
        );
        // A cycle and an unsatisfiable root.
        self.push(
            "acme/cyc-a",
            "1.0.0",
            "[dependencies]\nb = { package = \"acme/cyc-b\", version = \"1\" }\n",
            &[],
        );
        self.push(
            "acme/cyc-b",
            "1.0.0",
            "[dependencies]\na = { package = \"acme/cyc-a\", version = \"1\" }\n",
            &[],
        );
        self.push(
            "acme/needs-py4",
            "1.0.0",
            "[dependencies]\npy = { package = \"acme/python\", version = \"^4\" }\n",
            &[],
        );
    }
}

fn versions(resolve_json: &str) -> Vec<(String, String)> {
    let v: Value = serde_json::from_str(resolve_json).unwrap();
    v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn package_universe_end_to_end() {
    let world = World::new();
    world.universe();
    let app = world.reference("acme/app", "1.0.0");

    // Backtracking: the newest python needs libc 2, tools pins libc 1 → python 3.12.
    let resolved = ok(&world.run(&["resolve", &app, "--json"]));
    let got = versions(&resolved);
    assert_eq!(
        got,
        [
            ("acme/app", "1.0.0"),
            ("acme/libc", "1.2.0"),
            ("acme/python", "3.12.0"),
            ("acme/tools", "1.0.0"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let root: Value = serde_json::from_str(&resolved).unwrap();
    assert_eq!(root["root"]["name"], "acme/app");
    assert!(
        root["root"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    // The load: commands (root shadows py's python), entrypoint, and the filesystem.
    let loaded: Value = serde_json::from_str(&ok(&world.run(&["load", &app, "--json"]))).unwrap();
    assert_eq!(loaded["entrypoint"], "app");
    let commands: Vec<(String, String)> = loaded["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["package"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        commands,
        [
            ("app", "acme/app"),
            ("fmt", "acme/tools"),
            ("python", "acme/app")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let cat = |path: &str| ok(&world.run(&["cat", &app, path]));
    assert_eq!(cat("/app/main.py"), "print('hi')\n");
    // Nested mount: /app/data is its own volume.
    assert_eq!(cat("/app/data/seed.csv"), "a,b\n");
    // A sub-directory of a dependency's volume.
    assert_eq!(cat("/opt/json/__init__.py"), "# json for 3.12.0\n");
    // A transitive mapping: libc's volume, at the version resolved.
    assert_eq!(cat("/lib/libc/version.txt"), "1.2.0");
    let root_listing = ok(&world.run(&["ls", &app, "/"]));
    assert_eq!(
        root_listing.lines().collect::<Vec<_>>(),
        ["app", "lib", "opt"]
    );
    let app_listing = ok(&world.run(&["ls", &app, "/app"]));
    assert_eq!(app_listing.lines().collect::<Vec<_>>(), ["data", "main.py"]);

    // The diamond settles on the one base both accept.
    let diamond = ok(&world.run(&[
        "resolve",
        &world.reference("acme/diamond", "1.0.0"),
        "--json",
    ]));
    assert!(versions(&diamond).contains(&("acme/base".to_owned(), "1.1.0".to_owned())));

    // A cycle is named; an unsatisfiable root is explained.
    let cycle = failed(&world.run(&["resolve", &world.reference("acme/cyc-a", "1.0.0")]));
    assert!(
        cycle.contains("acme/cyc-a 1.0.0 -> acme/cyc-b 1.0.0 -> acme/cyc-a 1.0.0"),
        "{cycle}"
    );
    let unsat = failed(&world.run(&["resolve", &world.reference("acme/needs-py4", "1.0.0")]));
    assert!(
        unsat.contains("acme/python") && unsat.contains("3.13.0"),
        "{unsat}"
    );
    // A failed resolution still keeps the tag lists it fetched (a tag list is written
    // beside a tag's digest, and python's has none here: no version matches ^4), so asking
    // again from the same cache asks the registry nothing.
    let unsat_cache = world.work.path().join("unsat-cache");
    let needs_py4 = world.reference("acme/needs-py4", "1.0.0");
    failed(&pkgload(&unsat_cache, &["resolve", &needs_py4]));
    world.proxy.clear();
    let again = failed(&pkgload(&unsat_cache, &["resolve", &needs_py4]));
    assert!(again.contains("3.13.0"), "{again}");
    assert_eq!(world.proxy.requests(), Vec::<String>::new());

    // Warm: a second load of the same tree makes no request at all.
    world.proxy.clear();
    ok(&world.run(&["load", &app]));
    assert_eq!(world.proxy.requests(), Vec::<String>::new());
    assert_eq!(world.proxy.connections(), 0);

    // A fresh cache with a lockfile: fetch once, then load offline with the registry gone.
    let lock = world.work.path().join("pkgload.lock");
    let fresh = world.work.path().join("fresh-cache");
    ok(&pkgload(
        &fresh,
        &["fetch", &app, "--lock", lock.to_str().unwrap()],
    ));
    let lock_text = std::fs::read_to_string(&lock).unwrap();
    assert!(
        lock_text.contains("acme/python") && lock_text.contains("3.12.0"),
        "{lock_text}"
    );
    let World { proxy, .. } = world;
    drop(proxy);
    let offline = ok(&pkgload(
        &fresh,
        &[
            "--offline",
            "load",
            &app,
            "--json",
            "--lock",
            lock.to_str().unwrap(),
        ],
    ));
    let offline: Value = serde_json::from_str(&offline).unwrap();
    assert_eq!(offline["packages"].as_array().unwrap().len(), 4);
    // Offline, a reference never loaded names what is missing.
    let missing = pkgload(
        &fresh,
        &["--offline", "load", &app.replace("1.0.0", "9.9.9")],
    );
    let message = failed(&missing);
    assert!(
        message.contains("offline") && message.contains("9.9.9"),
        "{message}"
    );
}

/// `--jobs 1` is one request at a time (never two waiting for an answer at the proxy), and
/// a cold load asks for nothing twice: the downloads started while resolving are joined by
/// the fetch that follows, not repeated.
#[test]
fn jobs_one_is_serial_and_a_cold_load_asks_once() {
    let world = World::new();
    world.push_one_volume("leaf", None);
    world.push_one_volume("mid", Some("leaf"));
    world.push_one_volume("top", Some("mid"));
    let top = world.reference("acme/top", "1.0.0");
    let unique = |requests: &[String]| {
        let mut seen = std::collections::HashSet::new();
        let repeated: Vec<&String> = requests.iter().filter(|r| !seen.insert(*r)).collect();
        assert!(
            repeated.is_empty(),
            "asked twice: {repeated:?} in {requests:#?}"
        );
    };
    for (jobs, cache) in [("1", "serial-cache"), ("8", "wide-cache")] {
        world.proxy.clear();
        let cache = world.work.path().join(cache);
        ok(&pkgload(&cache, &["--jobs", jobs, "ls", "-R", &top, "/"]));
        let requests = world.proxy.requests();
        unique(&requests);
        // 3 packages: tag list (not for the root), manifest, volume. The config is embedded
        // in the manifest, so no config blob is asked for.
        assert_eq!(requests.len(), 8, "{requests:#?}");
        let blobs = requests.iter().filter(|r| r.contains("/blobs/")).count();
        assert_eq!(blobs, 3, "{requests:#?}");
        if jobs == "1" {
            assert_eq!(world.proxy.max_in_flight(), 1, "{requests:#?}");
        }
        let listing = ok(&pkgload(
            &cache,
            &["--offline", "cat", &top, "/leaf/leaf.txt"],
        ));
        assert_eq!(listing, "leaf");
    }
}

/// The Docker config's credential helper is asked through the CLI: one that fails stops the
/// load with an error naming it and what it said; one that is not installed only warns, and
/// the load goes on anonymously.
#[test]
fn docker_credential_helpers_through_the_cli() {
    use std::os::unix::fs::PermissionsExt as _;
    let world = World::new();
    world.push_one_volume("leaf", None);
    let leaf = world.reference("acme/leaf", "1.0.0");
    let docker = world.work.path().join("docker");
    let bin = world.work.path().join("bin");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-locked");
    std::fs::write(
        &helper,
        "#!/bin/sh\necho 'the keychain is locked' >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let run = |store: &str, cache: &str| {
        std::fs::write(
            docker.join("config.json"),
            format!(r#"{{"credsStore": "{store}"}}"#),
        )
        .unwrap();
        Command::new(env!("CARGO_BIN_EXE_pkgload"))
            .arg("--cache-dir")
            .arg(world.work.path().join(cache))
            .args(["cat", &leaf, "/leaf/leaf.txt"])
            .env_remove("RUST_LOG")
            .env("DOCKER_CONFIG", &docker)
            .env("PATH", &path)
            .output()
            .unwrap()
    };
    let err = failed(&run("locked", "locked-cache"));
    assert!(
        err.contains("docker-credential-locked") && err.contains("the keychain is locked"),
        "{err}"
    );
    let out = run("not-installed", "anonymous-cache");
    assert_eq!(ok(&out), "leaf");
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(
        warned.contains("docker-credential-not-installed"),
        "{warned}"
    );
}

/// A webc file whose `use` names an OCI package in the registry: the solver finds the
/// dependency there and the tree mounts both packages' volumes, the webc's own from the
/// container and the dependency's from the registry.
#[test]
fn a_webc_root_depends_on_an_oci_package() {
    use test_servers::webc::Package;
    use webc::metadata::annotations::FileSystemMapping;
    let world = World::new();
    world.push_one_volume("leaf", None);
    let mut pkg = Package::hello();
    pkg.uses = vec![("leaf".into(), "acme/leaf@^1.0".into())];
    pkg.fs = Some(vec![
        FileSystemMapping {
            from: None,
            volume_name: "atom".into(),
            host_path: Some("/etc".into()),
            mount_path: "/app".into(),
        },
        FileSystemMapping {
            from: Some("leaf".into()),
            volume_name: "v".into(),
            host_path: None,
            mount_path: "/deps/leaf".into(),
        },
    ]);
    let file = world.work.path().join("app.webc");
    pkg.write(3, &file);
    let registry = format!("{}/{PREFIX}", world.proxy.host());
    let f = file.to_str().unwrap();
    let json: Value = serde_json::from_str(&ok(&world.run(&[
        "--registry",
        &registry,
        "load",
        "--json",
        f,
    ])))
    .unwrap();
    let names: Vec<_> = common::package_names(&json);
    assert_eq!(names, ["acme/hello@1.2.3", "acme/leaf@1.0.0"]);
    assert_eq!(
        ok(&world.run(&["--registry", &registry, "cat", f, "/deps/leaf/leaf.txt"])),
        "leaf"
    );
    assert_eq!(
        ok(&world.run(&["--registry", &registry, "cat", f, "/app/motd"])),
        "hi there\n"
    );
    // A dependency the registry does not have: the solver says which.
    let mut missing = pkg.clone();
    missing.uses = vec![("leaf".into(), "acme/nowhere@^1.0".into())];
    missing.fs = None;
    missing.write(3, &file);
    let err = failed(&world.run(&["--registry", &registry, "load", f]));
    assert!(err.contains("acme/nowhere"), "{err}");
}

/// Webc packages pushed to the registry as OCI artifacts (`pkgload push FILE.webc`) load as
/// roots and as dependencies, mixed with OCI packages; one that says it is another package
/// than its repository and tag is refused naming both; one with no version needs a tag.
#[test]
fn webc_packages_travel_through_an_oci_registry() {
    use test_servers::webc::{Node, Package};
    use webc::metadata::annotations::FileSystemMapping;
    let world = World::new();
    world.push_one_volume("leaf", None);
    let mapping = |from: Option<&str>, volume: &str, mount: &str| FileSystemMapping {
        from: from.map(str::to_owned),
        volume_name: volume.into(),
        host_path: None,
        mount_path: mount.into(),
    };
    let mut lib = Package {
        name: Some(("acme/lib".into(), "1.4.0".into())),
        files: vec![(
            "v".into(),
            "/lib.txt".into(),
            Node::File(b"lib 1.4".to_vec()),
        )],
        ..Package::default()
    };
    lib.fs = Some(vec![mapping(None, "v", "/lib")]);
    let mut app = Package::hello();
    app.name = Some(("acme/app".into(), "2.0.0".into()));
    app.uses = vec![
        ("lib".into(), "acme/lib@^1".into()),
        ("leaf".into(), "acme/leaf@^1".into()),
    ];
    app.fs = Some(vec![mapping(None, "atom", "/app")]);
    let files = world.work.path();
    lib.write(2, &files.join("lib.webc"));
    app.write(3, &files.join("app.webc"));
    let publisher = files.join("publisher-cache");
    let push = |file: &str, reference: &str| {
        pkgload(
            &publisher,
            &["push", files.join(file).to_str().unwrap(), reference],
        )
    };
    // The tag defaults to the version the package carries.
    let untagged = |name: &str| format!("{}/{PREFIX}/{name}", world.proxy.host());
    let pushed: Value =
        serde_json::from_str(&ok(&push("lib.webc", &untagged("acme/lib")))).unwrap();
    assert_eq!(pushed["tag"], "1.4.0");
    ok(&push("app.webc", &world.reference("acme/app", "2.0.0")));

    let root = world.reference("acme/app", "2.0.0");
    let json: Value = serde_json::from_str(&ok(&world.run(&["load", "--json", &root]))).unwrap();
    let names: Vec<_> = common::package_names(&json);
    assert_eq!(
        names,
        ["acme/app@2.0.0", "acme/leaf@1.0.0", "acme/lib@1.4.0"]
    );
    assert_eq!(ok(&world.run(&["cat", &root, "/lib/lib.txt"])), "lib 1.4");
    assert_eq!(ok(&world.run(&["cat", &root, "/leaf/leaf.txt"])), "leaf");
    assert_eq!(
        ok(&world.run(&["cat", &root, "/app/etc/motd"])),
        "hi there\n"
    );
    // Warm: nothing is asked again.
    let before = world.proxy.requests().len();
    ok(&world.run(&["--offline", "cat", &root, "/lib/lib.txt"]));
    assert_eq!(world.proxy.requests().len(), before);

    // A webc under another package's name and tag: `push` refuses to put it there...
    let err = failed(&push("app.webc", &world.reference("acme/other", "2.0.0")));
    assert!(
        err.contains("app.webc") && err.contains("acme/app") && err.contains("acme/other"),
        "{err}"
    );
    // ...and when another tool copied it there anyway, a load refuses it.
    let registry = &world._registry;
    let oci = "application/vnd.oci.image.manifest.v1+json";
    let manifest = registry
        .request(
            "GET",
            &format!("/v2/{PREFIX}/acme/app/manifests/2.0.0"),
            &[("Accept", oci)],
            b"",
        )
        .unwrap();
    assert_eq!(manifest.status, 200, "{}", manifest.text());
    let other = format!("{PREFIX}/acme/other");
    registry.push_blob(&other, b"{}").unwrap();
    registry
        .push_blob(&other, &std::fs::read(files.join("app.webc")).unwrap())
        .unwrap();
    registry
        .push_manifest(&other, "2.0.0", oci, &manifest.body)
        .unwrap();
    let err = failed(&world.run(&["load", &world.reference("acme/other", "2.0.0")]));
    assert!(
        err.contains("acme/app@2.0.0") && err.contains("acme/other@2.0.0"),
        "{err}"
    );

    // No version in the package and none in the reference.
    let mut nameless = Package::hello();
    nameless.name = None;
    nameless.write(3, &files.join("nameless.webc"));
    let err = failed(&push("nameless.webc", &untagged("acme/nameless")));
    assert!(
        err.contains("nameless.webc") && err.contains("tag"),
        "{err}"
    );
}

/// `--registry` given more than once: the places are one source, consulted in order. An
/// OCI package from the registry depends on a webc package found only in a directory of
/// webc files; a version both places have comes from the first place named; a place that
/// cannot answer does not hide the others.
#[test]
fn several_places_are_one_source_in_order() {
    use test_servers::webc::{Node, Package};
    use webc::metadata::annotations::FileSystemMapping;
    let world = World::new();
    world.push_one_volume("leaf", None);
    world.push(
        "acme/mid",
        "1.0.0",
        "[dependencies]\nlib = { package = \"acme/lib\", version = \"^1\" }\n\
         leaf = { package = \"acme/leaf\", version = \"^1\" }\n\
         [[fs]]\nvolume = \"v\"\nmount = \"/mid\"\n[volumes]\nv = \"v/mid\"\n",
        &[("v/mid/mid.txt", "mid")],
    );
    let webc = |name: &str, text: &str| {
        let mut pkg = Package {
            name: Some((format!("acme/{name}"), "1.0.0".into())),
            files: vec![(
                "v".into(),
                format!("/{name}.txt"),
                Node::File(text.as_bytes().to_vec()),
            )],
            ..Package::default()
        };
        pkg.fs = Some(vec![FileSystemMapping {
            from: None,
            volume_name: "v".into(),
            host_path: None,
            mount_path: format!("/{name}"),
        }]);
        pkg
    };
    let dir = world.work.path().join("webc-dir");
    std::fs::create_dir_all(&dir).unwrap();
    webc("lib", "lib from the directory").write(3, &dir.join("acme--lib@1.0.0.webc"));
    webc("leaf", "leaf from the directory").write(3, &dir.join("acme--leaf@1.0.0.webc"));
    let registry = format!("{}/{PREFIX}", world.proxy.host());
    let directory = format!("dir:{}", dir.display());

    let cat = |places: &[&str], path: &str| {
        let mut args = Vec::new();
        for place in places {
            args.extend(["--registry", place]);
        }
        args.extend(["cat", "acme/mid@^1", path]);
        ok(&world.run(&args))
    };
    // The registry first: acme/leaf from it, acme/lib only in the directory.
    assert_eq!(
        cat(&[&registry, &directory], "/lib/lib.txt"),
        "lib from the directory"
    );
    assert_eq!(cat(&[&registry, &directory], "/leaf/leaf.txt"), "leaf");
    // The directory first: its acme/leaf wins.
    assert_eq!(
        cat(&[&directory, &registry], "/leaf/leaf.txt"),
        "leaf from the directory"
    );

    // A place that answers nothing useful (every path 404s) does not hide the others.
    let nowhere = test_servers::fault::FaultServer::start("127.0.0.1".parse().unwrap()).unwrap();
    let nowhere = format!("{}/none", nowhere.host());
    assert_eq!(
        cat(&[&nowhere, &registry, &directory], "/mid/mid.txt"),
        "mid"
    );
    // Nothing anywhere: one error naming every place.
    let err = failed(&world.run(&[
        "--registry",
        &directory,
        "--registry",
        &registry,
        "load",
        "acme/ghost@^1",
    ]));
    assert!(
        err.contains("acme/ghost") && err.contains(&directory) && err.contains(&registry),
        "{err}"
    );
}

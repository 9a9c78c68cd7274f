//! Short text parsers: digests, image references, `WWW-Authenticate`, VFS paths.

use cache_core::Digest;
use fetch_http::reference::{LayoutRef, Reference, RegistryRef};
use fetch_http::{Challenge, parse_challenge};
use vfs_overlay::VfsPath;

use super::{Feedback, Target, utf8};

const SHA256_EMPTY: &str =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

pub(super) const DIGEST: Target = Target {
    name: "digest",
    about: "cache_core::Digest::parse: accepted text is canonical (prints back unchanged, \
            parses again equal, upper-case hex refused, from_raw agrees)",
    run: digest,
    seeds: digest_seeds,
    dictionary: &[
        b"sha256:",
        b"sha512:",
        b"blake3:",
        b"sha384:",
        b"SHA256:",
        b"0",
        b"f",
        b"A",
        b":",
        b"@",
        b"+",
        b"\xc3\xa9",
    ],
    max_len: 256,
};

fn digest(data: &[u8]) -> Feedback {
    let Some(text) = utf8(data) else {
        return Feedback::new("not UTF-8");
    };
    let digest = match Digest::parse(text) {
        Ok(digest) => digest,
        Err(e) => return Feedback::err("digest", &e),
    };
    let printed = digest.to_string();
    assert_eq!(printed, text, "a parsed digest must print as its input");
    let reparsed = Digest::parse(&printed);
    assert!(
        reparsed.as_ref() == Ok(&digest),
        "{printed:?} must parse again to the same digest, got {reparsed:?}"
    );
    assert_eq!(digest.hex().len(), digest.as_bytes().len() * 2);
    assert_eq!(
        Digest::from_raw(digest.algorithm(), digest.as_bytes()),
        Some(digest),
        "from_raw of a digest's own bytes must give it back"
    );
    let upper = format!(
        "{}:{}",
        digest.algorithm(),
        digest.hex().to_ascii_uppercase()
    );
    if upper != printed {
        assert!(
            Digest::parse(&upper).is_err(),
            "upper-case hex {upper:?} must be refused"
        );
    }
    Feedback::ok(&digest.algorithm().to_string(), text.len())
}

fn digest_seeds() -> Vec<Vec<u8>> {
    vec![
        SHA256_EMPTY.into(),
        format!("sha512:{}", "ab".repeat(64)).into(),
        format!("blake3:{}", "0f".repeat(32)).into(),
        b"sha256:".to_vec(),
        b"md5:d41d8cd98f00b204e9800998ecf8427e".to_vec(),
    ]
}

pub(super) const REFERENCE: Target = Target {
    name: "reference",
    about: "fetch_http::reference::Reference::parse (registry and oci: layout forms): the \
            printed form parses back equal, parts rebuild the same reference",
    run: reference,
    seeds: reference_seeds,
    dictionary: &[
        b"oci:",
        b"docker.io/",
        b"index.docker.io/",
        b"localhost",
        b":5000",
        b"[::1]",
        b"/",
        b":",
        b"@",
        b"@sha256:",
        b"library/",
        b"latest",
        b"..",
        b"_",
        b"__",
        b"-",
        b".",
        b" ",
        b"\t",
        b"C:\\",
        b"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ],
    max_len: 512,
};

fn reference(data: &[u8]) -> Feedback {
    let Some(text) = utf8(data) else {
        return Feedback::new("not UTF-8");
    };
    let parsed = match Reference::parse(text) {
        Ok(parsed) => parsed,
        Err(e) => return Feedback::err("reference", &e),
    };
    let printed = parsed.to_string();
    let again = Reference::parse(&printed)
        .unwrap_or_else(|e| panic!("{printed:?}, printed from {text:?}, does not parse: {e}"));
    assert_eq!(
        again, parsed,
        "{text:?} prints as {printed:?}, which parses differently"
    );
    assert_eq!(again.to_string(), printed, "printing must be idempotent");
    match &parsed {
        Reference::Registry(registry) => {
            assert_eq!(RegistryRef::parse(text).as_ref(), Ok(registry));
            assert!(
                registry.tag().is_some() || registry.digest().is_some(),
                "{printed:?} has neither tag nor digest"
            );
            assert_eq!(
                registry.registry(),
                registry.registry().to_ascii_lowercase(),
                "the registry must be lower case"
            );
            let rebuilt = RegistryRef::new(registry.registry(), registry.repository())
                .unwrap_or_else(|e| {
                    panic!("the parts of {printed:?} do not make a reference again: {e}")
                });
            assert_eq!(rebuilt.name(), registry.name());
            let retagged = registry
                .clone()
                .with_tag("fuzz-1.0")
                .unwrap_or_else(|e| panic!("{printed:?} cannot take a valid tag: {e}"));
            assert_eq!(retagged.digest(), None);
            let retagged_text = retagged.to_string();
            assert_eq!(
                RegistryRef::parse(&retagged_text).as_ref(),
                Ok(&retagged),
                "{retagged_text:?}"
            );
            let _ = (
                registry.reference_str(),
                registry.port(),
                registry.is_loopback(),
            );
            let _ = registry.api_base(false);
            Feedback::ok("registry", registry.repository().matches('/').count())
                .and(u64::from(registry.digest().is_some()))
        }
        Reference::Layout(layout) => {
            assert_eq!(LayoutRef::parse(text).as_ref(), Ok(layout));
            let rebuilt = LayoutRef::new(layout.dir(), layout.tag()).unwrap_or_else(|e| {
                panic!("the parts of {printed:?} do not make a layout reference again: {e}")
            });
            assert_eq!(&rebuilt, layout);
            Feedback::ok("layout", layout.dir().components().count())
                .and(u64::from(layout.tag().is_some()))
        }
    }
}

fn reference_seeds() -> Vec<Vec<u8>> {
    [
        "ubuntu",
        "ubuntu:24.04",
        "ghcr.io/org/img:1.0",
        "localhost:5000/team/acme/app:1.0.0",
        "[::1]:5000/a/b@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "Index.Docker.IO/library/busybox:latest",
        "127.0.0.1:05000/x:y",
        "oci:./dir:v1",
        "oci:/srv/a:b/layout",
        "oci:C:\\layouts\\app",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

pub(super) const WWW_AUTHENTICATE: Target = Target {
    name: "www_authenticate",
    about: "fetch_http::parse_challenge (WWW-Authenticate): a Bearer challenge written back \
            with quoted parameters parses equal; the scheme is case-insensitive",
    run: www_authenticate,
    seeds: www_authenticate_seeds,
    dictionary: &[
        b"Bearer ",
        b"Basic ",
        b"realm=",
        b"service=",
        b"scope=",
        b"\"",
        b"\\\"",
        b"\\",
        b",",
        b"=",
        b" ",
        b"repository:a/b:pull,push",
    ],
    max_len: 512,
};

fn quoted(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn www_authenticate(data: &[u8]) -> Feedback {
    let Some(text) = utf8(data) else {
        return Feedback::new("not UTF-8");
    };
    let parsed = parse_challenge(text);
    // The scheme is case-insensitive: flipping its case changes nothing.
    let trimmed = text.trim();
    let (scheme, rest) = trimmed.split_once(' ').unwrap_or((trimmed, ""));
    let flipped = format!("{} {rest}", scheme.to_ascii_uppercase());
    assert_eq!(
        parse_challenge(&flipped),
        parsed,
        "{flipped:?} must parse like {text:?}"
    );
    match &parsed {
        None => Feedback::new("none"),
        Some(Challenge::Basic) => Feedback::new("basic"),
        Some(Challenge::Bearer {
            realm,
            service,
            scope,
        }) => {
            let mut canonical = format!("Bearer realm={}", quoted(realm));
            if let Some(service) = service {
                canonical.push_str(&format!(",service={}", quoted(service)));
            }
            if let Some(scope) = scope {
                canonical.push_str(&format!(", scope={}", quoted(scope)));
            }
            assert_eq!(
                parse_challenge(&canonical),
                parsed,
                "{text:?} parsed, written back as {canonical:?}, must parse the same"
            );
            Feedback::ok("bearer", realm.len())
                .and(u64::from(service.is_some()) + 2 * u64::from(scope.is_some()))
        }
    }
}

fn www_authenticate_seeds() -> Vec<Vec<u8>> {
    [
        r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull""#,
        r#"Basic realm="Registry Realm""#,
        "bearer realm=http://127.0.0.1:1/t,scope=repository:a:pull",
        r#"Bearer realm="a\"b,c", service=x"#,
        "Negotiate",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

pub(super) const VFS_PATH: Target = Target {
    name: "vfs_path",
    about: "vfs_overlay::VfsPath::new/join/parent/strip_prefix on parts split at 0xFF: paths \
            stay canonical and under /, normalization is idempotent, prefixes agree",
    run: vfs_path,
    seeds: vfs_path_seeds,
    dictionary: &[
        b"/",
        b"..",
        b"../",
        b"./",
        b".",
        b"//",
        b"\0",
        b"\xff",
        b".wh.",
        b"a",
        b"\xc3\xa9",
    ],
    max_len: 512,
};

/// Panics unless `path` is canonical: rooted, no empty, `.` or `..` components, no
/// trailing `/` except the root, and normalizing it again changes nothing.
fn assert_canonical(path: &VfsPath, from: &str) {
    let s = path.as_str();
    assert!(s.starts_with('/'), "{s:?} (from {from:?}) is not rooted");
    assert!(
        path.is_root() || !s.ends_with('/'),
        "{s:?} (from {from:?}) ends with /"
    );
    assert_eq!(path.is_root(), s == "/");
    for c in s.split('/').skip(1) {
        assert!(
            path.is_root() || !(c.is_empty() || c == "." || c == ".."),
            "{s:?} (from {from:?}) has the component {c:?}"
        );
    }
    let again = VfsPath::new(s).unwrap_or_else(|e| panic!("{s:?} does not normalize: {e}"));
    assert_eq!(&again, path, "normalizing {s:?} again must not change it");
}

/// The lexical normalization DESIGN.md describes, written independently: components
/// from the root, `.` skipped, `..` pops and stops at `/`.
fn model(base: &[String], rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = if rel.starts_with('/') {
        Vec::new()
    } else {
        base.to_vec()
    };
    for c in rel.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name.to_owned()),
        }
    }
    parts
}

fn components(path: &VfsPath) -> Vec<String> {
    path.components().map(str::to_owned).collect()
}

fn vfs_path(data: &[u8]) -> Feedback {
    let parts: Vec<String> = data
        .split(|&b| b == 0xff)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let mut feedback = Feedback::new("vfs_path").and(parts.len().min(4) as u64);
    let mut deepest = 0;
    let mut current = VfsPath::root();
    for (i, rel) in parts.iter().enumerate() {
        let joined = if i == 0 {
            VfsPath::new(rel)
        } else {
            current.join(rel)
        };
        let joined = match joined {
            Ok(joined) => joined,
            Err(e) => {
                assert!(rel.contains('\0'), "{rel:?} refused without a NUL: {e}");
                feedback = feedback.and(1 << 8);
                let _ = e;
                continue;
            }
        };
        assert!(!rel.contains('\0'), "{rel:?} holds a NUL but was accepted");
        assert_canonical(&joined, rel);
        assert_eq!(
            components(&joined),
            model(&components(&current), rel),
            "{current:?} joined with {rel:?}"
        );
        if let Some(parent) = joined.parent() {
            assert!(joined.starts_with(&parent));
            let name = joined.file_name().unwrap_or_default();
            assert_eq!(
                parent.join(name).as_ref(),
                Ok(&joined),
                "parent and file name of {joined:?}"
            );
        } else {
            assert!(joined.is_root());
        }
        // Prefixes: by component, and strip_prefix undoes join.
        let by_component = components(&joined).starts_with(&components(&current));
        assert_eq!(
            joined.starts_with(&current),
            by_component,
            "{joined:?} starts with {current:?}?"
        );
        match joined.strip_prefix(&current) {
            Some(rest) => {
                assert!(by_component);
                assert_canonical(&rest, rel);
                let back = current
                    .join(rest.as_str().trim_start_matches('/'))
                    .unwrap_or_else(|e| panic!("{rest:?}: {e}"));
                assert_eq!(back, joined, "{current:?} + {rest:?}");
            }
            None => assert!(!by_component),
        }
        deepest = deepest.max(joined.components().count());
        current = joined;
    }
    feedback.and(super::size_class(deepest))
}

fn vfs_path_seeds() -> Vec<Vec<u8>> {
    vec![
        b"/usr/lib/../bin/./sh".to_vec(),
        b"a/b\xff../../../../etc/passwd\xff/abs\xff.".to_vec(),
        b"//x//y/\xff..\xff..".to_vec(),
        b"nul\0byte".to_vec(),
        b"".to_vec(),
    ]
}

pub(super) const RETRY_AFTER: Target = Target {
    name: "retry_after",
    about: "fetch_http::parse_retry_after (a server's Retry-After header): delay-seconds \
            give exactly that delay, dates in the past none, and no date panics",
    run: retry_after,
    seeds: retry_after_seeds,
    dictionary: &[
        b"Sun, ",
        b"06 ",
        b"Nov ",
        b"Feb ",
        b"1994 ",
        b"08:49:37 ",
        b"GMT",
        b"29 ",
        b"31 ",
        b"9999 ",
        b"-1 ",
        b"23:59:60 ",
        b", ",
        b" ",
    ],
    max_len: 128,
};

fn retry_after(data: &[u8]) -> Feedback {
    let Some(text) = utf8(data) else {
        return Feedback::new("not UTF-8");
    };
    let parsed = fetch_http::parse_retry_after(text);
    if let Ok(secs) = text.trim().parse::<u64>() {
        assert_eq!(
            parsed,
            Some(std::time::Duration::from_secs(secs)),
            "{text:?}"
        );
    }
    match parsed {
        None => Feedback::new("none"),
        Some(d) => Feedback::ok("delay", super::size_class(d.as_secs() as usize) as usize),
    }
}

fn retry_after_seeds() -> Vec<Vec<u8>> {
    [
        "120",
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Fri, 31 Dec 2100 23:59:59 GMT",
        " 0 ",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

pub(super) const PACKAGE_REF: Target = Target {
    name: "package_ref",
    about: "loader::PackageRef::parse (what a user asks to load: registry, oci: layout or \
            namespace/name@REQ): the printed form parses back equal",
    run: package_ref,
    seeds: package_ref_seeds,
    dictionary: &[
        b"@",
        b"@^1.2",
        b"@>=3.11, <3.14",
        b"@*",
        b"@=1.0.0-rc.1+b",
        b"acme/app",
        b"oci:",
        b":",
        b"/",
        b"localhost:5000/",
        b"@sha256:",
        b"~",
        b"^",
        b" ",
        b",",
        b"<",
        b">=",
    ],
    max_len: 256,
};

fn package_ref(data: &[u8]) -> Feedback {
    let Some(text) = utf8(data) else {
        return Feedback::new("not UTF-8");
    };
    let parsed = match loader::PackageRef::parse(text) {
        Ok(parsed) => parsed,
        Err(e) => return Feedback::err("package_ref", &e),
    };
    let printed = parsed.to_string();
    // A directory or a webc file depends on the files around; not a parsing question.
    if let loader::PackageRef::Directory(_) | loader::PackageRef::WebcFile(_) = &parsed {
        return Feedback::new("local");
    }
    let again = loader::PackageRef::parse(&printed)
        .unwrap_or_else(|e| panic!("{printed:?}, printed from {text:?}, does not parse: {e}"));
    assert_eq!(
        again, parsed,
        "{text:?} prints as {printed:?}, which parses differently"
    );
    assert_eq!(again.to_string(), printed);
    Feedback::new(match parsed {
        loader::PackageRef::Registry(_) => "registry",
        loader::PackageRef::Layout(_) => "layout",
        loader::PackageRef::Named { .. } => "named",
        loader::PackageRef::Directory(_) | loader::PackageRef::WebcFile(_) => "local",
        loader::PackageRef::WebcUrl { .. } => "url",
    })
    .and(super::size_class(text.len()))
}

fn package_ref_seeds() -> Vec<Vec<u8>> {
    [
        "acme/app@^1.2",
        "acme/python@>=3.11, <3.14",
        "127.0.0.1:5000/team/acme/app:1.0.0",
        "ghcr.io/a/b@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "oci:./layout:v1",
        "acme/app@1",
        "http://127.0.0.1:8080/pkgs/acme--app@1.0.0.webc",
        "https://x.test/a.webc#sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

pub(super) const PLATFORM: Target = Target {
    name: "platform",
    about: "fetch_http::platform::Platform::from_str (`os(version+feature)/arch/variant`, \
            e.g. from --platform): prints back to text that parses equal; normalizing is \
            idempotent; a platform is its own target and matches itself",
    run: platform,
    seeds: platform_seeds,
    dictionary: &[
        b"linux",
        b"windows",
        b"darwin",
        b"/",
        b"amd64",
        b"x86_64",
        b"arm64",
        b"aarch64",
        b"arm",
        b"386",
        b"v7",
        b"v8",
        b"(",
        b")",
        b"+",
        b"10.0.17763",
        b"10.0.20348.1",
        b"win32k",
        b"(+)",
        b" ",
    ],
    max_len: 128,
};

fn platform(data: &[u8]) -> Feedback {
    use fetch_http::platform::{Platform, PlatformMatcher};
    let Some(text) = utf8(data) else {
        return Feedback::new("not UTF-8");
    };
    let parsed: Platform = match text.parse() {
        Ok(parsed) => parsed,
        Err(e) => return Feedback::err("platform", &e),
    };
    let printed = parsed.to_string();
    let again: Platform = printed
        .parse()
        .unwrap_or_else(|e| panic!("{printed:?}, printed from {text:?}, does not parse: {e}"));
    assert_eq!(again, parsed, "{text:?} prints as {printed:?}");
    let normalized = parsed.normalized();
    assert_eq!(
        normalized.normalized(),
        normalized,
        "normalizing {parsed:?} twice"
    );
    assert!(
        parsed.same_target(&parsed),
        "{parsed:?} is not its own target"
    );
    assert!(
        parsed.same_target(&normalized),
        "{parsed:?} and its normalized form differ"
    );
    // Variants above 64 get no fallbacks; the longest real list (arm64 v9.64: every v9
    // minor, then every v8 minor, then AArch32) stays well under this.
    assert!(
        PlatformMatcher::new(&parsed).preference().len() < 512,
        "{parsed:?}: the preference list is not bounded"
    );
    assert!(
        PlatformMatcher::new(&parsed).matches(&parsed),
        "{parsed:?} does not match itself"
    );
    Feedback::ok("platform", parsed.os_features.len())
        .and(u64::from(parsed.variant.is_some()) + 2 * u64::from(parsed.os_version.is_some()))
}

fn platform_seeds() -> Vec<Vec<u8>> {
    [
        "linux/amd64",
        "linux/arm64/v8",
        "linux/arm/v7",
        "windows(10.0.20348+win32k)/amd64",
        "darwin/aarch64",
        "windows(10.0.17763.1)/x86_64",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

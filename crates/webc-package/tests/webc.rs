//! webc v1, v2 and v3 packages, generated here, read back through `webc-package`; and
//! the ways a hostile file can lie.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use bytes::Bytes;
use indexmap::IndexMap;
use proptest::prelude::*;
use test_servers::webc::{Node, Package, annotation, find};
use vfs_overlay::{FileSystem, FileType, VfsPath};
use webc::metadata::Command;
use webc::metadata::annotations::{Atom as AtomAnnotation, FileSystemMapping, Wasi};
use webc_package::{
    AtomRef, Checked, DependencySource, Identity, Mount, PackageSpec, WebcContainer, WebcError,
};

fn p(path: &str) -> VfsPath {
    VfsPath::new(path).unwrap()
}

fn spec_of(c: &WebcContainer) -> Result<PackageSpec, WebcError> {
    PackageSpec::from_manifest(c.manifest(), c.version(), &c.atom_names(), c.origin())
}

#[test]
fn every_version_reads_zero_copy_with_its_package_model() {
    for version in [1, 2, 3] {
        let bytes = Package::hello().build(version);
        let c = WebcContainer::parse(bytes.clone(), format!("hello-v{version}.webc")).unwrap();
        assert_eq!(c.version(), version);
        assert_eq!(c.atom_names(), ["hello"]);

        // Atoms and files are views of the container's bytes, not copies.
        let atom = c.atom("hello").unwrap().bytes;
        assert_eq!(&atom[..], b"\0asm\x01\0\0\0hello-atom");
        let range = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len();
        assert!(
            range.contains(&(atom.as_ptr() as usize)),
            "v{version}: atom copied"
        );

        let volume = c.volume("atom").unwrap();
        let motd = volume.read_all(&p("/etc/motd")).unwrap();
        assert_eq!(&motd[..], b"hi there\n", "v{version}");
        assert!(
            range.contains(&(motd.as_ptr() as usize)),
            "v{version}: file copied"
        );
        assert_eq!(volume.metadata(&p("/etc/empty")).unwrap().size, 0);
        assert_eq!(volume.metadata(&p("/var/log")).unwrap().kind, FileType::Dir);
        let mut names: Vec<_> = volume
            .read_dir(&p("/etc"))
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        names.sort();
        assert_eq!(names, ["empty", "motd"], "v{version}");
        // Two empty files share no identity: webc has no hardlinks.
        assert_eq!(volume.node_id(&p("/etc/empty")), None);

        let spec = spec_of(&c).unwrap();
        assert_eq!(
            spec.identity,
            Some(Identity::Named {
                name: "acme/hello".into(),
                version: "1.2.3".parse().unwrap()
            })
        );
        assert_eq!(spec.entrypoint.as_deref(), Some("hello"));
        assert_eq!(spec.commands.len(), 1);
        // No `atom` annotation, no `wasi.atom`: the atom named like the command.
        assert_eq!(
            spec.commands[0].atom,
            AtomRef {
                dependency: None,
                atom: "hello".into()
            }
        );
        // Without `fs`, v1 and v2 mount their `atom` volume at `/`; v3 mounts nothing.
        let default_mount = vec![Mount {
            from: None,
            volume: "atom".into(),
            host_path: "/".into(),
            mount_path: "/".into(),
        }];
        if version < 3 {
            assert_eq!(spec.mounts, default_mount);
        } else {
            assert!(spec.mounts.is_empty());
        }
    }
}

#[test]
fn v3_symlinks_and_fs_mappings_with_host_paths() {
    let mut pkg = Package::hello();
    pkg.files.push((
        "atom".into(),
        "/etc/greeting".into(),
        Node::Symlink("motd".into()),
    ));
    pkg.files.push((
        "atom".into(),
        "/lib/up".into(),
        Node::Symlink("../etc/motd".into()),
    ));
    pkg.fs = Some(vec![FileSystemMapping {
        from: None,
        volume_name: "atom".into(),
        host_path: Some("etc".into()),
        mount_path: "/config".into(),
    }]);
    let c = WebcContainer::parse(pkg.build(3), "links.webc").unwrap();
    let volume = c.volume("atom").unwrap();
    assert_eq!(volume.read_link(&p("/etc/greeting")).unwrap(), "motd");
    assert_eq!(volume.read_link(&p("/lib/up")).unwrap(), "../etc/motd");
    assert_eq!(
        spec_of(&c).unwrap().mounts,
        [Mount {
            from: None,
            volume: "atom".into(),
            host_path: "/etc".into(),
            mount_path: "/config".into(),
        }]
    );
}

#[test]
fn a_symlink_out_of_its_volume_is_refused() {
    let mut pkg = Package::hello();
    pkg.files.push((
        "atom".into(),
        "/etc/escape".into(),
        Node::Symlink("aa/aa/outside".into()),
    ));
    // The webc writer refuses such a link, so it is planted in the bytes afterwards.
    let mut bytes = pkg.build(3).to_vec();
    let at = find(&bytes, b"aa/aa/outside");
    bytes[at..at + 6].copy_from_slice(b"../../");
    let c = WebcContainer::parse(Bytes::from(bytes), "escape.webc").unwrap();
    let err = c.volume("atom").unwrap_err();
    assert!(matches!(err, WebcError::SymlinkEscapes { .. }), "{err}");
    let shown = err.to_string();
    assert!(
        shown.contains("escape.webc") && shown.contains("/etc/escape"),
        "{shown}"
    );
}

#[test]
fn an_atom_that_does_not_match_its_signature_is_refused() {
    for version in [1, 2, 3] {
        let bytes = Package::hello().build(version);
        let mut tampered = bytes.to_vec();
        let at = find(&tampered, b"hello-atom");
        tampered[at] = b'j';
        let origin = format!("tampered-v{version}.webc");
        // The container parses (nothing in webc's own parse hashes atoms); the atom check
        // refuses the atom.
        let c = WebcContainer::parse(Bytes::from(tampered), origin.clone()).unwrap();
        let err = c.atom("hello").unwrap_err();
        assert!(matches!(err, WebcError::AtomSignature { .. }), "{err}");
        assert!(err.to_string().contains(&origin), "{err}");
        assert!(err.to_string().contains("\"hello\""), "{err}");
        // The volume is untouched and still opens.
        assert!(c.volume("atom").is_ok());
    }
}

#[test]
fn a_v3_file_that_does_not_match_its_sha256_is_refused() {
    let bytes = Package::hello().build(3);
    let mut tampered = bytes.to_vec();
    let at = find(&tampered, b"hi there");
    tampered[at] = b'H';
    let c = WebcContainer::parse(Bytes::from(tampered), "bad-file.webc").unwrap();
    let err = c.volume("atom").unwrap_err();
    assert!(matches!(err, WebcError::FileHash { .. }), "{err}");
    assert!(
        err.to_string().contains("/etc/motd") && err.to_string().contains("bad-file.webc"),
        "{err}"
    );
}

#[test]
fn lying_lengths_are_framing_errors_not_allocations() {
    // v1: the manifest claims 2^40 bytes in a file of a few hundred.
    let v1 = Package::hello().build(1);
    let mut lie = v1[..8 + 16 + 256 + 4 + 1024].to_vec();
    lie.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x20]);
    lie.extend_from_slice(b"tiny");
    let err = WebcContainer::parse(Bytes::from(lie), "huge.webc").unwrap_err();
    assert!(
        matches!(err, WebcError::Framing { version: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("huge.webc"), "{err}");

    // v2 and v3: the index section says 2 GiB.
    for version in [2u8, 3] {
        let mut lie = format!("\0webc00{version}").into_bytes();
        lie.push(0);
        lie.extend_from_slice(&(2u64 << 30).to_le_bytes());
        lie.extend_from_slice(&[0; 1000]);
        let err = WebcContainer::parse(Bytes::from(lie), "big-index.webc").unwrap_err();
        assert!(matches!(err, WebcError::Framing { .. }), "{err}");
    }

    // Not webc at all, and a version from the future.
    let err = WebcContainer::parse(Bytes::from_static(b"PK\x03\x04zip"), "a.zip").unwrap_err();
    assert!(matches!(err, WebcError::NotWebc { .. }), "{err}");
    let err = WebcContainer::parse(Bytes::from_static(b"\0webc004xxxx"), "f.webc").unwrap_err();
    assert!(err.to_string().contains("004"), "{err}");
}

#[test]
fn every_truncation_is_an_error_naming_the_file() {
    for version in [1, 2, 3] {
        let bytes = Package::hello().build(version);
        for len in (0..bytes.len()).step_by(7) {
            let origin = format!("cut-v{version}-{len}.webc");
            if let Err(e) = WebcContainer::parse(bytes.slice(..len), origin.clone()) {
                assert!(e.to_string().contains(&origin), "{e}");
            } else {
                // Only a cut inside trailing data the format ignores can parse; what it
                // serves must still be whole or refused.
                let c = WebcContainer::parse(bytes.slice(..len), origin.clone()).unwrap();
                let _ = c.atom("hello");
                let _ = c.volume("atom");
            }
        }
    }
}

#[test]
fn commands_find_their_atoms_in_order() {
    let mut pkg = Package::hello();
    pkg.atoms
        .push(("other".into(), b"\0asm\x01\0\0\0other".to_vec()));
    pkg.uses = vec![("dep".into(), "acme/dep@^1.0".into())];
    let wasi = |atom: &str| Command {
        runner: "https://webc.org/runner/wasi".into(),
        annotations: IndexMap::from([(Wasi::KEY.to_owned(), annotation(&Wasi::new(atom)))]),
    };
    let explicit = Command {
        runner: "https://webc.org/runner/wasi".into(),
        annotations: IndexMap::from([(
            AtomAnnotation::KEY.to_owned(),
            annotation(&AtomAnnotation::new("run", Some("dep".to_owned()))),
        )]),
    };
    let bare = Command {
        runner: "https://webc.org/runner/wasi".into(),
        annotations: IndexMap::new(),
    };
    pkg.commands = vec![
        ("explicit".into(), explicit),
        ("legacy".into(), wasi("other")),
        ("legacy-dep".into(), wasi("dep:tool")),
        ("hello".into(), bare.clone()),
    ];
    let c = WebcContainer::parse(pkg.build(3), "cmds.webc").unwrap();
    let spec = spec_of(&c).unwrap();
    let atoms: Vec<_> = spec
        .commands
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.atom.dependency.as_deref(),
                c.atom.atom.as_str(),
            )
        })
        .collect();
    assert_eq!(
        atoms,
        [
            ("explicit", Some("dep"), "run"),
            ("legacy", None, "other"),
            ("legacy-dep", Some("dep"), "tool"),
            ("hello", None, "hello"),
        ]
    );
    assert_eq!(
        spec.dependencies[0].source,
        DependencySource::Registry {
            name: "acme/dep".into(),
            req: "^1.0".parse().unwrap()
        }
    );

    // Two atoms, none named like the command: the error says what was tried.
    pkg.commands = vec![("mystery".into(), bare)];
    pkg.entrypoint = None;
    let c = WebcContainer::parse(pkg.build(3), "mystery.webc").unwrap();
    let err = spec_of(&c).unwrap_err().to_string();
    assert!(
        err.contains("mystery.webc")
            && err.contains("\"mystery\"")
            && err.contains("wasi.atom")
            && err.contains("hello, other"),
        "{err}"
    );

    // A command running an atom of a dependency that `use` does not list.
    let mut pkg = Package::hello();
    pkg.commands = vec![("x".into(), wasi("nodep:tool"))];
    pkg.entrypoint = None;
    let c = WebcContainer::parse(pkg.build(2), "alias.webc").unwrap();
    let err = spec_of(&c).unwrap_err().to_string();
    assert!(
        err.contains("\"nodep\"") && err.contains("not in `use`"),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Any byte of any version changed to anything: an error or a container, never a panic
    /// that escapes, and everything it serves is checked.
    #[test]
    fn flipped_bytes_never_panic(version in 1u8..=3, at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = Package::hello().build(version).to_vec();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        if let Ok(c) = WebcContainer::parse(Bytes::from(bytes), "flipped.webc") {
            let _ = c.atom("hello");
            if let Ok(v) = c.volume("atom") {
                let _ = v.read_all(&p("/etc/motd"));
            }
            let _ = spec_of(&c);
        }
    }
}

/// What a container checked can be recorded and vouched for on the next open of the same
/// bytes: atoms keep their sha256, volumes open without hashing their files. Vouching is
/// the caller's promise, so a record applied to other bytes lets them through (which is
/// why pkgload keeps records only under a container's own sha256).
#[test]
fn checks_are_recorded_and_can_be_vouched_for() {
    let bytes = Package::hello().build(3);
    let c = WebcContainer::parse(bytes.clone(), "hello.webc").unwrap();
    assert_eq!(c.checked(), Checked::default());
    let atom = c.atom("hello").unwrap();
    c.volume("atom").unwrap();
    let checked = c.checked();
    assert_eq!(checked.volumes.iter().collect::<Vec<_>>(), ["atom"]);
    assert_eq!(checked.atoms.len(), 1);

    let again = WebcContainer::parse(bytes.clone(), "hello.webc").unwrap();
    again.vouch(&checked);
    assert_eq!(again.atom("hello").unwrap().sha256, atom.sha256);

    let mut tampered = bytes.to_vec();
    let at = find(&tampered, b"hi there");
    tampered[at] = b'H';
    let unvouched = WebcContainer::parse(Bytes::from(tampered.clone()), "t.webc").unwrap();
    assert!(unvouched.volume("atom").is_err());
    let vouched = WebcContainer::parse(Bytes::from(tampered), "t.webc").unwrap();
    vouched.vouch(&checked);
    assert!(vouched.volume("atom").is_ok());

    // A record with malformed entries vouches for nothing of them.
    let mut garbage = checked.clone();
    garbage.atoms.insert("hello".into(), "not hex".into());
    garbage.volumes.clear();
    let fresh = WebcContainer::parse(bytes, "hello.webc").unwrap();
    fresh.vouch(&garbage);
    assert_eq!(fresh.checked(), Checked::default());
}

/// With the file the bytes came from, checks read the file (so they do not fault the whole
/// map in): the same verdicts, from the file's contents.
#[test]
fn checks_read_the_file_the_bytes_came_from() {
    let bytes = Package::hello().build(3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hello.webc");
    std::fs::write(&path, &bytes).unwrap();
    let c = WebcContainer::parse(bytes.clone(), "hello.webc")
        .unwrap()
        .with_file(std::fs::File::open(&path).unwrap());
    let atom = c.atom("hello").unwrap();
    assert!(c.volume("atom").is_ok());
    let plain = WebcContainer::parse(bytes.clone(), "hello.webc").unwrap();
    assert_eq!(plain.atom("hello").unwrap().sha256, atom.sha256);

    // The file says other bytes than the map: the file's are what is checked.
    let mut tampered = bytes.to_vec();
    let at = find(&tampered, b"hi there");
    tampered[at] = b'H';
    std::fs::write(&path, &tampered).unwrap();
    let c = WebcContainer::parse(bytes, "hello.webc")
        .unwrap()
        .with_file(std::fs::File::open(&path).unwrap());
    assert!(c.volume("atom").is_err());
}

//! Wasmer's webc containers (v1, v2, v3): `webc_package::WebcContainer` on raw bytes, then
//! every atom, every volume and the package model.
//!
//! Seeds are small containers of each version written by the `webc` crate's own writers;
//! mutations then reach the framing, the CBOR manifest and the volume headers alike.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sha2::Digest as _;

use bytes::Bytes;
use vfs_overlay::{FileSystem, FileType, VfsPath};
use webc::metadata::Manifest;
use webc_package::{PackageSpec, WebcContainer};

use super::{Feedback, Target};

pub(super) const WEBC: Target = Target {
    name: "webc",
    about: "webc_package::WebcContainer::parse on raw webc bytes, then every atom and volume \
            and the package model: nothing panics, atoms match their signatures, every file \
            read is as long as its metadata says and lies inside the container",
    run: webc_container,
    seeds: webc_seeds,
    dictionary: &[
        b"\0webc001",
        b"\0webc002",
        b"\0webc003",
        b"sha256:",
        b"wapm",
        b"atom",
        b"fs",
        b"../",
        b"\xff\xff\xff\xff",
        b"\x80\x80\x80\x80\x10",
    ],
    max_len: 16384,
};

fn webc_container(data: &[u8]) -> Feedback {
    let bytes = Bytes::copy_from_slice(data);
    let container = match WebcContainer::parse(bytes.clone(), "fuzz.webc") {
        Ok(c) => c,
        Err(e) => return Feedback::err("parse", &e),
    };
    assert!((1..=3).contains(&container.version()));
    let mut feedback = Feedback::ok("parsed", data.len());
    for name in container.atom_names() {
        match container.atom(&name) {
            Ok(atom) => {
                assert!(
                    atom.bytes.len() <= data.len(),
                    "atom {name} larger than the file"
                );
                let sha256: [u8; 32] = sha2::Sha256::digest(&atom.bytes).into();
                assert_eq!(sha256, atom.sha256, "atom {name}: wrong sha256");
            }
            Err(e) => feedback = feedback.with(Feedback::err("atom", &e)),
        }
    }
    for name in container.volume_names() {
        let volume = match container.volume(&name) {
            Ok(v) => v,
            Err(e) => {
                feedback = feedback.with(Feedback::err("volume", &e));
                continue;
            }
        };
        let mut pending = vec![VfsPath::root()];
        let mut files = 0;
        while let Some(dir) = pending.pop() {
            let Ok(entries) = volume.read_dir(&dir) else {
                panic!("{dir} was listed as a directory but cannot be read");
            };
            for entry in entries {
                let Ok(path) = dir.join(&entry.name) else {
                    panic!("{dir} lists a bad name {:?}", entry.name);
                };
                match entry.kind {
                    FileType::Dir => pending.push(path),
                    FileType::File => {
                        let meta = volume
                            .metadata(&path)
                            .unwrap_or_else(|e| panic!("{path}: listed but no metadata: {e}"));
                        let content = volume
                            .read_all(&path)
                            .unwrap_or_else(|e| panic!("{path}: listed but unreadable: {e}"));
                        assert_eq!(content.len() as u64, meta.size, "{path}");
                        files += 1;
                    }
                    _ => {}
                }
            }
        }
        feedback = feedback.with(Feedback::ok("volume", files));
    }
    match PackageSpec::from_manifest(
        container.manifest(),
        container.version(),
        &container.atom_names(),
        container.origin(),
    ) {
        Ok(spec) => feedback.with(Feedback::ok("spec", spec.commands.len())),
        Err(e) => feedback.with(Feedback::err("spec", &e)),
    }
}

fn webc_seeds() -> Vec<Vec<u8>> {
    let atom = b"\0asm\x01\0\0\0".to_vec();
    let manifest = || {
        let mut m = Manifest::default();
        m.atoms.insert(
            "run".to_owned(),
            webc::metadata::Atom {
                kind: "https://webc.org/kind/wasm"
                    .parse()
                    .unwrap_or_else(|_| unreachable!()),
                signature: signature(&atom),
                annotations: Default::default(),
            },
        );
        m
    };
    let mut seeds = Vec::new();
    // v1
    {
        use webc::v1::{DirOrFile, GenerateChecksum, Volume, WebC};
        let atoms = Volume::serialize_atoms(BTreeMap::from([(
            DirOrFile::File(PathBuf::from("run")),
            atom.clone(),
        )]));
        let files = Volume::serialize_files(BTreeMap::from([
            (DirOrFile::File(PathBuf::from("etc/motd")), b"hi\n".to_vec()),
            (DirOrFile::Dir(PathBuf::from("var")), Vec::new()),
        ]));
        if let (Ok(atoms), Ok(files)) = (Volume::parse(&atoms), Volume::parse(&files)) {
            let webc = WebC {
                version: 1,
                checksum: None,
                signature: None,
                manifest: manifest(),
                atoms,
                volumes: [("atom".to_owned(), files)].into_iter().collect(),
            };
            if let Ok(bytes) = webc.into_bytes(GenerateChecksum::NoChecksum) {
                seeds.push(bytes);
            }
        }
    }
    // v2
    {
        use webc::v2::write::{DirEntry, Directory, FileEntry, Writer};
        use webc::v2::{ChecksumAlgorithm, SignatureAlgorithm};
        let seg = |s: &str| s.parse().unwrap_or_else(|_| unreachable!());
        let etc = Directory {
            children: BTreeMap::from([(seg("motd"), DirEntry::File(FileEntry::from(b"hi\n")))]),
        };
        let root = Directory {
            children: BTreeMap::from([(seg("etc"), DirEntry::Dir(etc))]),
        };
        let written = Writer::new(ChecksumAlgorithm::Sha256)
            .write_manifest(&manifest())
            .and_then(|w| {
                w.write_atoms(BTreeMap::from([(
                    seg("run"),
                    FileEntry::from(atom.clone()),
                )]))
            })
            .and_then(|w| w.with_volume("atom", root))
            .and_then(|w| w.finish(SignatureAlgorithm::None));
        if let Ok(bytes) = written {
            seeds.push(bytes.to_vec());
        }
    }
    // v3, with a symlink
    {
        use webc::v3::write::{DirEntry, Directory, FileEntry, SymlinkEntry, Writer};
        use webc::v3::{ChecksumAlgorithm, SignatureAlgorithm, Timestamps};
        let ts = Timestamps::default();
        let seg = |s: &str| s.parse().unwrap_or_else(|_| unreachable!());
        let etc = Directory::new(
            BTreeMap::from([
                (
                    seg("motd"),
                    DirEntry::File(FileEntry::borrowed(b"hi\n", ts)),
                ),
                (
                    seg("link"),
                    DirEntry::Symlink(SymlinkEntry::borrowed("motd", ts)),
                ),
            ]),
            ts,
        );
        let root = Directory::new(BTreeMap::from([(seg("etc"), DirEntry::Dir(etc))]), ts);
        let written = Writer::new(ChecksumAlgorithm::Sha256)
            .write_manifest(&manifest())
            .and_then(|w| {
                w.write_atoms(BTreeMap::from([(
                    seg("run"),
                    FileEntry::owned(atom.clone(), ts),
                )]))
            })
            .and_then(|w| w.with_volume("atom", root))
            .and_then(|w| w.finish(SignatureAlgorithm::None));
        if let Ok(bytes) = written {
            seeds.push(bytes.to_vec());
        }
    }
    assert_eq!(seeds.len(), 3, "a webc seed could not be written");
    seeds
}

fn signature(bytes: &[u8]) -> String {
    use base64::Engine as _;
    format!(
        "sha256:{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(bytes))
    )
}

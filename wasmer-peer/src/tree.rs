//! `gen-tree`: a deterministic tree of webc v3 packages, written with the `webc` crate's
//! own v3 writer, for the oracle and the benchmark.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};
use webc::indexmap::IndexMap;
use webc::metadata::annotations::{
    Atom as AtomAnnotation, FileSystemMapping, FileSystemMappings, Wapm,
};
use webc::metadata::{Annotation, Atom, Command, Manifest, UrlOrManifest};
use webc::v3::write::{DirEntry, Directory, FileEntry, Writer};
use webc::v3::{ChecksumAlgorithm, SignatureAlgorithm, Timestamps};

pub const NAMESPACE: &str = "bench";
pub const VERSION: &str = "1.0.0";
const WASI_RUNNER: &str = "https://webc.org/runner/wasi";

#[derive(Debug, Clone)]
pub struct Options {
    pub out: PathBuf,
    pub packages: usize,
    pub depth: usize,
    pub volume_bytes: u64,
    pub atom_bytes: u64,
    pub url_base: Option<String>,
    pub seed: u64,
    /// A command every package declares (each running its own atom): which one a tree
    /// exposes is the command-shadowing question.
    pub shared_command: Option<String>,
    /// The same, declared by every package but the root: which dependency's wins is up
    /// to the loader.
    pub dep_command: Option<String>,
}

pub fn name(index: usize) -> String {
    format!("p{index:02}")
}

pub fn file_name(index: usize) -> String {
    format!("{NAMESPACE}--{}@{VERSION}.webc", name(index))
}

/// Which level each package is on: p00 alone on level 0, the others spread evenly over
/// levels 1..depth in index order, so every level is present.
fn levels(packages: usize, depth: usize) -> Vec<Vec<usize>> {
    let mut levels = vec![vec![0]];
    let rest = packages - 1;
    let deeper = depth - 1;
    let mut next = 1;
    for level in 0..deeper {
        // The first `rest % deeper` levels take one more.
        let count = rest / deeper + usize::from(level < rest % deeper);
        levels.push((next..next + count).collect());
        next += count;
    }
    levels
}

/// The `use` edges, parent → children: each package on level k > 0 is used by one
/// package of level k - 1 (round robin), and every third one also by the next package of
/// that level, so the tree is a DAG with shared dependencies rather than a plain tree.
fn edges(levels: &[Vec<usize>]) -> BTreeMap<usize, Vec<usize>> {
    let mut edges: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for pair in levels.windows(2) {
        let [parents, children] = pair else { continue };
        for (i, &child) in children.iter().enumerate() {
            let Some(&first) = parents.get(i % parents.len()) else {
                continue;
            };
            edges.entry(first).or_default().push(child);
            if i % 3 == 2
                && parents.len() > 1
                && let Some(&second) = parents.get((i + 1) % parents.len())
            {
                edges.entry(second).or_default().push(child);
            }
        }
    }
    for children in edges.values_mut() {
        children.sort_unstable();
        children.dedup();
    }
    edges
}

pub fn run(options: &Options) -> Result<PathBuf> {
    ensure!(options.depth >= 1, "--depth must be at least 1");
    ensure!(
        options.packages >= options.depth,
        "--packages ({}) must be at least --depth ({}): every level needs a package",
        options.packages,
        options.depth
    );
    ensure!(
        options.depth > 1 || options.packages == 1,
        "with --depth 1 there is room for the root only (--packages 1)"
    );
    ensure!(
        options.packages <= 100,
        "--packages: at most 100 (names are pNN)"
    );
    ensure!(
        options.atom_bytes >= 64,
        "--atom-bytes: at least 64 (a wasm header and a custom section)"
    );
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    let levels = levels(options.packages, options.depth);
    let edges = edges(&levels);
    for index in 0..options.packages {
        let children = edges.get(&index).map(Vec::as_slice).unwrap_or_default();
        let bytes = package(index, children, options)?;
        let path = options.out.join(file_name(index));
        write_if_changed(&path, &bytes)?;
    }
    Ok(options.out.join(file_name(0)))
}

/// Rewriting identical bytes would still bump the mtime, which Wasmer's web cache and
/// pkgload's file memo both look at; a regenerated tree should look untouched.
fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let temp = path.with_extension("webc.tmp");
    std::fs::write(&temp, bytes).with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("writing {}", path.display()))
}

fn package(index: usize, children: &[usize], options: &Options) -> Result<Vec<u8>> {
    let name = name(index);
    let mut rng = Rng::new(options.seed, index as u64);
    let atom = atom_bytes(options.atom_bytes, &mut rng);

    let mut package_annotations = IndexMap::new();
    let wapm = Wapm::new(
        Some(format!("{NAMESPACE}/{name}")),
        Some(VERSION.to_owned()),
        None,
    );
    package_annotations.insert(
        Wapm::KEY.to_owned(),
        Annotation::serialized(&wapm).map_err(cbor)?,
    );
    let fs = FileSystemMappings(vec![FileSystemMapping {
        from: None,
        volume_name: "data".to_owned(),
        host_path: None,
        mount_path: format!("/{name}"),
    }]);
    package_annotations.insert(
        FileSystemMappings::KEY.to_owned(),
        Annotation::serialized(&fs).map_err(cbor)?,
    );

    let mut command_annotations = IndexMap::new();
    command_annotations.insert(
        AtomAnnotation::KEY.to_owned(),
        Annotation::serialized(&AtomAnnotation::new(name.clone(), None)).map_err(cbor)?,
    );
    let mut commands = IndexMap::new();
    commands.insert(
        name.clone(),
        Command {
            runner: WASI_RUNNER.to_owned(),
            annotations: command_annotations.clone(),
        },
    );
    let shared = options
        .shared_command
        .as_ref()
        .or(options.dep_command.as_ref().filter(|_| index != 0));
    if let Some(shared) = shared {
        commands.insert(
            shared.clone(),
            Command {
                runner: WASI_RUNNER.to_owned(),
                annotations: command_annotations,
            },
        );
    }

    let mut atoms = IndexMap::new();
    atoms.insert(
        name.clone(),
        Atom {
            kind: "https://webc.org/kind/wasm"
                .parse()
                .context("the atom kind URL")?,
            signature: atom_signature(&atom),
            annotations: IndexMap::new(),
        },
    );

    let use_map = children
        .iter()
        .map(|&child| {
            let spec = match &options.url_base {
                Some(base) => format!("{base}{}", file_name(child)),
                None => format!("{NAMESPACE}/{}@^1", self::name(child)),
            };
            (self::name(child), UrlOrManifest::RegistryDependentUrl(spec))
        })
        .collect();

    let manifest = Manifest {
        origin: None,
        use_map,
        package: package_annotations,
        atoms,
        commands,
        bindings: Vec::new(),
        entrypoint: (index == 0).then(|| name.clone()),
    };

    let writer = Writer::new(ChecksumAlgorithm::Sha256)
        .write_manifest(&manifest)
        .context("writing the manifest")?
        .write_atoms(
            [(
                name.parse().context("atom name")?,
                FileEntry::owned(atom, Timestamps::default()),
            )]
            .into_iter()
            .collect(),
        )
        .context("writing the atoms")?;
    let volume = volume(index, options.volume_bytes, &mut rng)?;
    let bytes = writer
        .with_volume("data", volume)
        .context("writing the volume")?
        .finish(SignatureAlgorithm::None)
        .context("finishing the webc")?;
    Ok(bytes.to_vec())
}

fn cbor(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("encoding an annotation: {error}")
}

fn atom_signature(bytes: &[u8]) -> String {
    webc::metadata::AtomSignature::Sha256(Sha256::digest(bytes).into()).to_string()
}

/// A valid wasm module: the header, then one custom section whose payload fills the
/// rest, pseudo-random so that nothing on the way compresses it away.
fn atom_bytes(total: u64, rng: &mut Rng) -> Vec<u8> {
    const NAME: &[u8] = b"pkgload-bench";
    let total = total as usize;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(b"\0asm\x01\0\0\0");
    out.push(0); // custom section
    // Header 8 + id 1 + size 5 + name length 1 + name.
    let size = total - 8 - 1 - 5;
    // A 5-byte (padded) LEB128 keeps the total exact whatever the size.
    let size = size as u32;
    for shift in [0, 7, 14, 21] {
        out.push(((size >> shift) & 0x7f) as u8 | 0x80);
    }
    out.push(((size >> 28) & 0x7f) as u8);
    out.push(NAME.len() as u8);
    out.extend_from_slice(NAME);
    rng.fill(&mut out, total);
    out
}

/// About `bytes` over four files in two directories (one nested) and a small text file
/// at the top, so a mount has directories and files at several depths.
fn volume(index: usize, bytes: u64, rng: &mut Rng) -> Result<Directory<'static>> {
    let ts = Timestamps::default();
    let quarter = (bytes / 4) as usize;
    let mut blob = |n: usize| {
        let mut v = Vec::with_capacity(n);
        rng.fill(&mut v, n);
        v
    };
    let file = |data: Vec<u8>| DirEntry::File(FileEntry::owned(data, ts));
    let dir = |children: Vec<(&str, DirEntry<'static>)>| -> Result<DirEntry<'static>> {
        let mut map = BTreeMap::new();
        for (name, entry) in children {
            map.insert(name.parse().context("volume entry name")?, entry);
        }
        Ok(DirEntry::Dir(Directory::new(map, ts)))
    };
    let readme = format!("package {NAMESPACE}/{} {VERSION}\n", name(index)).into_bytes();
    let nested = dir(vec![("deep.bin", file(blob(quarter)))])?;
    let lib = dir(vec![
        ("a.bin", file(blob(quarter))),
        ("b.bin", file(blob(quarter))),
        ("nested", nested),
    ])?;
    let share = dir(vec![
        ("c.bin", file(blob(quarter))),
        ("empty.txt", file(Vec::new())),
    ])?;
    let root = dir(vec![
        ("README.txt", file(readme)),
        ("lib", lib),
        ("share", share),
    ])?;
    match root {
        DirEntry::Dir(d) => Ok(d),
        _ => bail!("the volume root is not a directory"),
    }
}

/// splitmix64, seeded per package: reproducible and incompressible.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Self {
        Self(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Appends pseudo-random bytes to `out` until it is `len` long.
    fn fill(&mut self, out: &mut Vec<u8>, len: usize) {
        while out.len() < len {
            let word = self.next().to_le_bytes();
            let take = (len - out.len()).min(word.len());
            out.extend(word.iter().take(take));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_edges_form_the_asked_dag() {
        for (packages, depth) in [(6, 3), (50, 6), (7, 7), (2, 2)] {
            let levels = levels(packages, depth);
            assert_eq!(levels.len(), depth);
            assert_eq!(levels.iter().map(Vec::len).sum::<usize>(), packages);
            let edges = edges(&levels);
            for (k, level) in levels.iter().enumerate().skip(1) {
                for child in level {
                    let parents: Vec<_> = edges
                        .iter()
                        .filter(|(_, c)| c.contains(child))
                        .map(|(p, _)| *p)
                        .collect();
                    assert!(!parents.is_empty(), "p{child} has no parent");
                    assert!(parents.iter().all(|p| levels[k - 1].contains(p)));
                }
            }
        }
        let edges = edges(&levels(50, 6));
        let mut uses: BTreeMap<usize, usize> = BTreeMap::new();
        for c in edges.values().flatten() {
            *uses.entry(*c).or_default() += 1;
        }
        assert!(
            uses.values().any(|n| *n == 2),
            "some package has two parents"
        );
    }

    #[test]
    fn atoms_are_exactly_sized_wasm() {
        let atom = atom_bytes(1000, &mut Rng::new(1, 2));
        assert_eq!(atom.len(), 1000);
        assert!(atom.starts_with(b"\0asm\x01\0\0\0\0"));
    }
}

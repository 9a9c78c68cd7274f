//! A mutation fuzzer for pkgload's parsers that builds and runs on the stable toolchain.
//!
//! cargo-fuzz needs nightly (libFuzzer and sanitizer instrumentation); this crate needs
//! nothing but `std`. Every [`Target`] feeds one input to one parser of outside data and
//! checks invariants on what comes back (round trips, canonical forms, consistency of the
//! parsed structure), panicking when one breaks. [`engine::fuzz`] mutates a corpus of seed
//! inputs, runs each mutant under `catch_unwind` and keeps the mutants that make the target
//! report something it had not reported before (a new error "shape", a new size class of
//! output). That is cheap output-based guidance, not coverage guidance: see README.md for
//! what it does and does not find.

pub mod engine;
pub mod mutate;
pub mod rng;
pub mod targets;

use std::path::{Path, PathBuf};

pub use targets::{TARGETS, Target, find};

/// `fuzz/`, the directory of this crate (corpus, regressions and artifacts live below it).
pub fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `fuzz/corpus/<target>`: checked-in seeds.
pub fn corpus_dir(target: &str) -> PathBuf {
    fuzz_dir().join("corpus").join(target)
}

/// `fuzz/regressions/<target>`: inputs that once crashed and must keep passing.
pub fn regressions_dir(target: &str) -> PathBuf {
    fuzz_dir().join("regressions").join(target)
}

/// `fuzz/artifacts/<target>`: where crashing inputs are written (ignored by git).
pub fn artifacts_dir(target: &str) -> PathBuf {
    fuzz_dir().join("artifacts").join(target)
}

/// The regular files directly in `dir`, sorted by name, with their contents; a missing
/// directory is empty.
///
/// # Errors
/// An I/O error other than "not found", with the path in the message.
pub fn read_inputs(dir: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = entry.path();
        if path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            std::fs::read(&path)
                .map(|data| (path.clone(), data))
                .map_err(|e| format!("{}: {e}", path.display()))
        })
        .collect()
}

/// A stable 64-bit FNV-1a hash, for artifact names and feature signatures.
pub fn fnv64(data: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

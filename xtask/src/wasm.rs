//! `cargo xtask wasm`: the example packages' WebAssembly, compiled from its text format.
//!
//! The toolchain here has no wasm32 target, so the examples' programs are written as WAT
//! and compiled with the `wat` crate. Both files are in the repository: the `.wasm` is what
//! `pkgload pack` puts in a package, the `.wat` what a reader reads. A test keeps them in
//! step.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The WAT sources, relative to the repository root; each compiles to the `.wasm` beside it.
pub const SOURCES: &[&str] = &["examples/hello/hello.wat"];

/// The repository root (xtask lives one level below it).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_owned()
}

/// The module `source` compiles to.
pub fn compile(source: &Path) -> Result<Vec<u8>> {
    wat::parse_file(source).map_err(|e| Error::new(format!("{}: {e}", source.display())))
}

/// Compiles every source and writes its `.wasm`.
pub fn run() -> Result<()> {
    for source in SOURCES {
        let source = root().join(source);
        let wasm = compile(&source)?;
        let target = source.with_extension("wasm");
        std::fs::write(&target, &wasm)
            .map_err(|e| Error::new(format!("writing {}: {e}", target.display())))?;
        println!("{} ({} bytes)", target.display(), wasm.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed `.wasm` files are what their `.wat` sources compile to.
    #[test]
    fn committed_modules_match_their_sources() {
        for source in SOURCES {
            let source = root().join(source);
            let built = compile(&source).unwrap_or_else(|e| panic!("{e}"));
            let committed = std::fs::read(source.with_extension("wasm")).unwrap_or_default();
            assert!(
                built == committed,
                "{} is stale: run `cargo xtask wasm`",
                source.with_extension("wasm").display()
            );
        }
    }
}

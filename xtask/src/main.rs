//! `cargo xtask`: the repository's own tooling, written against the standard library only.
//!
//! `cargo xtask help` lists the commands. `cargo xtask test` is the one command that checks a
//! change; CI runs exactly that (through `.ci/run`).

mod bench;
mod cmd;
mod delay_proxy;
mod fixtures;
mod fleet;
mod fuzz;
mod lazy_bench;
mod test_task;
mod tools;
mod wasm;
mod wasmer;

use std::ffi::OsString;
use std::fmt;
use std::process::ExitCode;

const HELP: &str = "\
cargo xtask: pkgload's repository tooling

usage: cargo xtask <command> [arguments]

commands:
  test [--no-lint] [--wasmer] [-- <args>...]
      The one test command; CI runs it. In order: installs the external programs the
      tests need (apt-get, when missing), runs the workspace tests (cargo-nextest if
      installed, else cargo test), runs the doctests, a short fuzz pass (saved fuzz
      inputs replayed, 3 s of `cargo xtask fuzz` per target), then clippy (-D warnings),
      rustfmt --check and cargo-deny (licenses, bans, sources; skipped with a notice
      when cargo-deny is not installed). Stops at the first failing step.
        --no-lint    skip clippy, rustfmt, cargo-deny and the fuzz pass while iterating
        --wasmer     then also the Wasmer oracle (see wasmer-oracle below); builds
                     wasmer-peer, about 15 minutes the first time
        -- <args>    passed to the test runner, e.g. a test-name filter or `-p <crate>`
                     (with `-p`/`--package` the runner is not given `--workspace`)

  fixtures [--scale X] [--only NAME]... [--push]
      Writes the deterministic (seeded) OCI layouts the benchmarks and end-to-end tests
      use under target/fixtures/: image-512m (16 gzip layers, 4,096 incompressible
      files), image-1g (one layer), image-oci-rules (whiteouts, opaque directory,
      symlink chains, hardlinks, odd modes), universe (packages with dependencies, one
      needing backtracking) and tree-200 (200 packages, ROOT/acme/pkg-NNN, tag 1.0.0),
      the last two built with the release `pkgload pack`. Sizes scale with --scale or
      $PKGLOAD_FIXTURE_SCALE (e.g. 0.125); a fixture whose stamp matches is reused.
      $PKGLOAD_BIN names a pkgload binary to use instead of building one (also for bench).
        --push       also start a loopback docker-registry, push the images (skopeo)
                     and packages (pkgload push) into it, and stop it

  bench [--quick] [--only NAME]... [--runs N] [--scale X] [--micro] [--no-cargo-bench]
      The end-to-end benchmark: builds pkgload (release), generates the fixtures, starts
      a loopback docker-registry, pushes them, and measures pkgload side by side with
      its peers (skopeo, curl --parallel + sha256sum, umoci) as min/median/max over N
      runs (default 3; --quick: scale 0.125 and 1 run); captures the resolver and
      sha256-ingest figures of `cargo bench -p resolve-graph` / `-p cache-core`. Writes
      target/bench/report.md and target/bench/report.json. NAME is one of fetch, curl,
      unpack, warm-ls, warm-load, rss, rss-unpack, jobs, fleet, resolve, ingest, wasmer.
      `wasmer` runs only when named (it builds wasmer-peer, Wasmer's own loader, about
      15 minutes the first time): a 50-package webc v3 tree on 6 levels (2 MiB volume and
      1 MiB atom each, times the scale) loaded by pkgload and by Wasmer, from a directory
      and over HTTP (10 ms per response), cold and warm, wall time and peak RSS.
        --micro      instead, run every crate's criterion micro-benchmarks
                     (cargo bench --workspace; arguments after -- reach criterion)

  fuzz [TARGET...] [--time SECONDS] [--seed N]
  fuzz --list | --regressions | --replay FILE TARGET
      The stable-toolchain fuzzer in fuzz/ (built in release): mutates the seeds in
      fuzz/corpus/TARGET/ and runs every target (all when none is named) for SECONDS
      (default 10) under catch_unwind, checking each parser's invariants. A crash is
      written to fuzz/artifacts/TARGET/crash-HASH with the command that replays it, and
      the command fails. --list names the targets, --regressions replays every input in
      fuzz/regressions/ and fuzz/corpus/, --replay runs one file with full panic output.

  wasmer-oracle
      The step `test --wasmer` adds, alone: builds pkgload and wasmer-peer (release;
      wasmer-peer/ is its own workspace, target in wasmer-peer/target; $WASMER_PEER_BIN
      names a binary to use instead), generates small webc v3 trees (dependencies by
      registry name, by URL served on loopback, and two with a command several packages
      declare), loads each with Wasmer's loader and with pkgload (load --json + unpack)
      and compares packages, commands (atom sha256), entrypoint and every file (path,
      kind, size, sha256). Any difference fails, except which dependency's command wins
      when the root does not declare it (undecided; printed as a NOTICE).

  wasm
      Compiles the examples' WebAssembly text (examples/*/*.wat) into the .wasm files
      beside it, with the `wat` crate; a test checks that the two match.

  help
      This text.
";

/// A failure to report to the user: one message, then exit status 1.
#[derive(Debug)]
pub struct Error(String);

impl Error {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

fn main() -> ExitCode {
    match run(std::env::args_os().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: xtask: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<OsString>) -> Result<()> {
    let mut args = args.into_iter();
    let Some(command) = args.next() else {
        eprint!("{HELP}");
        return Err(Error::new("no command given"));
    };
    match command.to_str() {
        Some("test") => match test_task::Options::parse(args)? {
            Some(options) => test_task::run(&options),
            None => {
                print!("{HELP}");
                Ok(())
            }
        },
        Some("bench") => match bench::Options::parse(args)? {
            Some(options) => bench::run(&options),
            None => {
                print!("{HELP}");
                Ok(())
            }
        },
        Some("fixtures") => match fixtures::Options::parse(args)? {
            Some(options) => fixtures::run(&options),
            None => {
                print!("{HELP}");
                Ok(())
            }
        },
        Some("fuzz") => match fuzz::Options::parse(args)? {
            Some(options) => fuzz::run(&options),
            None => {
                print!("{HELP}");
                Ok(())
            }
        },
        Some("wasm") => wasm::run(),
        Some("wasmer-oracle") => wasmer::oracle_checked().map(|_| ()),
        Some("help" | "-h" | "--help") => {
            print!("{HELP}");
            Ok(())
        }
        _ => Err(Error::new(format!(
            "unknown command `{}`; `cargo xtask help` lists the commands",
            command.to_string_lossy()
        ))),
    }
}

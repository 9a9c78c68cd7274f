//! `cargo xtask`: the repository's own tooling, written against the standard library only.
//!
//! `cargo xtask help` lists the commands. `cargo xtask test` is the one command that checks a
//! change; CI runs exactly that (through `.ci/run`).

mod cmd;
mod fuzz;
mod test_task;
mod tools;

use std::ffi::OsString;
use std::fmt;
use std::process::ExitCode;

use cmd::Cmd;

const HELP: &str = "\
cargo xtask: pkgload's repository tooling

usage: cargo xtask <command> [arguments]

commands:
  test [--no-lint] [-- <args>...]
      The one test command; CI runs it. In order: installs the external programs the
      tests need (apt-get, when missing), runs the workspace tests (cargo-nextest if
      installed, else cargo test), runs the doctests, a short fuzz pass (saved fuzz
      inputs replayed, 3 s of `cargo xtask fuzz` per target), then clippy (-D warnings),
      rustfmt --check and cargo-deny (licenses, bans, sources; skipped with a notice
      when cargo-deny is not installed). Stops at the first failing step.
        --no-lint    skip clippy, rustfmt, cargo-deny and the fuzz pass while iterating
        -- <args>    passed to the test runner, e.g. a test-name filter or `-p <crate>`
                     (with `-p`/`--package` the runner is not given `--workspace`)

  bench [<args>...]
      cargo bench --workspace <args>: the criterion benchmarks. Arguments are passed
      through unchanged; those after a `--` reach criterion, e.g.
      `cargo xtask bench -p cache-core -- --save-baseline main`.

  fuzz [TARGET...] [--time SECONDS] [--seed N]
  fuzz --list | --regressions | --replay FILE TARGET
      The stable-toolchain fuzzer in fuzz/ (built in release): mutates the seeds in
      fuzz/corpus/TARGET/ and runs every target (all when none is named) for SECONDS
      (default 10) under catch_unwind, checking each parser's invariants. A crash is
      written to fuzz/artifacts/TARGET/crash-HASH with the command that replays it, and
      the command fails. --list names the targets, --regressions replays every input in
      fuzz/regressions/ and fuzz/corpus/, --replay runs one file with full panic output.

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
        Some("bench") => bench(args.collect()),
        Some("fuzz") => match fuzz::Options::parse(args)? {
            Some(options) => fuzz::run(&options),
            None => {
                print!("{HELP}");
                Ok(())
            }
        },
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

/// `cargo xtask bench`: `cargo bench` over the workspace, arguments passed through.
fn bench(args: Vec<OsString>) -> Result<()> {
    let mut bench = Cmd::cargo().arg("bench");
    if !cmd::selects_packages(&args) {
        bench = bench.arg("--workspace");
    }
    bench.args(args).run()
}

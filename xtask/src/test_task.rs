//! `cargo xtask test`: the one command that checks a change, on a laptop and in CI.
//!
//! Steps run in a fixed order and stop at the first failure; a summary of every step
//! (passed, skipped, failed, not run) is printed either way.

use std::ffi::OsString;
use std::fmt;

use crate::cmd::{self, Cmd};
use crate::tools;
use crate::{Error, Result};

/// What `cargo xtask test` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Run clippy, rustfmt and cargo-deny (off with `--no-lint`).
    pub lint: bool,
    /// Everything after `--`, for the test runner.
    pub runner_args: Vec<OsString>,
    /// Then also compare pkgload with Wasmer's own loader (`--wasmer`).
    pub wasmer: bool,
}

impl Options {
    /// Parses the arguments after `test`; `None` means help was asked for.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Option<Self>> {
        let mut options = Self {
            lint: true,
            runner_args: Vec::new(),
            wasmer: false,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.to_str() {
                Some("--") => {
                    options.runner_args = args.collect();
                    break;
                }
                Some("--no-lint") => options.lint = false,
                Some("--wasmer") => options.wasmer = true,
                Some("-h" | "--help") => return Ok(None),
                _ => {
                    return Err(Error::new(format!(
                        "unknown argument `{}` for `cargo xtask test`; arguments for the test \
                         runner go after `--`, e.g. `cargo xtask test -- -p cache-core`",
                        arg.to_string_lossy()
                    )));
                }
            }
        }
        Ok(Some(options))
    }
}

/// How long `cargo xtask test` fuzzes each target.
const FUZZ_SECONDS_PER_TARGET: u64 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Tools,
    Tests,
    Doctests,
    Fuzz,
    Clippy,
    Fmt,
    Deny,
    /// Not in [`Step::ALL`]: runs last, only with `--wasmer`.
    Wasmer,
}

impl Step {
    const ALL: [Self; 7] = [
        Self::Tools,
        Self::Tests,
        Self::Doctests,
        Self::Fuzz,
        Self::Clippy,
        Self::Fmt,
        Self::Deny,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Tools => "tools",
            Self::Tests => "tests",
            Self::Doctests => "doctests",
            Self::Fuzz => "fuzz",
            Self::Clippy => "clippy",
            Self::Fmt => "fmt",
            Self::Deny => "cargo-deny",
            Self::Wasmer => "wasmer",
        }
    }

    fn is_lint(self) -> bool {
        matches!(self, Self::Clippy | Self::Fmt | Self::Deny)
    }

    fn run(self, options: &Options, counts: &Counts) -> Result<Outcome> {
        match self {
            Self::Tools => tools::ensure(tools::REQUIRED).map(Outcome::Passed),
            Self::Tests => run_tests(&options.runner_args, counts),
            Self::Doctests => {
                // nextest does not run doctests, and the target filters leave them out of
                // `cargo test` too, so they always get their own run.
                Cmd::cargo()
                    .args(["test", "--workspace", "--doc"])
                    .run_observed(&|line| counts.observe(line))?;
                Ok(Outcome::Passed(String::new()))
            }
            Self::Fuzz => {
                // A bounded pass: every saved fuzz input replayed, then a few seconds of
                // fuzzing per target. Left out while iterating on a subset.
                if !options.lint {
                    return Ok(Outcome::Skipped("--no-lint".to_owned()));
                }
                if !options.runner_args.is_empty() {
                    return Ok(Outcome::Skipped("test runner arguments given".to_owned()));
                }
                crate::fuzz::ci_pass(FUZZ_SECONDS_PER_TARGET)?;
                Ok(Outcome::Passed(format!(
                    "{FUZZ_SECONDS_PER_TARGET} s per target"
                )))
            }
            Self::Clippy => {
                require_component("clippy", "clippy")?;
                Cmd::cargo()
                    .args([
                        "clippy",
                        "--workspace",
                        "--all-targets",
                        "--",
                        "-D",
                        "warnings",
                    ])
                    .run()?;
                Ok(Outcome::Passed(String::new()))
            }
            Self::Fmt => {
                require_component("fmt", "rustfmt")?;
                Cmd::cargo().args(["fmt", "--all", "--check"]).run()?;
                Ok(Outcome::Passed(String::new()))
            }
            Self::Deny => run_deny(),
            Self::Wasmer => {
                // Each oracle case counts as a test in the closing line.
                let (passed, failed) = crate::wasmer::oracle()?;
                counts.add(passed, failed);
                if failed > 0 {
                    return Err(Error::new(format!(
                        "{failed} Wasmer oracle case(s) failed: pkgload and Wasmer loaded \
                         different trees (the differences are printed above)"
                    )));
                }
                Ok(Outcome::Passed(format!("{passed} cases")))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Passed, with an optional note.
    Passed(String),
    Skipped(String),
    Failed,
    NotRun,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Passed(note) if note.is_empty() => f.write_str("passed"),
            Self::Passed(note) => write!(f, "passed ({note})"),
            Self::Skipped(reason) => write!(f, "skipped ({reason})"),
            Self::Failed => f.write_str("FAILED"),
            Self::NotRun => f.write_str("not run (an earlier step failed)"),
        }
    }
}

/// Runs every step in order, stopping at the first failure, and prints a summary.
pub fn run(options: &Options) -> Result<()> {
    let counts = Counts::default();
    let result = run_steps(options, &counts);
    // The last line is the plain total that CI logs are read for.
    let (passed, failed) = counts.totals();
    eprintln!("tests: {passed} passed, {failed} failed");
    result
}

fn run_steps(options: &Options, counts: &Counts) -> Result<()> {
    let mut outcomes = Vec::with_capacity(Step::ALL.len() + 1);
    let mut failure: Option<(Step, Error)> = None;
    let wasmer = options.wasmer.then_some(Step::Wasmer);
    for step in Step::ALL.into_iter().chain(wasmer) {
        let outcome = if failure.is_some() {
            Outcome::NotRun
        } else if step.is_lint() && !options.lint {
            Outcome::Skipped("--no-lint".to_owned())
        } else {
            eprintln!("==> xtask: running {}", step.name());
            match step.run(options, counts) {
                Ok(outcome) => outcome,
                Err(err) => {
                    failure = Some((step, err));
                    Outcome::Failed
                }
            }
        };
        outcomes.push((step, outcome));
    }

    eprintln!("==> xtask: summary");
    for (step, outcome) in &outcomes {
        eprintln!("    {:<10} {outcome}", step.name());
    }
    match failure {
        None => {
            eprintln!("==> xtask: all steps passed");
            Ok(())
        }
        Some((step, err)) => Err(Error::new(format!("step `{}` failed: {err}", step.name()))),
    }
}

fn run_tests(runner_args: &[OsString], counts: &Counts) -> Result<Outcome> {
    let nextest = Cmd::cargo().args(["nextest", "--version"]).probe();
    let mut tests = if nextest {
        Cmd::cargo().args(["nextest", "run"])
    } else {
        Cmd::cargo().arg("test")
    };
    if !cmd::selects_packages(runner_args) {
        tests = tests.arg("--workspace");
    }
    // Not `--all-targets`: that would also run the criterion benches, whose fixtures are
    // gigabytes. Clippy's `--all-targets` still compiles them on every run.
    tests
        .args(["--lib", "--bins", "--tests", "--examples", "--no-fail-fast"])
        .args(runner_args)
        .run_observed(&|line| {
            // nextest echoes each failing test's own `test result:` line; count only its
            // summary there.
            if !nextest || line.contains(" run: ") {
                counts.observe(line);
            }
        })?;
    Ok(Outcome::Passed(
        if nextest {
            "cargo nextest"
        } else {
            "cargo test; cargo-nextest is not installed"
        }
        .to_owned(),
    ))
}

/// Test totals, summed from the runners' own summary lines.
#[derive(Debug, Default)]
struct Counts(std::sync::Mutex<(u64, u64)>);

impl Counts {
    fn observe(&self, line: &str) {
        if let Some((passed, failed)) = parse_counts(line) {
            let mut totals = self.0.lock().unwrap_or_else(|p| p.into_inner());
            totals.0 += passed;
            totals.1 += failed;
        }
    }

    fn add(&self, passed: u64, failed: u64) {
        let mut totals = self.0.lock().unwrap_or_else(|p| p.into_inner());
        totals.0 += passed;
        totals.1 += failed;
    }

    fn totals(&self) -> (u64, u64) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Passed and failed counts from a `cargo test` (`test result: ok. 6 passed; 0 failed; …`)
/// or nextest (`Summary [ 4.2s] 51 tests run: 50 passed, 1 failed, 0 skipped`) summary line.
fn parse_counts(line: &str) -> Option<(u64, u64)> {
    let rest = if let Some(i) = line.find("test result: ") {
        line.get(i..)?
    } else if let Some(i) = line
        .find(" tests run: ")
        .or_else(|| line.find(" test run: "))
    {
        line.get(i..)?.split_once(": ")?.1
    } else {
        return None;
    };
    let number_before = |word: &str| -> u64 {
        rest.split([';', ','])
            .filter_map(|part| part.trim().strip_suffix(word))
            .filter_map(|n| n.trim().rsplit(' ').next()?.parse().ok())
            .next()
            .unwrap_or(0)
    };
    Some((number_before("passed"), number_before("failed")))
}

fn run_deny() -> Result<Outcome> {
    if !Cmd::cargo().args(["deny", "--version"]).probe() {
        if std::env::var_os("CI").is_none() {
            // On a laptop, building cargo-deny (minutes) is the developer's call.
            eprintln!(
                "==> xtask: NOTICE: cargo-deny is not installed, so `cargo deny check licenses \
                 bans sources` was SKIPPED. Install it with `cargo install --locked cargo-deny`."
            );
            return Ok(Outcome::Skipped("cargo-deny is not installed".to_owned()));
        }
        // In CI the check is part of the contract: build it (a few minutes, once per machine).
        Cmd::cargo()
            .args(["install", "--locked", "cargo-deny"])
            .run()?;
    }
    Cmd::cargo()
        .args(["deny", "check", "licenses", "bans", "sources"])
        .run()?;
    Ok(Outcome::Passed(String::new()))
}

/// Fails with the rustup command to run when a toolchain component is missing.
fn require_component(subcommand: &str, component: &str) -> Result<()> {
    if Cmd::cargo().args([subcommand, "--version"]).probe() {
        Ok(())
    } else {
        Err(Error::new(format!(
            "`cargo {subcommand}` is not available; install it with `rustup component add {component}`"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines_are_counted() {
        assert_eq!(
            parse_counts(
                "test result: ok. 6 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.05s"
            ),
            Some((6, 0))
        );
        assert_eq!(
            parse_counts("test result: FAILED. 15 passed; 3 failed; 0 ignored"),
            Some((15, 3))
        );
        assert_eq!(
            parse_counts("     Summary [   4.294s] 51 tests run: 51 passed, 0 skipped"),
            Some((51, 0))
        );
        assert_eq!(
            parse_counts("     Summary [   4.294s] 51 tests run: 49 passed, 2 failed, 0 skipped"),
            Some((49, 2))
        );
        assert_eq!(
            parse_counts("        PASS [   0.015s] ( 1/51) cache-core digest"),
            None
        );
        let counts = Counts::default();
        counts.observe("test result: ok. 6 passed; 1 failed; 0 ignored");
        counts.observe("Summary [ 1s] 10 tests run: 10 passed, 0 skipped");
        assert_eq!(counts.totals(), (16, 1));
    }

    fn parse(args: &[&str]) -> Result<Option<Options>> {
        Options::parse(args.iter().map(OsString::from))
    }

    #[test]
    fn no_arguments_means_everything() {
        let options = parse(&[]).unwrap().unwrap();
        assert!(options.lint);
        assert!(!options.wasmer);
        assert!(parse(&["--wasmer"]).unwrap().unwrap().wasmer);
        assert!(options.runner_args.is_empty());
    }

    #[test]
    fn runner_arguments_follow_the_separator_verbatim() {
        let options = parse(&["--no-lint", "--", "-p", "xtask", "--", "--no-lint"])
            .unwrap()
            .unwrap();
        assert!(!options.lint);
        assert_eq!(options.runner_args, ["-p", "xtask", "--", "--no-lint"]);
    }

    #[test]
    fn help_and_unknown_arguments() {
        assert_eq!(parse(&["--help"]).unwrap(), None);
        let err = parse(&["digest"]).unwrap_err().to_string();
        assert!(err.contains("unknown argument `digest`"), "{err}");
        assert!(err.contains("after `--`"), "{err}");
    }

    #[test]
    fn lint_steps_are_the_last_three() {
        let lint: Vec<Step> = Step::ALL.into_iter().filter(|s| s.is_lint()).collect();
        assert_eq!(lint, [Step::Clippy, Step::Fmt, Step::Deny]);
        assert_eq!(Step::ALL.last(), Some(&Step::Deny));
    }

    #[test]
    fn outcomes_read_well_in_the_summary() {
        assert_eq!(Outcome::Passed(String::new()).to_string(), "passed");
        assert_eq!(
            Outcome::Passed("cargo nextest".into()).to_string(),
            "passed (cargo nextest)"
        );
        assert_eq!(
            Outcome::Skipped("--no-lint".into()).to_string(),
            "skipped (--no-lint)"
        );
        assert_eq!(Outcome::Failed.to_string(), "FAILED");
    }
}

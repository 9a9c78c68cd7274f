//! `cargo xtask fuzz`: the stable-toolchain fuzzer in `fuzz/`, built in release and run.
//!
//! The fuzzer is its own cargo workspace (`fuzz/Cargo.toml`, excluded from the main one);
//! this module only turns xtask's arguments into `pkgload-fuzz` commands. See
//! `fuzz/README.md` for the targets and how the engine works.

use std::ffi::OsString;
use std::path::Path;

use crate::cmd::Cmd;
use crate::{Error, Result};

/// What `cargo xtask fuzz` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Options {
    /// Fuzz these targets (all when empty), each for `time` seconds, with `seed`.
    Run {
        targets: Vec<String>,
        time: Option<String>,
        seed: Option<String>,
    },
    /// `--list`: print the targets.
    List,
    /// `--replay FILE TARGET`: run one input through one target, panic output and all.
    Replay { file: String, target: String },
    /// `--regressions`: replay `fuzz/regressions/*/*` and `fuzz/corpus/*/*`.
    Regressions,
}

impl Options {
    /// Parses the arguments after `fuzz`; `None` means help was asked for.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Option<Self>> {
        let mut targets = Vec::new();
        let mut time = None;
        let mut seed = None;
        let mut list = false;
        let mut regressions = false;
        let mut replay: Option<Vec<String>> = None;
        let mut args = args.into_iter().map(|a| {
            a.into_string()
                .map_err(|a| Error::new(format!("argument {a:?} is not UTF-8")))
        });
        let value = |args: &mut dyn Iterator<Item = Result<String>>, flag: &str| {
            args.next()
                .transpose()?
                .ok_or_else(|| Error::new(format!("`{flag}` needs a value")))
        };
        while let Some(arg) = args.next().transpose()? {
            match arg.as_str() {
                "--time" => {
                    let secs = value(&mut args, "--time")?;
                    if !secs.parse::<f64>().is_ok_and(|s| s > 0.0 && s.is_finite()) {
                        return Err(Error::new(format!(
                            "`--time {secs}`: expected a positive number of seconds"
                        )));
                    }
                    time = Some(secs);
                }
                "--seed" => {
                    let n = value(&mut args, "--seed")?;
                    if n.parse::<u64>().is_err() {
                        return Err(Error::new(format!("`--seed {n}`: expected a number")));
                    }
                    seed = Some(n);
                }
                "--list" => list = true,
                "--regressions" => regressions = true,
                "--replay" => replay = Some(Vec::new()),
                "-h" | "--help" => return Ok(None),
                other if other.starts_with('-') => {
                    return Err(Error::new(format!(
                        "unknown argument `{other}` for `cargo xtask fuzz`; \
                         `cargo xtask help` lists its options"
                    )));
                }
                other => match replay.as_mut() {
                    Some(operands) => operands.push(other.to_owned()),
                    None => targets.push(other.to_owned()),
                },
            }
        }
        if let Some(operands) = replay {
            // `--replay FILE TARGET`; the other order works too when FILE exists.
            let [a, b] = <[String; 2]>::try_from(operands).map_err(|_| {
                Error::new("`--replay` takes a file and a target: `--replay FILE TARGET`")
            })?;
            let (file, target) = if Path::new(&b).is_file() && !Path::new(&a).is_file() {
                (b, a)
            } else {
                (a, b)
            };
            return Ok(Some(Options::Replay { file, target }));
        }
        if list {
            return Ok(Some(Options::List));
        }
        if regressions {
            return Ok(Some(Options::Regressions));
        }
        Ok(Some(Options::Run {
            targets,
            time,
            seed,
        }))
    }

    /// The `pkgload-fuzz` command line.
    fn fuzzer_args(&self) -> Vec<String> {
        match self {
            Options::Run {
                targets,
                time,
                seed,
            } => {
                let mut args = vec!["run".to_owned()];
                args.extend(targets.iter().cloned());
                if let Some(time) = time {
                    args.extend(["--time".to_owned(), time.clone()]);
                }
                if let Some(seed) = seed {
                    args.extend(["--seed".to_owned(), seed.clone()]);
                }
                args
            }
            Options::List => vec!["list".to_owned()],
            Options::Replay { file, target } => {
                // The fuzzer runs in the workspace root, like every xtask command.
                let file = std::path::absolute(file)
                    .map_or_else(|_| file.clone(), |p| p.display().to_string());
                vec!["replay".to_owned(), target.clone(), file]
            }
            Options::Regressions => vec!["regressions".to_owned()],
        }
    }
}

/// `cargo run --release` of the fuzzer with `args`.
fn fuzzer(args: &[String]) -> Cmd {
    Cmd::cargo()
        .args([
            "run",
            "--release",
            "--manifest-path",
            "fuzz/Cargo.toml",
            "--bin",
            "pkgload-fuzz",
            "--",
        ])
        .args(args)
}

/// Runs `cargo xtask fuzz` as parsed.
pub fn run(options: &Options) -> Result<()> {
    fuzzer(&options.fuzzer_args()).run()
}

/// The seed of the bounded pass `cargo xtask test` runs.
const CI_SEED: u64 = 20_261_123;

/// A bounded pass for `cargo xtask test`: replays every saved input (regressions and
/// corpus), then fuzzes every target for `seconds_per_target` seconds from [`CI_SEED`].
/// Fails on any crash; prints one summary line.
pub fn ci_pass(seconds_per_target: u64) -> Result<()> {
    fuzzer(&["regressions".to_owned()]).run()?;
    // A fixed seed: a red CI then means a change broke something, not that this run's dice
    // found an old bug. `cargo xtask fuzz` explores with fresh seeds.
    fuzzer(&[
        "run".to_owned(),
        "--time".to_owned(),
        seconds_per_target.to_string(),
        "--seed".to_owned(),
        CI_SEED.to_string(),
        "--quiet".to_owned(),
    ])
    .run()?;
    eprintln!(
        "==> xtask: fuzz: saved inputs replayed and every target fuzzed for \
         {seconds_per_target} s: no crash"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Options>> {
        Options::parse(args.iter().map(OsString::from))
    }

    #[test]
    fn no_arguments_fuzz_everything_with_the_default_time() {
        let options = parse(&[]).unwrap().unwrap();
        assert_eq!(options.fuzzer_args(), ["run"]);
    }

    #[test]
    fn targets_time_and_seed_pass_through() {
        let options = parse(&["digest", "--time", "30", "union", "--seed", "7"])
            .unwrap()
            .unwrap();
        assert_eq!(
            options.fuzzer_args(),
            ["run", "digest", "union", "--time", "30", "--seed", "7"]
        );
    }

    #[test]
    fn list_regressions_and_replay() {
        assert_eq!(parse(&["--list"]).unwrap(), Some(Options::List));
        assert_eq!(
            parse(&["--regressions"]).unwrap(),
            Some(Options::Regressions)
        );
        let replay = parse(&["--replay", "/nonexistent/crash-1", "digest"])
            .unwrap()
            .unwrap();
        assert_eq!(
            replay,
            Options::Replay {
                file: "/nonexistent/crash-1".to_owned(),
                target: "digest".to_owned()
            }
        );
        assert_eq!(
            replay.fuzzer_args(),
            ["replay", "digest", "/nonexistent/crash-1"]
        );
        // TARGET FILE works too when the file exists.
        let replay = parse(&["--replay", "digest", "Cargo.toml"])
            .unwrap()
            .unwrap();
        assert_eq!(
            replay,
            Options::Replay {
                file: "Cargo.toml".to_owned(),
                target: "digest".to_owned()
            }
        );
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        assert_eq!(parse(&["--help"]).unwrap(), None);
        for (args, expected) in [
            (&["--time"][..], "needs a value"),
            (&["--time", "soon"], "positive number"),
            (&["--time", "0"], "positive number"),
            (&["--seed", "x"], "expected a number"),
            (&["--replay", "only-one"], "a file and a target"),
            (&["--bogus"], "unknown argument `--bogus`"),
        ] {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(expected), "{args:?}: {err}");
        }
    }
}

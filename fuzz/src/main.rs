//! `pkgload-fuzz`: the command `cargo xtask fuzz` builds and runs. See README.md.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use pkgload_fuzz::engine::{self, Options};
use pkgload_fuzz::rng::Rng;
use pkgload_fuzz::{TARGETS, Target};

const USAGE: &str = "\
usage: pkgload-fuzz <command>

  list                         the targets, one a line
  run [TARGET...] [--time SECONDS] [--seed N] [--hang SECONDS] [--quiet]
                               fuzz each target (all when none given) for SECONDS
                               (default 10); stops at the first crash, writes it to
                               fuzz/artifacts/TARGET/crash-HASH and exits 1; an input
                               running longer than --hang (default 10) is written to
                               fuzz/artifacts/TARGET/hang-HASH and exits 1 too
  replay TARGET FILE...        run the files through TARGET with normal panic output
  regressions [TARGET...]      replay fuzz/regressions/TARGET/* and fuzz/corpus/TARGET/*
  write-seeds [TARGET...]      write the seeds generated in code to fuzz/corpus/TARGET/
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("error: pkgload-fuzz: {message}");
            ExitCode::from(2)
        }
    }
}

/// `Ok(false)` when something crashed.
fn run(args: &[String]) -> Result<bool, String> {
    let Some((command, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return Err("no command given".to_owned());
    };
    match command.as_str() {
        "list" => {
            for t in TARGETS {
                println!("{:<18} {}", t.name, t.about);
            }
            Ok(true)
        }
        "run" => fuzz(rest),
        "replay" => {
            let Some((name, files)) = rest.split_first() else {
                return Err("replay needs a target and files".to_owned());
            };
            let target = target(name)?;
            if files.is_empty() {
                return Err("replay needs at least one file".to_owned());
            }
            let mut ok = true;
            for file in files {
                let data = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
                eprintln!("replaying {file} ({} bytes) through {name}", data.len());
                // The default panic hook prints the message and, with RUST_BACKTRACE=1, a
                // backtrace.
                let result = std::panic::catch_unwind(|| (target.run)(&data));
                if result.is_err() {
                    eprintln!("CRASH: {file}");
                    ok = false;
                } else {
                    eprintln!("ok: {file}");
                }
            }
            Ok(ok)
        }
        "regressions" => {
            let targets = targets(rest)?;
            let (count, failures) = replay_saved(&targets)?;
            for failure in &failures {
                eprintln!("{failure}");
            }
            println!(
                "fuzz regressions: {count} inputs replayed over {} targets, {} failed",
                targets.len(),
                failures.len()
            );
            Ok(failures.is_empty())
        }
        "write-seeds" => {
            for t in targets(rest)? {
                let dir = pkgload_fuzz::corpus_dir(t.name);
                std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                for seed in (t.seeds)() {
                    let path = dir.join(format!("seed-{:016x}", pkgload_fuzz::fnv64(&seed)));
                    std::fs::write(&path, &seed).map_err(|e| format!("{}: {e}", path.display()))?;
                }
                println!("{}: {}", t.name, dir.display());
            }
            Ok(true)
        }
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(true)
        }
        other => Err(format!("unknown command `{other}`\n{USAGE}")),
    }
}

fn target(name: &str) -> Result<&'static Target, String> {
    pkgload_fuzz::find(name).ok_or_else(|| {
        let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
        format!("no target `{name}`; the targets are: {}", names.join(", "))
    })
}

fn targets(names: &[String]) -> Result<Vec<&'static Target>, String> {
    if names.is_empty() {
        Ok(TARGETS.iter().collect())
    } else {
        names.iter().map(|n| target(n)).collect()
    }
}

/// Seeds from code and from `corpus/<target>/`, without duplicates.
fn seeds(target: &Target) -> Result<Vec<Vec<u8>>, String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let files = pkgload_fuzz::read_inputs(&pkgload_fuzz::corpus_dir(target.name))?;
    for seed in (target.seeds)()
        .into_iter()
        .chain(files.into_iter().map(|(_, d)| d))
    {
        if seen.insert(seed.clone()) {
            out.push(seed);
        }
    }
    Ok(out)
}

fn fuzz(args: &[String]) -> Result<bool, String> {
    let mut names = Vec::new();
    let mut time = Duration::from_secs(10);
    let mut seed = None;
    let mut progress = true;
    let mut hang_timeout = Duration::from_secs(10);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--time" => {
                let value = args.next().ok_or("--time needs a number of seconds")?;
                let secs: f64 = value
                    .parse()
                    .map_err(|_| format!("--time {value}: not a number of seconds"))?;
                time = Duration::try_from_secs_f64(secs)
                    .map_err(|_| format!("--time {value}: not a duration"))?;
            }
            "--seed" => {
                let value = args.next().ok_or("--seed needs a number")?;
                seed = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| format!("--seed {value}: not a number"))?,
                );
            }
            "--quiet" => progress = false,
            "--hang" => {
                let value = args.next().ok_or("--hang needs a number of seconds")?;
                let secs: f64 = value
                    .parse()
                    .map_err(|_| format!("--hang {value}: not a number of seconds"))?;
                hang_timeout = Duration::try_from_secs_f64(secs)
                    .map_err(|_| format!("--hang {value}: not a duration"))?;
            }
            name if !name.starts_with('-') => names.push(name.to_owned()),
            other => return Err(format!("unknown option `{other}`\n{USAGE}")),
        }
    }
    let seed = seed.unwrap_or_else(Rng::fresh_seed);
    let targets = targets(&names)?;
    println!(
        "fuzzing {} target(s), {:.0?} each, seed {seed} (replay this run with --seed {seed})",
        targets.len(),
        time
    );
    let mut all_ok = true;
    for target in targets {
        let seeds = seeds(target)?;
        let options = Options {
            seed,
            time,
            max_execs: None,
            progress,
            hang_timeout: Some(hang_timeout),
        };
        let report = engine::fuzz(target, seeds, &options);
        println!(
            "{:<18} {:>9} execs {:>9.0}/s  corpus {:>3} -> {:>4}  features {:>4}  slowest {:.1?}  {}",
            target.name,
            report.execs,
            report.execs_per_sec(),
            report.seeds,
            report.corpus,
            report.features,
            report.slowest,
            if report.crash.is_some() {
                "CRASH"
            } else {
                "ok"
            }
        );
        if let Some(crash) = &report.crash {
            all_ok = false;
            let path = save_crash(target.name, &crash.input)?;
            println!("\n{}: {}\n", target.name, crash.message);
            println!(
                "input ({} bytes) written to {}\nreplay:  cargo xtask fuzz --replay {} {}\n\
                 again:   cargo xtask fuzz {} --seed {seed}\n",
                crash.input.len(),
                path.display(),
                path.display(),
                target.name,
                target.name
            );
        }
    }
    Ok(all_ok)
}

fn save_crash(target: &str, input: &[u8]) -> Result<PathBuf, String> {
    let dir = pkgload_fuzz::artifacts_dir(target);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(format!("crash-{:016x}", pkgload_fuzz::fnv64(input)));
    std::fs::write(&path, input).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// Replays every saved input; returns how many ran and a message per failure.
fn replay_saved(targets: &[&'static Target]) -> Result<(usize, Vec<String>), String> {
    let mut count = 0;
    let mut failures = Vec::new();
    for target in targets {
        for dir in [
            pkgload_fuzz::regressions_dir(target.name),
            pkgload_fuzz::corpus_dir(target.name),
        ] {
            for (path, data) in pkgload_fuzz::read_inputs(&dir)? {
                count += 1;
                if let Err(message) = engine::run_one(target, &data) {
                    failures.push(format!("{}: {}: {message}", target.name, shown(&path)));
                }
            }
        }
    }
    Ok((count, failures))
}

fn shown(path: &Path) -> String {
    path.strip_prefix(pkgload_fuzz::fuzz_dir()).map_or_else(
        |_| path.display().to_string(),
        |p| format!("fuzz/{}", p.display()),
    )
}

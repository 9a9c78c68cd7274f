//! `wasmer-peer`: Wasmer's own package loader (wasmer-wasix 0.704) behind a small CLI, so
//! that pkgload's webc support can be checked against it (`cargo xtask test --wasmer`) and
//! measured beside it (`cargo xtask bench --only wasmer`). Outside pkgload's workspace:
//! nothing in pkgload links Wasmer.

mod load;
mod serve;
mod tree;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage:
  wasmer-peer gen-tree --out DIR --packages N --depth D --volume-bytes B --atom-bytes A
                       [--url-base http://127.0.0.1:PORT/] [--seed S]
                       [--shared-command C | --dep-command C]
      Writes N webc v3 packages bench/p00..pNN (1.0.0) as DIR/bench--pNN@1.0.0.webc: each
      with one atom of A bytes (command pNN), one volume of about B bytes mounted at
      /pNN, and `use` entries forming a DAG of D levels under the root p00 (registry
      names, or URLs under --url-base). --shared-command C: every package also declares
      command C (running its own atom), so the root's shadows the others';
      --dep-command C: every package but the root does. Same arguments, same bytes.
      Prints the root's path.
  wasmer-peer load [--dir DIR] [--web CACHE_DIR] [--describe] ROOT
      Resolves and loads ROOT (a webc file or an http:// URL) with wasmer-wasix: --dir
      finds dependencies in a directory of webc files (InMemorySource), --web fetches
      URLs (WebSource, its downloads and the loader's checkouts cached in CACHE_DIR).
      Prints `ok <milliseconds>`, or with --describe a JSON description of the tree.
  wasmer-peer serve DIR [--port P] [--delay-ms MS]
      Serves DIR over HTTP/1.1 on 127.0.0.1 (GET, HEAD, ETag, If-None-Match, Range),
      each response held back MS milliseconds. Prints the bound address first.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--name value` pairs, flags and positionals, in any order.
struct Args {
    pairs: Vec<(String, String)>,
    flags: Vec<String>,
    positional: Vec<String>,
}

impl Args {
    fn parse(args: &[String], takes_value: &[&str], flags: &[&str]) -> Result<Self> {
        let mut out = Self {
            pairs: Vec::new(),
            flags: Vec::new(),
            positional: Vec::new(),
        };
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            if takes_value.contains(&arg.as_str()) {
                let value = iter
                    .next()
                    .with_context(|| format!("{arg} needs a value"))?;
                out.pairs.push((arg.clone(), value.clone()));
            } else if flags.contains(&arg.as_str()) {
                out.flags.push(arg.clone());
            } else if arg.starts_with("--") {
                bail!("unknown option {arg}\n{USAGE}");
            } else {
                out.positional.push(arg.clone());
            }
        }
        Ok(out)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, name: &str) -> Result<&str> {
        self.get(name)
            .with_context(|| format!("{name} is required\n{USAGE}"))
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>> {
        self.get(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| anyhow::anyhow!("{name} {v:?}: not a number"))
            })
            .transpose()
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }
}

fn run(args: &[String]) -> Result<()> {
    let Some((command, rest)) = args.split_first() else {
        bail!("no command given\n{USAGE}");
    };
    match command.as_str() {
        "gen-tree" => {
            let a = Args::parse(
                rest,
                &[
                    "--out",
                    "--packages",
                    "--depth",
                    "--volume-bytes",
                    "--atom-bytes",
                    "--url-base",
                    "--seed",
                    "--shared-command",
                    "--dep-command",
                ],
                &[],
            )?;
            if let Some(extra) = a.positional.first() {
                bail!("unexpected argument {extra:?}\n{USAGE}");
            }
            let number = |name: &str| -> Result<u64> {
                a.number(name)?
                    .with_context(|| format!("{name} is required\n{USAGE}"))
            };
            let url_base = a.get("--url-base").map(|base| {
                if base.ends_with('/') {
                    base.to_owned()
                } else {
                    format!("{base}/")
                }
            });
            let options = tree::Options {
                out: PathBuf::from(a.required("--out")?),
                packages: usize::try_from(number("--packages")?)?,
                depth: usize::try_from(number("--depth")?)?,
                volume_bytes: number("--volume-bytes")?,
                atom_bytes: number("--atom-bytes")?,
                url_base,
                seed: a.number("--seed")?.unwrap_or(1),
                shared_command: a.get("--shared-command").map(str::to_owned),
                dep_command: a.get("--dep-command").map(str::to_owned),
            };
            let root = tree::run(&options)?;
            println!("{}", root.display());
            Ok(())
        }
        "load" => {
            let a = Args::parse(rest, &["--dir", "--web"], &["--describe"])?;
            let [root] = a.positional.as_slice() else {
                bail!("load takes one ROOT\n{USAGE}");
            };
            let options = load::Options {
                dir: a.get("--dir").map(PathBuf::from),
                web: a.get("--web").map(PathBuf::from),
                describe: a.flag("--describe"),
                root: root.clone(),
            };
            load::run(&options)
        }
        "serve" => {
            let a = Args::parse(rest, &["--port", "--delay-ms"], &[])?;
            let [dir] = a.positional.as_slice() else {
                bail!("serve takes one DIR\n{USAGE}");
            };
            let options = serve::Options {
                dir: PathBuf::from(dir),
                port: a.number("--port")?.unwrap_or(0),
                delay: Duration::from_millis(a.number("--delay-ms")?.unwrap_or(0)),
            };
            serve::run(&options)
        }
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command {other:?}\n{USAGE}"),
    }
}

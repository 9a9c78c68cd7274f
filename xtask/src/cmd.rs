//! Running external programs: show what runs, share the terminal, turn failures into errors.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Error, Result};

/// The workspace root, which every command runs in: the parent of this crate's directory.
pub fn workspace_root() -> PathBuf {
    let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask_dir.parent().unwrap_or(xtask_dir).to_path_buf()
}

/// Whether cargo arguments choose packages (`-p NAME`, `-pNAME`, `--package NAME`,
/// `--package=NAME`) before any `--`. Cargo silently ignores `-p` next to `--workspace`, so
/// callers leave `--workspace` out when this is true.
pub fn selects_packages(args: &[OsString]) -> bool {
    args.iter()
        .take_while(|arg| arg.as_os_str() != "--")
        .filter_map(|arg| arg.to_str())
        .any(|arg| arg.starts_with("-p") || arg == "--package" || arg.starts_with("--package="))
}

/// A program with its arguments and extra environment, run in the workspace root.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Self {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
        }
    }

    /// The cargo that started xtask (`$CARGO`, so the same toolchain), else `cargo` on PATH.
    pub fn cargo() -> Self {
        Self::new(std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")))
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|arg| arg.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.envs.iter().map(|(key, value)| (key, value)))
            .current_dir(workspace_root());
        command
    }

    /// Runs it attached to the terminal, after printing it; a non-zero exit is an error.
    pub fn run(&self) -> Result<()> {
        eprintln!("$ {self}");
        let status = self
            .command()
            .status()
            .map_err(|err| self.cannot_start(&err))?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::new(format!("`{self}` failed ({status})")))
        }
    }

    /// Like [`Cmd::run`], but reads the output as it passes through (echoing it unchanged)
    /// and hands every line to `on_line`, e.g. to count test results.
    pub fn run_observed(&self, on_line: &(dyn Fn(&str) + Sync)) -> Result<()> {
        use std::io::{BufRead, BufReader, Write};
        eprintln!("$ {self}");
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| self.cannot_start(&err))?;
        let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(Error::new(format!("`{self}`: no output pipes")));
        };
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for line in BufReader::new(err)
                    .lines()
                    .map_while(std::result::Result::ok)
                {
                    let _ = writeln!(std::io::stderr(), "{line}");
                    on_line(&line);
                }
            });
            for line in BufReader::new(out)
                .lines()
                .map_while(std::result::Result::ok)
            {
                let _ = writeln!(std::io::stdout(), "{line}");
                on_line(&line);
            }
        });
        let status = child.wait().map_err(|err| self.cannot_start(&err))?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::new(format!("`{self}` failed ({status})")))
        }
    }

    /// Runs it silently: true if it started and exited 0. For probes such as
    /// `cargo nextest --version`.
    pub fn probe(&self) -> bool {
        self.command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Runs it silently and returns its standard output, which must be UTF-8.
    pub fn stdout(&self) -> Result<String> {
        let output = self
            .command()
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map_err(|err| self.cannot_start(&err))?;
        if !output.status.success() {
            return Err(Error::new(format!("`{self}` failed ({})", output.status)));
        }
        String::from_utf8(output.stdout)
            .map_err(|_| Error::new(format!("`{self}` printed something that is not UTF-8")))
    }

    fn cannot_start(&self, err: &std::io::Error) -> Error {
        Error::new(format!(
            "cannot start `{}`: {err}",
            self.program.to_string_lossy()
        ))
    }
}

/// Shell-like rendering for logs and error messages. `$CARGO` is usually an absolute path
/// into the toolchain, so the program is shown by its file name.
impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, value) in &self.envs {
            write!(f, "{}={} ", quote(key), quote(value))?;
        }
        let program = Path::new(&self.program)
            .file_name()
            .unwrap_or(&self.program);
        f.write_str(&quote(program))?;
        for arg in &self.args {
            write!(f, " {}", quote(arg))?;
        }
        Ok(())
    }
}

/// Single-quotes a word when a shell would otherwise split or expand it.
fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%^".contains(c));
    if plain {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn package_selection_is_recognised_in_every_spelling() {
        for args in [
            &["-p", "cache-core"][..],
            &["-pcache-core"],
            &["--package", "xtask"],
            &["--package=xtask"],
            &["digest", "-p", "xtask"],
        ] {
            assert!(selects_packages(&os(args)), "{args:?}");
        }
    }

    #[test]
    fn filters_and_arguments_after_the_separator_do_not_select_packages() {
        for args in [
            &[][..],
            &["digest"],
            &["--exclude", "xtask"],
            &["--", "-p"],
            &["digest", "--", "--package", "x"],
        ] {
            assert!(!selects_packages(&os(args)), "{args:?}");
        }
    }

    #[test]
    fn display_reads_like_a_shell_command() {
        let cmd = Cmd::new("/opt/toolchain/bin/cargo")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["test", "--workspace", "two words", "it's", ""]);
        assert_eq!(
            cmd.to_string(),
            r"DEBIAN_FRONTEND=noninteractive cargo test --workspace 'two words' 'it'\''s' ''"
        );
    }

    #[test]
    fn run_and_probe_report_exit_status() {
        assert!(Cmd::new("true").run().is_ok());
        assert!(Cmd::new("false").run().is_err());
        assert!(Cmd::new("true").probe());
        assert!(!Cmd::new("false").probe());
        assert!(!Cmd::new("/nonexistent/xtask-probe").probe());
        let err = Cmd::new("/nonexistent/xtask-probe").run().unwrap_err();
        assert!(err.to_string().contains("cannot start"), "{err}");
    }

    #[test]
    fn commands_run_in_the_workspace_root() {
        let pwd = Cmd::new("pwd").stdout().unwrap();
        let root = workspace_root();
        assert_eq!(
            Path::new(pwd.trim()).canonicalize().unwrap(),
            root.canonicalize().unwrap()
        );
        assert!(root.join("Cargo.toml").is_file());
    }
}

//! External programs the tests run, and installing them with apt-get when they are missing.
//!
//! CI starts from a fresh Debian machine, so `cargo xtask test` installs what the tests need
//! instead of every test skipping itself when a program is absent. The list lives in
//! [`REQUIRED`]; the rest of this module is the machinery around it.

use std::path::{Path, PathBuf};

use crate::cmd::Cmd;
use crate::{Error, Result};

/// One external program that some test starts, or a package of sources a test builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    /// The executable's file name, looked up on PATH and in [`EXTRA_DIRS`]; or, for a
    /// package that installs no program (Go sources), the absolute path of what it installs.
    pub binary: &'static str,
    /// The Debian package that provides it.
    pub package: &'static str,
    /// Which tests need it; shown when it is missing.
    pub why: &'static str,
}

/// Every external program the workspace's tests run. Add a row in the same change as the
/// first test that needs it. Rows planned by DESIGN.md for later issues:
///
/// ```text
/// zstd             zstd             fixtures: zstd-compressed layers
/// ```
pub const REQUIRED: &[Tool] = &[
    Tool {
        binary: "docker-registry",
        package: "docker-registry",
        why: "fetch-http registry tests: push and pull against a real OCI registry on loopback",
    },
    Tool {
        binary: "skopeo",
        package: "skopeo",
        why: "fetch-http registry tests: an image copied by skopeo must pull with skopeo's digest",
    },
    Tool {
        binary: "mount",
        package: "mount",
        why: "cache-core processes tests: a full disk and a read-only store on small tmpfs mounts",
    },
    Tool {
        binary: "umount",
        package: "mount",
        why: "cache-core processes tests: removing their tmpfs mounts",
    },
    Tool {
        binary: "setpriv",
        package: "util-linux",
        why: "cache-core processes tests: a permission error, seen by an unprivileged user",
    },
    Tool {
        binary: "node",
        package: "nodejs",
        why: "pkgload wasi tests: the example package's entrypoint runs under Node's WASI",
    },
    Tool {
        binary: "openssl",
        package: "openssl",
        why: "pkgload tls tests: a throwaway CA, server and client certificates",
    },
    Tool {
        binary: "umoci",
        package: "umoci",
        why: "vfs-overlay umoci tests: stacked layers must equal `umoci unpack`, path for path",
    },
    Tool {
        binary: "go",
        package: "golang-go",
        why: "pkgload lazy tests: build tests/stargz-writer, layers pkgload did not write",
    },
    Tool {
        binary: "/usr/share/gocode/src/github.com/containerd/stargz-snapshotter/estargz",
        package: "golang-github-containerd-stargz-snapshotter-dev",
        why: "pkgload lazy tests: stargz-snapshotter's eStargz and zstd:chunked writer (Go)",
    },
];

/// Searched after PATH: a minimal PATH may lack them, and Debian packages install there
/// (`docker-registry` lands in /usr/bin).
const EXTRA_DIRS: &[&str] = &["/usr/bin", "/usr/sbin"];

/// Makes sure every tool can be found, installing the missing ones' packages with apt-get
/// (as root, or through password-less `sudo -n`). Returns a one-line note for the summary.
pub fn ensure(tools: &[Tool]) -> Result<String> {
    if tools.is_empty() {
        return Ok("no external programs needed".to_owned());
    }
    let missing = missing(tools, locate);
    if missing.is_empty() {
        return Ok(format!("all {} external programs present", tools.len()));
    }
    for tool in &missing {
        eprintln!(
            "    missing `{}` (Debian package `{}`): {}",
            tool.binary, tool.package, tool.why
        );
    }

    let packages = packages_of(&missing);
    let apt = Apt::detect().map_err(|reason| Error::new(cannot_install(&missing, &reason)))?;
    apt.install(&packages)?;

    let still_missing = self::missing(&missing, locate);
    if !still_missing.is_empty() {
        let names: Vec<&str> = still_missing.iter().map(|tool| tool.binary).collect();
        return Err(Error::new(format!(
            "apt-get installed {} but these are still not found on PATH or in {}: {}",
            packages.join(" "),
            EXTRA_DIRS.join(", "),
            names.join(", ")
        )));
    }
    Ok(format!("installed {}", packages.join(" ")))
}

/// The first executable named `binary` on PATH, else in [`EXTRA_DIRS`].
pub fn locate(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(EXTRA_DIRS.iter().map(PathBuf::from));
    locate_in(binary, dirs)
}

fn locate_in(binary: &str, dirs: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    dirs.into_iter()
        // An empty PATH entry means the current directory; never trust that.
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(binary))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

fn missing(tools: &[Tool], locate: impl Fn(&str) -> Option<PathBuf>) -> Vec<Tool> {
    tools
        .iter()
        .filter(|tool| {
            if tool.binary.starts_with('/') {
                !Path::new(tool.binary).exists()
            } else {
                locate(tool.binary).is_none()
            }
        })
        .copied()
        .collect()
}

/// The packages to install, each once, in table order.
fn packages_of(tools: &[Tool]) -> Vec<&'static str> {
    let mut packages: Vec<&'static str> = Vec::new();
    for tool in tools {
        if !packages.contains(&tool.package) {
            packages.push(tool.package);
        }
    }
    packages
}

/// What `sudo -n` can do for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sudo {
    Missing,
    NeedsPassword,
    Ready,
}

/// How apt-get is run.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Apt {
    /// We are root: run it directly.
    AsRoot { apt_get: PathBuf },
    /// We are not root but `sudo -n` works without a password.
    WithSudo,
}

impl Apt {
    fn detect() -> std::result::Result<Self, String> {
        Self::choose(locate("apt-get"), effective_uid(), || {
            if locate("sudo").is_none() {
                Sudo::Missing
            } else if Cmd::new("sudo").args(["-n", "true"]).probe() {
                Sudo::Ready
            } else {
                Sudo::NeedsPassword
            }
        })
    }

    /// The decision, apart from the probing; `sudo` is only asked when it matters.
    fn choose(
        apt_get: Option<PathBuf>,
        uid: Option<u32>,
        sudo: impl FnOnce() -> Sudo,
    ) -> std::result::Result<Self, String> {
        let Some(apt_get) = apt_get else {
            return Err("apt-get was not found (not a Debian-like system?)".to_owned());
        };
        if uid == Some(0) {
            return Ok(Self::AsRoot { apt_get });
        }
        match sudo() {
            Sudo::Ready => Ok(Self::WithSudo),
            Sudo::Missing => Err("not running as root, and sudo is not installed".to_owned()),
            Sudo::NeedsPassword => {
                Err("not running as root, and `sudo -n` needs a password".to_owned())
            }
        }
    }

    /// `apt-get <args>`, non-interactive.
    fn apt_get<const N: usize>(&self, args: [&str; N]) -> Cmd {
        let base = match self {
            Self::AsRoot { apt_get } => Cmd::new(apt_get).env("DEBIAN_FRONTEND", "noninteractive"),
            // sudo resets the environment, so the variable goes through env(1).
            Self::WithSudo => {
                Cmd::new("sudo").args(["-n", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"])
            }
        };
        base.args(args)
    }

    fn install(&self, packages: &[&str]) -> Result<()> {
        self.apt_get(["update"]).run()?;
        self.apt_get(["install", "-y", "--no-install-recommends"])
            .args(packages)
            .run()
    }
}

/// Our effective user id, from /proc (Linux) or else `id -u`.
fn effective_uid() -> Option<u32> {
    // The line reads "Uid:\t<real>\t<effective>\t<saved>\t<filesystem>".
    let from_proc = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1))
                .and_then(|id| id.parse().ok())
        });
    from_proc.or_else(|| Cmd::new("id").arg("-u").stdout().ok()?.trim().parse().ok())
}

/// Tells the user what is missing and the command that installs it.
fn cannot_install(missing: &[Tool], reason: &str) -> String {
    let mut message = format!(
        "the tests need programs that are not installed, and xtask cannot install them: {reason}.\nmissing:\n"
    );
    for tool in missing {
        message.push_str(&format!(
            "  {} (Debian package `{}`): {}\n",
            tool.binary, tool.package, tool.why
        ));
    }
    message.push_str(&format!(
        "install them as root, then run `cargo xtask test` again:\n  apt-get install -y --no-install-recommends {}",
        packages_of(missing).join(" ")
    ));
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTRY: Tool = Tool {
        binary: "docker-registry",
        package: "docker-registry",
        why: "registry tests",
    };
    const UMOCI: Tool = Tool {
        binary: "umoci",
        package: "umoci",
        why: "overlay tests",
    };
    const ZSTD: Tool = Tool {
        binary: "zstd",
        package: "zstd",
        why: "fixtures",
    };
    const UNZSTD: Tool = Tool {
        binary: "unzstd",
        package: "zstd",
        why: "fixtures",
    };

    #[test]
    fn the_table_is_well_formed() {
        for (i, tool) in REQUIRED.iter().enumerate() {
            assert!(
                !tool.binary.is_empty()
                    && (!tool.binary.contains('/') || tool.binary.starts_with('/')),
                "{tool:?}"
            );
            assert!(!tool.package.is_empty() && !tool.why.is_empty(), "{tool:?}");
            assert!(
                !REQUIRED[..i]
                    .iter()
                    .any(|other| other.binary == tool.binary),
                "`{}` is listed twice",
                tool.binary
            );
        }
    }

    #[test]
    fn nothing_to_do_for_an_empty_table() {
        assert_eq!(ensure(&[]).unwrap(), "no external programs needed");
    }

    #[test]
    fn only_tools_that_cannot_be_located_are_missing() {
        let present = |binary: &str| (binary == "umoci").then(|| PathBuf::from("/usr/bin/umoci"));
        assert_eq!(missing(&[REGISTRY, UMOCI, ZSTD], present), [REGISTRY, ZSTD]);
    }

    #[test]
    fn each_package_is_installed_once() {
        assert_eq!(
            packages_of(&[ZSTD, REGISTRY, UNZSTD, UMOCI]),
            ["zstd", "docker-registry", "umoci"]
        );
    }

    #[test]
    fn locating_wants_an_executable_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("xtask-locate-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let exe = dir.join("tool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let plain = dir.join("data");
        std::fs::write(&plain, "").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();

        let dirs = || [PathBuf::new(), PathBuf::from("/nonexistent"), dir.clone()];
        assert_eq!(locate_in("tool", dirs()), Some(exe));
        assert_eq!(locate_in("data", dirs()), None);
        assert_eq!(locate_in("sub", dirs()), None);
        assert_eq!(locate_in("absent", dirs()), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn root_runs_apt_get_directly_without_asking_sudo() {
        let apt = Apt::choose(Some(PathBuf::from("/usr/bin/apt-get")), Some(0), || {
            panic!("sudo must not be probed as root")
        });
        let apt = apt.unwrap();
        assert_eq!(
            apt.apt_get(["install", "-y"]).arg("zstd").to_string(),
            "DEBIAN_FRONTEND=noninteractive apt-get install -y zstd"
        );
    }

    #[test]
    fn other_users_go_through_passwordless_sudo() {
        let apt = Apt::choose(Some(PathBuf::from("/usr/bin/apt-get")), Some(1000), || {
            Sudo::Ready
        })
        .unwrap();
        assert_eq!(
            apt.apt_get(["update"]).to_string(),
            "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get update"
        );
    }

    #[test]
    fn refusals_say_why() {
        let apt_get = || Some(PathBuf::from("/usr/bin/apt-get"));
        let err = Apt::choose(None, Some(0), || Sudo::Ready).unwrap_err();
        assert!(err.contains("apt-get was not found"), "{err}");
        let err = Apt::choose(apt_get(), Some(1000), || Sudo::Missing).unwrap_err();
        assert!(err.contains("sudo is not installed"), "{err}");
        let err = Apt::choose(apt_get(), None, || Sudo::NeedsPassword).unwrap_err();
        assert!(err.contains("needs a password"), "{err}");
    }

    #[test]
    fn the_manual_instructions_name_every_binary_and_package() {
        let message = cannot_install(&[REGISTRY, ZSTD, UNZSTD], "no sudo");
        assert!(
            message.contains("cannot install them: no sudo."),
            "{message}"
        );
        for name in ["docker-registry", "zstd", "unzstd", "registry tests"] {
            assert!(message.contains(name), "{name} in {message}");
        }
        assert!(
            message.ends_with("apt-get install -y --no-install-recommends docker-registry zstd"),
            "{message}"
        );
    }

    #[test]
    fn our_uid_is_known() {
        assert!(effective_uid().is_some());
    }
}

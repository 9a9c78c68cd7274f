//! Checking a webc file's parts while the rest of the tree is still being resolved.
//!
//! A webc file's atoms are checked against their signatures, and a v3 volume's files
//! against their sha256, the first time they are opened (`webc-package`); after that the
//! store's record vouches for them. On a cold load that is a second pass of sha256 over
//! every byte of the file (the first names it in the store), and done at assembly it would
//! wait for the whole resolution, although each file is known long before: its summary is
//! read when the solver first considers it, usually levels before the last file arrives.
//!
//! So when a file's summary is made, the parts its own mappings and commands name start
//! being checked on a blocking thread. Assembly waits for that before opening the parts,
//! which the container then hands out as checked. The parts are only those the package
//! itself uses (not every atom of a many-atom package), a failure is left for the opening
//! to report with its usual error, and at most one check per core runs at once, so the
//! checks neither hold the blocking threads downloads need nor crowd out resolution.

use std::sync::{Arc, OnceLock};

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use resolve_graph::Manifest;
use tokio::sync::Semaphore;
use webc_package::WebcContainer;

/// The checks started for one webc file; cheap to clone. When the last clone is dropped
/// (a resolution that was never assembled, as `pkgload resolve`), checks still waiting
/// for their turn are called off: only those already hashing run on.
#[derive(Clone, Default)]
pub(crate) struct Precheck(Option<(Shared<BoxFuture<'static, ()>>, Arc<CallOff>)>);

/// Aborts the checks' task when dropped.
struct CallOff(tokio::task::AbortHandle);

impl Drop for CallOff {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for Precheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Precheck(started)"
        } else {
            "Precheck(none)"
        })
    }
}

impl Precheck {
    /// Start checking the parts of `container` that `manifest` (its package) uses itself
    /// and that are not checked yet; nothing when there are none, or outside a runtime.
    pub(crate) fn start(container: &WebcContainer, manifest: &Manifest) -> Precheck {
        let own = |dependency: &Option<String>| dependency.is_none();
        let atoms = unchecked(
            manifest
                .commands
                .iter()
                .filter(|c| own(&c.dependency))
                .map(|c| &c.atom),
            |atom| container.atom_is_checked(atom),
        );
        let volumes = unchecked(
            manifest
                .fs
                .iter()
                .filter(|m| own(&m.dependency))
                .map(|m| &m.volume),
            |volume| container.volume_is_checked(volume),
        );
        if atoms.is_empty() && volumes.is_empty() {
            return Precheck(None);
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Precheck(None);
        };
        let container = container.clone();
        let task = runtime.spawn(async move {
            let Ok(_permit) = limit().acquire_owned().await else {
                return;
            };
            // Errors are the opening's to report, with the part's name; this only warms
            // the container's record of what is checked.
            let _ = tokio::task::spawn_blocking(move || {
                for atom in &atoms {
                    let _ = container.atom(atom);
                }
                for volume in &volumes {
                    let _ = container.volume(volume);
                }
            })
            .await;
        });
        let call_off = Arc::new(CallOff(task.abort_handle()));
        Precheck(Some((
            async move {
                let _ = task.await;
            }
            .boxed()
            .shared(),
            call_off,
        )))
    }

    /// Wait until the checks started are done (at once when none were).
    pub(crate) async fn done(&self) {
        if let Some((checks, _)) = &self.0 {
            checks.clone().await;
        }
    }
}

/// The `names` that are not `checked` yet, each once.
fn unchecked<'a>(
    names: impl Iterator<Item = &'a String>,
    checked: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut names: Vec<String> = names.filter(|n| !checked(n)).cloned().collect();
    names.sort();
    names.dedup();
    names
}

/// One check at a time per core, across the process.
fn limit() -> Arc<Semaphore> {
    static LIMIT: OnceLock<Arc<Semaphore>> = OnceLock::new();
    LIMIT
        .get_or_init(|| Arc::new(Semaphore::new(turns())))
        .clone()
}

/// How many checks may run at once: the cores this process may use.
fn turns() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use resolve_graph::{AbsPath, Command, FsMapping, PackageName};
    use webc_package::{CommandToWrite, PackageToWrite};

    use super::*;

    const ATOM: &[u8] = b"\0asm\x01\0\0\0 the atom the command runs";

    /// A v3 container with a command's atom, an atom nothing runs and a mounted volume,
    /// and the package the solver sees for it.
    fn package(dir: &std::path::Path) -> (bytes::Bytes, Manifest) {
        std::fs::write(dir.join("run.wasm"), ATOM).unwrap();
        std::fs::write(dir.join("spare.wasm"), b"\0asm\x01\0\0\0 spare").unwrap();
        std::fs::create_dir_all(dir.join("v")).unwrap();
        std::fs::write(dir.join("v/hello.txt"), "hello\n").unwrap();
        let written = PackageToWrite {
            name: "acme/p".to_owned(),
            version: "1.0.0".to_owned(),
            commands: vec![CommandToWrite {
                name: "run".to_owned(),
                runner: "wasi".to_owned(),
                atom: "run".to_owned(),
                ..CommandToWrite::default()
            }],
            mounts: vec![(None, "v".to_owned(), None, "/".to_owned())],
            atoms: BTreeMap::from([
                ("run".to_owned(), dir.join("run.wasm")),
                ("spare".to_owned(), dir.join("spare.wasm")),
            ]),
            volumes: BTreeMap::from([("v".to_owned(), dir.join("v"))]),
            ..PackageToWrite::default()
        }
        .write_v3("test package")
        .unwrap();
        let mut manifest = Manifest::new(
            PackageName::new("acme/p").unwrap(),
            semver::Version::new(1, 0, 0),
        );
        manifest.commands.push(Command {
            name: "run".to_owned(),
            runner: "https://webc.org/runner/wasi".to_owned(),
            atom: "run".to_owned(),
            dependency: None,
            annotations: BTreeMap::new(),
        });
        manifest.fs.push(FsMapping {
            volume: "v".to_owned(),
            mount: AbsPath::root(),
            dependency: None,
            path: AbsPath::root(),
        });
        (written, manifest)
    }

    #[tokio::test]
    async fn the_parts_a_package_uses_are_checked_before_assembly_asks() {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, manifest) = package(dir.path());
        let container = WebcContainer::parse(bytes, "test package").unwrap();
        let precheck = Precheck::start(&container, &manifest);
        precheck.done().await;
        assert!(container.atom_is_checked("run"));
        assert!(container.volume_is_checked("v"));
        // An atom no command of the package runs is left for whoever opens it.
        assert!(!container.atom_is_checked("spare"));
        // Nothing left to check: nothing started.
        assert!(Precheck::start(&container, &manifest).0.is_none());
    }

    #[tokio::test]
    async fn checks_nobody_waits_for_any_more_are_called_off() {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, manifest) = package(dir.path());
        let container = WebcContainer::parse(bytes, "test package").unwrap();
        // Every turn taken: the checks wait for one.
        let all = u32::try_from(turns()).unwrap();
        let turns = limit().acquire_many_owned(all).await.unwrap();
        drop(Precheck::start(&container, &manifest));
        drop(turns);
        // Had they not been called off, they would have run by now.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!container.atom_is_checked("run"));
        assert!(!container.volume_is_checked("v"));
    }

    #[tokio::test]
    async fn a_part_that_fails_its_check_is_left_for_the_opening_to_report() {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, manifest) = package(dir.path());
        let mut corrupt = bytes.to_vec();
        let at = corrupt
            .windows(ATOM.len())
            .position(|w| w == ATOM)
            .expect("the atom's bytes are in the container");
        corrupt[at + ATOM.len() - 1] ^= 0xff;
        let container = WebcContainer::parse(corrupt.into(), "test package").unwrap();
        Precheck::start(&container, &manifest).done().await;
        assert!(!container.atom_is_checked("run"));
        assert!(container.volume_is_checked("v"));
        let err = container.atom("run").unwrap_err().to_string();
        assert!(err.contains("run") && err.contains("test package"), "{err}");
    }
}

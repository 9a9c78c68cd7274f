//! pkgload side by side with Wasmer's own loader (wasmer-wasix), through the `wasmer-peer`
//! binary (its own crate and workspace in `wasmer-peer/`; xtask only runs it, so nothing
//! here links Wasmer):
//!
//! - the **oracle** (`cargo xtask test --wasmer`, or `cargo xtask wasmer-oracle` alone):
//!   small generated webc v3 trees loaded by both, compared package by package, command by
//!   command and file by file;
//! - the **benchmark** (`cargo xtask bench --only wasmer`): a 50-package tree loaded from a
//!   directory and over HTTP, cold and warm, wall time and peak RSS.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use sha2::{Digest, Sha256};

use crate::bench::{Bench, Goal, Row, Unit, max_rss_mib, timed_output};
use crate::cmd::{Cmd, workspace_root};
use crate::fixtures::{self, io_err, remove_dir};
use crate::{Error, Result};

/// The generated trees' root, as `wasmer-peer gen-tree` names it.
const ROOT_FILE: &str = "bench--p00@1.0.0.webc";

fn peer_dir() -> PathBuf {
    workspace_root().join("wasmer-peer")
}

/// Builds `wasmer-peer` (release, in `wasmer-peer/target`) and returns its path;
/// `$WASMER_PEER_BIN` names a binary to use instead.
pub fn build_peer() -> Result<PathBuf> {
    if let Some(binary) = std::env::var_os("WASMER_PEER_BIN") {
        let binary = PathBuf::from(binary);
        return if binary.is_file() {
            Ok(binary)
        } else {
            Err(Error::new(format!(
                "WASMER_PEER_BIN={}: no such file",
                binary.display()
            )))
        };
    }
    let target = peer_dir().join("target");
    eprintln!(
        "==> xtask: building wasmer-peer (Wasmer's loader, wasmer-wasix) in release into {}; \
         a cold build takes about 15 minutes on 2 cores, later ones seconds",
        target.display()
    );
    // Its own target directory whatever $CARGO_TARGET_DIR says: the workspace's is for
    // pkgload, and sharing it would rebuild one or the other's dependencies.
    Cmd::cargo()
        .args(["build", "--release", "--locked", "--manifest-path"])
        .arg(peer_dir().join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .run()?;
    let binary = target.join("release").join("wasmer-peer");
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(Error::new(format!("{} was not built", binary.display())))
    }
}

// ---------------------------------------------------------------------------------------
// Running the two programs

/// Runs `command` to completion; its stdout, or an error with the end of its stderr.
fn output(command: &mut Command) -> Result<String> {
    let shown = format!("{command:?}");
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::new(format!("cannot start {shown}: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(Error::new(format!(
            "{shown} failed ({}):\n{}",
            out.status,
            tail.join("\n")
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `wasmer-peer gen-tree` with `extra` options (`--url-base`, `--shared-command`, …):
/// writes the tree into `out`, returns the root file.
fn gen_tree(
    peer: &Path,
    out: &Path,
    packages: usize,
    depth: usize,
    volume_bytes: u64,
    atom_bytes: u64,
    extra: &[&str],
) -> Result<PathBuf> {
    let mut command = Command::new(peer);
    command
        .arg("gen-tree")
        .arg("--out")
        .arg(out)
        .args(["--packages", &packages.to_string()])
        .args(["--depth", &depth.to_string()])
        .args(["--volume-bytes", &volume_bytes.to_string()])
        .args(["--atom-bytes", &atom_bytes.to_string()])
        .args(extra);
    let printed = output(&mut command)?;
    let root = PathBuf::from(printed.trim());
    if root.is_file() {
        Ok(root)
    } else {
        Err(Error::new(format!(
            "gen-tree printed {printed:?}, which is not a file"
        )))
    }
}

/// A running `wasmer-peer serve`, stopped (by its own process id) when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(peer: &Path, dir: &Path, delay_ms: u64) -> Result<Self> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut child = Command::new(peer)
            .arg("serve")
            .arg(dir)
            .args(["--port", "0", "--delay-ms", &delay_ms.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Error::new(format!("cannot start wasmer-peer serve: {e}")))?;
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = BufReader::new(stdout).read_line(&mut line);
        }
        let addr = line.trim().to_owned();
        if addr.is_empty() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::new("wasmer-peer serve printed no address"));
        }
        Ok(Self { child, addr })
    }

    fn url(&self, file: &str) -> String {
        format!("http://{}/{file}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// The oracle

/// One entry of the assembled filesystem.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    path: String,
    kind: String,
    /// Files only: a directory's size is whatever the filesystem at hand reports (0 in
    /// Wasmer's virtual one, a block on ext4), not something either loader decides.
    size: Option<u64>,
    sha256: Option<String>,
}

/// What both loaders are compared on.
#[derive(Debug, Clone, Default)]
struct Tree {
    root: String,
    packages: BTreeSet<String>,
    entrypoint: Option<String>,
    /// Command name → sha256 (hex) of the atom it runs.
    commands: BTreeMap<String, String>,
    files: Vec<Entry>,
}

/// `wasmer-peer load --describe` output.
fn wasmer_tree(text: &str) -> Result<Tree> {
    let json = Json::parse(text)?;
    let mut tree = Tree {
        root: json
            .get("root")
            .and_then(Json::str)
            .unwrap_or_default()
            .to_owned(),
        entrypoint: json
            .get("entrypoint")
            .and_then(Json::str)
            .map(str::to_owned),
        ..Tree::default()
    };
    for p in json
        .get("packages")
        .and_then(Json::array)
        .unwrap_or_default()
    {
        tree.packages.insert(p.str().unwrap_or_default().to_owned());
    }
    if let Some(Json::Object(commands)) = json.get("commands") {
        for (name, atom) in commands {
            tree.commands
                .insert(name.clone(), atom.str().unwrap_or_default().to_owned());
        }
    }
    for f in json.get("files").and_then(Json::array).unwrap_or_default() {
        let kind = f
            .get("kind")
            .and_then(Json::str)
            .unwrap_or_default()
            .to_owned();
        let is_file = kind == "file";
        tree.files.push(Entry {
            path: f
                .get("path")
                .and_then(Json::str)
                .unwrap_or_default()
                .to_owned(),
            size: f.get("size").and_then(Json::u64).filter(|_| is_file),
            sha256: f.get("sha256").and_then(Json::str).map(str::to_owned),
            kind,
        });
    }
    tree.files.sort();
    Ok(tree)
}

/// `pkgload load --json` output plus the directory `pkgload unpack` wrote.
fn pkgload_tree(text: &str, unpacked: &Path) -> Result<Tree> {
    let json = Json::parse(text)?;
    let id = |p: &Json| {
        format!(
            "{}@{}",
            p.get("name").and_then(Json::str).unwrap_or_default(),
            p.get("version").and_then(Json::str).unwrap_or_default()
        )
    };
    let mut tree = Tree {
        root: json.get("root").map(id).unwrap_or_default(),
        entrypoint: json
            .get("entrypoint")
            .and_then(Json::str)
            .map(str::to_owned),
        ..Tree::default()
    };
    for p in json
        .get("packages")
        .and_then(Json::array)
        .unwrap_or_default()
    {
        tree.packages.insert(id(p));
    }
    for c in json
        .get("commands")
        .and_then(Json::array)
        .unwrap_or_default()
    {
        let atom = c.get("atom").and_then(Json::str).unwrap_or_default();
        tree.commands.insert(
            c.get("name")
                .and_then(Json::str)
                .unwrap_or_default()
                .to_owned(),
            // pkgload names blobs `sha256:<hex>`; Wasmer's side is the bare hex.
            atom.strip_prefix("sha256:").unwrap_or(atom).to_owned(),
        );
    }
    tree.files = walk(unpacked)?;
    Ok(tree)
}

/// Every entry below `dir`, as `/relative/path`.
fn walk(dir: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).map_err(io_err(&d))? {
            let entry = entry.map_err(io_err(&d))?;
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
            let relative = path.strip_prefix(dir).unwrap_or(&path);
            let shown = format!("/{}", relative.to_string_lossy());
            let (kind, size, sha256) = if meta.file_type().is_symlink() {
                ("symlink", None, None)
            } else if meta.is_dir() {
                stack.push(path.clone());
                ("dir", None, None)
            } else {
                let mut hasher = Sha256::new();
                let mut file = fs::File::open(&path).map_err(io_err(&path))?;
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = file.read(&mut buf).map_err(io_err(&path))?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(buf.get(..n).unwrap_or_default());
                }
                ("file", Some(meta.len()), Some(hex(&hasher.finalize())))
            };
            out.push(Entry {
                path: shown,
                kind: kind.to_owned(),
                size,
                sha256,
            });
        }
    }
    out.sort();
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Every way the two trees differ, one line each, pkgload's side first.
///
/// None of the deliberate differences of docs/ARCHITECTURE.md ("Where pkgload differs
/// from Wasmer's loader") can show in these trees: they are v3 only, mappings have no
/// `host_path`, atoms and files are well-formed and match their hashes, and sidecar files
/// are not part of the loaded tree. So nothing is normalised away here; a difference is a
/// finding.
fn differences(pkgload: &Tree, wasmer: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    if pkgload.root != wasmer.root {
        out.push(format!(
            "root: pkgload {:?}, Wasmer {:?}",
            pkgload.root, wasmer.root
        ));
    }
    for p in pkgload.packages.difference(&wasmer.packages) {
        out.push(format!("package {p}: pkgload only"));
    }
    for p in wasmer.packages.difference(&pkgload.packages) {
        out.push(format!("package {p}: Wasmer only"));
    }
    if pkgload.entrypoint != wasmer.entrypoint {
        out.push(format!(
            "entrypoint: pkgload {:?}, Wasmer {:?}",
            pkgload.entrypoint, wasmer.entrypoint
        ));
    }
    let names: BTreeSet<&String> = pkgload
        .commands
        .keys()
        .chain(wasmer.commands.keys())
        .collect();
    for name in names {
        match (pkgload.commands.get(name), wasmer.commands.get(name)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => out.push(format!(
                "command {name}: pkgload atom {}, Wasmer atom {}",
                a.map_or("(none)", String::as_str),
                b.map_or("(none)", String::as_str)
            )),
        }
    }
    let ours: BTreeMap<&str, &Entry> = pkgload.files.iter().map(|e| (e.path.as_str(), e)).collect();
    let theirs: BTreeMap<&str, &Entry> =
        wasmer.files.iter().map(|e| (e.path.as_str(), e)).collect();
    let paths: BTreeSet<&str> = ours.keys().chain(theirs.keys()).copied().collect();
    let show = |e: Option<&&Entry>| match e {
        None => "(absent)".to_owned(),
        Some(e) => {
            let mut s = e.kind.clone();
            if let Some(size) = e.size {
                let _ = write!(s, ", {size} bytes");
            }
            if let Some(sha) = &e.sha256 {
                let _ = write!(s, ", sha256 {}", sha.get(..16).unwrap_or(sha));
            }
            s
        }
    };
    for path in paths {
        let (a, b) = (ours.get(path), theirs.get(path));
        if a != b {
            out.push(format!("{path}: pkgload {}; Wasmer {}", show(a), show(b)));
        }
    }
    out
}

/// One oracle case: its name and either the number of entries it compared, or what went
/// wrong.
type Outcome = (String, std::result::Result<String, String>);

/// Runs every oracle case and prints how each went: `(passed, failed)`. An error is a
/// failure to run the oracle at all (a build, generating a tree).
pub fn oracle() -> Result<(u64, u64)> {
    let pkgload = fixtures::build_pkgload()?;
    let peer = build_peer()?;
    let work = fixtures::target_dir().join("wasmer-oracle");
    remove_dir(&work)?;
    fs::create_dir_all(&work).map_err(io_err(&work))?;
    let outcomes = oracle_cases(&pkgload, &peer, &work)?;
    let mut failed = Vec::new();
    for (name, outcome) in &outcomes {
        match outcome {
            Ok(note) => eprintln!("==> wasmer oracle: {name}: passed, {note}"),
            Err(why) => {
                eprintln!("==> wasmer oracle: {name}: FAILED\n{why}");
                failed.push(name.clone());
            }
        }
    }
    if failed.is_empty() {
        let _ = remove_dir(&work);
    } else {
        eprintln!(
            "==> wasmer oracle: {} of {} case(s) failed: {} (work files kept in {})",
            failed.len(),
            outcomes.len(),
            failed.join(", "),
            work.display()
        );
    }
    Ok(((outcomes.len() - failed.len()) as u64, failed.len() as u64))
}

/// [`oracle`], failing when any case did.
pub fn oracle_checked() -> Result<u64> {
    let (passed, failed) = oracle()?;
    eprintln!("wasmer oracle: {passed} passed, {failed} failed");
    if failed == 0 {
        Ok(passed)
    } else {
        Err(Error::new(format!(
            "{failed} Wasmer oracle case(s) failed: pkgload and Wasmer loaded different trees"
        )))
    }
}

fn oracle_cases(pkgload: &Path, peer: &Path, work: &Path) -> Result<Vec<Outcome>> {
    // Small, but with every shape: 3 levels, a package used by two parents, nested
    // directories, an empty file.
    let tree = |dir: &Path, extra: &[&str]| gen_tree(peer, dir, 6, 3, 64 << 10, 4 << 10, extra);
    let mut outcomes = Vec::new();

    // Dependencies by registry name, found in a directory of webc files; then the same
    // with a command every package declares (the root's must win), and with one every
    // dependency but not the root declares.
    for (name, case, extra, shadowed) in [
        ("names", "registry names, directory source", &[][..], None),
        (
            "shared-command",
            "a command every package declares, directory source",
            &["--shared-command", "run"][..],
            None,
        ),
        (
            "dep-command",
            "a command only dependencies declare, directory source",
            &["--dep-command", "run"][..],
            Some("run"),
        ),
    ] {
        let dir = work.join(name);
        let root = tree(&dir, extra)?;
        let result = compare_case(
            work,
            name,
            Command::new(peer)
                .arg("load")
                .arg("--dir")
                .arg(&dir)
                .arg("--describe")
                .arg(&root),
            pkgload,
            &[
                "--registry".as_ref(),
                format!("dir:{}", dir.display()).as_ref(),
            ],
            root.as_os_str(),
            shadowed,
        );
        outcomes.push((case.to_owned(), result));
    }

    // Dependencies by URL, served over HTTP; the root both as a URL and as a file.
    let urls = work.join("urls");
    let server = Server::start(peer, &urls, 0)?;
    let base = server.url("");
    let root = tree(&urls, &["--url-base", &base])?;
    let root_url = server.url(ROOT_FILE);
    let case = "URL dependencies, URL root, web source";
    let result = compare_case(
        work,
        "url-root",
        Command::new(peer)
            .arg("load")
            .arg("--web")
            .arg(work.join("wasmer-web-url-root"))
            .arg("--describe")
            .arg(&root_url),
        pkgload,
        &[],
        root_url.as_ref(),
        None,
    );
    outcomes.push((case.to_owned(), result));
    let case = "URL dependencies, file root, web source";
    let result = compare_case(
        work,
        "file-root",
        Command::new(peer)
            .arg("load")
            .arg("--web")
            .arg(work.join("wasmer-web-file-root"))
            .arg("--describe")
            .arg(&root),
        pkgload,
        &[],
        root.as_os_str(),
        None,
    );
    outcomes.push((case.to_owned(), result));
    drop(server);
    Ok(outcomes)
}

/// Loads one tree with both and compares; `Ok(summary)` or `Err(the differences)`.
///
/// `shadowed` names a command several dependencies (and not the root) declare. Which of
/// them a tree exposes is a deliberate difference (docs/ARCHITECTURE.md, "Where pkgload
/// differs from Wasmer's loader"): pkgload runs the nearest declaring package's, at equal
/// distance the one the root uses first (`p01` in these trees); Wasmer whichever its
/// topological sort meets first. So that command is checked against pkgload's rule, and
/// Wasmer's choice is reported; every other difference in the case still fails it.
fn compare_case(
    work: &Path,
    name: &str,
    wasmer: &mut Command,
    pkgload: &Path,
    pkgload_args: &[&std::ffi::OsStr],
    root: &std::ffi::OsStr,
    shadowed: Option<&str>,
) -> std::result::Result<String, String> {
    let wasmer = output(wasmer)
        .and_then(|text| wasmer_tree(&text))
        .map_err(|e| format!("  Wasmer's loader failed: {e}"))?;
    let cache = work.join(format!("pkgload-cache-{name}"));
    let unpacked = work.join(format!("pkgload-unpack-{name}"));
    let pkgload_cmd = || {
        let mut command = Command::new(pkgload);
        command.arg("--cache-dir").arg(&cache).arg("--quiet");
        command.args(pkgload_args);
        command
    };
    let ours = output(pkgload_cmd().args(["load", "--json"]).arg(root))
        .and_then(|text| {
            output(pkgload_cmd().arg("unpack").arg(root).arg(&unpacked))?;
            pkgload_tree(&text, &unpacked)
        })
        .map_err(|e| format!("  pkgload failed: {e}"))?;
    // Warm, the same tree (a tree by URL then comes from its snapshot, as the `unpack`
    // above already did).
    let warm = output(pkgload_cmd().args(["load", "--json"]).arg(root))
        .and_then(|text| pkgload_tree(&text, &unpacked))
        .map_err(|e| format!("  pkgload failed warm: {e}"))?;
    let changed = differences(&warm, &ours);
    if !changed.is_empty() {
        return Err(format!(
            "  pkgload's warm load differs from its cold one (below, \"pkgload\" is the warm \
             load, \"Wasmer\" the cold one):\n{}",
            changed.join("\n")
        ));
    }
    // Two empty descriptions would agree: a case that loaded nothing proves nothing.
    if ours.packages.is_empty() || ours.commands.is_empty() || ours.files.is_empty() {
        return Err(format!(
            "  pkgload's description is empty ({} packages, {} commands, {} files): the \
             output format may have changed",
            ours.packages.len(),
            ours.commands.len(),
            ours.files.len()
        ));
    }
    let (shadow, diffs): (Vec<String>, Vec<String>) = differences(&ours, &wasmer)
        .into_iter()
        .partition(|d| shadowed.is_some_and(|c| d.starts_with(&format!("command {c}: "))));
    if diffs.is_empty() {
        let mut summary = format!(
            "{} packages, {} commands, {} filesystem entries",
            ours.packages.len(),
            ours.commands.len(),
            ours.files.len()
        );
        if let Some(command) = shadowed {
            // Name each side's choice by the package whose own command runs that atom.
            let owner = |tree: &Tree| {
                let atom = tree.commands.get(command);
                tree.commands
                    .iter()
                    .find(|(name, a)| name.as_str() != command && Some(*a) == atom)
                    .map_or("?".to_owned(), |(name, _)| name.clone())
            };
            if owner(&ours) != "p01" {
                return Err(format!(
                    "  command {command:?} runs {}'s atom in pkgload; its rule (the nearest \
                     declaring package, then the root's first dependency) says p01's",
                    owner(&ours)
                ));
            }
            let _ = write!(
                summary,
                "\n    deliberate difference: command {command:?} (declared by every dependency, \
                 not the root) runs {}'s atom in pkgload, {}'s in Wasmer{}",
                owner(&ours),
                owner(&wasmer),
                if shadow.is_empty() { " (the same)" } else { "" }
            );
        }
        Ok(summary)
    } else {
        Err(diffs
            .iter()
            .map(|d| format!("  {d}"))
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

// ---------------------------------------------------------------------------------------
// The benchmark

/// The benchmark tree at scale 1: 50 packages on 6 levels, each a 2 MiB volume and a
/// 1 MiB atom (150 MiB in all).
const BENCH_PACKAGES: usize = 50;
const BENCH_DEPTH: usize = 6;
const BENCH_VOLUME: f64 = (2u64 << 20) as f64;
const BENCH_ATOM: f64 = (1u64 << 20) as f64;
/// Latency the server adds to every response of the URL case.
const BENCH_DELAY_MS: u64 = 10;

/// One timed load: wall seconds and peak RSS (MiB), under `/usr/bin/time -v`.
fn measure(program: &Path, args: &[&std::ffi::OsStr]) -> Result<(f64, f64)> {
    let mut command = Command::new("/usr/bin/time");
    command
        .arg("-v")
        .arg(program)
        .args(args)
        .stdout(Stdio::null());
    let (took, stderr) = timed_output(&mut command)?;
    Ok((took.as_secs_f64(), max_rss_mib(&stderr)?))
}

/// Samples of one side of one case.
#[derive(Debug, Default)]
struct Samples {
    seconds: Vec<f64>,
    rss: Vec<f64>,
}

impl Samples {
    fn push(&mut self, (seconds, rss): (f64, f64)) {
        self.seconds.push(seconds);
        self.rss.push(rss);
    }
}

/// `cargo xtask bench --only wasmer`: rows for the report.
pub fn bench(bench: &mut Bench, scale: f64) -> Result<()> {
    let peer = build_peer()?;
    let volume = (BENCH_VOLUME * scale).max(4096.0) as u64;
    let atom = (BENCH_ATOM * scale).max(4096.0) as u64;
    let home = bench.work.join("wasmer");
    fs::create_dir_all(&home).map_err(io_err(&home))?;
    let size = {
        let total = (volume + atom) * BENCH_PACKAGES as u64;
        format!("{:.0} MiB", total as f64 / (1u64 << 20) as f64)
    };
    let shape = format!("{BENCH_PACKAGES} webc v3 packages on {BENCH_DEPTH} levels ({size})");

    // (a) A directory of webc files, dependencies by registry name.
    let tree = home.join("tree-names");
    let root = gen_tree(&peer, &tree, BENCH_PACKAGES, BENCH_DEPTH, volume, atom, &[])?;
    let registry = format!("dir:{}", tree.display());
    let (mut ours, mut theirs): ([Samples; 2], [Samples; 2]) = Default::default();
    for run in 0..bench.runs {
        let cache = bench.fresh("wasmer-pkgload-cache")?;
        let pkgload_args: Vec<&std::ffi::OsStr> = vec![
            "--cache-dir".as_ref(),
            cache.as_os_str(),
            "--quiet".as_ref(),
            "--registry".as_ref(),
            registry.as_ref(),
            "load".as_ref(),
            root.as_os_str(),
        ];
        // Wasmer writes a `.webc.sha256` sidecar beside every file it indexes, and reads
        // it back next time: a cold load gets a fresh copy of the directory.
        let copy = bench.fresh("wasmer-tree-copy")?;
        copy_flat(&tree, &copy)?;
        // The copy's 150 MiB would otherwise be written back while the first loader runs,
        // and pkgload's fsyncs would wait behind it.
        output(&mut Command::new("sync"))?;
        let copy_root = copy.join(ROOT_FILE);
        let wasmer_args: Vec<&std::ffi::OsStr> = vec![
            "load".as_ref(),
            "--dir".as_ref(),
            copy.as_os_str(),
            copy_root.as_os_str(),
        ];
        cold_then_warm(
            run,
            bench.runs,
            "directory",
            (&bench.pkgload, &pkgload_args),
            (&peer, &wasmer_args),
            (&mut ours, &mut theirs),
        )?;
        bench.discard(&cache)?;
        bench.discard(&copy)?;
    }
    let dir_peer = "wasmer-wasix: InMemorySource + BuiltinPackageLoader";
    push_rows(
        bench,
        "wasmer-dir",
        &format!("{shape} from a directory of webc files"),
        "pkgload --registry dir: load",
        dir_peer,
        ours,
        theirs,
        (Goal::RatioAtMost(1.0), Goal::None, Goal::RatioAtMost(0.5)),
    );

    // (b) The same shape with URL dependencies, served with latency.
    let served = home.join("tree-urls");
    let server = Server::start(&peer, &served, BENCH_DELAY_MS)?;
    gen_tree(
        &peer,
        &served,
        BENCH_PACKAGES,
        BENCH_DEPTH,
        volume,
        atom,
        &["--url-base", &server.url("")],
    )?;
    let url = server.url(ROOT_FILE);
    let (mut ours, mut theirs): ([Samples; 2], [Samples; 2]) = Default::default();
    for run in 0..bench.runs {
        let cache = bench.fresh("wasmer-pkgload-cache")?;
        let wasmer_cache = bench.fresh("wasmer-web-cache")?;
        let pkgload_args: Vec<&std::ffi::OsStr> = vec![
            "--cache-dir".as_ref(),
            cache.as_os_str(),
            "--quiet".as_ref(),
            "load".as_ref(),
            url.as_ref(),
        ];
        let wasmer_args: Vec<&std::ffi::OsStr> = vec![
            "load".as_ref(),
            "--web".as_ref(),
            wasmer_cache.as_os_str(),
            url.as_ref(),
        ];
        cold_then_warm(
            run,
            bench.runs,
            "URLs",
            (&bench.pkgload, &pkgload_args),
            (&peer, &wasmer_args),
            (&mut ours, &mut theirs),
        )?;
        bench.discard(&cache)?;
        bench.discard(&wasmer_cache)?;
    }
    drop(server);
    push_rows(
        bench,
        "wasmer-url",
        &format!("{shape}, all URLs, {BENCH_DELAY_MS} ms per response"),
        "pkgload load URL",
        "wasmer-wasix: WebSource + BuiltinPackageLoader",
        ours,
        theirs,
        (
            Goal::RatioAtMost(0.3),
            Goal::RatioAtMost(0.5),
            Goal::RatioAtMost(0.5),
        ),
    );
    Ok(())
}

/// Warm samples per run and loader. A warm load takes a few milliseconds, where one
/// sample says little on this machine.
const WARM_SAMPLES: usize = 15;

/// One run of a case: both loaders cold (pkgload first), then both warm, alternating,
/// [`WARM_SAMPLES`] times (the cold samples filled their caches), each sample noted.
fn cold_then_warm(
    run: usize,
    runs: usize,
    case: &str,
    (pkgload, pkgload_args): (&Path, &[&std::ffi::OsStr]),
    (peer, peer_args): (&Path, &[&std::ffi::OsStr]),
    ([ours_cold, ours_warm], [theirs_cold, theirs_warm]): (&mut [Samples; 2], &mut [Samples; 2]),
) -> Result<()> {
    note(
        run,
        runs,
        &format!("{case}, cold"),
        ours_cold,
        theirs_cold,
        || Ok((measure(pkgload, pkgload_args)?, measure(peer, peer_args)?)),
    )?;
    for _ in 0..WARM_SAMPLES {
        note(
            run,
            runs,
            &format!("{case}, warm"),
            ours_warm,
            theirs_warm,
            || {
                Ok((
                    (measure_time(pkgload, pkgload_args)?, 0.0),
                    (measure_time(peer, peer_args)?, 0.0),
                ))
            },
        )?;
    }
    Ok(())
}

/// One timed load, wall seconds only: started directly, not under `/usr/bin/time`, whose
/// own start (~0.6 ms here) would be counted on both sides of a few-millisecond load.
fn measure_time(program: &Path, args: &[&std::ffi::OsStr]) -> Result<f64> {
    let mut command = Command::new(program);
    command.args(args).stdout(Stdio::null());
    let (took, _) = timed_output(&mut command)?;
    Ok(took.as_secs_f64())
}

fn note(
    run: usize,
    runs: usize,
    what: &str,
    ours: &mut Samples,
    theirs: &mut Samples,
    sample: impl FnOnce() -> Result<((f64, f64), (f64, f64))>,
) -> Result<()> {
    let (a, b) = sample()?;
    eprintln!(
        "bench wasmer {what}: run {}/{runs}: pkgload {:.3} s {:.1} MiB, Wasmer {:.3} s {:.1} MiB",
        run + 1,
        a.0,
        a.1,
        b.0,
        b.1
    );
    ours.push(a);
    theirs.push(b);
    Ok(())
}

/// Cold time, cold peak RSS and warm time rows of one case, with their goals.
#[allow(clippy::too_many_arguments)]
fn push_rows(
    bench: &mut Bench,
    key: &'static str,
    what: &str,
    ours_name: &str,
    peer_name: &str,
    [ours_cold, ours_warm]: [Samples; 2],
    [theirs_cold, theirs_warm]: [Samples; 2],
    (cold, rss, warm): (Goal, Goal, Goal),
) {
    let keys: (&'static str, &'static str, &'static str) = match key {
        "wasmer-dir" => ("wasmer-dir-cold", "wasmer-dir-rss", "wasmer-dir-warm"),
        _ => ("wasmer-url-cold", "wasmer-url-rss", "wasmer-url-warm"),
    };
    let row = |key, what: String, unit, ours, peer, goal| Row {
        key,
        what,
        ours_name: ours_name.to_owned(),
        peer_name: peer_name.to_owned(),
        unit,
        ours,
        peer,
        goal,
    };
    bench.rows.push(row(
        keys.0,
        format!("cold load: {what}"),
        Unit::Seconds,
        ours_cold.seconds,
        theirs_cold.seconds,
        cold,
    ));
    bench.rows.push(row(
        keys.1,
        format!("peak RSS, same cold load: {what}"),
        Unit::Mib,
        ours_cold.rss,
        theirs_cold.rss,
        rss,
    ));
    bench.rows.push(row(
        keys.2,
        format!("warm load (same caches again): {what}"),
        Unit::Seconds,
        ours_warm.seconds,
        theirs_warm.seconds,
        warm,
    ));
}

/// Copies the files directly in `from` into a new directory `to` (the trees are flat).
fn copy_flat(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).map_err(io_err(to))?;
    for entry in fs::read_dir(from).map_err(io_err(from))? {
        let entry = entry.map_err(io_err(from))?;
        if entry.file_type().map_err(io_err(from))?.is_file() {
            let target = to.join(entry.file_name());
            fs::copy(entry.path(), &target).map_err(io_err(&target))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Just enough JSON to read the two programs' descriptions (xtask keeps its dependencies
// few; this is not a general parser: numbers are read as f64).

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn parse(text: &str) -> Result<Json> {
        let mut parser = Parser {
            bytes: text.as_bytes(),
            at: 0,
        };
        let value = parser.value(0)?;
        parser.space();
        if parser.at != parser.bytes.len() {
            return Err(parser.error("trailing characters"));
        }
        Ok(value)
    }

    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(pairs) => pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    fn u64(&self) -> Option<u64> {
        match self {
            Json::Number(n) if *n >= 0.0 && n.fract() == 0.0 => Some(*n as u64),
            _ => None,
        }
    }

    fn array(&self) -> Option<&[Json]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> Error {
        Error::new(format!("JSON: {what} at byte {}", self.at))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<()> {
        self.space();
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected `{}`", byte as char)))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json> {
        if depth > 64 {
            return Err(self.error("nested too deep"));
        }
        self.space();
        match self.peek() {
            Some(b'{') => {
                self.at += 1;
                let mut pairs = Vec::new();
                self.space();
                if self.peek() == Some(b'}') {
                    self.at += 1;
                    return Ok(Json::Object(pairs));
                }
                loop {
                    self.space();
                    let key = self.string()?;
                    self.expect(b':')?;
                    pairs.push((key, self.value(depth + 1)?));
                    self.space();
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Json::Object(pairs));
                        }
                        _ => return Err(self.error("expected `,` or `}`")),
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.space();
                if self.peek() == Some(b']') {
                    self.at += 1;
                    return Ok(Json::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.space();
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Json::Array(items));
                        }
                        _ => return Err(self.error("expected `,` or `]`")),
                    }
                }
            }
            Some(b'"') => self.string().map(Json::String),
            Some(b't') => self.word("true", Json::Bool(true)),
            Some(b'f') => self.word("false", Json::Bool(false)),
            Some(b'n') => self.word("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.at;
                while matches!(
                    self.peek(),
                    Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                ) {
                    self.at += 1;
                }
                std::str::from_utf8(self.bytes.get(start..self.at).unwrap_or_default())
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .map(Json::Number)
                    .ok_or_else(|| self.error("bad number"))
            }
            _ => Err(self.error("expected a value")),
        }
    }

    fn word(&mut self, word: &str, value: Json) -> Result<Json> {
        if self.bytes.get(self.at..self.at + word.len()) == Some(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(self.error("expected a value"))
        }
    }

    fn string(&mut self) -> Result<String> {
        if self.peek() != Some(b'"') {
            return Err(self.error("expected a string"));
        }
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let Some(byte) = self.peek() else {
                return Err(self.error("unterminated string"));
            };
            self.at += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    let escaped = self.peek().ok_or_else(|| self.error("bad escape"))?;
                    self.at += 1;
                    let c = match escaped {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let unit = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&unit) {
                                // A surrogate pair: `\uD83D\uDE00`.
                                if self.bytes.get(self.at..self.at + 2) != Some(b"\\u") {
                                    return Err(self.error("lone surrogate"));
                                }
                                self.at += 2;
                                let low = self.hex4()?;
                                0x10000
                                    + ((unit - 0xD800) << 10)
                                    + (low.wrapping_sub(0xDC00) & 0x3FF)
                            } else {
                                unit
                            };
                            char::from_u32(code).ok_or_else(|| self.error("bad \\u escape"))?
                        }
                        _ => return Err(self.error("bad escape")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                byte => out.push(byte),
            }
        }
        String::from_utf8(out).map_err(|_| self.error("a string that is not UTF-8"))
    }

    fn hex4(&mut self) -> Result<u32> {
        let text = self
            .bytes
            .get(self.at..self.at + 4)
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or_else(|| self.error("bad \\u escape"))?;
        let value = u32::from_str_radix(text, 16).map_err(|_| self.error("bad \\u escape"))?;
        self.at += 4;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_reads_both_descriptions() {
        let v = Json::parse(
            r#"{"a": [1, 2.5, -3e2, true, false, null], "b": {"c": "x\"\u00e9\ud83d\ude00\n"}, "d": []}"#,
        )
        .unwrap();
        assert_eq!(v.get("a").and_then(Json::array).map(<[Json]>::len), Some(6));
        assert_eq!(
            v.get("b").and_then(|b| b.get("c")).and_then(Json::str),
            Some("x\"é😀\n")
        );
        assert!(Json::parse("{\"a\": 1,}").is_err());
        assert!(Json::parse("[1] x").is_err());
        assert!(Json::parse("\"\\ud83d\"").is_err());
    }

    fn entry(path: &str, kind: &str, size: Option<u64>, sha: Option<&str>) -> Entry {
        Entry {
            path: path.to_owned(),
            kind: kind.to_owned(),
            size,
            sha256: sha.map(str::to_owned),
        }
    }

    #[test]
    fn differences_name_what_differs() {
        let wasmer = wasmer_tree(
            r#"{"root": "bench/p00@1.0.0", "packages": ["bench/p00@1.0.0", "bench/p01@1.0.0"],
                "entrypoint": "p00", "commands": {"p00": "aa", "p01": "bb"},
                "files": [{"path": "/p00", "kind": "dir", "size": 0},
                          {"path": "/p00/x", "kind": "file", "size": 3, "sha256": "cc"}]}"#,
        )
        .unwrap();
        let mut ours = wasmer.clone();
        assert!(differences(&ours, &wasmer).is_empty());
        ours.commands.insert("p01".into(), "dd".into());
        ours.files = vec![
            entry("/p00", "dir", None, None),
            entry("/p00/x", "file", Some(4), Some("cc")),
            entry("/p00/y", "file", Some(0), Some("ee")),
        ];
        ours.packages.remove("bench/p01@1.0.0");
        let diffs = differences(&ours, &wasmer);
        assert_eq!(diffs.len(), 4, "{diffs:#?}");
        assert!(
            diffs
                .iter()
                .any(|d| d.contains("bench/p01@1.0.0: Wasmer only"))
        );
        assert!(diffs.iter().any(|d| d.starts_with("command p01")));
        assert!(diffs.iter().any(|d| d.starts_with("/p00/x:")));
        assert!(
            diffs
                .iter()
                .any(|d| d.starts_with("/p00/y:") && d.contains("(absent)"))
        );
    }
}

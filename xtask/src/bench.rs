//! `cargo xtask bench`: the end-to-end benchmark. pkgload side by side with its peers in
//! one run, against a loopback `docker-registry`, written to `target/bench/report.md` and
//! `target/bench/report.json`. `--micro` runs the crates' criterion benchmarks instead.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cmd::Cmd;
use crate::delay_proxy::DelayProxy;
use crate::fixtures::{self, Fixtures, IMAGE_TAG, Registry, io_err, remove_dir};
use crate::tools::Tool;
use crate::{Error, Result};

/// What `--only` accepts.
const NAMES: [&str; 13] = [
    "fetch",
    "curl",
    "unpack",
    "warm-ls",
    "warm-load",
    "rss",
    "rss-unpack",
    "jobs",
    "fleet",
    "lazy",
    "resolve",
    "ingest",
    "wasmer",
];
/// Whether `--only NAME` names a criterion bench rather than an end-to-end group.
fn is_criterion(name: &str) -> bool {
    matches!(name, "resolve" | "ingest")
}

/// How long ext4 without a journal avoids reusing a freed inode once its inode table block
/// is clean (`RECENTCY_MIN` in the kernel's `ialloc.c`; 300 s while the block is dirty,
/// hence the `sync` first). See [`Bench::discard`].
const SETTLE: Duration = Duration::from_secs(61);

/// Write back what the last group wrote, so that the next one does not share the disk with
/// its writeback (a group leaves gigabytes of dirty pages behind).
fn sync_filesystem() {
    let _ = Command::new("sync").status();
}

/// Write back dirty metadata, then wait [`SETTLE`] so that inodes freed before now no longer
/// slow file creation down (see [`Bench::discard`]).
fn settle_filesystem() {
    eprintln!(
        "bench: waiting {} s for freed inodes to age out (ext4 without a journal)",
        SETTLE.as_secs()
    );
    sync_filesystem();
    std::thread::sleep(SETTLE);
}

/// The latencies the delaying proxy adds to every request of the `jobs` benchmark, with the
/// key of each row: a registry nearby, one further away, one across the internet. With the
/// registry on the same two cores as the client, the 10 ms row measures how little CPU a
/// load needs as much as how well it overlaps requests; the longer ones measure the
/// overlapping.
const PROXY_DELAYS: [(&str, Duration); 3] = [
    ("jobs", Duration::from_millis(10)),
    ("jobs-25ms", Duration::from_millis(25)),
    ("jobs-50ms", Duration::from_millis(50)),
];
const QUICK_SCALE: f64 = 0.125;

/// `cargo xtask bench` options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub quick: bool,
    pub only: Vec<String>,
    pub runs: Option<usize>,
    pub scale: Option<f64>,
    pub micro: bool,
    pub cargo_bench: bool,
    pub passthrough: Vec<OsString>,
}

impl Options {
    /// `None` for `--help`.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Option<Self>> {
        let mut options = Self {
            cargo_bench: true,
            ..Self::default()
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let text = arg.to_string_lossy().into_owned();
            let mut value = |what: &str| {
                args.next()
                    .map(|v| v.to_string_lossy().into_owned())
                    .ok_or_else(|| Error::new(format!("{what} needs a value")))
            };
            match text.as_str() {
                "--quick" => options.quick = true,
                "--micro" => options.micro = true,
                "--no-cargo-bench" => options.cargo_bench = false,
                "--only" => {
                    let name = value("--only")?;
                    if !NAMES.contains(&name.as_str()) {
                        return Err(Error::new(format!(
                            "unknown benchmark `{name}`; the benchmarks are {}",
                            NAMES.join(", ")
                        )));
                    }
                    options.only.push(name);
                }
                "--runs" => {
                    let runs = value("--runs")?;
                    options.runs = Some(
                        runs.parse()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| Error::new(format!("--runs `{runs}`: not a count")))?,
                    );
                }
                "--scale" => {
                    let scale = value("--scale")?;
                    options.scale = Some(
                        scale
                            .parse()
                            .ok()
                            .filter(|s: &f64| *s > 0.0 && *s <= 16.0)
                            .ok_or_else(|| Error::new(format!("--scale `{scale}`")))?,
                    );
                }
                "-h" | "--help" => return Ok(None),
                _ if options.micro => {
                    options.passthrough.push(arg);
                    options.passthrough.extend(args);
                    break;
                }
                other => return Err(Error::new(format!("bench: unknown argument `{other}`"))),
            }
        }
        Ok(Some(options))
    }

    fn wants(&self, name: &str) -> bool {
        // Only when asked for by name: it needs the wasmer-peer binary, whose first build
        // takes about 15 minutes, which a plain `cargo xtask bench` should not start.
        if name == "wasmer" {
            return self.only.iter().any(|n| n == name);
        }
        (self.only.is_empty() || self.only.iter().any(|n| n == name))
            && (self.cargo_bench || !is_criterion(name))
    }
}

pub fn run(options: &Options) -> Result<()> {
    if options.micro {
        let mut bench = Cmd::cargo().arg("bench");
        if !crate::cmd::selects_packages(&options.passthrough) {
            bench = bench.arg("--workspace");
        }
        return bench.args(&options.passthrough).run();
    }
    let started = Instant::now();
    let scale = match options.scale {
        Some(scale) => scale,
        None => fixtures::env_scale()?.unwrap_or(if options.quick { QUICK_SCALE } else { 1.0 }),
    };
    let runs = options.runs.unwrap_or(if options.quick { 1 } else { 3 });
    ensure_tools(options)?;
    let pkgload = fixtures::build_pkgload()?;
    touch_memory();
    let needs = |fixture: &str| match fixture {
        "image-512m" => ["fetch", "curl", "unpack", "warm-ls", "warm-load"]
            .iter()
            .any(|n| options.wants(n)),
        "image-1g" => options.wants("rss"),
        "image-2g-zeros" => options.wants("rss-unpack"),
        "tree-200" => options.wants("jobs") || options.wants("fleet"),
        "image-512m-chunked" => options.wants("lazy"),
        _ => false,
    };
    let fixtures = fixtures::generate(scale, Some(&pkgload), &needs)?;
    let out_dir = fixtures::target_dir().join("bench");
    let work = out_dir.join("work");
    remove_dir(&work)?;
    fs::create_dir_all(&work).map_err(io_err(&work))?;

    let mut bench = Bench {
        pkgload,
        fixtures,
        work: work.clone(),
        runs,
        registry: None,
        rows: Vec::new(),
        captured: Vec::new(),
        discarded: std::cell::Cell::new(0),
    };
    if ["fetch", "curl", "warm-load", "rss", "jobs", "fleet", "lazy"]
        .iter()
        .any(|n| options.wants(n))
    {
        let registry = Registry::start(&out_dir.join("registry"))?;
        eprintln!("docker-registry listening on {}", registry.addr);
        fixtures::push(&bench.fixtures, &registry, &bench.pkgload, &needs)?;
        bench.registry = Some(registry);
    }
    // Starting the registry emptied its old storage and pushing made it delete its upload
    // directories: let those freed inodes age out before anything is timed.
    if NAMES.iter().any(|n| !is_criterion(n) && options.wants(n)) {
        settle_filesystem();
    }
    let mut failures = Vec::new();
    let mut attempt = |name: &str, result: Result<()>| {
        if let Err(err) = result {
            eprintln!("bench {name}: FAILED: {err}");
            failures.push(format!("{name}: {err}"));
        }
    };
    // The tree creates thousands of small files, so it goes first: after the groups below,
    // the disk holds gigabytes of their output and every file creation costs more.
    if options.wants("jobs") {
        let r = bench.jobs();
        attempt("jobs", r);
        sync_filesystem();
        bench.make_room();
    }
    if options.wants("fleet") {
        let r = crate::fleet::bench(&mut bench);
        attempt("fleet", r);
        sync_filesystem();
        bench.make_room();
    }
    if options.wants("lazy") {
        let r = crate::lazy_bench::bench(&mut bench);
        attempt("lazy", r);
        sync_filesystem();
        bench.make_room();
    }
    if options.wants("fetch") || options.wants("curl") {
        let r = bench.fetch(options.wants("fetch"), options.wants("curl"));
        attempt("fetch", r);
        sync_filesystem();
        bench.make_room();
    }
    if options.wants("unpack") || options.wants("warm-ls") {
        let r = bench.unpack(options.wants("unpack"), options.wants("warm-ls"));
        attempt("unpack", r);
        sync_filesystem();
        bench.make_room();
    }
    if options.wants("warm-load") {
        let r = bench.warm_load();
        attempt("warm-load", r);
        sync_filesystem();
        bench.make_room();
    }
    if options.wants("rss") {
        let r = bench.rss();
        attempt("rss", r);
        sync_filesystem();
        bench.make_room();
    }
    if options.wants("rss-unpack") {
        let r = bench.rss_unpack();
        attempt("rss-unpack", r);
        sync_filesystem();
    }
    if options.wants("wasmer") {
        let r = crate::wasmer::bench(&mut bench, scale);
        attempt("wasmer", r);
        sync_filesystem();
    }
    bench.registry = None;
    if options.wants("resolve") {
        let runs = if options.quick { "1" } else { "3" };
        let r = bench.cargo_bench(
            "resolve-graph",
            "resolve",
            options.quick,
            &[("RESOLVE_BENCH_RUNS", runs.to_owned())],
        );
        attempt("resolve", r);
    }
    if options.wants("ingest") {
        let bytes = ((1u64 << 30) as f64 * scale) as u64;
        let r = bench.cargo_bench(
            "cache-core",
            "store",
            options.quick,
            &[("PKGLOAD_BENCH_BYTES", bytes.max(1 << 20).to_string())],
        );
        attempt("ingest", r);
    }
    let _ = remove_dir(&work);
    let report = Report {
        rows: &bench.rows,
        captured: &bench.captured,
        failures: &failures,
        scale,
        runs,
        quick: options.quick,
        took: started.elapsed(),
        machine: machine(),
    };
    fs::create_dir_all(&out_dir).map_err(io_err(&out_dir))?;
    let md = report.markdown();
    let md_path = out_dir.join("report.md");
    fs::write(&md_path, &md).map_err(io_err(&md_path))?;
    let json_path = out_dir.join("report.json");
    fs::write(&json_path, report.json()).map_err(io_err(&json_path))?;
    println!("{md}");
    eprintln!(
        "wrote {} and {} in {:.0} s",
        md_path.display(),
        json_path.display(),
        started.elapsed().as_secs_f64()
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::new(format!(
            "{} benchmark(s) failed: {}",
            failures.len(),
            failures.join("; ")
        )))
    }
}

fn ensure_tools(options: &Options) -> Result<()> {
    let mut tools = vec![
        Tool {
            binary: "docker-registry",
            package: "docker-registry",
            why: "bench: the loopback registry",
        },
        Tool {
            binary: "skopeo",
            package: "skopeo",
            why: "bench: pushing the fixtures, the peer of pkgload fetch",
        },
    ];
    if options.wants("unpack") || options.wants("warm-ls") {
        tools.push(Tool {
            binary: "umoci",
            package: "umoci",
            why: "bench: the peer of pkgload unpack",
        });
    }
    if options.wants("lazy") {
        tools.push(Tool {
            binary: "zstd",
            package: "zstd",
            why: "bench: the diff_ids of skopeo's zstd:chunked layers (zstd -dc)",
        });
    }
    if options.wants("curl") {
        tools.push(Tool {
            binary: "curl",
            package: "curl",
            why: "bench: the wire-and-hash limit (curl --parallel + sha256sum)",
        });
    }
    if options.wants("rss") || options.wants("wasmer") {
        tools.push(Tool {
            binary: "time",
            package: "time",
            why: "bench: peak RSS (/usr/bin/time -v)",
        });
    }
    crate::tools::ensure(&tools).map(|_| ())
}

// ---------------------------------------------------------------------------------------
// Measuring

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Unit {
    Seconds,
    Mib,
    Millis,
    Files,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Goal {
    /// pkgload's median over the peer's at most this.
    RatioAtMost(f64),
    /// The peer's median over pkgload's at least this (a speed-up).
    SpeedupAtLeast(f64),
    /// pkgload's worst at most this many of the unit.
    AtMost(f64),
    None,
}

#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) key: &'static str,
    pub(crate) what: String,
    pub(crate) ours_name: String,
    pub(crate) peer_name: String,
    pub(crate) unit: Unit,
    pub(crate) ours: Vec<f64>,
    pub(crate) peer: Vec<f64>,
    pub(crate) goal: Goal,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        let (ours, peer) = (median(&self.ours)?, median(&self.peer)?);
        match self.goal {
            Goal::SpeedupAtLeast(_) => Some(peer / ours),
            _ => Some(ours / peer),
        }
    }

    fn met(&self) -> Option<bool> {
        match self.goal {
            Goal::RatioAtMost(bar) => self.ratio().map(|r| r <= bar),
            Goal::SpeedupAtLeast(bar) => self.ratio().map(|r| r >= bar),
            Goal::AtMost(bar) => max(&self.ours).map(|m| m <= bar),
            Goal::None => None,
        }
    }

    fn goal_text(&self) -> String {
        match self.goal {
            Goal::RatioAtMost(bar) => format!("≤ {bar}×"),
            Goal::SpeedupAtLeast(bar) => format!("≥ {bar}× faster"),
            Goal::AtMost(bar) if bar.fract() == 0.0 => format!("≤ {bar} {}", self.unit_text()),
            Goal::AtMost(bar) => format!("≤ {bar:.2} {}", self.unit_text()),
            Goal::None => "—".to_owned(),
        }
    }

    fn unit_text(&self) -> &'static str {
        match self.unit {
            Unit::Seconds => "s",
            Unit::Mib => "MiB",
            Unit::Millis => "ms",
            Unit::Files => "files",
        }
    }
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let v = sorted(values);
    let n = v.len();
    if n == 0 {
        None
    } else if n % 2 == 1 {
        v.get(n / 2).copied()
    } else {
        Some((v.get(n / 2 - 1)? + v.get(n / 2)?) / 2.0)
    }
}

fn max(values: &[f64]) -> Option<f64> {
    sorted(values).last().copied()
}

fn min(values: &[f64]) -> Option<f64> {
    sorted(values).first().copied()
}

/// Runs a command with its output captured; its wall time. A failure is an error carrying
/// the end of its stderr.
fn timed(command: &mut Command) -> Result<Duration> {
    let (took, _) = timed_output(command)?;
    Ok(took)
}

pub(crate) fn timed_output(command: &mut Command) -> Result<(Duration, String)> {
    command.stdin(Stdio::null());
    let shown = format!("{command:?}");
    let started = Instant::now();
    let output = command
        .output()
        .map_err(|e| Error::new(format!("cannot start {shown}: {e}")))?;
    let took = started.elapsed();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // `time -v` appends its tab-indented report: show what the program itself said.
        let tail: String = stderr
            .lines()
            .filter(|l| !l.starts_with('\t') && !l.starts_with("Command exited with"))
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        return Err(Error::new(format!(
            "{shown} failed ({}):\n{tail}",
            output.status
        )));
    }
    Ok((took, String::from_utf8_lossy(&output.stderr).into_owned()))
}

pub(crate) struct Bench {
    pub(crate) pkgload: PathBuf,
    fixtures: Fixtures,
    pub(crate) work: PathBuf,
    pub(crate) runs: usize,
    registry: Option<Registry>,
    pub(crate) rows: Vec<Row>,
    captured: Vec<(String, String)>,
    /// How many directories [`Bench::discard`] has set aside.
    discarded: std::cell::Cell<u64>,
}

impl Bench {
    fn registry(&self) -> Result<&Registry> {
        self.registry
            .as_ref()
            .ok_or_else(|| Error::new("the registry is not running"))
    }

    /// Where the bench's loopback registry listens.
    pub(crate) fn registry_addr(&self) -> Result<SocketAddr> {
        Ok(self.registry()?.addr)
    }

    fn image_ref(&self, name: &str) -> Result<String> {
        Ok(format!(
            "{}/{}:{IMAGE_TAG}",
            self.registry()?.host(),
            fixtures::image_repository(name)
        ))
    }

    pub(crate) fn pkgload(&self, cache: &Path) -> Command {
        let mut command = Command::new(&self.pkgload);
        command
            .arg("--cache-dir")
            .arg(cache)
            .arg("--quiet")
            // A credential helper of the user's Docker config has no place in a timing.
            .env("DOCKER_CONFIG", self.work.join("no-docker-config"))
            .env("PKGLOAD_HOSTS_DIR", self.work.join("no-hosts-dir"));
        command
    }

    /// A fresh, empty directory under the work directory (an old one is discarded).
    pub(crate) fn fresh(&self, name: &str) -> Result<PathBuf> {
        let dir = self.work.join(name);
        self.discard(&dir)?;
        Ok(dir)
    }

    /// Move `dir` out of the way; it is deleted with the work directory at the end.
    ///
    /// Deleting a tree of thousands of files between timed runs charges later runs for the
    /// clean-up: ext4 without a journal (as on the machine this was tuned on) will not
    /// reuse an inode for 60 s after it was freed (5 minutes while its inode table block
    /// is dirty), and skips such inodes one probe at a time on every file creation. That
    /// made a cold 200-package load up to 3× slower. A rename frees nothing. The cost is
    /// disk space: a full run keeps about 30 GB until it ends.
    ///
    /// The moved files' page cache *is* released (written back, then dropped): kept, it
    /// would make every later sample fill memory the VM never touched since boot, which
    /// costs about 4× the system time of reused memory here (a cold 50-package webc load:
    /// 0.40 s of system time on untouched memory, 0.09 s on reused). A long-running host
    /// reuses its memory, so that is what the samples measure, for every loader alike.
    pub(crate) fn discard(&self, dir: &Path) -> Result<()> {
        if !dir.exists() {
            return Ok(());
        }
        let trash = self.work.join(".trash");
        fs::create_dir_all(&trash).map_err(io_err(&trash))?;
        let n = self.discarded.get();
        self.discarded.set(n + 1);
        let to = trash.join(n.to_string());
        fs::rename(dir, &to).map_err(io_err(dir))?;
        release_page_cache(&to)
    }

    /// Empties the set-aside directories once the disk runs low, then lets their freed
    /// inodes age out (see [`Bench::discard`]); called between groups, never inside one.
    /// A full run writes more than many disks have free (some 50 GB), and a nearly full
    /// ext4 is slower to allocate in, which would charge the groups that run last.
    fn make_room(&self) {
        const LOW: u64 = 24 << 30;
        let trash = self.work.join(".trash");
        if !trash.exists() || free_bytes(&self.work).is_none_or(|free| free >= LOW) {
            return;
        }
        eprintln!(
            "bench: less than {} GiB free: deleting set-aside directories",
            LOW >> 30
        );
        let _ = remove_dir(&trash);
        settle_filesystem();
    }

    pub(crate) fn note(&self, what: &str, run: usize, took: Duration) {
        eprintln!(
            "bench {what}: run {}/{}: {:.3} s",
            run + 1,
            self.runs,
            took.as_secs_f64()
        );
    }

    /// Cold `pkgload fetch` of image-512m, `skopeo copy` and `curl --parallel` +
    /// `sha256sum` of the same blobs, interleaved run by run.
    fn fetch(&mut self, skopeo: bool, curl: bool) -> Result<()> {
        let reference = self.image_ref("image-512m")?;
        let host = self.registry()?.host();
        let blobs = self.fixtures.blobs("image-512m")?;
        let (mut ours, mut peer_skopeo, mut peer_curl) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..self.runs {
            let cache = self.fresh("cache")?;
            let took = timed(self.pkgload(&cache).arg("fetch").arg(&reference))?;
            self.note("pkgload fetch (cold)", run, took);
            ours.push(took.as_secs_f64());
            self.discard(&cache)?;
            if skopeo {
                let out = self.fresh("skopeo-out")?;
                let took = timed(
                    Command::new("skopeo")
                        .args(["copy", "--quiet", "--src-tls-verify=false"])
                        .arg(format!("docker://{reference}"))
                        .arg(format!("oci:{}:{IMAGE_TAG}", out.display())),
                )?;
                self.note("skopeo copy", run, took);
                peer_skopeo.push(took.as_secs_f64());
                self.discard(&out)?;
            }
            if curl {
                let out = self.fresh("curl-out")?;
                fs::create_dir_all(&out).map_err(io_err(&out))?;
                let mut download = Command::new("curl");
                download.args(["--parallel", "--parallel-max", "16", "-sSf"]);
                for (i, digest) in blobs.iter().enumerate() {
                    download
                        .arg("-o")
                        .arg(out.join(format!("blob-{i:03}")))
                        .arg(format!(
                            "http://{host}/v2/{}/blobs/{digest}",
                            fixtures::image_repository("image-512m")
                        ));
                }
                let mut hash = Command::new("sha256sum");
                for i in 0..blobs.len() {
                    hash.arg(out.join(format!("blob-{i:03}")));
                }
                let took = timed(&mut download)? + timed(&mut hash)?;
                self.note("curl --parallel + sha256sum", run, took);
                peer_curl.push(took.as_secs_f64());
                self.discard(&out)?;
            }
        }
        let size = self.image_size("image-512m");
        if skopeo {
            self.rows.push(Row {
                key: "fetch",
                what: format!("cold pull, image-512m ({size}, 16 gzip layers)"),
                ours_name: "pkgload fetch".to_owned(),
                peer_name: "skopeo copy docker:// oci:".to_owned(),
                unit: Unit::Seconds,
                ours: ours.clone(),
                peer: peer_skopeo,
                goal: Goal::RatioAtMost(0.4),
            });
        }
        if curl {
            self.rows.push(Row {
                key: "curl",
                what: format!("cold pull vs the wire-and-hash limit, image-512m ({size})"),
                ours_name: "pkgload fetch".to_owned(),
                peer_name: "curl --parallel + sha256sum".to_owned(),
                unit: Unit::Seconds,
                ours,
                peer: peer_curl,
                goal: Goal::None,
            });
        }
        Ok(())
    }

    /// The total of an image's blobs, for the table.
    fn image_size(&self, name: &str) -> String {
        let total: u64 = self
            .fixtures
            .blobs(name)
            .unwrap_or_default()
            .iter()
            .filter_map(|d| {
                let path = self
                    .fixtures
                    .image(name)
                    .join("blobs/sha256")
                    .join(d.trim_start_matches("sha256:"));
                fs::metadata(path).ok().map(|m| m.len())
            })
            .sum();
        format!("{:.0} MiB", total as f64 / (1u64 << 20) as f64)
    }

    /// `pkgload unpack` (cold cache, from the layout) and warm `pkgload ls -R` vs
    /// `umoci unpack --rootless`, all from the image-512m layout.
    fn unpack(&mut self, unpack: bool, warm_ls: bool) -> Result<()> {
        let layout = self.fixtures.image("image-512m");
        let reference = format!("oci:{}:{IMAGE_TAG}", layout.display());
        let (mut ours, mut ours_warm, mut ls, mut umoci) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let warm_cache = self.work.join("warm-cache");
        self.discard(&warm_cache)?;
        if warm_ls {
            // `fetch` only downloads: the first open decompresses and indexes the layers.
            // One untimed listing makes the cache warm in that sense too, so every timed
            // sample measures a VFS that is ready (it used to be a 2 s first sample).
            timed(self.pkgload(&warm_cache).arg("fetch").arg(&reference))?;
            timed(
                self.pkgload(&warm_cache)
                    .args(["--offline", "ls", "-R"])
                    .arg(&reference)
                    .stdout(Stdio::null()),
            )?;
        }
        for run in 0..self.runs {
            if unpack {
                let cache = self.fresh("cache")?;
                let out = self.fresh("pkgload-out")?;
                let took = timed(self.pkgload(&cache).arg("unpack").arg(&reference).arg(&out))?;
                self.note("pkgload unpack (cold cache)", run, took);
                ours.push(took.as_secs_f64());
                self.discard(&out)?;
                let took = timed(self.pkgload(&cache).arg("unpack").arg(&reference).arg(&out))?;
                self.note("pkgload unpack (warm cache)", run, took);
                ours_warm.push(took.as_secs_f64());
                self.discard(&out)?;
                self.discard(&cache)?;
            }
            if warm_ls {
                let took = timed(
                    self.pkgload(&warm_cache)
                        .args(["--offline", "ls", "-R"])
                        .arg(&reference)
                        .stdout(Stdio::null()),
                )?;
                self.note("pkgload ls -R (warm)", run, took);
                ls.push(took.as_secs_f64());
            }
            let out = self.fresh("umoci-out")?;
            let took = timed(
                Command::new("umoci")
                    .args(["unpack", "--rootless", "--image"])
                    .arg(format!("{}:{IMAGE_TAG}", layout.display()))
                    .arg(&out),
            )?;
            self.note("umoci unpack --rootless", run, took);
            umoci.push(took.as_secs_f64());
            self.discard(&out)?;
        }
        self.discard(&warm_cache)?;
        let size = self.image_size("image-512m");
        if unpack {
            self.rows.push(Row {
                key: "unpack",
                what: format!("unpack image-512m ({size}) from its OCI layout, cold cache"),
                ours_name: "pkgload unpack".to_owned(),
                peer_name: "umoci unpack --rootless".to_owned(),
                unit: Unit::Seconds,
                ours,
                peer: umoci.clone(),
                goal: Goal::RatioAtMost(0.25),
            });
            self.rows.push(Row {
                key: "unpack-warm",
                what: "unpack image-512m, warm cache (blobs already ingested)".to_owned(),
                ours_name: "pkgload unpack".to_owned(),
                peer_name: "umoci unpack --rootless".to_owned(),
                unit: Unit::Seconds,
                ours: ours_warm,
                peer: umoci.clone(),
                goal: Goal::None,
            });
        }
        if warm_ls {
            self.rows.push(Row {
                key: "warm-ls",
                what: "warm VFS ready: whole tree of image-512m listed".to_owned(),
                ours_name: "pkgload --offline ls -R".to_owned(),
                peer_name: "umoci unpack --rootless".to_owned(),
                unit: Unit::Seconds,
                ours: ls,
                peer: umoci,
                goal: Goal::RatioAtMost(0.05),
            });
        }
        Ok(())
    }

    /// `pkgload load` of image-512m from the registry, cold (empty cache) then warm.
    fn warm_load(&mut self) -> Result<()> {
        let reference = self.image_ref("image-512m")?;
        let (mut warm, mut cold) = (Vec::new(), Vec::new());
        for run in 0..self.runs {
            let cache = self.fresh("cache")?;
            let took = timed(self.pkgload(&cache).arg("load").arg(&reference))?;
            self.note("pkgload load (cold)", run, took);
            cold.push(took.as_secs_f64());
            let took = timed(self.pkgload(&cache).arg("load").arg(&reference))?;
            self.note("pkgload load (warm)", run, took);
            warm.push(took.as_secs_f64());
            self.discard(&cache)?;
        }
        self.rows.push(Row {
            key: "warm-load",
            what: "load image-512m from the registry: warm cache vs empty cache".to_owned(),
            ours_name: "pkgload load (warm)".to_owned(),
            peer_name: "pkgload load (cold)".to_owned(),
            unit: Unit::Seconds,
            ours: warm,
            peer: cold,
            goal: Goal::RatioAtMost(0.05),
        });
        Ok(())
    }

    /// Peak RSS of `pkgload fetch` of image-1g (and of `skopeo copy` of it).
    fn rss(&mut self) -> Result<()> {
        let reference = self.image_ref("image-1g")?;
        let (mut ours, mut peer) = (Vec::new(), Vec::new());
        for run in 0..self.runs {
            let cache = self.fresh("cache")?;
            let mut command = Command::new("/usr/bin/time");
            command
                .arg("-v")
                .arg(&self.pkgload)
                .arg("--cache-dir")
                .arg(&cache)
                .arg("--quiet")
                .arg("fetch")
                .arg(&reference);
            let (took, stderr) = timed_output(&mut command)?;
            let rss = max_rss_mib(&stderr)?;
            eprintln!(
                "bench pkgload fetch image-1g: run {}/{}: {rss:.1} MiB peak RSS, {:.3} s",
                run + 1,
                self.runs,
                took.as_secs_f64()
            );
            ours.push(rss);
            self.discard(&cache)?;
            let out = self.fresh("skopeo-out")?;
            let mut command = Command::new("/usr/bin/time");
            command
                .args(["-v", "skopeo", "copy", "--quiet", "--src-tls-verify=false"])
                .arg(format!("docker://{reference}"))
                .arg(format!("oci:{}:{IMAGE_TAG}", out.display()));
            let (took, stderr) = timed_output(&mut command)?;
            let rss = max_rss_mib(&stderr)?;
            eprintln!(
                "bench skopeo copy image-1g: run {}/{}: {rss:.1} MiB peak RSS, {:.3} s",
                run + 1,
                self.runs,
                took.as_secs_f64()
            );
            peer.push(rss);
            self.discard(&out)?;
        }
        let size = self.image_size("image-1g");
        self.rows.push(Row {
            key: "rss",
            what: format!("peak RSS, cold pull of image-1g ({size}, one layer)"),
            ours_name: "pkgload fetch".to_owned(),
            peer_name: "skopeo copy".to_owned(),
            unit: Unit::Mib,
            ours,
            peer,
            goal: Goal::AtMost(64.0),
        });
        Ok(())
    }

    /// Peak RSS of a cold `pkgload unpack` and of `pkgload cat` of image-2g-zeros (one
    /// 2 GiB file), with `umoci unpack --rootless` of the same layout beside them.
    fn rss_unpack(&mut self) -> Result<()> {
        let layout = self.fixtures.image("image-2g-zeros");
        let reference = format!("oci:{}:{IMAGE_TAG}", layout.display());
        let (mut unpack, mut cat, mut umoci) = (Vec::new(), Vec::new(), Vec::new());
        let peak = |command: &mut Command| -> Result<f64> {
            let (_, stderr) = timed_output(command)?;
            max_rss_mib(&stderr)
        };
        // `program` under `/usr/bin/time -v`, which reports its peak RSS.
        let measured = |program: &std::ffi::OsStr| {
            let mut command = Command::new("/usr/bin/time");
            command.arg("-v").arg(program);
            command
        };
        for run in 0..self.runs {
            let cache = self.fresh("cache")?;
            let out = self.fresh("pkgload-out")?;
            let mut command = measured(self.pkgload.as_os_str());
            command
                .arg("--cache-dir")
                .arg(&cache)
                .args(["--quiet", "--max-layer-size", "3G", "unpack"])
                .arg(&reference)
                .arg(&out);
            let rss = peak(&mut command)?;
            unpack.push(rss);
            self.discard(&out)?;
            let mut command = measured(self.pkgload.as_os_str());
            command
                .arg("--cache-dir")
                .arg(&cache)
                .args(["--quiet", "--max-layer-size", "3G", "cat"])
                .arg(&reference)
                .arg("/big.bin")
                .stdout(Stdio::null());
            let cat_rss = peak(&mut command)?;
            cat.push(cat_rss);
            self.discard(&cache)?;
            let out = self.fresh("umoci-out")?;
            let mut command = measured("umoci".as_ref());
            command
                .args(["unpack", "--rootless", "--image"])
                .arg(format!("{}:{IMAGE_TAG}", layout.display()))
                .arg(&out);
            let umoci_rss = peak(&mut command)?;
            umoci.push(umoci_rss);
            self.discard(&out)?;
            eprintln!(
                "bench rss-unpack: run {}/{}: unpack {rss:.1} MiB, cat {cat_rss:.1} MiB, \
                 umoci {umoci_rss:.1} MiB peak RSS",
                run + 1,
                self.runs
            );
        }
        for (key, what, name, ours) in [
            ("rss-unpack", "unpack", "pkgload unpack", unpack),
            ("rss-cat", "cat", "pkgload cat", cat),
        ] {
            self.rows.push(Row {
                key,
                what: format!("peak RSS, {what} of a single 2 GiB file (image-2g-zeros)"),
                ours_name: name.to_owned(),
                peer_name: "umoci unpack --rootless".to_owned(),
                unit: Unit::Mib,
                ours,
                peer: umoci.clone(),
                goal: Goal::AtMost(64.0),
            });
        }
        Ok(())
    }

    /// Cold `pkgload load` of the 200-package tree through a proxy that delays every
    /// request by each of [`PROXY_DELAYS`], `--jobs 32` vs `--jobs 1`.
    fn jobs(&mut self) -> Result<()> {
        for (key, delay) in PROXY_DELAYS {
            self.jobs_at(key, delay)?;
        }
        Ok(())
    }

    fn jobs_at(&mut self, key: &'static str, delay: Duration) -> Result<()> {
        let proxy = DelayProxy::start(self.registry()?.addr, delay)?;
        let reference = format!(
            "{}/{}:{}",
            proxy.addr,
            fixtures::tree_name(0),
            fixtures::TREE_VERSION
        );
        let (mut wide, mut narrow) = (Vec::new(), Vec::new());
        // pkgload's own CPU (user + system) and files in the cache, per package.
        let (mut cpu_wide, mut cpu_narrow, mut files) = (Vec::new(), Vec::new(), Vec::new());
        let packages = fixtures::TREE_PACKAGES as f64;
        for run in 0..self.runs {
            for (jobs, samples, cpu) in [
                ("32", &mut wide, &mut cpu_wide),
                ("1", &mut narrow, &mut cpu_narrow),
            ] {
                let cache = self.fresh("cache")?;
                let mut command = Command::new("/usr/bin/time");
                command
                    .arg("-v")
                    .arg(&self.pkgload)
                    .arg("--cache-dir")
                    .arg(&cache)
                    .args(["--quiet", "--jobs", jobs, "load"])
                    .arg(&reference);
                let (took, stderr) = timed_output(&mut command)?;
                let per_package = cpu_seconds(&stderr)? * 1e3 / packages;
                self.note(
                    &format!(
                        "pkgload --jobs {jobs} load tree-200 (cold, {} ms)",
                        delay.as_millis()
                    ),
                    run,
                    took,
                );
                eprintln!("  {per_package:.2} ms of pkgload CPU per package");
                samples.push(took.as_secs_f64());
                cpu.push(per_package);
                if jobs == "32" {
                    files.push(count_files(&cache) as f64 / packages);
                }
                self.discard(&cache)?;
            }
        }
        self.rows.push(Row {
            key,
            what: format!(
                "cold load of the 200-package tree, {} ms added to every request",
                delay.as_millis()
            ),
            ours_name: "pkgload --jobs 32 load".to_owned(),
            peer_name: "pkgload --jobs 1 load".to_owned(),
            unit: Unit::Seconds,
            ours: wide,
            peer: narrow,
            goal: Goal::SpeedupAtLeast(8.0),
        });
        self.rows.push(Row {
            key: cpu_key(key),
            what: format!(
                "pkgload CPU (user + system) per cold package, same loads ({} ms)",
                delay.as_millis()
            ),
            ours_name: "pkgload --jobs 32 load".to_owned(),
            peer_name: "pkgload --jobs 1 load".to_owned(),
            unit: Unit::Millis,
            ours: cpu_wide,
            peer: cpu_narrow,
            goal: Goal::AtMost(2.0),
        });
        if key == "jobs" {
            self.rows.push(Row {
                key: "files",
                what: "files in the cache per package after a cold load of the tree".to_owned(),
                ours_name: "pkgload load".to_owned(),
                peer_name: "—".to_owned(),
                unit: Unit::Files,
                ours: files,
                peer: Vec::new(),
                goal: Goal::None,
            });
        }
        Ok(())
    }

    /// `cargo bench -p PACKAGE --bench BENCH`, its figures captured for the report.
    fn cargo_bench(
        &mut self,
        package: &str,
        bench: &str,
        quick: bool,
        env: &[(&str, String)],
    ) -> Result<()> {
        let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        command
            .args(["bench", "-p", package, "--bench", bench])
            .current_dir(crate::cmd::workspace_root());
        if quick {
            command.args(["--", "--quick"]);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        eprintln!(
            "$ cargo bench -p {package} --bench {bench}{}",
            if quick { " -- --quick" } else { "" }
        );
        command.stdin(Stdio::null()).stderr(Stdio::inherit());
        let output = command
            .output()
            .map_err(|e| Error::new(format!("cannot start cargo bench: {e}")))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        print!("{stdout}");
        if !output.status.success() {
            return Err(Error::new(format!(
                "cargo bench -p {package} failed ({})",
                output.status
            )));
        }
        let kept: Vec<&str> = stdout
            .lines()
            .filter(|line| {
                let t = line.trim();
                !t.is_empty()
                    && !t.starts_with("Benchmarking")
                    && !t.starts_with("Found ")
                    && !t.contains("mild")
                    && !t.contains("severe")
                    && !t.starts_with("Gnuplot")
                    && !t.starts_with("running ")
                    && !t.starts_with("test result")
                    && !t.contains("No change in performance")
                    && !t.contains("Change within noise")
                    && !t.starts_with("change:")
                    && !t.contains("Performance has")
                    && !((t.starts_with("time:") || t.starts_with("thrpt:")) && t.contains('%'))
            })
            .collect();
        if let (Some(ours), Some(peer)) = (
            criterion_times(&stdout, "ingest/store_sha256"),
            criterion_times(&stdout, "ingest/sha256sum"),
        ) {
            let size = env
                .iter()
                .find(|(k, _)| *k == "PKGLOAD_BENCH_BYTES")
                .and_then(|(_, v)| v.parse::<f64>().ok())
                .map_or("1024 MiB".to_owned(), |b| {
                    format!("{:.0} MiB", b / (1u64 << 20) as f64)
                });
            self.rows.push(Row {
                key: "ingest",
                what: format!("sha256 ingest of a {size} blob into the store (criterion)"),
                ours_name: "cache-core ingest, sha256".to_owned(),
                peer_name: "sha256sum".to_owned(),
                unit: Unit::Seconds,
                ours,
                peer,
                goal: Goal::None,
            });
        }
        self.captured.push((
            format!("cargo bench -p {package} --bench {bench}"),
            kept.join("\n"),
        ));
        Ok(())
    }
}

/// The `time: [low estimate high]` of criterion benchmark `id`, in seconds.
fn criterion_times(stdout: &str, id: &str) -> Option<Vec<f64>> {
    let mut lines = stdout
        .lines()
        .skip_while(|l| !l.trim_start().starts_with(id));
    let first = lines.next()?;
    let line = if first.contains("time:") {
        first
    } else {
        lines.next()?
    };
    let inside = line.split_once('[')?.1.split_once(']')?.0;
    let words: Vec<&str> = inside.split_whitespace().collect();
    let values: Vec<f64> = words
        .chunks(2)
        .filter_map(|pair| {
            let (value, unit) = (pair.first()?.parse::<f64>().ok()?, *pair.get(1)?);
            let scale = match unit {
                "s" => 1.0,
                "ms" => 1e-3,
                "µs" | "us" => 1e-6,
                "ns" => 1e-9,
                _ => return None,
            };
            Some(value * scale)
        })
        .collect();
    (values.len() == 3).then_some(values)
}

/// `Maximum resident set size (kbytes): N` of `/usr/bin/time -v`, in MiB.
/// The key of the CPU row next to the `--jobs` row `key`.
fn cpu_key(key: &str) -> &'static str {
    match key {
        "jobs" => "cpu",
        "jobs-25ms" => "cpu-25ms",
        _ => "cpu-50ms",
    }
}

/// User plus system seconds from the report of `time -v`.
fn cpu_seconds(stderr: &str) -> Result<f64> {
    let field = |name: &str| {
        stderr.lines().find_map(|line| {
            line.trim()
                .strip_prefix(name)
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
    };
    match (
        field("User time (seconds):"),
        field("System time (seconds):"),
    ) {
        (Some(user), Some(system)) => Ok(user + system),
        _ => Err(Error::new("no user/system time in the output of time -v")),
    }
}

/// Regular files below `dir`.
fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => n += 1,
                _ => {}
            }
        }
    }
    n
}

pub(crate) fn max_rss_mib(stderr: &str) -> Result<f64> {
    stderr
        .lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix("Maximum resident set size (kbytes):")
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .ok_or_else(|| Error::new("no `Maximum resident set size` in the output of time -v"))
}

// ---------------------------------------------------------------------------------------
// The report

struct Report<'a> {
    rows: &'a [Row],
    captured: &'a [(String, String)],
    failures: &'a [String],
    scale: f64,
    runs: usize,
    quick: bool,
    took: Duration,
    machine: Vec<(String, String)>,
}

fn figure(value: Option<f64>, unit: Unit) -> String {
    match (value, unit) {
        (None, _) => "—".to_owned(),
        // A few milliseconds (a warm load) need the tenth to be told apart.
        (Some(v), Unit::Seconds) if v < 0.02 => format!("{:.1} ms", v * 1e3),
        (Some(v), Unit::Seconds) if v < 1.0 => format!("{:.0} ms", v * 1e3),
        (Some(v), Unit::Seconds) => format!("{v:.2} s"),
        (Some(v), Unit::Mib) => format!("{v:.1} MiB"),
        (Some(v), Unit::Millis) => format!("{v:.2} ms"),
        (Some(v), Unit::Files) => format!("{v:.1}"),
    }
}

fn triple(values: &[f64], unit: Unit) -> String {
    format!(
        "{} / {} / {}",
        figure(min(values), unit),
        figure(median(values), unit),
        figure(max(values), unit)
    )
}

impl Report<'_> {
    fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# pkgload end-to-end benchmark\n");
        let _ = writeln!(
            md,
            "`cargo xtask bench{}`: fixture scale {}, {} run(s) per figure (min / median / max), \
             {:.0} s in all.\n",
            if self.quick { " --quick" } else { "" },
            self.scale,
            self.runs,
            self.took.as_secs_f64()
        );
        for (key, value) in &self.machine {
            let _ = writeln!(md, "- {key}: {value}");
        }
        let _ = writeln!(
            md,
            "\n| what | pkgload | min / median / max | peer | min / median / max | ratio | goal | met? |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
        for row in self.rows {
            let ratio = match (row.ratio(), row.goal) {
                (None, _) => "—".to_owned(),
                (Some(r), Goal::SpeedupAtLeast(_)) => format!("{r:.1}× faster"),
                (Some(r), _) if r < 0.1 => format!("{r:.3}×"),
                (Some(r), _) => format!("{r:.2}×"),
            };
            let met = match row.met() {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "—",
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                row.what,
                row.ours_name,
                triple(&row.ours, row.unit),
                row.peer_name,
                triple(&row.peer, row.unit),
                ratio,
                row.goal_text(),
                met
            );
        }
        let _ = writeln!(
            md,
            "\nRatios are pkgload's median over the peer's (for the `--jobs` row: `--jobs 1` over \
             `--jobs 32`). Every cold run starts from an empty cache and output directory; the \
             directories of earlier runs are set aside (their page cache released), and most free memory \
             is written to once before the first run, so every run fills reused memory, \
             not memory the VM never touched (which costs 4× the system time here) and deleted only between \
             groups when the disk runs low, and the timed part starts after a `sync` and a \
             {} s pause, because ext4 without a journal slows file creation down for a \
             minute after a mass deletion; each group starts after a `sync`, so it does \
             not share the disk with the previous group's writeback. Otherwise the kernel \
             page cache is not dropped between runs, so the loopback registry serves from \
             memory. A criterion row shows criterion's low / \
             estimate / high instead. `--jobs N` bounds both HTTP requests in flight and \
             volumes being unpacked, so `--jobs 1` is a strictly serial load; those rows go \
             through a loopback proxy that holds every request for the time they name. The \
             registry runs on the same cores as pkgload, so at 10 ms a `--jobs 32` load is \
             bound by the CPU both use, not by latency.",
            SETTLE.as_secs(),
        );
        if self.rows.iter().any(|r| r.key.starts_with("wasmer-")) {
            let _ = writeln!(
                md,
                "\nThe `wasmer-` rows compare pkgload with Wasmer's own loader (wasmer-wasix \
                 0.704 in `wasmer-peer`, resolve + `load_package_tree`), each sample a fresh \
                 process, the two alternating: a cold one under `/usr/bin/time -v` (for its \
                 peak RSS), then 15 warm ones each, started directly (the wrapper's own start \
                 would add ~0.6 ms to both sides of a few-millisecond load). Directory case: \
                 pkgload with an empty cache vs Wasmer on a fresh copy of the directory (it \
                 writes `.webc.sha256` sidecars there); warm = the same cache or copy again. \
                 URL case: the tree served by `wasmer-peer serve` with the latency named; \
                 cold = empty caches (pkgload's, Wasmer's web source and package loader \
                 caches), warm = the same caches again."
            );
        }
        for (title, text) in self.captured {
            let _ = writeln!(md, "\n## `{title}`\n\n```text\n{}\n```", text.trim_end());
        }
        if !self.failures.is_empty() {
            let _ = writeln!(md, "\n## Failed\n");
            for failure in self.failures {
                let _ = writeln!(md, "- {}", failure.replace('\n', " "));
            }
        }
        md
    }

    fn json(&self) -> String {
        let numbers = |values: &[f64]| {
            values
                .iter()
                .map(|v| format!("{v:.6}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let opt = |v: Option<f64>| v.map_or("null".to_owned(), |v| format!("{v:.6}"));
        let mut rows = Vec::new();
        for row in self.rows {
            rows.push(format!(
                "{{\"key\":{},\"what\":{},\"unit\":{},\"pkgload\":{{\"name\":{},\"runs\":[{}],\"min\":{},\"median\":{},\"max\":{}}},\"peer\":{{\"name\":{},\"runs\":[{}],\"min\":{},\"median\":{},\"max\":{}}},\"ratio\":{},\"goal\":{},\"met\":{}}}",
                json_string(row.key),
                json_string(&row.what),
                json_string(row.unit_text()),
                json_string(&row.ours_name),
                numbers(&row.ours),
                opt(min(&row.ours)),
                opt(median(&row.ours)),
                opt(max(&row.ours)),
                json_string(&row.peer_name),
                numbers(&row.peer),
                opt(min(&row.peer)),
                opt(median(&row.peer)),
                opt(max(&row.peer)),
                opt(row.ratio()),
                json_string(&row.goal_text()),
                row.met().map_or("null".to_owned(), |m| m.to_string()),
            ));
        }
        let machine: Vec<String> = self
            .machine
            .iter()
            .map(|(k, v)| format!("{}:{}", json_string(k), json_string(v)))
            .collect();
        let captured: Vec<String> = self
            .captured
            .iter()
            .map(|(k, v)| format!("{}:{}", json_string(k), json_string(v)))
            .collect();
        let failures: Vec<String> = self.failures.iter().map(|f| json_string(f)).collect();
        format!(
            "{{\"quick\":{},\"scale\":{},\"runs\":{},\"seconds\":{:.1},\"machine\":{{{}}},\"rows\":[{}],\"captured\":{{{}}},\"failures\":[{}]}}\n",
            self.quick,
            self.scale,
            self.runs,
            self.took.as_secs_f64(),
            machine.join(","),
            rows.join(","),
            captured.join(","),
            failures.join(",")
        )
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The machine, for the report: date, CPU, cores, memory, kernel, disk.
fn machine() -> Vec<(String, String)> {
    let sh = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned())
    };
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let memory = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or("unknown".to_owned(), |kib| {
            format!("{:.1} GiB", kib / 1024.0 / 1024.0)
        });
    let target = fixtures::target_dir();
    let target = target.to_string_lossy();
    let df = sh("df", &["-h", "--output=source,fstype,size,avail", &target]);
    let lsblk = sh("lsblk", &["-d", "-n", "-o", "NAME,SIZE,ROTA,MODEL"]);
    vec![
        (
            "date".to_owned(),
            sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        ),
        ("cores (nproc)".to_owned(), sh("nproc", &[])),
        ("cpu".to_owned(), cpu),
        ("memory".to_owned(), memory),
        ("kernel".to_owned(), sh("uname", &["-srm"])),
        (
            "disk (df of target/)".to_owned(),
            df.lines()
                .last()
                .unwrap_or("unknown")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        ),
        (
            "block devices (lsblk: name size rotational model)".to_owned(),
            lsblk
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        (
            "pkgload".to_owned(),
            sh("git", &["rev-parse", "--short", "HEAD"]),
        ),
    ]
}

/// How much memory [`touch_memory`] writes to at most.
const TOUCH: u64 = 12 << 30;

/// Writes once to most of the free memory, then frees it, so that the runs fill memory the
/// machine has used before.
///
/// In a microVM (Firecracker, as here) the host backs guest memory on first touch: filling
/// memory the guest never used since boot costs about 3 s of system time per GiB here, 4×
/// the cost of reused memory, and a cold 50-package webc load took 0.38–0.45 s on it vs
/// 0.18 s on reused memory. The kernel hands out recently freed pages first, so after this
/// every loader (and every peer) runs on memory as a long-running host's would be.
fn touch_memory() {
    let available = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib << 10);
    // Leave room for what already runs (the registry, the page cache of the fixtures).
    let bytes = available.saturating_sub(4 << 30).min(TOUCH);
    if bytes == 0 {
        return;
    }
    let started = Instant::now();
    const CHUNK: usize = 1 << 30;
    let chunks: Vec<Vec<u8>> = (0..bytes.div_ceil(CHUNK as u64))
        .map(|_| {
            let mut chunk = Vec::with_capacity(CHUNK);
            chunk.resize(CHUNK, 1u8);
            // Written memory that is freed unread is a dead store to the optimiser.
            std::hint::black_box(chunk)
        })
        .collect();
    let touched = chunks.len();
    drop(chunks);
    eprintln!(
        "bench: touched {touched} GiB of memory once in {:.1} s (see touch_memory)",
        started.elapsed().as_secs_f64()
    );
}

/// Bytes an unprivileged writer may still use on the filesystem holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a NUL-terminated path and a buffer statvfs(3) fills on success.
    let stat = unsafe {
        if libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) != 0 {
            return None;
        }
        stat.assume_init()
    };
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// Writes back everything dirty, then drops the cached pages of every file under `dir`
/// (see [`Bench::discard`]). Files stay as they are; only their memory is given back.
fn release_page_cache(dir: &Path) -> Result<()> {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(io_err(&path))?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                // A file that cannot be opened (mode 0) is skipped: this only saves memory.
                let Ok(file) = fs::File::open(&path) else {
                    continue;
                };
                use std::os::fd::AsRawFd;
                // SAFETY: a valid open descriptor; DONTNEED only drops clean cached pages.
                unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criterion_figures_are_read_in_seconds() {
        let out = "ingest/sha256sum        time:   [1.7306 s 1.7429 s 1.7919 s]\n\
                   lookup_128MiB_blob/get_mmap\n                        time:   [21.762 µs 22.729 µs 22.971 µs]\n";
        assert_eq!(
            criterion_times(out, "ingest/sha256sum"),
            Some(vec![1.7306, 1.7429, 1.7919])
        );
        let mmap = criterion_times(out, "lookup_128MiB_blob/get_mmap").unwrap();
        assert!((mmap[1] - 22.729e-6).abs() < 1e-12);
        assert_eq!(criterion_times(out, "missing"), None);
    }

    #[test]
    fn rows_compare_medians_against_their_goal() {
        let row = Row {
            key: "jobs",
            what: String::new(),
            ours_name: String::new(),
            peer_name: String::new(),
            unit: Unit::Seconds,
            ours: vec![1.0, 3.0, 2.0],
            peer: vec![20.0],
            goal: Goal::SpeedupAtLeast(8.0),
        };
        assert_eq!(row.ratio(), Some(10.0));
        assert_eq!(row.met(), Some(true));
        assert_eq!(
            max_rss_mib("\tMaximum resident set size (kbytes): 2048\n").ok(),
            Some(2.0)
        );
        assert_eq!(json_string("a\"b\n"), "\"a\\\"b\\n\"");
    }
}

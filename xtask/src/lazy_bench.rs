//! `cargo xtask bench --only lazy`: reading a file of a zstd:chunked image before the
//! image is downloaded.
//!
//! The image is `image-512m-chunked` (the 512 MiB, 16-layer bulk image plus a named 1 MiB
//! file, converted by skopeo) on the bench's registry, seen through `shaped-proxy` (from
//! `test-servers`): every request arrives late by the latency, and all connections share
//! a 100 MB/s cap, as from a registry further away. At 0, 10 and 50 ms per request, run
//! by run: a cold `pkgload cat IMAGE /named/one-mib.bin` (lazy: the tables of contents and
//! that file's frames), then, from another empty cache, `pkgload --lazy=off fetch` and
//! `cat` of the same file (every layer first); the bytes the proxy passed for each. At
//! 0 ms, a library load with `Lazy::Auto` until its background fill completed, against
//! a `Lazy::Off` load (the `lazy_fill` example of the `loader` crate, both ways).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use crate::bench::{Bench, Goal, Row, Unit, timed_output};
use crate::fixtures::{self, IMAGE_TAG, NAMED_FILE};
use crate::{Error, Result};

/// The bandwidth every connection shares.
const BYTES_PER_SEC: u64 = 100_000_000;
const MIB: f64 = (1u64 << 20) as f64;

pub(crate) fn bench(bench: &mut Bench) -> Result<()> {
    let proxy_bin = build(
        &["-p", "test-servers", "--bin", "shaped-proxy"],
        "shaped-proxy",
    )?;
    let fill_bin = build(
        &["-p", "loader", "--example", "lazy_fill"],
        "examples/lazy_fill",
    )?;
    let origin = bench.registry_addr()?;
    let repository = fixtures::image_repository("image-512m-chunked");
    let tocs = toc_bytes(&fixtures::fixtures_dir().join("image-512m-chunked"))?;
    let size = image_bytes(&fixtures::fixtures_dir().join("image-512m-chunked"))?;
    let what = format!(
        "image-512m-chunked ({:.0} MiB, 16 zstd:chunked layers, tables {:.2} MiB), 100 MB/s",
        size / MIB,
        tocs / MIB
    );
    for (key, ms) in [
        ("lazy-cat-0", 0u64),
        ("lazy-cat-10", 10),
        ("lazy-cat-50", 50),
    ] {
        let mut proxy = ShapedProxy::start(&proxy_bin, origin, ms, BYTES_PER_SEC)?;
        let reference = format!("{}/{repository}:{IMAGE_TAG}", proxy.host);
        let (mut lazy, mut full, mut lazy_bytes, mut full_bytes) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for run in 0..bench.runs {
            let cache = bench.fresh("lazy-cache")?;
            proxy.clear()?;
            let (took, _) =
                timed_output(bench.pkgload(&cache).args(["cat", &reference, NAMED_FILE]))?;
            bench.note(&format!("lazy cat at {ms} ms"), run, took);
            lazy.push(took.as_secs_f64());
            lazy_bytes.push(proxy.bytes()? as f64 / MIB);

            let cache = bench.fresh("lazy-off-cache")?;
            proxy.clear()?;
            let (fetch, _) =
                timed_output(
                    bench
                        .pkgload(&cache)
                        .args(["--lazy=off", "fetch", &reference]),
                )?;
            let (cat, _) = timed_output(bench.pkgload(&cache).args([
                "--lazy=off",
                "cat",
                &reference,
                NAMED_FILE,
            ]))?;
            bench.note(&format!("fetch + cat at {ms} ms"), run, fetch + cat);
            full.push((fetch + cat).as_secs_f64());
            full_bytes.push(proxy.bytes()? as f64 / MIB);
        }
        bench.rows.push(Row {
            key,
            what: format!("cold cat of a 1 MiB file, {ms} ms per request, {what}"),
            ours_name: "pkgload cat (lazy)".to_owned(),
            peer_name: "pkgload --lazy=off fetch + cat".to_owned(),
            unit: Unit::Seconds,
            ours: lazy,
            peer: full,
            goal: if ms == 50 {
                Goal::RatioAtMost(0.1)
            } else {
                Goal::None
            },
        });
        if ms == 50 {
            bench.rows.push(Row {
                key: "lazy-bytes",
                what: format!(
                    "bytes on the wire for that cat (goal: the tables + 2 MiB = {:.2} MiB)",
                    tocs / MIB + 2.0
                ),
                ours_name: "pkgload cat (lazy)".to_owned(),
                peer_name: "pkgload --lazy=off fetch + cat".to_owned(),
                unit: Unit::Mib,
                ours: lazy_bytes,
                peer: full_bytes,
                goal: Goal::AtMost(tocs / MIB + 2.0),
            });
        }
    }

    let proxy = ShapedProxy::start(&proxy_bin, origin, 0, BYTES_PER_SEC)?;
    let reference = format!("{}/{repository}:{IMAGE_TAG}", proxy.host);
    let (mut auto, mut off) = (Vec::new(), Vec::new());
    for run in 0..bench.runs {
        for (mode, into) in [("auto", &mut auto), ("off", &mut off)] {
            let cache = bench.fresh("lazy-fill-cache")?;
            let mut command = Command::new(&fill_bin);
            command
                .arg(&cache)
                .arg(&reference)
                .arg(mode)
                .env("DOCKER_CONFIG", bench.work.join("no-docker-config"))
                .env("PKGLOAD_HOSTS_DIR", bench.work.join("no-hosts-dir"));
            let output = command
                .output()
                .map_err(|e| Error::new(format!("{}: {e}", fill_bin.display())))?;
            let stdout = String::from_utf8_lossy(&output.stdout);
            if !output.status.success() {
                return Err(Error::new(format!(
                    "lazy_fill {mode} failed: {}{}",
                    stdout,
                    String::from_utf8_lossy(&output.stderr)
                )));
            }
            let complete = field(&stdout, "complete_ms")?;
            bench.note(
                &format!("library load, lazy {mode}, until complete"),
                run,
                Duration::from_millis(complete),
            );
            into.push(complete as f64 / 1000.0);
        }
    }
    bench.rows.push(Row {
        key: "lazy-fill",
        what: format!("library load until every layer is stored and verified, 0 ms, {what}"),
        ours_name: "Lazy::Auto, background fill complete".to_owned(),
        peer_name: "Lazy::Off load".to_owned(),
        unit: Unit::Seconds,
        ours: auto,
        peer: off,
        goal: Goal::RatioAtMost(1.2),
    });
    Ok(())
}

/// `cargo build --release ARGS`, then the binary at `target/release/PATH`.
fn build(args: &[&str], path: &str) -> Result<PathBuf> {
    crate::cmd::Cmd::cargo()
        .args(["build", "--release"])
        .args(args)
        .run()?;
    let binary = fixtures::target_dir().join("release").join(path);
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(Error::new(format!("{} was not built", binary.display())))
    }
}

/// `name=value` out of a line of `key=value` pairs.
fn field(text: &str, name: &str) -> Result<u64> {
    text.split_whitespace()
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::new(format!("no {name} in {text:?}")))
}

/// The compressed tables of contents of a layout's layers, from their annotations
/// (`…manifest-position` = `offset:compressed:uncompressed:type`).
fn toc_bytes(layout: &Path) -> Result<f64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(layout.join("blobs/sha256")).map_err(fixtures::io_err(layout))? {
        let path = entry.map_err(fixtures::io_err(layout))?.path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for part in text.split("zstd-chunked.manifest-position\":\"").skip(1) {
            let compressed = part
                .split(':')
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| Error::new(format!("{}: unreadable position", path.display())))?;
            total += compressed;
        }
    }
    Ok(total as f64)
}

fn image_bytes(layout: &Path) -> Result<f64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(layout.join("blobs/sha256")).map_err(fixtures::io_err(layout))? {
        let meta = entry
            .map_err(fixtures::io_err(layout))?
            .metadata()
            .map_err(fixtures::io_err(layout))?;
        total += meta.len();
    }
    Ok(total as f64)
}

/// `shaped-proxy` as a child process: its address, and its byte count on request.
struct ShapedProxy {
    host: String,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl ShapedProxy {
    fn start(binary: &Path, upstream: SocketAddr, latency_ms: u64, rate: u64) -> Result<Self> {
        let mut child = Command::new(binary)
            .arg(upstream.to_string())
            .arg(latency_ms.to_string())
            .arg(rate.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Error::new(format!("{}: {e}", binary.display())))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::new("shaped-proxy: no pipes"));
        };
        let mut proxy = ShapedProxy {
            host: String::new(),
            child,
            stdin,
            stdout: BufReader::new(stdout),
        };
        proxy.host = proxy.line()?;
        Ok(proxy)
    }

    fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| Error::new(format!("shaped-proxy: {e}")))?;
        if line.is_empty() {
            return Err(Error::new("shaped-proxy stopped"));
        }
        Ok(line.trim().to_owned())
    }

    fn bytes(&mut self) -> Result<u64> {
        writeln!(self.stdin, "bytes").map_err(|e| Error::new(format!("shaped-proxy: {e}")))?;
        self.line()?
            .parse()
            .map_err(|e| Error::new(format!("shaped-proxy: {e}")))
    }

    fn clear(&mut self) -> Result<()> {
        writeln!(self.stdin, "clear").map_err(|e| Error::new(format!("shaped-proxy: {e}")))?;
        self.line().map(drop)
    }
}

impl Drop for ShapedProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

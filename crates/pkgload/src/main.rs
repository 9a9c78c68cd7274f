//! `pkgload`: the command line.
//!
//! Package commands (`resolve`, `fetch`, `load`, `ls`, `cat`, `unpack`, `pack`, `push`)
//! go through the `loader` crate; `cache …` maintains the content-addressed cache.
//! Errors print as a short chain (what failed, then why) and exit with code 1.

mod cache;
mod package;
mod progress;
mod served;
mod size;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Parser, Subcommand};

/// Load package trees and OCI images into a verified, shared cache.
#[derive(Debug, Parser)]
#[command(name = "pkgload", version, about)]
struct Cli {
    /// Cache directory [default: $PKGLOAD_CACHE_DIR, else the platform cache dir + /pkgload]
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// Where `namespace/name@REQ` references and the dependencies of a package directory or
    /// webc file are looked up: a registry and repository prefix (e.g. 127.0.0.1:5000/team),
    /// or `dir:DIR`, a directory of webc files (DIR/ns/name/1.0.0.webc, DIR/ns--name@1.0.0.webc).
    /// Repeat it to consult several places in order, as one source
    #[arg(long, global = true, value_name = "HOST[/PREFIX]|dir:DIR")]
    registry: Vec<String>,

    /// Per-registry host configuration in containerd's format (DIR/<host[:port]>/hosts.toml:
    /// mirrors, CA and client certificates, headers) [default: $PKGLOAD_HOSTS_DIR, else the
    /// first of ~/.config/pkgload/certs.d and /etc/containerd/certs.d that has the host]
    #[arg(long, global = true, value_name = "DIR")]
    hosts_dir: Option<PathBuf>,

    /// A registry host that may be spoken to over plain HTTP (loopback always may)
    #[arg(long = "insecure-registry", global = true, value_name = "HOST")]
    insecure: Vec<String>,

    /// Work done at once: HTTP requests in flight and volumes being unpacked
    #[arg(
        long,
        short = 'j',
        global = true,
        default_value_t = 16,
        value_name = "N"
    )]
    jobs: usize,

    /// Make no network request: everything must be in the cache
    #[arg(long, global = true)]
    offline: bool,

    /// Trust what a registry said about a tag, and what a URL served, for this many seconds
    /// before asking again (0: always ask; the answer is then revalidated, not re-downloaded)
    #[arg(long, global = true, default_value_t = 300, value_name = "SECONDS")]
    ref_ttl: u64,

    /// More output (-v: info, -vv: debug); RUST_LOG overrides
    #[arg(short, long, global = true, action = ArgAction::Count)]
    verbose: u8,

    /// Only errors
    #[arg(short, long, global = true)]
    quiet: bool,

    /// Read seekable (zstd:chunked) image layers before they are downloaded: `ls`, `cat` and
    /// `load` fetch a layer's table of contents and only the files they read (`fetch` and
    /// `unpack` always download whole layers)
    #[arg(long, global = true, value_enum, default_value_t = LazyArg::Auto, value_name = "WHEN")]
    lazy: LazyArg,

    /// Refuse a table of contents of a zstd:chunked layer larger than this, compressed or
    /// not (such a layer is then an error under --lazy=auto, never read whole instead)
    #[arg(long, global = true, value_parser = size::parse, default_value = "64M", value_name = "SIZE")]
    max_toc_size: u64,

    /// Refuse a layer that decompresses to more than this (e.g. 512M, 64G)
    #[arg(long, global = true, value_parser = size::parse, default_value = "64G", value_name = "SIZE")]
    max_layer_size: u64,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LazyArg {
    /// Where a layer has a table of contents and the registry honours Range
    Auto,
    /// Never: download every layer whole first
    Off,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Package(package::PackageCommand),
    /// Inspect and maintain the blob cache.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
}

/// Options every package command shares.
#[derive(Debug, Clone)]
pub struct Global {
    pub cache_dir: PathBuf,
    pub registry: Vec<String>,
    pub hosts_dir: Option<PathBuf>,
    pub insecure: Vec<String>,
    pub jobs: usize,
    pub offline: bool,
    pub ref_ttl: std::time::Duration,
    pub quiet: bool,
    pub max_layer_size: u64,
    pub max_toc_size: u64,
    /// Whether `ls`, `cat` and `load` may read layers lazily.
    pub lazy: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose, cli.quiet);
    let Some(cache_dir) = cli.cache_dir.or_else(loader::default_cache_dir) else {
        eprintln!(
            "error: no cache directory: set PKGLOAD_CACHE_DIR or HOME, or pass --cache-dir DIR"
        );
        return ExitCode::from(2);
    };
    let global = Global {
        cache_dir,
        registry: cli.registry,
        hosts_dir: cli.hosts_dir,
        insecure: cli.insecure,
        jobs: cli.jobs.max(1),
        offline: cli.offline,
        ref_ttl: std::time::Duration::from_secs(cli.ref_ttl),
        quiet: cli.quiet,
        max_layer_size: cli.max_layer_size,
        max_toc_size: cli.max_toc_size,
        lazy: cli.lazy == LazyArg::Auto,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        // A cold load of many small packages hands off thousands of short file jobs:
        // with tokio's default bound of 512 blocking threads it started ~55, each paying
        // for its stack, its malloc arena and the wake-ups between them. The bound must
        // still leave a thread for every download in flight (at most `--jobs`): an
        // ingest's worker holds its thread for the whole transfer, and over HTTP/2 a body
        // whose worker waits in the queue is not read, keeps its share of the
        // connection's flow-control window, and can stall the transfers the running
        // workers wait for. Sixteen more serve the short jobs.
        .max_blocking_threads(global.jobs.saturating_add(16))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result: Result<ExitCode, Box<dyn std::error::Error>> = runtime.block_on(async {
        match cli.command {
            Command::Cache(cmd) => cache::run(cmd, &global.cache_dir).await.map_err(Into::into),
            Command::Package(cmd) => package::run(cmd, &global).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            let mut source = err.source();
            let mut last = err.to_string();
            while let Some(cause) = source {
                // Many errors repeat their cause in their own message: print only news.
                let text = cause.to_string();
                if !last.contains(&text) {
                    eprintln!("  caused by: {text}");
                }
                last = text;
                source = cause.source();
            }
            ExitCode::from(1)
        }
    }
}

/// Logs go to stderr, coloured only on a terminal (a pipe or file gets plain text to grep);
/// `RUST_LOG` (`target=level,…` or a level) wins over -v/-q.
fn init_tracing(verbose: u8, quiet: bool) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    let level = match (quiet, verbose) {
        (true, _) => LevelFilter::ERROR,
        (false, 0) => LevelFilter::WARN,
        (false, 1) => LevelFilter::INFO,
        (false, _) => LevelFilter::DEBUG,
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(level));
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_target(false),
        )
        .with(filter)
        .try_init();
}

//! `pkgload`: the command line.
//!
//! Today it manages the content-addressed cache (`pkgload cache …`); loading packages
//! arrives with the `loader` crate.

mod cache;
mod size;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Load package trees and OCI images into a verified, shared cache.
#[derive(Debug, Parser)]
#[command(name = "pkgload", version, about)]
struct Cli {
    /// Cache directory [default: $PKGLOAD_CACHE_DIR, else the platform cache dir + /pkgload]
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect and maintain the blob cache.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(cache_dir) = cli.cache_dir.or_else(default_cache_dir) else {
        eprintln!(
            "error: no cache directory: set PKGLOAD_CACHE_DIR or HOME, or pass --cache-dir DIR"
        );
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Cache(cmd) => cache::run(cmd, &cache_dir).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::from(1)
        }
    }
}

/// `$PKGLOAD_CACHE_DIR`, else `$XDG_CACHE_HOME/pkgload`, else `~/.cache/pkgload`
/// (`~/Library/Caches/pkgload` on macOS).
fn default_cache_dir() -> Option<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty("PKGLOAD_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if cfg!(target_os = "macos") {
        return non_empty("HOME").map(|h| PathBuf::from(h).join("Library/Caches/pkgload"));
    }
    non_empty("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| non_empty("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|base| base.join("pkgload"))
}

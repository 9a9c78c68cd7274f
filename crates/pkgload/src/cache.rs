//! `pkgload cache …`: look into and maintain the blob cache.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cache_core::{Algorithm, Digest, GcOptions, Store, VerifyMode};
use clap::{Subcommand, ValueEnum};
use tokio::io::AsyncWriteExt;

use crate::size;

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Print the cache directory.
    Dir,
    /// Copy files into the cache and print their digests.
    Import {
        /// Files to import.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Digest algorithm.
        #[arg(long, value_enum, default_value = "sha256")]
        algorithm: AlgorithmArg,
    },
    /// Write a blob's content to standard output.
    Cat {
        /// The blob's digest, e.g. sha256:…
        digest: Digest,
    },
    /// Show a blob's size, path and last use.
    Stat {
        /// The blob's digest.
        digest: Digest,
    },
    /// List every blob.
    #[command(visible_alias = "list")]
    Ls,
    /// Show how much space the cache uses.
    Du,
    /// Re-hash every blob and report the ones whose content no longer matches.
    Verify {
        /// Delete bad blobs so the next load fetches them again.
        #[arg(long)]
        prune: bool,
    },
    /// Delete blobs that no tag ref (or --keep digest) reaches, then trim to --max-size.
    Gc {
        /// Keep this digest no matter what (repeatable).
        #[arg(long, value_name = "DIGEST")]
        keep: Vec<Digest>,
        /// Trim least-recently-used blobs until the cache is at most this big (e.g. 10G).
        #[arg(long, value_parser = size::parse, value_name = "SIZE")]
        max_size: Option<u64>,
        /// Do not treat tag refs as roots.
        #[arg(long)]
        no_refs: bool,
    },
    /// Delete everything in the cache.
    Clean,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AlgorithmArg {
    Sha256,
    Sha512,
    Blake3,
}

impl From<AlgorithmArg> for Algorithm {
    fn from(a: AlgorithmArg) -> Self {
        match a {
            AlgorithmArg::Sha256 => Algorithm::Sha256,
            AlgorithmArg::Sha512 => Algorithm::Sha512,
            AlgorithmArg::Blake3 => Algorithm::Blake3,
        }
    }
}

pub async fn run(cmd: CacheCommand, dir: &Path) -> Result<ExitCode, cache_core::Error> {
    if let CacheCommand::Dir = cmd {
        println!("{}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let store = Store::open(dir).await?;
    match cmd {
        CacheCommand::Dir => {}
        CacheCommand::Import { files, algorithm } => {
            for file in files {
                let blob = store.import_file(&file, algorithm.into()).await?;
                println!("{}  {:>10}  {}", blob.digest(), blob.len(), file.display());
            }
        }
        CacheCommand::Cat { digest } => {
            let blob = store
                .get(&digest)?
                .ok_or_else(|| cache_core::Error::NotFound {
                    digest,
                    root: store.root().to_owned(),
                })?;
            let mut out = tokio::io::stdout();
            // A closed pipe (`| head`) is not an error worth reporting.
            let _ = out.write_all(&blob).await;
            let _ = out.flush().await;
        }
        CacheCommand::Stat { digest } => match store.stat(&digest)? {
            Some(info) => {
                println!("digest:    {}", info.digest);
                println!("size:      {} ({})", info.size, size::show(info.size));
                println!("path:      {}", info.path.display());
                let age = info.last_used.elapsed().unwrap_or_default().as_secs();
                println!("last used: {age} s ago");
            }
            None => {
                eprintln!("{digest} is not in the cache at {}", store.root().display());
                return Ok(ExitCode::from(1));
            }
        },
        CacheCommand::Du => {
            let blobs = store.scan().await?;
            let total: u64 = blobs.iter().map(|b| b.size).sum();
            println!(
                "{}  {} blobs  {}",
                size::show(total),
                blobs.len(),
                store.root().display()
            );
        }
        CacheCommand::Ls => {
            let mut blobs = store.scan().await?;
            blobs.sort_by_key(|b| b.digest);
            let total: u64 = blobs.iter().map(|b| b.size).sum();
            for b in &blobs {
                println!("{}  {:>12}", b.digest, b.size);
            }
            eprintln!("{} blobs, {}", blobs.len(), size::show(total));
        }
        CacheCommand::Verify { prune } => {
            let mode = if prune {
                VerifyMode::Prune
            } else {
                VerifyMode::Warn
            };
            let report = store.verify(mode).await?;
            for p in &report.problems {
                println!("BAD  {p}");
            }
            eprintln!(
                "verified {} blobs ({}): {} bad{}",
                report.checked,
                size::show(report.bytes),
                report.problems.len(),
                if prune {
                    format!(", {} deleted", report.pruned)
                } else {
                    String::new()
                }
            );
            if !report.problems.is_empty() && !prune {
                return Ok(ExitCode::from(1));
            }
        }
        CacheCommand::Gc {
            keep,
            max_size,
            no_refs,
        } => {
            let report = store
                .gc(GcOptions {
                    roots: keep,
                    keep_refs: !no_refs,
                    max_size,
                    children: Some(loader::gc_children(store.clone())),
                    ..GcOptions::default()
                })
                .await?;
            println!(
                "removed {} blobs ({}), kept {} ({}){}",
                report.removed.len(),
                size::show(report.freed_bytes),
                report.kept,
                size::show(report.kept_bytes),
                if report.over_budget {
                    "; still over --max-size: the kept digests alone are larger"
                } else {
                    ""
                }
            );
        }
        CacheCommand::Clean => {
            store.clean().await?;
            println!("emptied {}", store.root().display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

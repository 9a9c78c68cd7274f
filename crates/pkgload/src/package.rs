//! Package commands: resolve, fetch, load, ls, cat, unpack, pack, push.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Subcommand, ValueEnum};
use loader::{Lazy, LoadedPackage, Loader, PackageRef, Resolved};
use resolve_graph::Lockfile;
use serde_json::json;
use vfs_overlay::{FileSystem, FileType, VfsPath};

use crate::Global;
use crate::served::Served;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[derive(Debug, Subcommand)]
pub enum PackageCommand {
    /// Resolve a package's dependency graph and print the chosen versions.
    Resolve {
        /// REGISTRY/REPO[:TAG][@DIGEST], oci:DIR[:TAG], namespace/name@REQ or a directory
        /// holding pkgload.toml
        reference: String,
        /// Print JSON: {"root": {...}, "packages": [{"name","version","digest"}, ...]}
        #[arg(long)]
        json: bool,
        /// Write the lockfile here
        #[arg(long, value_name = "FILE")]
        lock: Option<PathBuf>,
        /// Print the graph in Graphviz DOT
        #[arg(long, conflicts_with = "json")]
        dot: bool,
    },
    /// Resolve and fetch every blob the tree needs into the cache.
    Fetch {
        /// What to fetch (see `resolve`)
        reference: String,
        /// Use this lockfile if it exists, else write it
        #[arg(long, value_name = "FILE")]
        lock: Option<PathBuf>,
    },
    /// Load a tree as a runtime would and describe it.
    Load {
        /// What to load (see `resolve`)
        reference: String,
        /// Print JSON: {"root", "packages", "commands", "entrypoint", "footprint"}
        #[arg(long)]
        json: bool,
        /// Use this lockfile if it exists, else write it
        #[arg(long, value_name = "FILE")]
        lock: Option<PathBuf>,
    },
    /// List a directory of the assembled filesystem (nothing is unpacked).
    Ls {
        /// What to load (see `resolve`)
        reference: String,
        /// The directory [default: /]
        path: Option<String>,
        /// Recurse
        #[arg(short = 'R', long)]
        recursive: bool,
        /// Long format: type and mode, size, name, link target
        #[arg(short, long)]
        long: bool,
    },
    /// Write a file of the assembled filesystem to standard output.
    Cat {
        /// What to load (see `resolve`)
        reference: String,
        /// The file
        path: String,
    },
    /// Write the assembled filesystem to a real directory.
    Unpack {
        /// What to load (see `resolve`)
        reference: String,
        /// The target directory (absent or empty)
        dir: PathBuf,
        /// How files whose content is a whole cached blob are placed
        #[arg(long, value_enum, default_value = "auto")]
        link_mode: LinkModeArg,
    },
    /// Build a package from a directory holding pkgload.toml into an OCI layout, or into a
    /// webc file.
    Pack {
        /// The package directory
        dir: PathBuf,
        /// oci:LAYOUT[:TAG] (the tag defaults to the package version), or FILE.webc (a
        /// webc v3 file, as Wasmer's tools read)
        #[arg(long, short)]
        output: String,
    },
    /// Build a package from a directory holding pkgload.toml, or take a webc file, and push
    /// it to a registry.
    Push {
        /// The package directory, or a FILE.webc
        dir: PathBuf,
        /// REGISTRY/REPO[:TAG] (the tag defaults to the package version; required for a
        /// webc without one)
        reference: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LinkModeArg {
    /// Reflink, else hardlink, else copy
    Auto,
    /// Copy-on-write clones (falls back to a copy)
    Reflink,
    /// Hardlinks into the cache (falls back to a copy)
    Hardlink,
    /// Plain copies
    Copy,
}

pub async fn run(command: PackageCommand, global: &Global) -> Result<ExitCode> {
    match command {
        PackageCommand::Resolve {
            reference,
            json,
            lock,
            dot,
        } => {
            let loader = loader(global, false, false).await?;
            let resolved = loader
                .resolve(&PackageRef::parse(&reference)?, None)
                .await?;
            if let Some(path) = &lock {
                write_lock(&resolved, path)?;
            }
            // One write for the whole report, not one per line (stdout is line-buffered).
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            if json {
                writeln!(out, "{}", resolution_json(&resolved))?;
            } else if dot {
                match &resolved.graph {
                    Some(graph) => write!(out, "{}", graph.to_dot())?,
                    None => writeln!(out, "digraph {{ {:?} }}", resolved.root.name)?,
                }
            } else {
                for p in &resolved.packages {
                    writeln!(out, "{} {} {}", p.name, p.version, p.digest)?;
                }
            }
            out.flush()?;
        }
        PackageCommand::Fetch { reference, lock } => {
            let loader = loader(global, true, true).await?;
            let resolved = resolve(&loader, &reference, lock.as_deref()).await?;
            let (report, _) = loader.fetch(&resolved).await?;
            if !global.quiet {
                eprintln!(
                    "fetched {}: {} blobs, {} ({} already cached)",
                    resolved.root.name,
                    report.blobs,
                    crate::size::show(report.bytes),
                    report.cached
                );
            }
        }
        PackageCommand::Load {
            reference,
            json,
            lock,
        } => {
            let served = json.then(Served::default);
            let loaded = load_counting(
                global,
                &reference,
                lock.as_deref(),
                served.as_ref(),
                lazily(global),
            )
            .await?;
            // One write for the whole report, not one per line (stdout is line-buffered).
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            if let Some(served) = served {
                let mut report = loaded_json(&loaded);
                if let Some(fields) = report.as_object_mut() {
                    fields.insert("served".to_owned(), served.json());
                }
                writeln!(out, "{report}")?;
            } else {
                describe(&mut out, &loaded)?;
            }
            out.flush()?;
            exit_without_unmapping(loaded);
        }
        PackageCommand::Ls {
            reference,
            path,
            recursive,
            long,
        } => {
            let loaded = load(global, &reference, None, lazily(global)).await?;
            let path = VfsPath::new(path.as_deref().unwrap_or("/"))?;
            // One write for the whole report, not one per line (stdout is line-buffered).
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            list(&mut out, loaded.fs.as_ref(), &path, recursive, long)?;
            out.flush()?;
            exit_without_unmapping(loaded);
        }
        PackageCommand::Cat { reference, path } => {
            let loaded = load(global, &reference, None, lazily(global)).await?;
            cat(loaded.fs.as_ref(), &VfsPath::new(&path)?)?;
            exit_without_unmapping(loaded);
        }
        PackageCommand::Unpack {
            reference,
            dir,
            link_mode,
        } => {
            let loaded = load(global, &reference, None, Lazy::Off).await?;
            let report = unpack(loaded.fs.clone(), &dir, link_mode).await?;
            if !global.quiet {
                eprintln!("{report}");
            }
        }
        PackageCommand::Pack { dir, output } if output.ends_with(".webc") => {
            let packed = loader::pack_webc(&dir, std::path::Path::new(&output)).await?;
            println!("{}", serde_json::to_string(&packed)?);
        }
        PackageCommand::Pack { dir, output } => {
            let target = match PackageRef::parse(&output)? {
                PackageRef::Layout(layout) => layout,
                _ => {
                    return Err(format!(
                        "--output {output:?}: expected oci:LAYOUT[:TAG] or FILE.webc"
                    )
                    .into());
                }
            };
            let layout = fetch_http::OciLayout::create(target.dir())?;
            let packed =
                loader::pack(&dir, &fetch_http::Repository::Layout(layout), target.tag()).await?;
            println!("{}", serde_json::to_string(&packed)?);
        }
        PackageCommand::Push { dir, reference } => {
            let PackageRef::Registry(target) = PackageRef::parse(&reference)? else {
                return Err(format!("{reference:?}: expected REGISTRY/REPO[:TAG]").into());
            };
            let loader = loader(global, false, false).await?;
            // The parser fills in `latest` for a reference without a tag; here no tag means
            // "the package's version", so only a tag the user wrote counts.
            let written = reference
                .rsplit('/')
                .next()
                .is_some_and(|last| last.contains(':'));
            let tag = target.tag().filter(|_| written).map(str::to_owned);
            let repository = fetch_http::Repository::Registry {
                client: loader.http_client().clone(),
                reference: target,
            };
            let packed = if dir.is_file() && dir.extension().is_some_and(|e| e == "webc") {
                // A webc file goes as it is, one layer of an OCI artifact.
                let blob = loader
                    .store()
                    .import_file(&dir, cache_core::Algorithm::Sha256)
                    .await?;
                let shown = dir.display().to_string();
                loader::push_webc(blob.into_bytes(), &shown, &repository, tag.as_deref()).await?
            } else {
                loader::pack(&dir, &repository, tag.as_deref()).await?
            };
            println!("{}", serde_json::to_string(&packed)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Leaves a loaded tree to the process's exit: the command is over, and unmapping its
/// blobs one by one (a hundred `munmap`s for a 50-package tree, about a tenth of a warm
/// load) costs more than the exit that releases them all at once. Nothing is written when
/// a tree is dropped.
fn exit_without_unmapping(loaded: LoadedPackage) {
    std::mem::forget(loaded);
}

/// The loader for one command; `prefetch` for commands that go on to fetch.
async fn loader(global: &Global, progress: bool, prefetch: bool) -> Result<Loader> {
    loader_counting(global, progress, prefetch, None, Lazy::Off).await
}

/// How `ls`, `cat` and `load` read seekable layers: only the files they touch, with no
/// background download (they exit as soon as their output is written).
fn lazily(global: &Global) -> Lazy {
    if global.lazy { Lazy::Only } else { Lazy::Off }
}

/// [`loader`], counting in `served` which host sent each blob.
async fn loader_counting(
    global: &Global,
    progress: bool,
    prefetch: bool,
    served: Option<&Served>,
    lazy: Lazy,
) -> Result<Loader> {
    let mut builder = Loader::builder()
        .cache_dir(&global.cache_dir)
        .prefetch(prefetch)
        .lazy(lazy)
        // The commands exit once their output is written: nothing to fetch ahead for.
        .lazy_prefetch(false)
        .toc_limit(global.max_toc_size)
        .jobs(global.jobs)
        .offline(global.offline)
        .ref_ttl(global.ref_ttl)
        .layer_limits(vfs_overlay::LayerLimits {
            max_uncompressed: global.max_layer_size,
            ..vfs_overlay::LayerLimits::default()
        });
    for place in &global.registry {
        builder = match place.strip_prefix("dir:") {
            Some(dir) => builder.webc_dir(dir),
            None => {
                let (host, prefix) = place.split_once('/').unwrap_or((place, ""));
                builder.registry(host, prefix)
            }
        };
    }
    if let Some(dir) = &global.hosts_dir {
        builder = builder.hosts_dir(dir);
    }
    for host in &global.insecure {
        builder = builder.insecure_host(host);
    }
    let bar = if progress && !global.quiet {
        crate::progress::bar()
    } else {
        None
    };
    builder = match (served, bar) {
        (Some(served), bar) => builder.progress(served.sink(bar)),
        (None, Some(bar)) => builder.progress(bar),
        (None, None) => builder,
    };
    Ok(builder.build().await?)
}

/// Resolve, with `lock` used when the file exists and written when it does not.
async fn resolve(loader: &Loader, reference: &str, lock: Option<&Path>) -> Result<Resolved> {
    let reference = PackageRef::parse(reference)?;
    let existing = match lock {
        Some(path) if path.exists() => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("reading lockfile {}: {e}", path.display()))?;
            Some(Lockfile::from_toml(&text)?)
        }
        _ => None,
    };
    let resolved = loader.resolve(&reference, existing.as_ref()).await?;
    if let (Some(path), None) = (lock, &existing) {
        write_lock(&resolved, path)?;
    }
    Ok(resolved)
}

async fn load(
    global: &Global,
    reference: &str,
    lock: Option<&Path>,
    lazy: Lazy,
) -> Result<LoadedPackage> {
    load_counting(global, reference, lock, None, lazy).await
}

async fn load_counting(
    global: &Global,
    reference: &str,
    lock: Option<&Path>,
    served: Option<&Served>,
    lazy: Lazy,
) -> Result<LoadedPackage> {
    let loader = loader_counting(global, true, true, served, lazy).await?;
    let resolved = resolve(&loader, reference, lock).await?;
    Ok(loader.load_resolved(resolved).await?)
}

fn write_lock(resolved: &Resolved, path: &Path) -> Result<()> {
    let Some(lock) = resolved.lockfile() else {
        return Err(format!(
            "{} is not a package (an image or wasm artifact has no lockfile)",
            resolved.root.name
        )
        .into());
    };
    let text = lock.to_toml()?;
    let temp = path.with_extension("lock.tmp");
    std::fs::write(&temp, text).map_err(|e| format!("writing {}: {e}", temp.display()))?;
    std::fs::rename(&temp, path).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(())
}

fn resolution_json(resolved: &Resolved) -> serde_json::Value {
    json!({ "root": resolved.root, "packages": resolved.packages })
}

fn loaded_json(loaded: &LoadedPackage) -> serde_json::Value {
    let commands: Vec<serde_json::Value> = loaded
        .commands
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "package": c.package,
                "version": c.version,
                "runner": c.runner,
                "atom": c.atom.digest().to_string(),
            })
        })
        .collect();
    let f = &loaded.footprint;
    json!({
        "root": loaded.resolved.root,
        "kind": loaded.resolved.kind,
        "packages": loaded.resolved.packages,
        "commands": commands,
        "entrypoint": loaded.entrypoint,
        "footprint": {
            "files": f.files,
            "dirs": f.dirs,
            "symlinks": f.symlinks,
            "bytes": f.bytes,
        },
    })
}

fn describe(out: &mut impl Write, loaded: &LoadedPackage) -> Result<()> {
    let root = &loaded.resolved.root;
    writeln!(out, "{} {} ({})", root.name, root.version, root.digest)?;
    for p in loaded.resolved.packages.iter().skip(1) {
        writeln!(out, "  depends on {} {}", p.name, p.version)?;
    }
    for c in &loaded.commands {
        let star = if loaded.entrypoint.as_deref() == Some(&c.name) {
            " (entrypoint)"
        } else {
            ""
        };
        writeln!(
            out,
            "  command {}{star}: {} atom {} from {} {}",
            c.name,
            c.runner,
            c.atom.digest(),
            c.package,
            c.version
        )?;
    }
    let f = &loaded.footprint;
    writeln!(
        out,
        "  filesystem: {} files, {} directories, {} symlinks, {}",
        f.files,
        f.dirs,
        f.symlinks,
        crate::size::show(f.bytes)
    )?;
    Ok(())
}

/// Writes a file to stdout through a bounded buffer: a file of any size costs 1 MiB of
/// memory, never a mapping of the whole file.
fn cat(fs: &dyn FileSystem, path: &VfsPath) -> Result<()> {
    let path = fs.canonicalize(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut out = std::io::stdout().lock();
    let mut at = 0u64;
    loop {
        let n = fs.read_at(&path, at, &mut buf)?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        out.write_all(chunk)?;
        at += n as u64;
    }
    out.flush()?;
    Ok(())
}

fn list(
    out: &mut impl Write,
    fs: &dyn FileSystem,
    path: &VfsPath,
    recursive: bool,
    long: bool,
) -> Result<()> {
    if !fs.metadata(path)?.is_dir() {
        return entry(out, fs, path, path.as_str(), long);
    }
    // Explicit stack: a hostile image may nest thousands of directories.
    let mut stack = vec![path.clone()];
    let mut first = true;
    while let Some(dir) = stack.pop() {
        if recursive {
            if !first {
                writeln!(out)?;
            }
            writeln!(out, "{dir}:")?;
        }
        first = false;
        let mut subdirs = Vec::new();
        for e in fs.read_dir(&dir)? {
            let child = dir.join(&e.name)?;
            entry(out, fs, &child, &e.name, long)?;
            if recursive && e.kind == FileType::Dir {
                subdirs.push(child);
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

fn entry(
    out: &mut impl Write,
    fs: &dyn FileSystem,
    path: &VfsPath,
    name: &str,
    long: bool,
) -> Result<()> {
    if !long {
        writeln!(out, "{name}")?;
        return Ok(());
    }
    let meta = fs.symlink_metadata(path)?;
    let kind = match meta.kind {
        FileType::Dir => 'd',
        FileType::Symlink => 'l',
        FileType::File => '-',
        _ => '?',
    };
    let target = if meta.kind == FileType::Symlink {
        format!(" -> {}", fs.read_link(path)?)
    } else {
        String::new()
    };
    writeln!(
        out,
        "{kind}{:04o} {:>5}:{:<5} {:>12} {name}{target}",
        meta.mode, meta.uid, meta.gid, meta.size
    )?;
    Ok(())
}

async fn unpack(fs: Arc<dyn FileSystem>, dir: &Path, mode: LinkModeArg) -> Result<String> {
    let dir = dir.to_owned();
    let report = tokio::task::spawn_blocking(move || {
        let link = match mode {
            LinkModeArg::Auto => vfs_overlay::LinkMode::Auto,
            LinkModeArg::Reflink => vfs_overlay::LinkMode::Reflink,
            LinkModeArg::Hardlink => vfs_overlay::LinkMode::Hardlink,
            LinkModeArg::Copy => vfs_overlay::LinkMode::Copy,
        };
        let options = vfs_overlay::MaterializeOptions::new().link_mode(link);
        vfs_overlay::materialize(fs.as_ref(), &dir, options)
    })
    .await??;
    Ok(format!(
        "unpacked {} files ({}), {} directories, {} symlinks, {} hardlinks: {} reflinked, \
         {} hardlinked, {} copied",
        report.files,
        crate::size::show(report.bytes),
        report.dirs,
        report.symlinks,
        report.hardlinks,
        report.reflinked,
        report.hardlinked,
        report.copied
    ))
}

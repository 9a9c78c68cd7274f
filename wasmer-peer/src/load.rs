//! `load`: resolve and load a package tree with Wasmer's own code (wasmer-wasix 0.704),
//! the way `BinaryPackage::from_webc` / `from_registry` do, without a whole `Runtime`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use wasmer_config::package::{PackageHash, PackageId, PackageSource};
use wasmer_wasix::bin_factory::BinaryPackage;
use wasmer_wasix::http::HttpClient;
use wasmer_wasix::http::reqwest::ReqwestHttpClient;
use wasmer_wasix::runtime::package_loader::{
    BuiltinPackageLoader, PackageLoader, load_package_tree,
};
use wasmer_wasix::runtime::resolver::{
    InMemorySource, MultiSource, PackageInfo, Source, WebSource, resolve,
};
use wasmer_wasix::virtual_fs::FileSystem;

use crate::serve::hex;

#[derive(Debug, Clone)]
pub struct Options {
    pub dir: Option<PathBuf>,
    pub web: Option<PathBuf>,
    pub describe: bool,
    pub root: String,
}

pub fn run(options: &Options) -> Result<()> {
    // Wasmer's loader calls `block_in_place`, which needs the multi-threaded runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(load(options))
}

async fn load(options: &Options) -> Result<()> {
    let started = Instant::now();
    let client: Arc<dyn HttpClient + Send + Sync> = Arc::new(ReqwestHttpClient::default());
    let mut source = MultiSource::new();
    let mut loader = BuiltinPackageLoader::new().with_shared_http_client(Arc::clone(&client));
    if let Some(dir) = &options.dir {
        // Reads and hashes every webc below `dir` up front (writing `.webc.sha256`
        // sidecars beside them the first time), as Wasmer's directory source does.
        source.add_source(
            InMemorySource::from_directory_tree(dir)
                .with_context(|| format!("indexing {}", dir.display()))?,
        );
    }
    if let Some(cache) = &options.web {
        // The two caches Wasmer keeps for URL packages: the web source's downloads
        // (with their ETags) and the loader's checkouts by sha256.
        source.add_source(WebSource::new(cache.join("web"), Arc::clone(&client)));
        loader = loader.with_cache_dir(cache.join("checkouts"));
    }

    let (container, root_id, root) = if is_url(&options.root) {
        let url = options
            .root
            .parse()
            .with_context(|| format!("{}: not a URL", options.root))?;
        let summary = source
            .latest(&PackageSource::Url(url))
            .await
            .with_context(|| format!("querying {}", options.root))?;
        let container = loader
            .load(&summary)
            .await
            .with_context(|| format!("loading {}", options.root))?;
        (container, summary.package_id(), summary.pkg)
    } else {
        let path = Path::new(&options.root);
        let container = wasmer_package::utils::from_disk(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let manifest = container.manifest();
        let id = PackageInfo::package_id_from_manifest(manifest)?
            .or_else(|| {
                container
                    .webc_hash()
                    .map(|hash| PackageId::Hash(PackageHash::from_sha256_bytes(hash)))
            })
            .ok_or_else(|| anyhow!("{}: no name and no hash", path.display()))?;
        let root = PackageInfo::from_manifest(id.clone(), manifest, container.version())?;
        (container, id, root)
    };

    let resolution = resolve(&root_id, &root, &source)
        .await
        .context("resolving the dependencies")?;
    let package = load_package_tree(&container, &loader, &resolution, false)
        .await
        .context("loading the package tree")?;
    let took = started.elapsed();

    if options.describe {
        let description = describe(&package).await?;
        println!("{}", serde_json::to_string_pretty(&description)?);
    } else {
        println!("ok {}", took.as_millis());
    }
    Ok(())
}

fn is_url(text: &str) -> bool {
    text.starts_with("http://") || text.starts_with("https://")
}

/// The loaded tree as the oracle compares it: packages, commands (by the sha256 of the
/// atom each runs), entrypoint and every entry of the assembled filesystem.
async fn describe(package: &BinaryPackage) -> Result<Value> {
    let mut packages: Vec<String> = package
        .package_ids
        .iter()
        .map(ToString::to_string)
        .collect();
    packages.sort();
    let commands: serde_json::Map<String, Value> = package
        .commands
        .iter()
        .map(|c| {
            (
                c.name().to_owned(),
                Value::String(hex(&Sha256::digest(c.atom_ref().as_ref()))),
            )
        })
        .collect();
    let mut files = Vec::new();
    if let Some(mounts) = &package.package_mounts {
        let fs = mounts
            .to_mount_fs()
            .map_err(|e| anyhow!("assembling the mounts: {e}"))?;
        walk(&fs, &mut files).await?;
    }
    files.sort_by(|a: &Value, b: &Value| a["path"].as_str().cmp(&b["path"].as_str()));
    Ok(json!({
        "root": package.id.to_string(),
        "packages": packages,
        "entrypoint": package.entrypoint_cmd,
        "commands": commands,
        "files": files,
    }))
}

async fn walk(fs: &dyn FileSystem, out: &mut Vec<Value>) -> Result<()> {
    let mut stack = vec![PathBuf::from("/")];
    while let Some(dir) = stack.pop() {
        let entries = fs
            .read_dir(&dir)
            .map_err(|e| anyhow!("read_dir {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| anyhow!("read_dir {}: {e}", dir.display()))?;
            let path = absolute(&dir, &entry.path);
            let meta = fs
                .symlink_metadata(&path)
                .map_err(|e| anyhow!("metadata {}: {e}", path.display()))?;
            let shown = path.to_string_lossy().into_owned();
            if meta.ft.symlink {
                out.push(json!({"path": shown, "kind": "symlink", "size": meta.len}));
            } else if meta.is_dir() {
                out.push(json!({"path": shown, "kind": "dir", "size": meta.len}));
                stack.push(path);
            } else if meta.is_file() {
                let mut file = fs
                    .new_open_options()
                    .read(true)
                    .open(&path)
                    .map_err(|e| anyhow!("open {}: {e}", path.display()))?;
                let mut data = Vec::new();
                file.read_to_end(&mut data)
                    .await
                    .with_context(|| format!("read {}", path.display()))?;
                out.push(json!({
                    "path": shown,
                    "kind": "file",
                    "size": data.len(),
                    "sha256": hex(&Sha256::digest(&data)),
                }));
            } else {
                bail!("{}: neither file, directory nor symlink", path.display());
            }
        }
    }
    Ok(())
}

/// Entries come back either as full paths or as names, depending on the filesystem.
fn absolute(dir: &Path, entry: &Path) -> PathBuf {
    if entry.is_absolute() {
        entry.to_path_buf()
    } else {
        dir.join(entry)
    }
}

//! Loads an image and waits until every byte of it is stored and verified, printing how
//! long the tree took to be ready and how long until the whole image was in the cache.
//!
//! ```text
//! cargo run --release -p loader --example lazy_fill -- CACHE_DIR IMAGE auto|off
//! ```
//!
//! With `auto` the tree is ready once the layers' tables of contents are in, and the
//! layers download in the background ([`loader::LazyFill`]); with `off` every layer is
//! downloaded, decompressed and indexed before the tree is ready. `cargo xtask bench
//! --only lazy` compares the two.

use std::time::Instant;

use loader::{Lazy, Loader, PackageRef};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [cache, image, mode] = args.as_slice() else {
        return Err("usage: lazy_fill CACHE_DIR IMAGE auto|off".into());
    };
    let lazy = match mode.as_str() {
        "auto" => Lazy::Auto,
        "off" => Lazy::Off,
        other => return Err(format!("mode {other:?}: auto or off").into()),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let started = Instant::now();
        let loader = Loader::builder()
            .cache_dir(cache)
            .lazy(lazy)
            .build()
            .await?;
        let loaded = loader.load(&PackageRef::parse(image)?, None).await?;
        let ready = started.elapsed();
        if let Some(fill) = loaded.lazy_fill() {
            fill.wait().await.map_err(|e| e.to_string())?;
        }
        let complete = started.elapsed();
        println!(
            "ready_ms={} complete_ms={} files={}",
            ready.as_millis(),
            complete.as_millis(),
            loaded.footprint.files
        );
        Ok(())
    })
}

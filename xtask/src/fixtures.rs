//! `cargo xtask fixtures`: deterministic (seeded) OCI layouts for the benchmarks and the
//! end-to-end tests, written under `target/fixtures/`, and a loopback `docker-registry` to
//! push them into.
//!
//! Every fixture is rebuilt only when its stamp (`target/fixtures/NAME.stamp`: generator
//! version and parameters) differs, so re-running reuses what exists.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use crate::cmd::workspace_root;
use crate::{Error, Result};

/// Bump when a generator changes what it writes: every stamp goes stale.
const GENERATOR_VERSION: u32 = 1;
/// The 1 MiB file of `image-512m-chunked` the lazy-read benchmark reads.
pub const NAMED_FILE: &str = "/named/one-mib.bin";
/// The tag every image layout carries.
pub const IMAGE_TAG: &str = "latest";
/// The version every package of `tree-200` has (and so its tag).
pub const TREE_VERSION: &str = "1.0.0";
/// How many packages `tree-200` holds.
pub const TREE_PACKAGES: usize = 200;
const MIB: u64 = 1 << 20;
const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The fixtures, by name.
pub const NAMES: [&str; 6] = [
    "image-512m",
    "image-1g",
    "image-2g-zeros",
    "image-oci-rules",
    "universe",
    "tree-200",
];

/// `cargo xtask fixtures` options.
#[derive(Debug, Clone)]
pub struct Options {
    pub scale: f64,
    pub push: bool,
    pub only: Vec<String>,
}

impl Options {
    /// `None` for `--help`.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Option<Self>> {
        let mut options = Self {
            scale: env_scale()?.unwrap_or(1.0),
            push: false,
            only: Vec::new(),
        };
        let mut args = args.into_iter().map(|a| a.to_string_lossy().into_owned());
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--scale" => {
                    let value = args
                        .next()
                        .ok_or_else(|| Error::new("--scale needs a value"))?;
                    options.scale = parse_scale(&value)?;
                }
                "--push" => options.push = true,
                "--only" => {
                    let value = args
                        .next()
                        .ok_or_else(|| Error::new("--only needs a name"))?;
                    if !NAMES.contains(&value.as_str()) {
                        return Err(Error::new(format!(
                            "unknown fixture `{value}`; the fixtures are {}",
                            NAMES.join(", ")
                        )));
                    }
                    options.only.push(value);
                }
                "-h" | "--help" => return Ok(None),
                other => return Err(Error::new(format!("fixtures: unknown argument `{other}`"))),
            }
        }
        Ok(Some(options))
    }

    fn wants(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|n| n == name)
    }
}

/// `PKGLOAD_FIXTURE_SCALE`, when set.
pub fn env_scale() -> Result<Option<f64>> {
    match std::env::var("PKGLOAD_FIXTURE_SCALE") {
        Ok(value) => parse_scale(&value).map(Some),
        Err(_) => Ok(None),
    }
}

fn parse_scale(value: &str) -> Result<f64> {
    match value.parse::<f64>() {
        Ok(scale) if scale > 0.0 && scale <= 16.0 => Ok(scale),
        _ => Err(Error::new(format!(
            "scale `{value}` is not a number in (0, 16]"
        ))),
    }
}

pub fn run(options: &Options) -> Result<()> {
    let pkgload = if options.wants("universe") || options.wants("tree-200") || options.push {
        Some(build_pkgload()?)
    } else {
        None
    };
    let fixtures = generate(options.scale, pkgload.as_deref(), &|name| {
        options.wants(name)
    })?;
    if options.push {
        let pkgload = pkgload.ok_or_else(|| Error::new("pkgload was not built"))?;
        let registry = Registry::start(&fixtures_dir().join(".registry"))?;
        eprintln!("docker-registry listening on {}", registry.addr);
        push(&fixtures, &registry, &pkgload, &|name| options.wants(name))?;
        eprintln!("pushed; stopping the registry");
    }
    Ok(())
}

/// `cargo build --release -p pkgload`; the binary's path. `$PKGLOAD_BIN` names a binary
/// to use instead, without building.
pub fn build_pkgload() -> Result<PathBuf> {
    if let Some(binary) = std::env::var_os("PKGLOAD_BIN") {
        let binary = PathBuf::from(binary);
        return if binary.is_file() {
            Ok(binary)
        } else {
            Err(Error::new(format!(
                "PKGLOAD_BIN={}: no such file",
                binary.display()
            )))
        };
    }
    crate::cmd::Cmd::cargo()
        .args(["build", "--release", "-p", "pkgload"])
        .run()?;
    let binary = target_dir().join("release").join("pkgload");
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(Error::new(format!("{} was not built", binary.display())))
    }
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"))
}

pub fn fixtures_dir() -> PathBuf {
    target_dir().join("fixtures")
}

/// Where the generated fixtures are.
#[derive(Debug, Clone)]
pub struct Fixtures {
    pub dir: PathBuf,
}

impl Fixtures {
    /// The OCI layout of an image (`image-512m`, `image-1g`, `image-oci-rules`).
    pub fn image(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The blob digests (`sha256:…`) of an image's manifest: config then layers.
    pub fn blobs(&self, name: &str) -> Result<Vec<String>> {
        let path = self.dir.join(format!("{name}.blobs"));
        let text = fs::read_to_string(&path).map_err(io_err(&path))?;
        Ok(text.lines().map(str::to_owned).collect())
    }
}

/// Generates every fixture `wanted` says yes to (reusing those whose stamp matches).
pub fn generate(
    scale: f64,
    pkgload: Option<&Path>,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Fixtures> {
    let dir = fixtures_dir();
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let fixtures = Fixtures { dir };
    let scaled = |bytes: u64| ((bytes as f64 * scale) as u64).max(4096);
    if wanted("image-512m") {
        let total = scaled(512 * MIB);
        let spec = ImageSpec {
            layers: 16,
            files_per_layer: 256,
            file_size: (total / 4096).max(1),
            seed: 512,
            named_file: None,
        };
        fixture(&fixtures, "image-512m", &format!("{spec:?}"), |out| {
            write_bulk_image(out, &spec)
        })?;
    }
    if wanted("image-1g") {
        let total = scaled(1024 * MIB);
        let spec = ImageSpec {
            layers: 1,
            files_per_layer: 16,
            file_size: (total / 16).max(1),
            seed: 1024,
            named_file: None,
        };
        fixture(&fixtures, "image-1g", &format!("{spec:?}"), |out| {
            write_bulk_image(out, &spec)
        })?;
    }
    if wanted("image-512m-chunked") {
        let total = scaled(512 * MIB);
        let spec = ImageSpec {
            layers: 16,
            files_per_layer: 256,
            file_size: (total / 4096).max(1),
            seed: 512,
            named_file: Some(NAMED_FILE),
        };
        fixture(&fixtures, "image-512m-named", &format!("{spec:?}"), |out| {
            write_bulk_image(out, &spec)
        })?;
        let source = fixtures.image("image-512m-named");
        fixture(
            &fixtures,
            "image-512m-chunked",
            &format!("zstd:chunked by skopeo of {spec:?}"),
            |out| write_chunked_image(out, &source),
        )?;
    }
    if wanted("image-2g-zeros") {
        // Not scaled: the point is one file far larger than the memory bound.
        fixture(&fixtures, "image-2g-zeros", "2048 MiB of zeros", |out| {
            write_zeros_image(out, 2048)
        })?;
    }
    if wanted("image-oci-rules") {
        fixture(&fixtures, "image-oci-rules", "rules", write_rules_image)?;
    }
    if wanted("universe") || wanted("tree-200") {
        let pkgload =
            pkgload.ok_or_else(|| Error::new("package fixtures need the pkgload binary"))?;
        if wanted("universe") {
            fixture(&fixtures, "universe", "universe", |out| {
                write_universe(out, pkgload)
            })?;
        }
        if wanted("tree-200") {
            let file_size = scaled(64 * 1024).min(64 * 1024);
            fixture(
                &fixtures,
                "tree-200",
                &format!("file_size={file_size} volumes=zstd:chunked"),
                |out| write_tree(out, pkgload, file_size),
            )?;
        }
    }
    Ok(fixtures)
}

/// Builds one fixture into `DIR/NAME` unless `DIR/NAME.stamp` says it is there already.
fn fixture(
    fixtures: &Fixtures,
    name: &str,
    params: &str,
    build: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let out = fixtures.dir.join(name);
    let stamp_path = fixtures.dir.join(format!("{name}.stamp"));
    let stamp = format!("generator {GENERATOR_VERSION}\n{params}\n");
    if out.is_dir() && fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp) {
        eprintln!("fixture {name}: up to date ({})", out.display());
        return Ok(());
    }
    eprintln!("fixture {name}: generating into {}", out.display());
    let started = Instant::now();
    let _ = fs::remove_file(&stamp_path);
    remove_dir(&out)?;
    build(&out)?;
    fs::write(&stamp_path, stamp).map_err(io_err(&stamp_path))?;
    eprintln!(
        "fixture {name}: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            // Unpacked trees may hold directories without write permission.
            let _ = Command::new("chmod")
                .arg("-R")
                .arg("u+rwX")
                .arg(dir)
                .status();
            fs::remove_dir_all(dir).map_err(io_err(dir))
        }
    }
}

pub fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |err| Error::new(format!("{}: {err}", path.display()))
}

// ---------------------------------------------------------------------------------------
// Deterministic data

/// splitmix64: fast, seeded, good enough to be incompressible for gzip.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            let n = chunk.len();
            chunk.copy_from_slice(bytes.get(..n).unwrap_or(&bytes));
        }
    }
}

/// `len` random bytes as a reader.
struct RandomReader {
    rng: Rng,
    left: u64,
}

impl Read for RandomReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        let out = buf.get_mut(..n).unwrap_or_default();
        self.rng.fill(out);
        self.left -= n as u64;
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------
// OCI layouts

/// A writer that hashes (sha256) and counts what passes through.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hash: Sha256::new(),
            len: 0,
        }
    }

    fn finish(self) -> (W, String, u64) {
        (self.inner, hex_digest(self.hash), self.len)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let written = buf.get(..n).unwrap_or(buf);
        self.hash.update(written);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn hex_digest(hash: Sha256) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("sha256:");
    for byte in hash.finalize().iter() {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// A descriptor: media type, digest, size.
#[derive(Debug, Clone)]
struct Descriptor {
    media_type: &'static str,
    digest: String,
    size: u64,
}

impl Descriptor {
    fn json(&self) -> String {
        format!(
            r#"{{"mediaType":"{}","digest":"{}","size":{}}}"#,
            self.media_type, self.digest, self.size
        )
    }
}

/// A layer being written: tar → (diff_id hash) → gzip → (digest hash) → temporary file.
type LayerWriter = tar::Builder<Hashing<GzEncoder<Hashing<BufWriter<File>>>>>;

fn blob_dir(layout: &Path) -> PathBuf {
    layout.join("blobs").join("sha256")
}

fn start_layer(layout: &Path, index: usize) -> Result<(LayerWriter, PathBuf)> {
    let dir = blob_dir(layout);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let tmp = layout.join(format!(".layer-{index}.tmp"));
    let file = File::create(&tmp).map_err(io_err(&tmp))?;
    let gz = GzEncoder::new(Hashing::new(BufWriter::new(file)), Compression::fast());
    Ok((tar::Builder::new(Hashing::new(gz)), tmp))
}

/// Finishes a layer: its descriptor and its diff_id.
fn finish_layer(layout: &Path, builder: LayerWriter, tmp: &Path) -> Result<(Descriptor, String)> {
    let uncompressed = builder.into_inner().map_err(io_err(tmp))?;
    let (gz, diff_id, _) = uncompressed.finish();
    let compressed = gz.finish().map_err(io_err(tmp))?;
    let (mut file, digest, size) = compressed.finish();
    file.flush().map_err(io_err(tmp))?;
    drop(file);
    let hex = digest.trim_start_matches("sha256:");
    let dest = blob_dir(layout).join(hex);
    fs::rename(tmp, &dest).map_err(io_err(&dest))?;
    Ok((
        Descriptor {
            media_type: LAYER_MEDIA_TYPE,
            digest,
            size,
        },
        diff_id,
    ))
}

/// One layer holding one file, `big.bin`, of `mib` MiB of zeros: gzip members (the
/// header, one member of 1 MiB of zeros repeated, the end of the archive) that decompress
/// as one stream, so ~2 MiB on disk is written in a moment.
fn write_zeros_image(layout: &Path, mib: u64) -> Result<()> {
    let gzip = |data: &[u8]| -> io::Result<Vec<u8>> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::best());
        enc.write_all(data)?;
        enc.finish()
    };
    let mut header = header(tar::EntryType::Regular, 0o644, mib * MIB);
    header
        .set_path("big.bin")
        .map_err(|e| Error::new(format!("tar header: {e}")))?;
    header.set_cksum();
    let zeros = vec![0u8; MIB as usize];
    let zero_member = gzip(&zeros).map_err(io_err(layout))?;
    let mut layer = gzip(header.as_bytes()).map_err(io_err(layout))?;
    let mut diff_id = Sha256::new();
    diff_id.update(header.as_bytes());
    for _ in 0..mib {
        layer.extend_from_slice(&zero_member);
        diff_id.update(&zeros);
    }
    layer.extend_from_slice(&gzip(&[0u8; 1024]).map_err(io_err(layout))?);
    diff_id.update([0u8; 1024]);
    let descriptor = write_blob(layout, LAYER_MEDIA_TYPE, &layer)?;
    finish_image(layout, &[(descriptor, hex_digest(diff_id))])
}

fn write_blob(layout: &Path, media_type: &'static str, bytes: &[u8]) -> Result<Descriptor> {
    let mut hash = Sha256::new();
    hash.update(bytes);
    let digest = hex_digest(hash);
    let dir = blob_dir(layout);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let path = dir.join(digest.trim_start_matches("sha256:"));
    fs::write(&path, bytes).map_err(io_err(&path))?;
    Ok(Descriptor {
        media_type,
        digest,
        size: bytes.len() as u64,
    })
}

/// Writes config, manifest, `index.json` and `oci-layout`; records the blob list beside
/// the layout (`NAME.blobs`: config then layers).
fn finish_image(layout: &Path, layers: &[(Descriptor, String)]) -> Result<()> {
    let diff_ids: Vec<String> = layers.iter().map(|(_, d)| format!("\"{d}\"")).collect();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["PATH=/usr/bin:/bin"],"WorkingDir":"/"}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        diff_ids.join(",")
    );
    let config = write_blob(
        layout,
        "application/vnd.oci.image.config.v1+json",
        config.as_bytes(),
    )?;
    let layer_json: Vec<String> = layers.iter().map(|(d, _)| d.json()).collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{}]}}"#,
        config.json(),
        layer_json.join(",")
    );
    let manifest = write_blob(
        layout,
        "application/vnd.oci.image.manifest.v1+json",
        manifest.as_bytes(),
    )?;
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"{}","digest":"{}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"{IMAGE_TAG}"}}}}]}}"#,
        manifest.media_type, manifest.digest, manifest.size
    );
    let path = layout.join("index.json");
    fs::write(&path, index).map_err(io_err(&path))?;
    let path = layout.join("oci-layout");
    fs::write(&path, r#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_err(&path))?;
    let mut blobs = vec![config.digest];
    blobs.extend(layers.iter().map(|(d, _)| d.digest.clone()));
    let name = layout
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let list = layout.with_file_name(format!("{name}.blobs"));
    fs::write(&list, blobs.join("\n") + "\n").map_err(io_err(&list))?;
    Ok(())
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_700_000_000);
    header
}

fn add_dir(b: &mut LayerWriter, path: &str, mode: u32) -> io::Result<()> {
    let mut h = header(tar::EntryType::Directory, mode, 0);
    b.append_data(&mut h, path, io::empty())
}

fn add_file(b: &mut LayerWriter, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
    let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
    b.append_data(&mut h, path, data)
}

fn add_link(b: &mut LayerWriter, kind: tar::EntryType, path: &str, target: &str) -> io::Result<()> {
    let mut h = header(kind, 0o777, 0);
    b.append_link(&mut h, path, target)
}

/// The shape of a bulk image: random files spread over layers.
#[derive(Debug, Clone)]
struct ImageSpec {
    layers: usize,
    files_per_layer: usize,
    file_size: u64,
    seed: u64,
    /// A 1 MiB file of noise at this path, in the last layer (the file the lazy-read
    /// benchmark asks for).
    named_file: Option<&'static str>,
}

/// Incompressible files, `files_per_layer` per layer in 16 directories; the layers are
/// written two at a time.
fn write_bulk_image(layout: &Path, spec: &ImageSpec) -> Result<()> {
    fs::create_dir_all(layout).map_err(io_err(layout))?;
    let write_layer = |index: usize| -> Result<(Descriptor, String)> {
        let (mut b, tmp) = start_layer(layout, index)?;
        let mut rng = Rng::new(spec.seed.wrapping_mul(1000).wrapping_add(index as u64));
        (|| -> io::Result<()> {
            add_dir(&mut b, &format!("layer{index:02}"), 0o755)?;
            for d in 0..16 {
                add_dir(&mut b, &format!("layer{index:02}/d{d:02}"), 0o755)?;
            }
            if let Some(named) = spec.named_file.filter(|_| index + 1 == spec.layers) {
                let mut h = header(tar::EntryType::Regular, 0o644, MIB);
                let data = RandomReader {
                    rng: Rng::new(rng.next_u64()),
                    left: MIB,
                };
                b.append_data(&mut h, named.trim_start_matches('/'), data)?;
            }
            for f in 0..spec.files_per_layer {
                let path = format!("layer{index:02}/d{:02}/f{f:04}.bin", f % 16);
                let mut h = header(tar::EntryType::Regular, 0o644, spec.file_size);
                let data = RandomReader {
                    rng: Rng::new(rng.next_u64()),
                    left: spec.file_size,
                };
                b.append_data(&mut h, &path, data)?;
            }
            Ok(())
        })()
        .map_err(io_err(&tmp))?;
        finish_layer(layout, b, &tmp)
    };
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    let mut layers: Vec<Option<Result<(Descriptor, String)>>> =
        (0..spec.layers).map(|_| None).collect();
    for (chunk_index, chunk) in layers.chunks_mut(workers).enumerate() {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..chunk.len())
                .map(|i| {
                    let write_layer = &write_layer;
                    scope.spawn(move || write_layer(chunk_index * workers + i))
                })
                .collect();
            for (slot, handle) in chunk.iter_mut().zip(handles) {
                *slot = Some(
                    handle
                        .join()
                        .unwrap_or_else(|_| Err(Error::new("a layer writer panicked"))),
                );
            }
        });
    }
    let layers = layers
        .into_iter()
        .map(|l| l.unwrap_or_else(|| Err(Error::new("a layer was not written"))))
        .collect::<Result<Vec<_>>>()?;
    finish_image(layout, &layers)
}

/// `source` (an OCI layout of gzip layers) converted by skopeo into zstd:chunked layers,
/// its config's diff_ids recomputed from the converted layers: Debian's skopeo 1.9 ends
/// each converted tar with a shorter end-of-archive padding than the source's but keeps the
/// source's diff_ids, an image pkgload (like containerd) rightly refuses.
fn write_chunked_image(out: &Path, source: &Path) -> Result<()> {
    crate::cmd::Cmd::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--dest-compress",
            "--dest-compress-format",
        ])
        .arg("zstd:chunked")
        .arg(format!("oci:{}:{IMAGE_TAG}", source.display()))
        .arg(format!("oci:{}:{IMAGE_TAG}", out.display()))
        .run()?;
    let read = |digest: &str| -> Result<String> {
        let path = blob_dir(out).join(digest.trim_start_matches("sha256:"));
        fs::read_to_string(&path).map_err(io_err(&path))
    };
    let index_path = out.join("index.json");
    let index = fs::read_to_string(&index_path).map_err(io_err(&index_path))?;
    let manifest_digest = descriptor_digests(&index)
        .into_iter()
        .next()
        .ok_or_else(|| Error::new("skopeo wrote an index without a manifest"))?;
    let manifest = read(&manifest_digest)?;
    // skopeo writes `config` before `layers`, each descriptor's digest then size.
    let digests = descriptor_digests(&manifest);
    let (config_digest, layers) = digests
        .split_first()
        .ok_or_else(|| Error::new("skopeo wrote a manifest without a config"))?;
    let mut config = read(config_digest)?;
    let old_ids = json_digests(&config);
    if old_ids.len() != layers.len() {
        return Err(Error::new(format!(
            "the converted config lists {} diff_ids for {} layers",
            old_ids.len(),
            layers.len()
        )));
    }
    for (old, layer) in old_ids.iter().zip(layers) {
        let path = blob_dir(out).join(layer.trim_start_matches("sha256:"));
        let new = zstd_diff_id(&path)?;
        config = config.replace(old.as_str(), &new);
    }
    let config_descriptor = write_blob(
        out,
        "application/vnd.oci.image.config.v1+json",
        config.as_bytes(),
    )?;
    let old_size = fs::metadata(blob_dir(out).join(config_digest.trim_start_matches("sha256:")))
        .map_err(io_err(out))?
        .len();
    let manifest = manifest.replacen(
        &format!(r#""digest":"{config_digest}","size":{old_size}"#),
        &format!(
            r#""digest":"{}","size":{}"#,
            config_descriptor.digest, config_descriptor.size
        ),
        1,
    );
    if !manifest.contains(&config_descriptor.digest) {
        return Err(Error::new(
            "could not find the config descriptor in skopeo's manifest",
        ));
    }
    let manifest_descriptor = write_blob(
        out,
        "application/vnd.oci.image.manifest.v1+json",
        manifest.as_bytes(),
    )?;
    let old_manifest_size =
        fs::metadata(blob_dir(out).join(manifest_digest.trim_start_matches("sha256:")))
            .map_err(io_err(out))?
            .len();
    let index = index.replacen(
        &format!(r#""digest":"{manifest_digest}","size":{old_manifest_size}"#),
        &format!(
            r#""digest":"{}","size":{}"#,
            manifest_descriptor.digest, manifest_descriptor.size
        ),
        1,
    );
    fs::write(&index_path, index).map_err(io_err(&index_path))?;
    let mut blobs = vec![config_descriptor.digest];
    blobs.extend(layers.iter().cloned());
    let list = out.with_file_name("image-512m-chunked.blobs");
    fs::write(&list, blobs.join("\n") + "\n").map_err(io_err(&list))?;
    Ok(())
}

/// Every `sha256:<hex>` in a JSON text, in order.
fn json_digests(text: &str) -> Vec<String> {
    digests_after(text, "sha256:")
}

/// The values of every `"digest"` field in a JSON text (not the digests in annotations).
fn descriptor_digests(text: &str) -> Vec<String> {
    digests_after(text, r#""digest":"sha256:"#)
}

fn digests_after(text: &str, marker: &str) -> Vec<String> {
    text.split(marker)
        .skip(1)
        .map(|after| {
            after
                .chars()
                .take_while(char::is_ascii_hexdigit)
                .collect::<String>()
        })
        .filter(|hex| hex.len() == 64)
        .map(|hex| format!("sha256:{hex}"))
        .collect()
}

/// The sha256 of a zstd blob's decompressed bytes (`zstd -dc`, hashed as it streams).
fn zstd_diff_id(path: &Path) -> Result<String> {
    let mut child = Command::new("zstd")
        .args(["-dc", "--no-progress"])
        .arg(path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::new(format!("zstd: {e}")))?;
    let mut hash = Sha256::new();
    if let Some(mut stdout) = child.stdout.take() {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = stdout.read(&mut buf).map_err(io_err(path))?;
            if n == 0 {
                break;
            }
            hash.update(buf.get(..n).unwrap_or_default());
        }
    }
    let status = child.wait().map_err(io_err(path))?;
    if !status.success() {
        return Err(Error::new(format!("zstd -dc {}: {status}", path.display())));
    }
    Ok(hex_digest(hash))
}

/// Three layers exercising the OCI rules: whiteouts, an opaque directory, symlink chains,
/// hardlinks, odd modes, a directory replaced by a file and a file by a symlink.
fn write_rules_image(layout: &Path) -> Result<()> {
    use tar::EntryType::{Link, Symlink};
    fs::create_dir_all(layout).map_err(io_err(layout))?;
    let mut layers = Vec::new();
    let mut rng = Rng::new(7);
    let mut blob = |n: usize| {
        let mut v = vec![0u8; n];
        rng.fill(&mut v);
        v
    };
    // Layer 0: the base.
    let (mut b, tmp) = start_layer(layout, 0)?;
    (|| -> io::Result<()> {
        for dir in [
            "etc",
            "bin",
            "opt",
            "opt/a",
            "opt/a/sub",
            "opt/b",
            "srv",
            "var",
        ] {
            add_dir(&mut b, dir, 0o755)?;
        }
        add_dir(&mut b, "tmp", 0o1777)?;
        add_dir(&mut b, "secret", 0o700)?;
        add_file(&mut b, "etc/removed", 0o644, b"to be whited out\n")?;
        add_file(&mut b, "etc/kept", 0o644, b"kept\n")?;
        add_file(&mut b, "etc/hosts", 0o644, b"127.0.0.1 localhost\n")?;
        add_file(
            &mut b,
            "opt/a/old-1",
            0o644,
            b"hidden by the opaque marker\n",
        )?;
        add_file(&mut b, "opt/a/sub/old-2", 0o644, b"hidden too\n")?;
        add_file(&mut b, "opt/b/data.bin", 0o644, &blob(40_000))?;
        add_file(&mut b, "bin/tool", 0o4755, b"#!/bin/sh\necho setuid\n")?;
        add_file(&mut b, "bin/sgid", 0o2711, b"#!/bin/sh\necho setgid\n")?;
        add_file(&mut b, "secret/none", 0o000, b"no permissions\n")?;
        add_file(&mut b, "secret/ro", 0o444, b"read only\n")?;
        add_file(&mut b, "srv/target", 0o600, b"the end of the chain\n")?;
        add_link(&mut b, Symlink, "srv/l3", "target")?;
        add_link(&mut b, Symlink, "srv/l2", "l3")?;
        add_link(&mut b, Symlink, "srv/l1", "../srv/l2")?;
        add_link(&mut b, Symlink, "bin/abs", "/srv/l1")?;
        add_link(&mut b, Symlink, "srv/dangling", "nowhere")?;
        add_link(&mut b, Link, "opt/b/data-hardlink.bin", "opt/b/data.bin")?;
        add_link(&mut b, Link, "bin/tool-hardlink", "bin/tool")?;
        add_file(&mut b, "var/dir-becomes-file/x", 0o644, b"x\n")?;
        add_file(&mut b, "var/file-becomes-link", 0o644, b"file\n")?;
        Ok(())
    })()
    .map_err(io_err(&tmp))?;
    layers.push(finish_layer(layout, b, &tmp)?);
    // Layer 1: whiteouts, the opaque directory, replacements.
    let (mut b, tmp) = start_layer(layout, 1)?;
    (|| -> io::Result<()> {
        add_file(&mut b, "etc/.wh.removed", 0o644, b"")?;
        add_dir(&mut b, "opt/a", 0o750)?;
        add_file(&mut b, "opt/a/.wh..wh..opq", 0o644, b"")?;
        add_file(&mut b, "opt/a/new", 0o640, b"the only file left in opt/a\n")?;
        add_file(&mut b, "var/.wh.dir-becomes-file", 0o644, b"")?;
        add_file(&mut b, "var/dir-becomes-file", 0o600, b"now a file\n")?;
        add_link(&mut b, Symlink, "var/file-becomes-link", "../etc/kept")?;
        add_file(&mut b, "etc/hosts", 0o644, b"127.0.0.1 localhost rules\n")?;
        add_link(&mut b, Link, "etc/hosts-hardlink", "etc/hosts")?;
        Ok(())
    })()
    .map_err(io_err(&tmp))?;
    layers.push(finish_layer(layout, b, &tmp)?);
    // Layer 2: a whiteout of a hardlinked file and of a whole directory.
    let (mut b, tmp) = start_layer(layout, 2)?;
    (|| -> io::Result<()> {
        add_file(&mut b, "opt/b/.wh.data.bin", 0o644, b"")?;
        add_file(&mut b, ".wh.tmp", 0o644, b"")?;
        add_dir(&mut b, "tmp", 0o1777)?;
        add_file(&mut b, "tmp/fresh", 0o666, b"recreated\n")?;
        Ok(())
    })()
    .map_err(io_err(&tmp))?;
    layers.push(finish_layer(layout, b, &tmp)?);
    finish_image(layout, &layers)
}

// ---------------------------------------------------------------------------------------
// Packages

/// One package directory: `toml` after name and version, plus files.
fn package_dir(
    src: &Path,
    name: &str,
    version: &str,
    toml: &str,
    files: &[(String, Vec<u8>)],
) -> Result<PathBuf> {
    let dir = src.join(format!("{}-{version}", name.replace('/', "_")));
    for (path, content) in files {
        let p = dir.join(path);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        fs::write(&p, content).map_err(io_err(&p))?;
    }
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let manifest = dir.join("pkgload.toml");
    fs::write(
        &manifest,
        format!("name = \"{name}\"\nversion = \"{version}\"\n{toml}"),
    )
    .map_err(io_err(&manifest))?;
    Ok(dir)
}

/// `pkgload pack DIR --output oci:ROOT/NAME:VERSION`.
fn pack(pkgload: &Path, root: &Path, dir: &Path, name: &str, version: &str) -> Result<()> {
    let layout = root.join(name);
    let cache = root.join(".pack-cache");
    let output = Command::new(pkgload)
        .arg("--cache-dir")
        .arg(&cache)
        .arg("--quiet")
        .arg("pack")
        .arg(dir)
        .arg("--output")
        .arg(format!("oci:{}:{version}", layout.display()))
        .stdin(Stdio::null())
        .output()
        .map_err(io_err(pkgload))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::new(format!(
            "pkgload pack {} failed ({}): {}",
            dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// A package of the universe or the tree: name, version, toml, files.
type PackageSpec = (String, String, String, Vec<(String, Vec<u8>)>);

fn universe_specs() -> Vec<PackageSpec> {
    let vol = |mount: &str| {
        format!("[[fs]]\nvolume = \"v\"\nmount = \"{mount}\"\n[volumes]\nv = \"v\"\n")
    };
    let file = |path: &str, text: &str| (format!("v/{path}"), text.as_bytes().to_vec());
    let mut specs = Vec::new();
    for v in ["1.2.0", "2.0.0"] {
        specs.push((
            "acme/libc".to_owned(),
            v.to_owned(),
            vol("/lib/libc"),
            vec![file("version.txt", v)],
        ));
    }
    // The newest python needs libc ^2; an app pinned to libc ^1 must backtrack to 3.12.
    for (v, libc) in [("3.11.0", "^1"), ("3.12.0", "^1"), ("3.13.0", "^2")] {
        specs.push((
            "acme/python".to_owned(),
            v.to_owned(),
            format!(
                "[dependencies]\nlibc = {{ package = \"acme/libc\", version = \"{libc}\" }}\n{}",
                vol("/usr/lib/python")
            ),
            vec![file("version.txt", v), file("json/__init__.py", "# json\n")],
        ));
    }
    for v in ["1.0.0", "1.1.0"] {
        specs.push((
            "acme/requests".to_owned(),
            v.to_owned(),
            format!(
                "[dependencies]\npython = {{ package = \"acme/python\", version = \">=3.11\" }}\n{}",
                vol("/usr/lib/requests")
            ),
            vec![file("version.txt", v)],
        ));
    }
    specs.push((
        "acme/app".to_owned(),
        "1.0.0".to_owned(),
        format!(
            "[dependencies]\npython = {{ package = \"acme/python\", version = \"^3\" }}\n\
             libc = {{ package = \"acme/libc\", version = \"^1\" }}\n\
             requests = {{ package = \"acme/requests\", version = \"^1\" }}\n{}",
            vol("/app")
        ),
        vec![file("main.py", "print('hello')\n")],
    ));
    specs
}

fn write_universe(root: &Path, pkgload: &Path) -> Result<()> {
    let src = root.with_file_name("universe-src");
    remove_dir(&src)?;
    for (name, version, toml, files) in universe_specs() {
        let dir = package_dir(&src, &name, &version, &toml, &files)?;
        pack(pkgload, root, &dir, &name, &version)?;
    }
    remove_dir(&root.join(".pack-cache"))
}

/// The dependencies of tree package `i`: its children in a 14-ary tree, so `acme/pkg-000`
/// pulls in all 200 over three levels.
pub fn tree_children(i: usize) -> impl Iterator<Item = usize> {
    (14 * i + 1..=14 * i + 14).filter(|c| *c < TREE_PACKAGES)
}

pub fn tree_name(i: usize) -> String {
    format!("acme/pkg-{i:03}")
}

fn write_tree(root: &Path, pkgload: &Path, file_size: u64) -> Result<()> {
    let src = root.with_file_name("tree-200-src");
    remove_dir(&src)?;
    // Leaves first, so a pack that looks at its dependencies finds them.
    for i in (0..TREE_PACKAGES).rev() {
        let name = tree_name(i);
        let mut toml = String::from("[dependencies]\n");
        for c in tree_children(i) {
            toml.push_str(&format!(
                "p{c:03} = {{ package = \"{}\", version = \"^1\" }}\n",
                tree_name(c)
            ));
        }
        toml.push_str(&format!(
            "[[fs]]\nvolume = \"v\"\nmount = \"/opt/pkg-{i:03}\"\n[volumes]\nv = \"v\"\n"
        ));
        let mut rng = Rng::new(10_000 + i as u64);
        let files: Vec<(String, Vec<u8>)> = (0..4)
            .map(|f| {
                let mut data = vec![0u8; file_size as usize];
                rng.fill(&mut data);
                (format!("v/data-{f}.bin"), data)
            })
            .chain([(
                format!("v/README-{i:03}"),
                format!("package {i}\n").into_bytes(),
            )])
            .collect();
        let dir = package_dir(&src, &name, TREE_VERSION, &toml, &files)?;
        pack(pkgload, root, &dir, &name, TREE_VERSION)?;
    }
    remove_dir(&root.join(".pack-cache"))
}

// ---------------------------------------------------------------------------------------
// The registry

/// A loopback `docker-registry`, killed (and its storage removed) on drop.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Registry {
    /// Starts one with its storage and config under `dir` (emptied first).
    pub fn start(dir: &Path) -> Result<Self> {
        Self::start_with(dir, None)
    }

    /// Starts a pull-through cache of the registry at `remote` (`http://host:port`):
    /// distribution's proxy mode, as a mirror in front of a fleet.
    pub fn start_proxy(dir: &Path, remote: &str) -> Result<Self> {
        Self::start_with(dir, Some(remote))
    }

    fn start_with(dir: &Path, remote: Option<&str>) -> Result<Self> {
        let binary = crate::tools::locate("docker-registry")
            .or_else(|| Some(PathBuf::from("/usr/bin/docker-registry")).filter(|p| p.is_file()))
            .ok_or_else(|| {
                Error::new("docker-registry is not installed: apt-get install docker-registry")
            })?;
        let mut last = String::new();
        for _ in 0..5 {
            remove_dir(dir)?;
            fs::create_dir_all(dir).map_err(io_err(dir))?;
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .map_err(|e| Error::new(format!("finding a free port: {e}")))?
                .port();
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let config = dir.join("config.yml");
            let storage = dir.join("storage");
            fs::write(&config, config_yaml(&storage, addr, remote)).map_err(io_err(&config))?;
            let log = dir.join("stderr.log");
            let stderr = File::create(&log).map_err(io_err(&log))?;
            let mut command = Command::new(&binary);
            command
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr);
            for (name, _) in std::env::vars_os() {
                if name.to_string_lossy().starts_with("REGISTRY_") {
                    command.env_remove(name);
                }
            }
            let child = command.spawn().map_err(io_err(&binary))?;
            let mut registry = Self {
                child,
                addr,
                dir: dir.to_owned(),
            };
            match registry.wait_ready() {
                Ok(()) => return Ok(registry),
                Err(err) => last = err.to_string(),
            }
        }
        Err(Error::new(format!("docker-registry did not start: {last}")))
    }

    fn wait_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
                return Err(Error::new(format!("exited ({status}): {log}")));
            }
            if http_get_status(self.addr, "/v2/").is_ok_and(|s| s == 200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(Error::new(format!(
            "no 200 from http://{}/v2/ within 20 s",
            self.addr
        )))
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = remove_dir(&self.dir);
    }
}

/// The status code of `GET path` over a fresh connection.
pub fn http_get_status(addr: SocketAddr, path: &str) -> io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    std::str::from_utf8(head.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other("not an HTTP response"))
}

fn config_yaml(storage: &Path, addr: SocketAddr, remote: Option<&str>) -> String {
    let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let root = quote(&storage.to_string_lossy());
    let proxy = remote
        .map(|r| format!("proxy:\n  remoteurl: \"{}\"\n", quote(r)))
        .unwrap_or_default();
    format!(
        "version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: \"{root}\"
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
  secret: pkgload-xtask-registry
{proxy}"
    )
}

/// The repository an image is pushed to.
pub fn image_repository(name: &str) -> String {
    format!("bench/{name}")
}

/// Pushes the wanted fixtures: images with `skopeo copy`, packages with `pkgload push`.
pub fn push(
    fixtures: &Fixtures,
    registry: &Registry,
    pkgload: &Path,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<()> {
    let host = registry.host();
    for name in [
        "image-512m",
        "image-1g",
        "image-oci-rules",
        "image-512m-chunked",
    ] {
        if !wanted(name) {
            continue;
        }
        let layout = fixtures.image(name);
        crate::cmd::Cmd::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:{IMAGE_TAG}", layout.display()))
            .arg(format!(
                "docker://{host}/{}:{IMAGE_TAG}",
                image_repository(name)
            ))
            .run()?;
    }
    let cache = fixtures.dir.join(".push-cache");
    let mut packages: Vec<(String, String, PathBuf)> = Vec::new();
    if wanted("universe") {
        let src = fixtures.dir.join("universe-src");
        for (name, version, _, _) in universe_specs() {
            let dir = src.join(format!("{}-{version}", name.replace('/', "_")));
            packages.push((name, version, dir));
        }
    }
    if wanted("tree-200") {
        let src = fixtures.dir.join("tree-200-src");
        for i in (0..TREE_PACKAGES).rev() {
            let name = tree_name(i);
            let dir = src.join(format!("{}-{TREE_VERSION}", name.replace('/', "_")));
            packages.push((name, TREE_VERSION.to_owned(), dir));
        }
    }
    if !packages.is_empty() {
        eprintln!("pushing {} packages with pkgload push", packages.len());
    }
    for (name, version, dir) in packages {
        let output = Command::new(pkgload)
            .arg("--cache-dir")
            .arg(&cache)
            .arg("--quiet")
            .arg("push")
            .arg(&dir)
            .arg(format!("{host}/{name}:{version}"))
            .stdin(Stdio::null())
            .output()
            .map_err(io_err(pkgload))?;
        if !output.status.success() {
            return Err(Error::new(format!(
                "pkgload push {} failed ({}): {}",
                dir.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
    }
    remove_dir(&cache)
}

//! Tests that need more than one process: crashes, cross-process sharing, and real
//! filesystem failures (a full disk, a read-only mount).
//!
//! This binary is its own harness (libtest-mimic) so it can also act as the child process:
//! when `CACHE_CORE_CHILD` is set, `main` plays that role instead of running tests.

// Test code: a panic is how a check fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_core::{Algorithm, Begin, Digest, Error, Store, VerifyMode};
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    if let Ok(role) = std::env::var("CACHE_CORE_CHILD") {
        std::process::exit(child(&role));
    }
    let args = Arguments::from_args();
    let root_only = |name: &'static str, f: fn() -> Result<(), Failed>| {
        let trial = Trial::test(name, f);
        // Mounting needs root. Reported as ignored (never as passed) elsewhere.
        if is_root() {
            trial
        } else {
            trial.with_ignored_flag(true)
        }
    };
    let trials = vec![
        Trial::test(
            "crash_during_ingest_never_leaves_a_bad_blob",
            crash_during_ingest,
        ),
        Trial::test("many_processes_read_the_source_once", many_processes),
        root_only("full_disk_is_a_clear_error_and_leaves_nothing", full_disk),
        root_only("read_only_store_is_a_clear_error", read_only_store),
        root_only("permission_denied_is_a_clear_error", permission_denied),
    ];
    libtest_mimic::run(&args, trials).exit();
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("child needs {name}"))
}

/// The child roles. Exit code 0 on success; errors go to stderr.
fn child(role: &str) -> i32 {
    let store_dir = PathBuf::from(env("STORE"));
    if role == "open-store" {
        return match runtime().block_on(Store::open(&store_dir)) {
            Ok(_) => 0,
            Err(e) => {
                eprintln!("{e}");
                3
            }
        };
    }
    let digest: Digest = env("DIGEST").parse().expect("digest");
    let result = runtime().block_on(async move {
        let store = Store::open(&store_dir).await?;
        match role {
            // Ingest from a file, resuming at the store's offset, in small chunks.
            "ingest-file" => {
                let src = PathBuf::from(env("SRC"));
                ingest_from_file(&store, digest, &src).await.map(|_| ())
            }
            // Ingest through get_or_ingest from a TCP source.
            "ingest-tcp" => {
                let size: u64 = env("SIZE").parse().expect("size");
                let addr = env("ADDR");
                let blob = store
                    .get_or_ingest(digest, Some(size), move |mut ingest| async move {
                        let mut conn = tokio::net::TcpStream::connect(addr).await?;
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = tokio::io::AsyncReadExt::read(&mut conn, &mut buf).await?;
                            if n == 0 {
                                break;
                            }
                            ingest.write_all(&buf[..n]).await?;
                        }
                        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(ingest)
                    })
                    .await?;
                assert_eq!(blob.len(), size);
                Ok(())
            }
            other => panic!("unknown child role {other}"),
        }
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("child error: {e}");
            1
        }
    }
}

async fn ingest_from_file(store: &Store, digest: Digest, src: &Path) -> Result<u64, Error> {
    let data = std::fs::read(src).expect("source");
    match store.begin(digest, Some(data.len() as u64)).await? {
        Begin::Present(_) => Ok(0),
        Begin::Write(mut ingest) => {
            let offset = ingest.offset();
            for chunk in data[offset as usize..].chunks(64 * 1024) {
                ingest.write_all(chunk).await?;
            }
            ingest.commit().await?;
            Ok(offset)
        }
    }
}

fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(msg().into()) }
}

/// SIGKILL a writer at random points, ≥ 50 times: a visible blob is always a verified one,
/// and the next ingest always completes (resuming when a prefix survived).
fn crash_during_ingest() -> Result<(), Failed> {
    const TRIALS: usize = 60;
    let dir = tempfile::tempdir()?;
    let store_dir = dir.path().join("store");
    let src = dir.path().join("source.bin");
    let data = random_bytes(8 << 20, 0x9E37_79B9_7F4A_7C15);
    std::fs::write(&src, &data)?;
    let digest = Algorithm::Sha256.digest(&data);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64
        | 1;
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut resumed, mut completed_before_kill) = (0, 0);
    let rt = runtime();
    for trial in 0..TRIALS {
        let mut child = Command::new(std::env::current_exe()?)
            .env("CACHE_CORE_CHILD", "ingest-file")
            .env("STORE", &store_dir)
            .env("DIGEST", digest.to_string())
            .env("SRC", &src)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        std::thread::sleep(Duration::from_micros(next() % 60_000));
        child.kill()?; // SIGKILL
        let status = child.wait()?;
        rt.block_on(async {
            let store = Store::open(&store_dir).await?;
            if store.contains(&digest) {
                completed_before_kill += 1;
                let report = store.verify(VerifyMode::Warn).await?;
                check(report.problems.is_empty(), || {
                    format!("trial {trial} (seed {seed}): visible blob fails verify: {report:?}")
                })?;
            } else {
                // Finish what the killed writer started.
                let offset = ingest_from_file(&store, digest, &src).await.map_err(|e| {
                    format!("trial {trial} (seed {seed}, child {status}): next ingest failed: {e}")
                })?;
                if offset > 0 {
                    resumed += 1;
                }
            }
            let blob = store.get(&digest)?.ok_or("blob missing after ingest")?;
            check(blob[..] == data[..], || {
                format!("trial {trial}: content differs")
            })?;
            drop(blob);
            store.retain(|_| false).await?;
            Ok::<_, Failed>(())
        })?;
    }
    eprintln!(
        "{TRIALS} kills (seed {seed}): {resumed} resumed a partial, {completed_before_kill} finished before the kill"
    );
    check(resumed > 0, || {
        format!("seed {seed}: no trial left a partial to resume; the kill timing is off")
    })
}

/// N processes want the same digest from a slow source that counts its readers.
fn many_processes() -> Result<(), Failed> {
    const PROCS: usize = 6;
    let dir = tempfile::tempdir()?;
    let store_dir = dir.path().join("store");
    let data = Arc::new(random_bytes(3 << 20, 42));
    let digest = Algorithm::Sha256.digest(&data);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let served = Arc::new(AtomicUsize::new(0));
    {
        let (data, served) = (data.clone(), served.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { break };
                served.fetch_add(1, Ordering::SeqCst);
                let data = data.clone();
                std::thread::spawn(move || {
                    // Slow enough (~300 ms) that every child starts while it runs.
                    for chunk in data.chunks(64 * 1024) {
                        if conn.write_all(chunk).is_err() {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(6));
                    }
                });
            }
        });
    }
    let start = Instant::now();
    let children: Vec<_> = (0..PROCS)
        .map(|_| {
            Command::new(std::env::current_exe()?)
                .env("CACHE_CORE_CHILD", "ingest-tcp")
                .env("STORE", &store_dir)
                .env("DIGEST", digest.to_string())
                .env("SIZE", data.len().to_string())
                .env("ADDR", addr.to_string())
                .stderr(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    for child in children {
        let out = child.wait_with_output()?;
        check(out.status.success(), || {
            format!("child failed: {}", String::from_utf8_lossy(&out.stderr))
        })?;
    }
    let reads = served.load(Ordering::SeqCst);
    check(reads == 1, || format!("the source was read {reads} times"))?;
    runtime().block_on(async {
        let store = Store::open(&store_dir).await?;
        let report = store.verify(VerifyMode::Warn).await?;
        check(report.checked == 1 && report.problems.is_empty(), || {
            format!("{report:?}")
        })?;
        let entries: Vec<_> = std::fs::read_dir(store_dir.join("v1/ingest"))?.collect();
        check(entries.is_empty(), || {
            format!("ingest/ not empty: {entries:?}")
        })
    })?;
    eprintln!("{PROCS} processes, 1 read, {:?}", start.elapsed());
    Ok(())
}

/// A tmpfs mount that unmounts itself.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, options: &str) -> Result<Self, Failed> {
        std::fs::create_dir_all(at)?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(at)
            .status()?;
        check(status.success(), || {
            format!("mount tmpfs at {} failed", at.display())
        })?;
        Ok(Mount(at.to_owned()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn full_disk() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let mnt = dir.path().join("small");
    let _mount = Mount::tmpfs(&mnt, "size=1m")?;
    let data = random_bytes(3 << 20, 7);
    let digest = Algorithm::Sha256.digest(&data);
    runtime().block_on(async {
        let store = Store::open(mnt.join("store")).await?;
        let Begin::Write(mut ingest) = store.begin(digest, Some(data.len() as u64)).await? else {
            return Err("new store".into());
        };
        let mut result = Ok(());
        for chunk in data.chunks(256 * 1024) {
            result = ingest.write_all(chunk).await;
            if result.is_err() {
                break;
            }
        }
        let err = match result {
            Err(e) => e,
            Ok(()) => ingest
                .commit()
                .await
                .err()
                .ok_or("a 3 MiB blob fit in 1 MiB")?,
        };
        check(
            err.io_kind() == Some(std::io::ErrorKind::StorageFull),
            || format!("expected a full-disk error, got {err}"),
        )?;
        let text = err.to_string();
        check(
            text.contains(mnt.to_str().unwrap_or("?")) && text.contains("disk is full"),
            || format!("error should name the path and the cause: {text}"),
        )?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        check(!store.contains(&digest), || {
            "a partial blob became visible".into()
        })?;
        let left: Vec<_> = std::fs::read_dir(mnt.join("store/v1/ingest"))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        check(left.is_empty(), || {
            format!("partial data left behind: {left:?}")
        })?;
        // Space was given back: a small blob still fits.
        let small = b"small enough".to_vec();
        let d = Algorithm::Sha256.digest(&small);
        let blob = store
            .get_or_ingest(d, Some(small.len() as u64), move |mut i| async move {
                i.write_all(&small).await?;
                Ok::<_, Error>(i)
            })
            .await?;
        check(blob.len() == 12, || "small blob".into())
    })
}

fn read_only_store() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let mnt = dir.path().join("ro");
    let _mount = Mount::tmpfs(&mnt, "ro,size=1m")?;
    let err = runtime()
        .block_on(Store::open(mnt.join("store")))
        .err()
        .ok_or("opened a store on a read-only mount")?;
    let text = err.to_string();
    check(
        err.io_kind() == Some(std::io::ErrorKind::ReadOnlyFilesystem)
            && text.contains(mnt.to_str().unwrap_or("?"))
            && text.contains("PKGLOAD_CACHE_DIR"),
        || format!("unexpected error: {text}"),
    )
}

/// A user who may not write the cache directory gets an error naming it, with a hint.
/// Run as `nobody` (root cannot be refused a write), through util-linux's `setpriv`.
fn permission_denied() -> Result<(), Failed> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let owned_by_root = dir.path().join("cache");
    std::fs::create_dir(&owned_by_root)?;
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(std::env::current_exe()?)
        .env("CACHE_CORE_CHILD", "open-store")
        .env("STORE", &owned_by_root)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    check(out.status.code() == Some(3), || {
        format!("expected the store to refuse ({:?}): {stderr}", out.status)
    })?;
    check(
        stderr.contains(owned_by_root.to_str().unwrap_or("?"))
            && stderr.contains("Permission denied")
            && stderr.contains("PKGLOAD_CACHE_DIR"),
        || format!("unexpected error: {stderr}"),
    )
}

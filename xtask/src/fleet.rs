//! `cargo xtask bench --only fleet`: eight hosts behind one pull-through mirror.
//!
//! The origin is the bench's `docker-registry`, seen through two delaying proxies that add
//! 10 ms to every request: one for the hosts (tags and manifests by tag, which only the
//! origin may answer) and one as the mirror's remote, so that the bytes the origin sends
//! the mirror are counted apart from what it sends the hosts. The mirror is a second
//! `docker-registry` in proxy mode on loopback, listed in each host's `hosts.toml` with the
//! `pull` capability. Each "host" is a cache directory.
//!
//! Per run, with a fresh mirror: host 1 loads the 200-package tree alone (the mirror fills
//! from the origin), then hosts 2–8 load it together, then a ninth host alone through the
//! warm mirror. Next to them, with no mirror: one host alone from the origin, and seven
//! hosts together from the origin. Rows:
//! - the median of hosts 2–8 against one host alone from the origin (the goal,
//!   ≤ 0.5×);
//! - the same against seven hosts together from the origin: the mirror's effect at equal
//!   contention, since here all the "hosts" share two cores;
//! - the ninth host against one host alone from the origin: what one machine of a fleet
//!   sees;
//! - the bytes the origin sent the mirror after all eight hosts against after the first
//!   (≤ 1.0×: the fleet costs the origin one host).

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::bench::{Bench, Goal, Row, Unit, timed_output};
use crate::delay_proxy::DelayProxy;
use crate::fixtures::{self, Registry, io_err};
use crate::{Error, Result};

/// Latency the origin adds to every request.
const ORIGIN_DELAY: Duration = Duration::from_millis(10);
/// Hosts in the fleet, the first included.
const HOSTS: usize = 8;

pub(crate) fn bench(bench: &mut Bench) -> Result<()> {
    let origin = bench.registry_addr()?;
    let for_hosts = DelayProxy::start(origin, ORIGIN_DELAY)?;
    let for_mirror = DelayProxy::start(origin, ORIGIN_DELAY)?;
    let reference = format!(
        "{}/{}:{}",
        for_hosts.host(),
        fixtures::tree_name(0),
        fixtures::TREE_VERSION
    );
    let no_mirror = bench.fresh("fleet-hosts-none")?;
    fs::create_dir_all(&no_mirror).map_err(io_err(&no_mirror))?;

    let (mut fleet, mut fleet_direct, mut alone) = (Vec::new(), Vec::new(), Vec::new());
    let mut warm_alone = Vec::new();
    let (mut bytes_first, mut bytes_all) = (Vec::new(), Vec::new());
    for run in 0..bench.runs {
        let mirror_dir = bench.fresh("fleet-mirror")?;
        let mirror = Registry::start_proxy(&mirror_dir, &format!("http://{}", for_mirror.host()))?;
        let hosts_dir = bench.fresh("fleet-hosts")?;
        write_hosts_toml(&hosts_dir, &for_hosts.host(), &mirror.host())?;
        let before = for_mirror.bytes_served();

        let first = bench.fresh("fleet-host-1")?;
        let took = timed_load(bench, &first, &hosts_dir, &reference)?;
        bench.note("fleet: host 1 through the cold mirror", run, took);
        let after_first = for_mirror.bytes_served();
        verify(bench, &first, &hosts_dir)?;

        let caches = (2..=HOSTS)
            .map(|host| bench.fresh(&format!("fleet-host-{host}")))
            .collect::<Result<Vec<_>>>()?;
        let times = together(bench, &caches, &hosts_dir, &reference)?;
        let after_all = for_mirror.bytes_served();
        let median_rest = crate::bench::median(&times).unwrap_or_default();
        bench.note(
            "fleet: hosts 2-8 together through the mirror (median)",
            run,
            Duration::from_secs_f64(median_rest),
        );
        for cache in &caches {
            verify(bench, cache, &hosts_dir)?;
        }
        fleet.push(median_rest);
        bytes_first.push((after_first - before) as f64 / 1048576.0);
        bytes_all.push((after_all - before) as f64 / 1048576.0);
        eprintln!(
            "  the origin sent the mirror {:.2} MiB for host 1, {:.2} MiB for all {HOSTS}",
            (after_first - before) as f64 / 1048576.0,
            (after_all - before) as f64 / 1048576.0
        );
        // One more host on its own, as on a machine of its own behind the warm mirror.
        let ninth = bench.fresh("fleet-host-9")?;
        let took = timed_load(bench, &ninth, &hosts_dir, &reference)?;
        bench.note("fleet: host 9 alone through the warm mirror", run, took);
        warm_alone.push(took.as_secs_f64());
        drop(mirror);
        for cache in [&first, &ninth].into_iter().chain(&caches) {
            bench.discard(cache)?;
        }

        let single = bench.fresh("fleet-alone")?;
        let took = timed_load(bench, &single, &no_mirror, &reference)?;
        bench.note("fleet: one host alone from the origin", run, took);
        alone.push(took.as_secs_f64());
        bench.discard(&single)?;

        let caches = (2..=HOSTS)
            .map(|host| bench.fresh(&format!("fleet-direct-{host}")))
            .collect::<Result<Vec<_>>>()?;
        let times = together(bench, &caches, &no_mirror, &reference)?;
        let median_direct = crate::bench::median(&times).unwrap_or_default();
        bench.note(
            "fleet: hosts 2-8 together from the origin, no mirror (median)",
            run,
            Duration::from_secs_f64(median_direct),
        );
        fleet_direct.push(median_direct);
        for cache in &caches {
            bench.discard(cache)?;
        }
    }
    let what = format!(
        "cold load of the 200-package tree, {} ms per origin request: median of hosts 2–{HOSTS} \
         loading together through a pull-through mirror",
        ORIGIN_DELAY.as_millis()
    );
    bench.rows.push(Row {
        key: "fleet",
        what: format!("{what}, vs one host alone from the origin"),
        ours_name: "hosts 2–8 via the mirror".to_owned(),
        peer_name: "one host, origin only".to_owned(),
        unit: Unit::Seconds,
        ours: fleet.clone(),
        peer: alone.clone(),
        goal: Goal::RatioAtMost(0.5),
    });
    bench.rows.push(Row {
        key: "fleet-contended",
        what: format!("{what}, vs seven hosts together from the origin (same contention)"),
        ours_name: "hosts 2–8 via the mirror".to_owned(),
        peer_name: "hosts 2–8, origin only".to_owned(),
        unit: Unit::Seconds,
        ours: fleet,
        peer: fleet_direct,
        goal: Goal::None,
    });
    bench.rows.push(Row {
        key: "fleet-warm-mirror",
        what: format!(
            "cold load of the 200-package tree, {} ms per origin request: one host alone \
             through the warm mirror, vs one host alone from the origin",
            ORIGIN_DELAY.as_millis()
        ),
        ours_name: "one host via the warm mirror".to_owned(),
        peer_name: "one host, origin only".to_owned(),
        unit: Unit::Seconds,
        ours: warm_alone,
        peer: alone.clone(),
        goal: Goal::None,
    });
    bench.rows.push(Row {
        key: "fleet-bytes",
        what: format!(
            "bytes the origin sent the mirror: after all {HOSTS} hosts vs after the first"
        ),
        ours_name: format!("{HOSTS} hosts"),
        peer_name: "host 1".to_owned(),
        unit: Unit::Mib,
        ours: bytes_all,
        peer: bytes_first,
        goal: Goal::RatioAtMost(1.0),
    });
    Ok(())
}

/// `DIR/<origin>/hosts.toml`: the origin, and the mirror for pulls (blobs and manifests by
/// digest); tags stay with the origin.
fn write_hosts_toml(dir: &Path, origin: &str, mirror: &str) -> Result<()> {
    let host_dir = dir.join(origin);
    fs::create_dir_all(&host_dir).map_err(io_err(&host_dir))?;
    let file = host_dir.join("hosts.toml");
    let text = format!(
        "server = \"http://{origin}\"\n\n[host.\"http://{mirror}\"]\ncapabilities = [\"pull\"]\n"
    );
    fs::write(&file, text).map_err(io_err(&file))
}

fn load_command(bench: &Bench, cache: &Path, hosts_dir: &Path, reference: &str) -> Command {
    let mut command = bench.pkgload(cache);
    command
        .arg("--hosts-dir")
        .arg(hosts_dir)
        .arg("load")
        .arg(reference);
    command
}

fn timed_load(bench: &Bench, cache: &Path, hosts_dir: &Path, reference: &str) -> Result<Duration> {
    let (took, _) = timed_output(&mut load_command(bench, cache, hosts_dir, reference))?;
    Ok(took)
}

/// Loads into each of `caches` at once; each load's own time, in seconds.
fn together(
    bench: &Bench,
    caches: &[std::path::PathBuf],
    hosts_dir: &Path,
    reference: &str,
) -> Result<Vec<f64>> {
    let mut commands: Vec<Command> = caches
        .iter()
        .map(|cache| load_command(bench, cache, hosts_dir, reference))
        .collect();
    std::thread::scope(|scope| {
        let running: Vec<_> = commands
            .iter_mut()
            .map(|command| scope.spawn(move || timed_output(command)))
            .collect();
        running
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .map_err(|_| Error::new("a fleet load's thread panicked"))?
                    .map(|(took, _)| took.as_secs_f64())
            })
            .collect()
    })
}

/// Every host's cache verifies clean: the mirror served only what the origin would have.
fn verify(bench: &Bench, cache: &Path, hosts_dir: &Path) -> Result<()> {
    let mut command = bench.pkgload(cache);
    command
        .arg("--hosts-dir")
        .arg(hosts_dir)
        .args(["cache", "verify"]);
    timed_output(&mut command).map(|_| ())
}

//! The fuzzing loop: seeds in, mutants through the target under `catch_unwind`, mutants
//! that show something new kept, the first crash out.

use std::cell::RefCell;
use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use crate::mutate::Mutator;
use crate::rng::Rng;
use crate::targets::{Feedback, Target};

/// At most this many inputs are kept in memory per run.
const MAX_CORPUS: usize = 8192;

/// How a run is bounded and seeded.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seed of the random generator; the same seed and corpus replay the same run.
    pub seed: u64,
    /// Stop after this long.
    pub time: Duration,
    /// Stop after this many executions, if set (for tests).
    pub max_execs: Option<u64>,
    /// Print a progress line every few seconds.
    pub progress: bool,
    /// An input that runs longer than this is a hang: it is written to
    /// `artifacts/<target>/hang-<hash>` and the process exits with status 1.
    pub hang_timeout: Option<Duration>,
}

/// An input that made the target panic.
#[derive(Debug, Clone)]
pub struct Crash {
    /// The input.
    pub input: Vec<u8>,
    /// The panic message and where it was raised.
    pub message: String,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Report {
    /// Inputs executed, seeds included.
    pub execs: u64,
    /// Wall time spent.
    pub elapsed: Duration,
    /// Seeds the run started from.
    pub seeds: usize,
    /// Inputs kept by the end (seeds plus mutants that showed something new).
    pub corpus: usize,
    /// Distinct feedback signatures seen.
    pub features: usize,
    /// The slowest single execution.
    pub slowest: Duration,
    /// The first crash, which ends the run.
    pub crash: Option<Crash>,
}

impl Report {
    /// Executions per second.
    pub fn execs_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.execs as f64 / secs
        } else {
            0.0
        }
    }
}

thread_local! {
    /// Set while the engine runs a target: the panic hook records instead of printing.
    static CAPTURE: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Installs (once) a panic hook that, while [`run_one`] is running a target on this
/// thread, stores the message and location instead of printing them. Elsewhere it defers
/// to the default hook.
fn install_hook() {
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let captured = CAPTURE.with(|c| {
                let mut slot = c.borrow_mut();
                if let Some(text) = slot.as_mut() {
                    let payload = info.payload();
                    let message = payload
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "<non-string panic payload>".to_owned());
                    let location = info
                        .location()
                        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                        .unwrap_or_else(|| "<unknown location>".to_owned());
                    *text = format!("panicked at {location}:\n{message}");
                    true
                } else {
                    false
                }
            });
            if !captured {
                default(info);
            }
        }));
    });
}

/// Runs `target` on `data`, turning a panic into `Err(message)`.
pub fn run_one(target: &Target, data: &[u8]) -> Result<Feedback, String> {
    install_hook();
    CAPTURE.with(|c| *c.borrow_mut() = Some(String::new()));
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| (target.run)(data)));
    let captured = CAPTURE.with(|c| c.borrow_mut().take()).unwrap_or_default();
    result.map_err(|_| {
        if captured.is_empty() {
            "panicked (no message captured)".to_owned()
        } else {
            captured
        }
    })
}

/// What the hang watchdog sees of the fuzzing thread.
#[derive(Default)]
struct Current {
    /// Executions started so far.
    started: AtomicU64,
    /// The input being executed.
    input: Mutex<Vec<u8>>,
    /// The run is over.
    done: AtomicBool,
}

/// Starts a thread that ends the process when one execution takes longer than `timeout`,
/// after writing the input to `artifacts/<target>/hang-<hash>`.
fn watchdog(target: &'static str, timeout: Duration, current: Arc<Current>) {
    std::thread::spawn(move || {
        let tick = Duration::from_millis(100).min(timeout);
        let mut last = u64::MAX;
        let mut since = Instant::now();
        while !current.done.load(Ordering::Relaxed) {
            std::thread::sleep(tick);
            let started = current.started.load(Ordering::Relaxed);
            if started != last {
                last = started;
                since = Instant::now();
                continue;
            }
            if since.elapsed() < timeout || current.done.load(Ordering::Relaxed) {
                continue;
            }
            let input = current
                .input
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let dir = crate::artifacts_dir(target);
            let path = dir.join(format!("hang-{:016x}", crate::fnv64(&input)));
            let saved = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &input));
            println!(
                "\n{target}: HANG: one input has run for more than {timeout:?}\n\
                 input ({} bytes) {}\nreplay:  cargo xtask fuzz --replay {} {target}",
                input.len(),
                match saved {
                    Ok(()) => format!("written to {}", path.display()),
                    Err(e) => format!("not written ({e}): {:?}", String::from_utf8_lossy(&input)),
                },
                path.display()
            );
            std::process::exit(1);
        }
    });
}

/// Fuzzes `target` starting from `seeds` until the time or execution budget is spent or
/// an input panics.
pub fn fuzz(target: &'static Target, seeds: Vec<Vec<u8>>, options: &Options) -> Report {
    let start = Instant::now();
    let current = Arc::new(Current::default());
    if let Some(timeout) = options.hang_timeout {
        watchdog(target.name, timeout, Arc::clone(&current));
    }
    let mut rng = Rng::new(options.seed);
    let mutator = Mutator {
        dictionary: target.dictionary,
        max_len: target.max_len,
    };
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    let mut features: HashSet<Feedback> = HashSet::new();
    let mut report = Report {
        execs: 0,
        elapsed: Duration::ZERO,
        seeds: seeds.len(),
        corpus: 0,
        features: 0,
        slowest: Duration::ZERO,
        crash: None,
    };
    let mut next_progress = Duration::from_secs(5);

    let execute = |input: &[u8], report: &mut Report| -> Option<Feedback> {
        if options.hang_timeout.is_some() {
            let mut slot = current
                .input
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            slot.clear();
            slot.extend_from_slice(input);
            current.started.fetch_add(1, Ordering::Relaxed);
        }
        let began = Instant::now();
        let outcome = run_one(target, input);
        report.slowest = report.slowest.max(began.elapsed());
        report.execs += 1;
        match outcome {
            Ok(feedback) => Some(feedback),
            Err(message) => {
                report.crash = Some(Crash {
                    input: input.to_vec(),
                    message,
                });
                None
            }
        }
    };

    for seed in seeds {
        let Some(feedback) = execute(&seed, &mut report) else {
            break;
        };
        features.insert(feedback);
        corpus.push(seed);
    }
    if corpus.is_empty() && report.crash.is_none() {
        corpus.push(Vec::new());
    }

    while report.crash.is_none() {
        let elapsed = start.elapsed();
        if elapsed >= options.time || options.max_execs.is_some_and(|max| report.execs >= max) {
            break;
        }
        if options.progress && elapsed >= next_progress {
            eprintln!(
                "    {}: {} execs, {:.0}/s, corpus {}, features {}",
                target.name,
                report.execs,
                report.execs as f64 / elapsed.as_secs_f64(),
                corpus.len(),
                features.len()
            );
            next_progress += Duration::from_secs(5);
        }
        // Newer entries showed something new most recently: pick them a little more often.
        let index = if rng.one_in(3) {
            corpus
                .len()
                .saturating_sub(1 + rng.below(16.min(corpus.len())))
        } else {
            rng.below(corpus.len())
        };
        let mut input = corpus.get(index).cloned().unwrap_or_default();
        let other = corpus
            .get(rng.below(corpus.len()))
            .cloned()
            .unwrap_or_default();
        mutator.mutate(&mut rng, &mut input, &other);
        if let Some(feedback) = execute(&input, &mut report)
            && features.insert(feedback)
            && corpus.len() < MAX_CORPUS
        {
            corpus.push(input);
        }
    }
    current.done.store(true, Ordering::Relaxed);
    report.elapsed = start.elapsed();
    report.corpus = corpus.len();
    report.features = features.len();
    report
}

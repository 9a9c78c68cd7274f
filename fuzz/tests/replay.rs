//! Every saved input must pass its target: `regressions/<target>/*` (inputs that once
//! crashed, kept after the fix) and `corpus/<target>/*` (the checked-in seeds). Then a short
//! fixed-seed run of every target, so a plain `cargo test` exercises the engine too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use pkgload_fuzz::engine::{self, Options};
use pkgload_fuzz::{TARGETS, corpus_dir, read_inputs, regressions_dir};

#[test]
fn saved_inputs_pass() {
    let mut failures = Vec::new();
    let mut count = 0;
    for target in TARGETS {
        for dir in [regressions_dir(target.name), corpus_dir(target.name)] {
            for (path, data) in read_inputs(&dir).unwrap() {
                count += 1;
                if let Err(message) = engine::run_one(target, &data) {
                    failures.push(format!("{}: {}: {message}", target.name, path.display()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(count >= TARGETS.len(), "only {count} saved inputs");
}

#[test]
fn every_target_has_seeds_in_code_and_on_disk() {
    for target in TARGETS {
        assert!(!(target.seeds)().is_empty(), "{}", target.name);
        assert!(
            !read_inputs(&corpus_dir(target.name)).unwrap().is_empty(),
            "{}: no checked-in corpus; run `pkgload-fuzz write-seeds {}`",
            target.name,
            target.name
        );
    }
}

#[test]
fn a_short_fixed_seed_run_finds_nothing() {
    for target in TARGETS {
        let options = Options {
            seed: 0x5eed,
            time: Duration::from_secs(20),
            max_execs: Some(1500),
            progress: false,
            hang_timeout: None,
        };
        let report = engine::fuzz(target, (target.seeds)(), &options);
        if let Some(crash) = report.crash {
            panic!(
                "{}: {}\ninput: {:?}",
                target.name,
                crash.message,
                String::from_utf8_lossy(&crash.input)
            );
        }
        assert!(report.execs > 0);
    }
}

#[test]
fn a_panicking_target_is_caught_and_reported() {
    fn boom(data: &[u8]) -> pkgload_fuzz::targets::Feedback {
        assert!(data.len() < 3, "input too long: {}", data.len());
        pkgload_fuzz::targets::Feedback::new("fine")
    }
    static TARGET: pkgload_fuzz::Target = pkgload_fuzz::Target {
        name: "boom",
        about: "panics on inputs of 3 bytes or more",
        run: boom,
        seeds: Vec::new,
        dictionary: &[b"abc"],
        max_len: 16,
    };
    let target = &TARGET;
    assert!(engine::run_one(target, b"ab").is_ok());
    let message = engine::run_one(target, b"abcd").unwrap_err();
    assert!(message.contains("input too long: 4"), "{message}");
    assert!(message.contains("tests/replay.rs"), "{message}");
    let options = Options {
        seed: 1,
        time: Duration::from_secs(10),
        max_execs: Some(100_000),
        progress: false,
        hang_timeout: None,
    };
    let report = engine::fuzz(target, vec![b"a".to_vec()], &options);
    let crash = report.crash.expect("the engine must find a 3-byte input");
    assert!(crash.input.len() >= 3);
}

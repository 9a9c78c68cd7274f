//! The fuzz targets: one per parser of outside data. Each checks invariants on what the
//! parser accepts and panics (through `assert!`/`panic!`) when one breaks.

use std::fmt;
use std::hash::{Hash, Hasher as _};

mod estargz;
mod json;
mod layers;
mod text;
mod toc;
mod webc;

/// One fuzz target.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Its name on the command line and under `corpus/`, `regressions/`, `artifacts/`.
    pub name: &'static str,
    /// One line: what it feeds to what, and what it checks.
    pub about: &'static str,
    /// Runs one input; panics when an invariant breaks.
    pub run: fn(&[u8]) -> Feedback,
    /// Seeds generated in code (the checked-in `corpus/<name>/` files are added to them).
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Tokens of the input format, for the mutator.
    pub dictionary: &'static [&'static [u8]],
    /// Mutants are cut to this length.
    pub max_len: usize,
}

/// Every target, in the order `cargo xtask fuzz` runs them.
pub const TARGETS: &[Target] = &[
    text::DIGEST,
    text::REFERENCE,
    text::WWW_AUTHENTICATE,
    text::VFS_PATH,
    text::RETRY_AFTER,
    text::PACKAGE_REF,
    text::PLATFORM,
    json::MANIFEST,
    json::ARTIFACT,
    json::PACKAGE_CONFIG,
    json::LOCKFILE,
    json::DOCKER_CONFIG,
    layers::TAR_INDEX,
    layers::TAR_INDEX_JSON,
    layers::OVERLAY,
    layers::UNION,
    layers::MATERIALIZE,
    webc::WEBC,
    toc::ZSTD_CHUNKED_TOC,
    estargz::ESTARGZ_TOC,
];

/// The target called `name`.
pub fn find(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// What one execution showed, as a hash: the engine keeps a mutant when its feedback is
/// new. Built from the outcome (accepted or which kind of error, with the input's own text
/// stripped from the message) and a size class of what was parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Feedback(u64);

impl Feedback {
    /// A plain label (e.g. "not UTF-8").
    pub fn new(label: &str) -> Self {
        Feedback(crate::fnv64(label.as_bytes()))
    }

    /// Accepted: `what` was parsed and is `size` big (entries, bytes, components...).
    pub fn ok(what: &str, size: usize) -> Self {
        Feedback::new(what).and(size_class(size))
    }

    /// Rejected with `error`: which error (the chain of variant names in its `Debug`
    /// form) and, in one of 16 buckets, the [`shape`] of its message. The buckets bound
    /// how many inputs one kind of error can add to the corpus.
    pub fn err<E: fmt::Display + fmt::Debug + ?Sized>(stage: &str, error: &E) -> Self {
        if trace() {
            eprintln!("    {stage}: {error}");
        }
        let bucket = crate::fnv64(shape(&error.to_string()).as_bytes()) % 16;
        Feedback::new(stage)
            .with(Feedback::new(&variants(&format!("{error:?}"))))
            .and(bucket)
    }

    /// This feedback combined with another value (a later stage, a count).
    #[must_use]
    pub fn and(self, other: u64) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.0.hash(&mut h);
        other.hash(&mut h);
        Feedback(h.finish())
    }

    /// This feedback combined with another.
    #[must_use]
    pub fn with(self, other: Feedback) -> Self {
        self.and(other.0)
    }
}

/// 0, 1, 2-3, 4-7, ...: the bit length of `n`.
pub fn size_class(n: usize) -> u64 {
    u64::from(usize::BITS - n.leading_zeros())
}

/// An error message without the parts that echo the input: only its first line, quoted
/// or back-ticked text and every word that is not plain letters (names, paths, numbers)
/// replaced by `_`. "invalid tag \"a b\" at 12" and "invalid tag \"c\" at 3" have the
/// same shape.
pub fn shape(message: &str) -> String {
    let line = message.lines().next().unwrap_or_default();
    let mut unquoted = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '"' || c == '`' {
            while let Some(d) = chars.next() {
                if d == '\\' {
                    chars.next();
                } else if d == c {
                    break;
                }
            }
            unquoted.push_str(" _ ");
        } else {
            unquoted.push(c);
        }
    }
    let mut out: Vec<&str> = Vec::new();
    for word in unquoted.split_whitespace() {
        let bare = word.trim_end_matches([':', ',', ';', '.', ')']);
        let bare = bare.trim_start_matches('(');
        // Plain words only: lower case, or capitalized; at most 20 letters.
        let mut letters = bare.chars();
        let plain = letters.next().is_some_and(|c| c.is_ascii_alphabetic())
            && letters.all(|c| c.is_ascii_lowercase() || c == '-')
            && bare.len() <= 20;
        let word = if plain { bare } else { "_" };
        if !(word == "_" && out.last() == Some(&"_")) {
            out.push(word);
        }
        if out.len() >= 16 {
            break;
        }
    }
    out.join(" ")
}

/// The identifiers directly followed by `(` or ` {` in a `Debug` string, quoted text
/// skipped: `Tar(Malformed { at: 5, message: "x" })` gives `Tar Malformed`.
pub fn variants(debug: &str) -> String {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut chars = debug.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            while let Some(d) = chars.next() {
                if d == '\\' {
                    chars.next();
                } else if d == '"' {
                    break;
                }
            }
            word.clear();
        } else if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            let opens = c == '(' || (c == ' ' && chars.peek() == Some(&'{'));
            if opens && word.starts_with(|w: char| w.is_ascii_uppercase()) && out.len() < 8 {
                out.push(std::mem::take(&mut word));
            }
            word.clear();
        }
    }
    out.join(" ")
}

/// `PKGLOAD_FUZZ_TRACE=1`: print every error a target sees (for `replay`).
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("PKGLOAD_FUZZ_TRACE").is_some_and(|v| v == "1"))
}

/// `data` as text, or `None` (the caller returns a "not UTF-8" feedback).
pub(crate) fn utf8(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_drop_the_input() {
        assert_eq!(
            shape("invalid tag \"a b\" at 12"),
            shape("invalid tag \"c\\\"d\" at 3")
        );
        assert_ne!(shape("invalid tag"), shape("invalid digest"));
        assert_eq!(shape("x `y` 1234 acme/app: z"), "x _ z");
        assert_eq!(shape("a\nsecond line"), "a");
        assert_eq!(
            variants(r#"Tar(Malformed { at: 5, message: "x(\"y" })"#),
            "Tar Malformed"
        );
    }

    #[test]
    fn names_are_unique_and_findable() {
        let mut names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TARGETS.len());
        assert!(find("digest").is_some());
        assert!(find("nope").is_none());
    }
}

//! `semver::VersionReq` as a `pubgrub::Ranges` over `semver::Version`.

use pubgrub::Ranges;
use semver::{Comparator, Op, Prerelease, Version, VersionReq};

/// The versions a requirement accepts, pre-release rule aside.
///
/// Each comparator becomes an interval and a comma-joined requirement is their
/// intersection, following the semver crate's (Cargo's) reading of each operator:
///
/// | requirement | interval |
/// |---|---|
/// | `=1.2.3`, `=1.2`, `=1` | `[1.2.3]`, `[1.2.0, 1.3.0)`, `[1.0.0, 2.0.0)` |
/// | `>1.2.3`, `>1.2`, `>1` | `(1.2.3, ∞)`, `[1.3.0, ∞)`, `[2.0.0, ∞)` |
/// | `>=1.2.3`, `>=1.2` | `[1.2.3, ∞)`, `[1.2.0, ∞)` |
/// | `<1.2.3`, `<1.2` | `(-∞, 1.2.3)`, `(-∞, 1.2.0)` |
/// | `<=1.2.3`, `<=1.2` | `(-∞, 1.2.3]`, `(-∞, 1.3.0)` |
/// | `~1.2.3`, `~1.2`, `~1` | `[1.2.3, 1.3.0)`, `[1.2.0, 1.3.0)`, `[1.0.0, 2.0.0)` |
/// | `^1.2.3`, `^0.2.3`, `^0.0.3` | `[1.2.3, 2.0.0)`, `[0.2.3, 0.3.0)`, `[0.0.3, 0.0.4)` |
/// | `1.*`, `1.2.*`, `*` | like `=1`, `=1.2`, everything |
///
/// Limit: semver's pre-release rule (a pre-release matches only a comparator that names a
/// pre-release of the same `major.minor.patch`) is not a set of intervals, so it is not
/// encoded here. The solver applies it to *candidates* instead: a pre-release version is
/// offered only if some requirement on that package names a pre-release of the same
/// `major.minor.patch` (see [`crate::resolve`]). Build metadata is ignored for ordering by the
/// semver crate except as a last tie-break, which is harmless here.
pub fn req_to_ranges(req: &VersionReq) -> Ranges<Version> {
    req.comparators
        .iter()
        .fold(Ranges::full(), |acc, c| acc.intersection(&comparator(c)))
}

fn v(major: u64, minor: u64, patch: u64) -> Version {
    Version::new(major, minor, patch)
}

/// `[lo, hi)` where `hi = None` means no upper bound (an overflowed `+1`).
fn half_open(lo: Version, hi: Option<Version>) -> Ranges<Version> {
    match hi {
        Some(hi) => Ranges::between(lo, hi),
        None => Ranges::higher_than(lo),
    }
}

/// The first version after every `major.minor.*` (or `major.*`): the end of a partial
/// version's "block". `None` on overflow, which means unbounded.
fn block_end(major: u64, minor: Option<u64>) -> Option<Version> {
    match minor {
        Some(minor) => minor.checked_add(1).map(|m| v(major, m, 0)),
        None => major.checked_add(1).map(|m| v(m, 0, 0)),
    }
}

fn comparator(c: &Comparator) -> Ranges<Version> {
    let (major, minor, patch) = (c.major, c.minor, c.patch);
    let lo = || v(major, minor.unwrap_or(0), patch.unwrap_or(0));
    let exact = || {
        let mut e = lo();
        e.pre = c.pre.clone();
        e
    };
    match c.op {
        Op::Exact | Op::Wildcard => match patch {
            Some(_) => Ranges::singleton(exact()),
            None => half_open(lo(), block_end(major, minor)),
        },
        Op::Greater => match (minor, patch) {
            (Some(_), Some(_)) => Ranges::strictly_higher_than(exact()),
            _ => block_end(major, minor).map_or_else(Ranges::empty, Ranges::higher_than),
        },
        Op::GreaterEq => Ranges::higher_than(exact()),
        Op::Less => Ranges::strictly_lower_than(exact()),
        Op::LessEq => match patch {
            Some(_) => Ranges::lower_than(exact()),
            None => block_end(major, minor).map_or_else(Ranges::full, Ranges::strictly_lower_than),
        },
        Op::Tilde => match minor {
            Some(minor) => half_open(exact(), block_end(major, Some(minor))),
            None => half_open(lo(), block_end(major, None)),
        },
        Op::Caret => caret(c, exact()),
        // `Op` is non-exhaustive; a future operator we do not understand accepts nothing, so
        // a resolution never silently widens a requirement.
        _ => Ranges::empty(),
    }
}

fn caret(c: &Comparator, start: Version) -> Ranges<Version> {
    let end = match (c.major, c.minor, c.patch) {
        (0, Some(0), Some(p)) => p.checked_add(1).map(|p| v(0, 0, p)),
        (0, Some(m), _) => block_end(0, Some(m)),
        (major, _, _) => block_end(major, None),
    };
    half_open(start, end)
}

/// Whether a pre-release `version` is opted into by `req` (same `major.minor.patch` and a
/// comparator with a pre-release tag), per semver's rule.
pub fn opts_into_prerelease(req: &VersionReq, version: &Version) -> bool {
    req.comparators.iter().any(|c| {
        c.pre != Prerelease::EMPTY
            && c.major == version.major
            && c.minor == Some(version.minor)
            && c.patch == Some(version.patch)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(s: &str) -> Ranges<Version> {
        req_to_ranges(&VersionReq::parse(s).unwrap())
    }

    #[test]
    fn table() {
        let cases = [
            ("^1.2.3", ">=1.2.3, <2.0.0"),
            ("^0.2.3", ">=0.2.3, <0.3.0"),
            ("^0.0.3", ">=0.0.3, <0.0.4"),
            ("~1.2.3", ">=1.2.3, <1.3.0"),
            ("=1.2.3", "1.2.3"),
            ("1.*", ">=1.0.0, <2.0.0"),
            ("*", "*"),
            (">1.2", ">=1.3.0"),
            ("<=1.2", "<1.3.0"),
            (">=3.11, <3.14", ">=3.11.0, <3.14.0"),
        ];
        for (req, want) in cases {
            assert_eq!(r(req).to_string(), want, "{req}");
        }
    }

    #[test]
    fn pre_release_opt_in() {
        let req = VersionReq::parse(">=1.2.3-alpha.1").unwrap();
        assert!(opts_into_prerelease(
            &req,
            &Version::parse("1.2.3-beta").unwrap()
        ));
        assert!(!opts_into_prerelease(
            &req,
            &Version::parse("1.2.4-beta").unwrap()
        ));
        assert!(r(">=1.2.3-alpha.1").contains(&Version::parse("1.2.3-beta").unwrap()));
    }

    fn any_req() -> impl Strategy<Value = String> {
        let op = prop::sample::select(vec!["", "=", ">", ">=", "<", "<=", "~", "^"]);
        let part = (
            op,
            0u64..4,
            prop::option::of(0u64..4),
            prop::option::of(0u64..4),
        )
            .prop_map(|(op, a, b, c)| match (b, c) {
                (Some(b), Some(c)) => format!("{op}{a}.{b}.{c}"),
                (Some(b), None) => format!("{op}{a}.{b}"),
                _ => format!("{op}{a}"),
            });
        prop::collection::vec(part, 1..3).prop_map(|parts| parts.join(", "))
    }

    proptest! {
        // For release versions the ranges agree with semver's own matcher exactly.
        #[test]
        fn agrees_with_semver(req in any_req(), a in 0u64..5, b in 0u64..5, c in 0u64..5) {
            let parsed = VersionReq::parse(&req).unwrap();
            let version = v(a, b, c);
            prop_assert_eq!(req_to_ranges(&parsed).contains(&version), parsed.matches(&version), "{}", req);
        }
    }
}

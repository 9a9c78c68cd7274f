//! Platforms, and picking the manifest for one out of an image index the way containerd does.
//!
//! An image index lists one manifest per platform (`linux/amd64`, `linux/arm64/v8`, …). To
//! choose, both sides are first *normalized* the way containerd's `platforms` package does it:
//!
//! | written                    | normalized                         |
//! |----------------------------|------------------------------------|
//! | `aarch64`                  | `arm64` (variant `v8` is implied)  |
//! | `arm64/v8`, `arm64/8`      | `arm64`                            |
//! | `x86_64`, `x86-64`         | `amd64`                            |
//! | `amd64/v1`                 | `amd64`                            |
//! | `i386`                     | `386`                              |
//! | `armhf`, `arm`, `arm/7`    | `arm/v7`                           |
//! | `armel`                    | `arm/v6`                           |
//! | `arm/5`, `arm/6`, `arm/8`  | `arm/v5`, `arm/v6`, `arm/v8`       |
//! | `macos` (OS)               | `darwin`                           |
//!
//! and everything is compared in lower case. Then a [`PlatformMatcher`] ranks each entry by
//! the first platform of its *preference list* that the entry matches (see
//! [`PlatformMatcher::preference`]), and the best-ranked entry wins; among equally ranked
//! entries the first in index order wins. The preference list starts with the wanted
//! platform itself and continues with what that platform can also run:
//!
//! - `arm/vN` also runs `arm/vN-1` down to `arm/v5` (a v7 host takes v6 before v5);
//! - `arm64/v8.x` also runs `arm64/v8.{x-1…0}`; `arm64/v9.x` also runs `arm64/v9.{x-1…0}` and
//!   then `arm64/v8.{x+5…0}` (v9.0 corresponds to v8.5);
//! - after every `arm64` variant, `arm/v8`, `arm/v7`, `arm/v6`, `arm/v5`. containerd's default
//!   matcher does this too (its `platformVector`), even though some arm64 CPUs (Apple
//!   silicon, several server parts) cannot execute 32-bit code; an index that lacks arm64
//!   but has arm is rare, and failing to pick anything would be worse than containerd's
//!   behaviour;
//! - `amd64/vN` also runs `amd64/vN-1` down to `amd64` (v1);
//! - `amd64` does **not** fall back to `386` unless asked
//!   ([`PlatformMatcher::with_386_fallback`]). This is a deliberate difference from
//!   containerd's `platforms.Default()` on Unix, which does fall back to 386 (its `Only`
//!   matcher; only `DefaultStrict`/`OnlyStrict` does not): 32-bit x86 needs the kernel's
//!   IA-32 emulation, which is increasingly disabled, and silently running a 386 image on a
//!   64-bit host surprises more than it helps.
//!
//! [`PlatformMatcher::strict`] disables every fallback (containerd's `OnlyStrict`).
//!
//! `os.version` and `os.features` matter only when the wanted platform sets them, which in
//! practice means Windows:
//!
//! - `os.version` (Windows only): an entry without one matches; otherwise major and minor
//!   version must be equal, and the build must be equal too for hosts older than Windows
//!   Server 2022 (build 20348); newer hosts also run any build from 20348 up to their own
//!   (Microsoft's stable container ABI). Among entries of equal rank the highest version
//!   wins, as in containerd's Windows matcher.
//! - `os.features`: the entry's features must all be among the wanted ones (an image that
//!   needs `win32k` only runs on a host that has it). An entry's features are ignored when
//!   the wanted platform lists none (containerd would reject such entries; we cannot detect
//!   host features, so that would make every `win32k` image unselectable).
//!
//! Entries without a platform are skipped.

use std::fmt;
use std::str::FromStr;

/// Windows Server 2022 (ltsc2022): from this build on, hosts run older-build containers
/// down to this one.
const WINDOWS_STABLE_ABI_BUILD: u32 = 20348;

/// The lowest 32-bit ARM variant containerd falls back to.
const ARM_LOWEST_VARIANT: u32 = 5;

/// An OCI platform: the `platform` object of an image index entry.
///
/// Fields hold what was written; comparisons go through [`Platform::normalized`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Platform {
    /// The operating system: `linux`, `windows`, `darwin`, …
    pub os: String,
    /// The CPU architecture in Go's spelling: `amd64`, `arm64`, `arm`, `386`, `ppc64le`, …
    pub architecture: String,
    /// The CPU variant: `v7` for `arm`, `v8` for `arm64`, `v2`/`v3` for `amd64`, …
    pub variant: Option<String>,
    /// The OS version (`os.version`), e.g. `10.0.20348.2340` on Windows.
    pub os_version: Option<String>,
    /// Required OS features (`os.features`), e.g. `win32k`.
    pub os_features: Vec<String>,
}

impl Platform {
    /// A platform from OS and architecture, without variant, version or features.
    pub fn new(os: impl Into<String>, architecture: impl Into<String>) -> Self {
        Platform {
            os: os.into(),
            architecture: architecture.into(),
            ..Platform::default()
        }
    }

    /// The same platform with a CPU variant.
    pub fn with_variant(mut self, variant: impl Into<String>) -> Self {
        self.variant = Some(variant.into());
        self
    }

    /// The same platform with an OS version.
    pub fn with_os_version(mut self, os_version: impl Into<String>) -> Self {
        self.os_version = Some(os_version.into());
        self
    }

    /// The platform this program was compiled for, in OCI names.
    ///
    /// Rust's `x86_64` is `amd64`, `aarch64` is `arm64` with variant `v8`, `arm` is `arm`
    /// with the variant the target was compiled for (`v7` for the usual `armv7` targets),
    /// `x86` is `386`, `powerpc64` is `ppc64le` or `ppc64` by endianness, `macos` is
    /// `darwin`. The variant is a lower bound: a v7 build running on a v8 CPU says `v7`.
    /// Windows hosts get no `os_version` here; set it when it matters.
    pub fn host() -> Self {
        let os = match std::env::consts::OS {
            "macos" => "darwin",
            other => other,
        };
        let little = cfg!(target_endian = "little");
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some(host_arm_variant())),
            "powerpc64" if little => ("ppc64le", None),
            "powerpc64" => ("ppc64", None),
            "powerpc" => ("ppc", None),
            "mips" if little => ("mipsle", None),
            "mips64" if little => ("mips64le", None),
            "loongarch64" => ("loong64", None),
            "wasm32" => ("wasm", None),
            // s390x, riscv64, mips, mips64, sparc64 are spelled the same in Go.
            other => (other, None),
        };
        Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
            os_version: None,
            os_features: Vec::new(),
        }
    }

    /// The canonical form used for comparison (see the [module documentation](self)): lower
    /// case, architecture aliases resolved, default variants made explicit for `arm` (`v7`)
    /// and removed for `arm64` (`v8`) and `amd64` (`v1`), features sorted and deduplicated.
    pub fn normalized(&self) -> Platform {
        let os = self.os.to_ascii_lowercase();
        let os = if os == "macos" {
            "darwin".to_owned()
        } else {
            os
        };
        let (architecture, variant) =
            normalize_arch(&self.architecture, self.variant.as_deref().unwrap_or(""));
        let mut os_features = self.os_features.clone();
        os_features.sort();
        os_features.dedup();
        Platform {
            os,
            architecture,
            variant,
            os_version: self.os_version.clone().filter(|v| !v.is_empty()),
            os_features,
        }
    }

    /// Whether two platforms name the same OS, architecture and variant after
    /// normalization (`linux/arm64` and `linux/aarch64/v8` do).
    pub fn same_target(&self, other: &Platform) -> bool {
        let (a, b) = (self.normalized(), other.normalized());
        a.os == b.os && a.architecture == b.architecture && a.variant == b.variant
    }
}

/// The compiled-for 32-bit ARM architecture version.
fn host_arm_variant() -> &'static str {
    if cfg!(target_feature = "v8") {
        "v8"
    } else if cfg!(target_feature = "v7") {
        "v7"
    } else if cfg!(target_feature = "v6") {
        "v6"
    } else if cfg!(target_arch = "arm") {
        "v5"
    } else {
        // Not reached: only called on ARM.
        "v7"
    }
}

/// containerd's architecture normalization; an empty variant is `None`.
fn normalize_arch(architecture: &str, variant: &str) -> (String, Option<String>) {
    let architecture = architecture.to_ascii_lowercase();
    let variant = variant.to_ascii_lowercase();
    let (architecture, variant): (&str, &str) = match (architecture.as_str(), variant.as_str()) {
        ("i386", _) => ("386", ""),
        ("x86_64" | "x86-64" | "amd64", "v1") => ("amd64", ""),
        ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v),
        ("aarch64" | "arm64", "8" | "v8") => ("arm64", ""),
        ("aarch64" | "arm64", v) => ("arm64", v),
        ("armhf", _) => ("arm", "v7"),
        ("armel", _) => ("arm", "v6"),
        ("arm", "" | "7") => ("arm", "v7"),
        ("arm", "5") => ("arm", "v5"),
        ("arm", "6") => ("arm", "v6"),
        ("arm", "8") => ("arm", "v8"),
        (a, v) => (a, v),
    };
    let variant = (!variant.is_empty()).then(|| variant.to_owned());
    (architecture.to_owned(), variant)
}

/// Why a string is not a platform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParsePlatformError {
    /// The input is empty.
    #[error("empty platform: expected `os/arch[/variant]`, e.g. `linux/amd64` or `linux/arm64/v8`")]
    Empty,
    /// Only an OS (or only an architecture) was given.
    #[error(
        "invalid platform {input:?}: the architecture is missing; expected `os/arch[/variant]`, \
         e.g. `linux/amd64`"
    )]
    MissingArchitecture {
        /// The rejected input (shortened).
        input: String,
    },
    /// More than three `/`-separated parts.
    #[error(
        "invalid platform {input:?}: too many `/`-separated parts; expected `os/arch[/variant]`"
    )]
    TooManyParts {
        /// The rejected input (shortened).
        input: String,
    },
    /// A part is empty or holds characters a platform cannot contain.
    #[error("invalid platform {input:?}: invalid {part} {value:?}: {reason}")]
    InvalidPart {
        /// The rejected input (shortened).
        input: String,
        /// Which part: `os`, `os version`, `os feature`, `architecture` or `variant`.
        part: &'static str,
        /// The part as written (shortened).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl FromStr for Platform {
    type Err = ParsePlatformError;

    /// Parse `os[(version[+feature]*)]/arch[/variant]`, e.g. `linux/arm64/v8` or
    /// `windows(10.0.20348+win32k)/amd64` (containerd's specifier syntax, without its
    /// single-word forms and `%` escapes). The parts are kept as written; matching
    /// normalizes them.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty() {
            return Err(ParsePlatformError::Empty);
        }
        let mut parts = input.split('/');
        let os_part = parts.next().unwrap_or_default();
        let Some(arch_part) = parts.next() else {
            return Err(ParsePlatformError::MissingArchitecture {
                input: shown(input),
            });
        };
        let variant_part = parts.next();
        if parts.next().is_some() {
            return Err(ParsePlatformError::TooManyParts {
                input: shown(input),
            });
        }
        let invalid = |part, value: &str, reason| ParsePlatformError::InvalidPart {
            input: shown(input),
            part,
            value: shown(value),
            reason,
        };

        let (os, options) = match os_part.split_once('(') {
            Some((os, rest)) => {
                let options = rest.strip_suffix(')').ok_or_else(|| {
                    invalid("os", os_part, "an OS version must be closed with `)`")
                })?;
                (os, Some(options))
            }
            None => (os_part, None),
        };
        check_word(os, false).map_err(|reason| invalid("os", os, reason))?;
        let mut os_version = None;
        let mut os_features = Vec::new();
        if let Some(options) = options {
            let mut items = options.split('+');
            let version = items.next().unwrap_or_default();
            if !version.is_empty() {
                check_word(version, true)
                    .map_err(|reason| invalid("os version", version, reason))?;
                os_version = Some(version.to_owned());
            }
            for feature in items {
                check_word(feature, true)
                    .map_err(|reason| invalid("os feature", feature, reason))?;
                os_features.push(feature.to_owned());
            }
        }
        check_word(arch_part, true).map_err(|reason| invalid("architecture", arch_part, reason))?;
        if let Some(variant) = variant_part {
            check_word(variant, true).map_err(|reason| invalid("variant", variant, reason))?;
        }
        Ok(Platform {
            os: os.to_owned(),
            architecture: arch_part.to_owned(),
            variant: variant_part.map(str::to_owned),
            os_version,
            os_features,
        })
    }
}

impl fmt::Display for Platform {
    /// `os[(version[+feature]*)]/arch[/variant]`, the syntax [`FromStr`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.os)?;
        let version = self.os_version.as_deref().unwrap_or("");
        if !version.is_empty() || !self.os_features.is_empty() {
            write!(f, "({version}")?;
            for feature in &self.os_features {
                write!(f, "+{feature}")?;
            }
            f.write_str(")")?;
        }
        write!(f, "/{}", self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// `[A-Za-z0-9_-]+`, plus `.` when `dots`.
fn check_word(word: &str, dots: bool) -> Result<(), &'static str> {
    if word.is_empty() {
        return Err("it is empty");
    }
    if word
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (dots && b == b'.'))
    {
        Ok(())
    } else if dots {
        Err("only letters, digits, `_`, `-` and `.` are allowed")
    } else {
        Err("only letters, digits, `_` and `-` are allowed")
    }
}

fn shown(input: &str) -> String {
    match input.char_indices().nth(120) {
        Some((cut, _)) => format!("{}…", input.get(..cut).unwrap_or_default()),
        None => input.to_owned(),
    }
}

/// Ranks platforms by how well they fit a wanted one; see the [module documentation](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformMatcher {
    wanted: Platform,
    preference: Vec<Platform>,
    fallbacks: bool,
    allow_386: bool,
    windows_version: Option<WindowsVersion>,
}

impl PlatformMatcher {
    /// containerd-style matching for `wanted`, with the fallbacks described in the module
    /// documentation (but no `amd64` → `386`).
    pub fn new(wanted: &Platform) -> Self {
        PlatformMatcher::build(wanted, true, false)
    }

    /// Exact (normalized) matches only, like containerd's `OnlyStrict`.
    pub fn strict(wanted: &Platform) -> Self {
        PlatformMatcher::build(wanted, false, false)
    }

    /// Also accept `386` after every `amd64` variant, as containerd's `platforms.Only` does.
    /// No effect on a strict matcher.
    pub fn with_386_fallback(self) -> Self {
        PlatformMatcher::build(&self.wanted, self.fallbacks, true)
    }

    fn build(wanted: &Platform, fallbacks: bool, allow_386: bool) -> Self {
        let wanted = wanted.normalized();
        let target = Target {
            os: wanted.os.clone(),
            architecture: wanted.architecture.clone(),
            variant: wanted.variant.clone(),
        };
        let targets = if fallbacks {
            preference_vector(&target, allow_386)
        } else {
            vec![target]
        };
        let preference = targets
            .into_iter()
            .map(|t| Platform {
                os: t.os,
                architecture: t.architecture,
                variant: t.variant,
                os_version: wanted.os_version.clone(),
                os_features: wanted.os_features.clone(),
            })
            .collect();
        let windows_version = if wanted.os == "windows" {
            wanted.os_version.as_deref().and_then(WindowsVersion::parse)
        } else {
            None
        };
        PlatformMatcher {
            wanted,
            preference,
            fallbacks,
            allow_386,
            windows_version,
        }
    }

    /// The wanted platform, normalized.
    pub fn wanted(&self) -> &Platform {
        &self.wanted
    }

    /// The normalized platforms accepted, best first (the wanted one is first). Useful for
    /// an error message when nothing matched.
    pub fn preference(&self) -> &[Platform] {
        &self.preference
    }

    /// The rank of `candidate`: 0 for an exact (normalized) match, higher for later
    /// fallbacks, `None` when it does not match at all.
    pub fn rank(&self, candidate: &Platform) -> Option<usize> {
        let candidate = candidate.normalized();
        if !self.os_version_ok(&candidate) || !self.os_features_ok(&candidate) {
            return None;
        }
        self.preference.iter().position(|p| {
            p.os == candidate.os
                && p.architecture == candidate.architecture
                && p.variant == candidate.variant
        })
    }

    /// Whether `candidate` is acceptable at all.
    pub fn matches(&self, candidate: &Platform) -> bool {
        self.rank(candidate).is_some()
    }

    /// The index of the best entry of `candidates`, or `None` if none fits.
    ///
    /// `platform_of` extracts an entry's platform; entries for which it returns `None` are
    /// skipped. The lowest [`rank`](Self::rank) wins; among equal ranks the higher Windows
    /// `os.version` (when the wanted platform is Windows with a version), then the earlier
    /// entry.
    pub fn select_index<T>(
        &self,
        candidates: &[T],
        platform_of: impl Fn(&T) -> Option<Platform>,
    ) -> Option<usize> {
        let mut best: Option<(usize, Option<WindowsVersion>, usize)> = None;
        for (index, entry) in candidates.iter().enumerate() {
            let Some(platform) = platform_of(entry) else {
                continue;
            };
            let Some(rank) = self.rank(&platform) else {
                continue;
            };
            let version = self
                .windows_version
                .and(platform.os_version.as_deref())
                .and_then(WindowsVersion::parse);
            let better = match &best {
                None => true,
                Some((best_rank, best_version, _)) => {
                    rank < *best_rank || (rank == *best_rank && version > *best_version)
                }
            };
            if better {
                best = Some((rank, version, index));
            }
        }
        best.map(|(_, _, index)| index)
    }

    /// The best entry of `candidates`; see [`select_index`](Self::select_index).
    pub fn select<'a, T>(
        &self,
        candidates: &'a [T],
        platform_of: impl Fn(&T) -> Option<Platform>,
    ) -> Option<&'a T> {
        self.select_index(candidates, platform_of)
            .and_then(|i| candidates.get(i))
    }

    fn os_version_ok(&self, candidate: &Platform) -> bool {
        let Some(host) = self.windows_version else {
            return true;
        };
        let Some(version) = candidate.os_version.as_deref() else {
            return true;
        };
        WindowsVersion::parse(version).is_some_and(|image| host.runs(image))
    }

    fn os_features_ok(&self, candidate: &Platform) -> bool {
        self.wanted.os_features.is_empty()
            || candidate
                .os_features
                .iter()
                .all(|f| self.wanted.os_features.contains(f))
    }
}

/// The entry of `candidates` that best fits `wanted` under the default rules
/// ([`PlatformMatcher::new`]); see the [module documentation](self).
pub fn select<'a, T>(
    candidates: &'a [T],
    platform_of: impl Fn(&T) -> Option<Platform>,
    wanted: &Platform,
) -> Option<&'a T> {
    PlatformMatcher::new(wanted).select(candidates, platform_of)
}

/// The index of the entry of `candidates` that best fits `wanted`; see [`select`].
pub fn select_index<T>(
    candidates: &[T],
    platform_of: impl Fn(&T) -> Option<Platform>,
    wanted: &Platform,
) -> Option<usize> {
    PlatformMatcher::new(wanted).select_index(candidates, platform_of)
}

/// os/architecture/variant of one preference entry, normalized.
#[derive(Debug, Clone)]
struct Target {
    os: String,
    architecture: String,
    variant: Option<String>,
}

impl Target {
    fn with(&self, architecture: &str, variant: Option<String>) -> Target {
        Target {
            os: self.os.clone(),
            architecture: architecture.to_owned(),
            variant,
        }
    }
}

/// `vN` → `N`.
/// Real variant numbers are small (amd64 v1–v4, arm v5–v8, arm64 v8.0–v9.x); anything
/// past this is no known variant and gets no fallbacks, so a hostile `--platform` cannot
/// make the preference list huge.
const VARIANT_MAX: u32 = 64;

fn variant_number(variant: &str) -> Option<u32> {
    small(variant.strip_prefix('v')?)
}

fn small(number: &str) -> Option<u32> {
    number.parse().ok().filter(|n| *n <= VARIANT_MAX)
}

/// The wanted target followed by everything it also runs, best first.
fn preference_vector(wanted: &Target, allow_386: bool) -> Vec<Target> {
    let mut out = vec![wanted.clone()];
    match wanted.architecture.as_str() {
        "amd64" => {
            let level = wanted.variant.as_deref().map_or(Some(1), variant_number);
            if let Some(level) = level {
                for lower in (1..level).rev() {
                    // v1 is the default and normalizes to no variant.
                    let variant = (lower > 1).then(|| format!("v{lower}"));
                    out.push(wanted.with("amd64", variant));
                }
            }
            if allow_386 {
                out.push(wanted.with("386", None));
            }
        }
        "arm" => {
            if let Some(version) = wanted.variant.as_deref().and_then(variant_number) {
                for lower in (ARM_LOWEST_VARIANT..version).rev() {
                    out.push(wanted.with("arm", Some(format!("v{lower}"))));
                }
            }
        }
        "arm64" => {
            let variant = wanted.variant.as_deref().unwrap_or("v8");
            let (major, minor) = match variant.split_once('.') {
                Some((major, minor)) => (variant_number(major), small(minor)),
                None => (variant_number(variant), Some(0)),
            };
            if let (Some(major @ (8 | 9)), Some(minor)) = (major, minor) {
                let arm64 = |major: u32, minor: u32| {
                    // v8 (= v8.0) is the default and normalizes to no variant.
                    match (major, minor) {
                        (8, 0) => None,
                        (_, 0) => Some(format!("v{major}")),
                        _ => Some(format!("v{major}.{minor}")),
                    }
                };
                let mut v8_minor = minor;
                if major == 9 {
                    for lower in (0..minor).rev() {
                        out.push(wanted.with("arm64", arm64(9, lower)));
                    }
                    v8_minor = minor + 5;
                    out.push(wanted.with("arm64", arm64(8, v8_minor)));
                }
                for lower in (0..v8_minor).rev() {
                    out.push(wanted.with("arm64", arm64(8, lower)));
                }
            }
            // AArch32: arm/v8 and below.
            for version in (ARM_LOWEST_VARIANT..=8).rev() {
                out.push(wanted.with("arm", Some(format!("v{version}"))));
            }
        }
        _ => {}
    }
    out
}

/// `major.minor.build[.revision]` of a Windows `os.version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct WindowsVersion {
    major: u32,
    minor: u32,
    build: u32,
    revision: u32,
}

impl WindowsVersion {
    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('.').map(|p| p.parse::<u32>().ok());
        let major = parts.next()??;
        let minor = parts.next()??;
        let build = parts.next()??;
        let revision = match parts.next() {
            Some(revision) => revision?,
            None => 0,
        };
        Some(WindowsVersion {
            major,
            minor,
            build,
            revision,
        })
    }

    /// Whether a host of this version runs a container image built for `image`.
    fn runs(self, image: WindowsVersion) -> bool {
        if self.major != image.major || self.minor != image.minor {
            return false;
        }
        if self.build < WINDOWS_STABLE_ABI_BUILD {
            self.build == image.build
        } else {
            (WINDOWS_STABLE_ABI_BUILD..=self.build).contains(&image.build)
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    /// Index entries as (name, platform); the name says which one was picked.
    fn index(entries: &[(&'static str, Option<&str>)]) -> Vec<(&'static str, Option<Platform>)> {
        entries.iter().map(|(n, s)| (*n, s.map(p))).collect()
    }

    fn pick(entries: &[(&'static str, Option<Platform>)], wanted: &str) -> Option<&'static str> {
        select(entries, |(_, platform)| platform.clone(), &p(wanted)).map(|(name, _)| *name)
    }

    fn pick_with(
        matcher: &PlatformMatcher,
        entries: &[(&'static str, Option<Platform>)],
    ) -> Option<&'static str> {
        matcher
            .select(entries, |(_, platform)| platform.clone())
            .map(|(name, _)| *name)
    }

    #[test]
    fn huge_variants_get_no_fallbacks() {
        // Found by the fuzzer: these made the preference list run for minutes (or overflow).
        for text in [
            "linux/arm/v2147483647",
            "linux/amd64/v4000000000",
            "linux/arm64/v9.4294967295",
        ] {
            let platform: Platform = text.parse().unwrap();
            let matcher = PlatformMatcher::new(&platform);
            assert!(matcher.preference().len() < 16, "{text}");
            assert_eq!(matcher.rank(&platform), Some(0), "{text}");
        }
    }

    #[test]
    fn exact_match() {
        let idx = index(&[
            ("amd64", Some("linux/amd64")),
            ("arm64", Some("linux/arm64/v8")),
            ("armv7", Some("linux/arm/v7")),
            ("ppc", Some("linux/ppc64le")),
            ("win", Some("windows/amd64")),
        ]);
        assert_eq!(pick(&idx, "linux/amd64"), Some("amd64"));
        assert_eq!(pick(&idx, "linux/arm64/v8"), Some("arm64"));
        assert_eq!(pick(&idx, "linux/arm/v7"), Some("armv7"));
        assert_eq!(pick(&idx, "linux/ppc64le"), Some("ppc"));
        assert_eq!(pick(&idx, "windows/amd64"), Some("win"));
        assert_eq!(
            select_index(&idx, |(_, p)| p.clone(), &p("linux/ppc64le")),
            Some(3)
        );
    }

    #[test]
    fn variant_defaults() {
        // arm64: no variant and v8 are the same.
        let with_v8 = index(&[("a", Some("linux/arm64/v8"))]);
        let without = index(&[("a", Some("linux/arm64"))]);
        for wanted in [
            "linux/arm64",
            "linux/arm64/v8",
            "linux/aarch64",
            "linux/arm64/8",
        ] {
            assert_eq!(pick(&with_v8, wanted), Some("a"), "{wanted}");
            assert_eq!(pick(&without, wanted), Some("a"), "{wanted}");
        }
        // arm: no variant means v7.
        let v7 = index(&[("a", Some("linux/arm/v7"))]);
        let bare = index(&[("a", Some("linux/arm"))]);
        for wanted in ["linux/arm", "linux/arm/v7", "linux/armhf", "linux/arm/7"] {
            assert_eq!(pick(&v7, wanted), Some("a"), "{wanted}");
            assert_eq!(pick(&bare, wanted), Some("a"), "{wanted}");
        }
        // amd64: v1 is the default.
        let v1 = index(&[("a", Some("linux/amd64/v1"))]);
        assert_eq!(pick(&v1, "linux/amd64"), Some("a"));
        assert_eq!(pick(&v1, "linux/x86_64"), Some("a"));
    }

    #[test]
    fn normalization() {
        for (written, normal) in [
            ("linux/aarch64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/x86-64", "linux/amd64"),
            ("linux/AMD64/V1", "linux/amd64"),
            ("linux/i386", "linux/386"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/armel", "linux/arm/v6"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/6", "linux/arm/v6"),
            ("Linux/arm64/v8.2", "linux/arm64/v8.2"),
            ("macos/arm64", "darwin/arm64"),
        ] {
            assert_eq!(p(written).normalized().to_string(), normal, "{written}");
        }
        assert!(p("linux/aarch64").same_target(&p("linux/arm64/v8")));
        assert!(!p("linux/arm/v6").same_target(&p("linux/arm")));
        let f = Platform {
            os_features: vec!["b".into(), "a".into(), "b".into()],
            ..p("windows/amd64")
        };
        assert_eq!(f.normalized().os_features, ["a", "b"]);
    }

    #[test]
    fn arm_v7_host_takes_v6_then_v5() {
        let idx = index(&[("v5", Some("linux/arm/v5")), ("v6", Some("linux/arm/v6"))]);
        assert_eq!(pick(&idx, "linux/arm/v7"), Some("v6"));
        let idx = index(&[("v5", Some("linux/arm/v5")), ("armel", Some("linux/armel"))]);
        assert_eq!(pick(&idx, "linux/arm"), Some("armel"));
        let idx = index(&[("v5", Some("linux/arm/v5"))]);
        assert_eq!(pick(&idx, "linux/arm/v7"), Some("v5"));
        // Never upwards.
        let idx = index(&[("v7", Some("linux/arm/v7")), ("v8", Some("linux/arm/v8"))]);
        assert_eq!(pick(&idx, "linux/arm/v6"), None);
        assert_eq!(pick(&idx, "linux/arm/v8"), Some("v8"));
        let idx = index(&[("v7", Some("linux/arm/v7"))]);
        assert_eq!(pick(&idx, "linux/arm/v8"), Some("v7"));
    }

    #[test]
    fn arm64_picks_arm64_before_arm() {
        let idx = index(&[
            ("v7", Some("linux/arm/v7")),
            ("arm64", Some("linux/arm64")),
            ("v6", Some("linux/arm/v6")),
        ]);
        assert_eq!(pick(&idx, "linux/arm64/v8"), Some("arm64"));
        // Without an arm64 entry, AArch32 as containerd does: v8, v7, v6, v5.
        let idx = index(&[("v6", Some("linux/arm/v6")), ("v7", Some("linux/arm/v7"))]);
        assert_eq!(pick(&idx, "linux/arm64"), Some("v7"));
        assert_eq!(
            pick_with(&PlatformMatcher::strict(&p("linux/arm64")), &idx),
            None
        );
    }

    #[test]
    fn arm64_minor_variants() {
        let idx = index(&[
            ("v8", Some("linux/arm64")),
            ("v8.2", Some("linux/arm64/v8.2")),
            ("v8.6", Some("linux/arm64/v8.6")),
        ]);
        assert_eq!(pick(&idx, "linux/arm64/v8.4"), Some("v8.2"));
        assert_eq!(pick(&idx, "linux/arm64/v8.1"), Some("v8"));
        assert_eq!(pick(&idx, "linux/arm64/v8.6"), Some("v8.6"));
        // v9.1 runs v9, then v8.6 (9.x ~ 8.x+5) before anything older.
        assert_eq!(pick(&idx, "linux/arm64/v9.1"), Some("v8.6"));
        let idx = index(&[
            ("v8.2", Some("linux/arm64/v8.2")),
            ("v9", Some("linux/arm64/v9")),
        ]);
        assert_eq!(pick(&idx, "linux/arm64/v9.1"), Some("v9"));
        assert_eq!(pick(&idx, "linux/arm64/v8"), None);
        let m = PlatformMatcher::new(&p("linux/arm64/v9"));
        let preference: Vec<String> = m.preference().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            preference,
            [
                "linux/arm64/v9",
                "linux/arm64/v8.5",
                "linux/arm64/v8.4",
                "linux/arm64/v8.3",
                "linux/arm64/v8.2",
                "linux/arm64/v8.1",
                "linux/arm64",
                "linux/arm/v8",
                "linux/arm/v7",
                "linux/arm/v6",
                "linux/arm/v5",
            ]
        );
    }

    #[test]
    fn amd64_variants_and_no_386_by_default() {
        let idx = index(&[
            ("v1", Some("linux/amd64")),
            ("v2", Some("linux/amd64/v2")),
            ("v4", Some("linux/amd64/v4")),
        ]);
        assert_eq!(pick(&idx, "linux/amd64/v3"), Some("v2"));
        assert_eq!(pick(&idx, "linux/amd64"), Some("v1"));
        assert_eq!(pick(&idx, "linux/amd64/v4"), Some("v4"));

        let idx = index(&[("386", Some("linux/386"))]);
        assert_eq!(pick(&idx, "linux/amd64"), None);
        let m = PlatformMatcher::new(&p("linux/amd64")).with_386_fallback();
        assert_eq!(pick_with(&m, &idx), Some("386"));
        let idx = index(&[("386", Some("linux/386")), ("amd", Some("linux/amd64"))]);
        assert_eq!(pick_with(&m, &idx), Some("amd"));
        let m = PlatformMatcher::strict(&p("linux/amd64")).with_386_fallback();
        assert_eq!(pick_with(&m, &index(&[("386", Some("linux/i386"))])), None);
    }

    #[test]
    fn no_match_and_skipped_entries() {
        let idx = index(&[
            ("none", None),
            ("s390x", Some("linux/s390x")),
            ("win", Some("windows/amd64")),
            ("attestation", Some("unknown/unknown")),
        ]);
        assert_eq!(pick(&idx, "linux/amd64"), None);
        assert_eq!(pick(&idx, "darwin/arm64"), None);
        assert_eq!(
            pick(&[] as &[(&str, Option<Platform>)], "linux/amd64"),
            None
        );
        let idx = index(&[("none", None), ("amd64", Some("linux/amd64"))]);
        assert_eq!(pick(&idx, "linux/amd64"), Some("amd64"));
    }

    #[test]
    fn ordering_preference() {
        // Equal matches: the first in index order.
        let idx = index(&[
            ("first", Some("linux/amd64")),
            ("second", Some("linux/x86_64")),
            ("third", Some("linux/amd64/v1")),
        ]);
        assert_eq!(pick(&idx, "linux/amd64"), Some("first"));
        // A better rank wins regardless of position.
        let idx = index(&[
            ("v5", Some("linux/arm/v5")),
            ("v6", Some("linux/arm/v6")),
            ("v7", Some("linux/arm/v7")),
        ]);
        assert_eq!(pick(&idx, "linux/arm/v7"), Some("v7"));
        let m = PlatformMatcher::new(&p("linux/arm/v7"));
        assert_eq!(m.rank(&p("linux/arm/v7")), Some(0));
        assert_eq!(m.rank(&p("linux/arm/v6")), Some(1));
        assert_eq!(m.rank(&p("linux/arm/v5")), Some(2));
        assert_eq!(m.rank(&p("linux/arm/v8")), None);
        assert!(m.matches(&p("linux/armel")));
    }

    #[test]
    fn windows_version_and_features() {
        let mut idx = index(&[
            ("ltsc2019", Some("windows(10.0.17763.5576)/amd64")),
            ("ltsc2022", Some("windows(10.0.20348.2340)/amd64")),
            ("ltsc2025", Some("windows(10.0.26100.1742)/amd64")),
            ("linux", Some("linux/amd64")),
        ]);
        // Version-less wanted platform: first entry of the OS.
        assert_eq!(pick(&idx, "windows/amd64"), Some("ltsc2019"));
        assert_eq!(pick(&idx, "windows(10.0.17763)/amd64"), Some("ltsc2019"));
        assert_eq!(
            pick(&idx, "windows(10.0.20348.100)/amd64"),
            Some("ltsc2022")
        );
        // A 2025 host runs both 2022 and 2025 images and prefers the newest.
        assert_eq!(pick(&idx, "windows(10.0.26100)/amd64"), Some("ltsc2025"));
        idx.remove(2);
        assert_eq!(pick(&idx, "windows(10.0.26100)/amd64"), Some("ltsc2022"));
        assert_eq!(pick(&idx, "windows(10.0.14393)/amd64"), None);
        // os.version is not compared on other systems.
        let idx = index(&[("l", Some("linux(5.15)/amd64"))]);
        assert_eq!(pick(&idx, "linux(6.1)/amd64"), Some("l"));

        let idx = index(&[
            ("gui", Some("windows(10.0.20348+win32k)/amd64")),
            ("plain", Some("windows(10.0.20348)/amd64")),
        ]);
        // Features ignored when the wanted platform lists none.
        assert_eq!(pick(&idx, "windows/amd64"), Some("gui"));
        assert_eq!(pick(&idx, "windows(10.0.20348+win32k)/amd64"), Some("gui"));
        assert_eq!(pick(&idx, "windows(10.0.20348+other)/amd64"), Some("plain"));
    }

    #[test]
    fn parse_and_display() {
        let arm = p("linux/arm64/v8");
        assert_eq!(
            (
                arm.os.as_str(),
                arm.architecture.as_str(),
                arm.variant.as_deref()
            ),
            ("linux", "arm64", Some("v8"))
        );
        assert_eq!(arm.to_string(), "linux/arm64/v8");
        assert_eq!(p("linux/amd64"), Platform::new("linux", "amd64"));
        assert_eq!(
            p("linux/arm/v7"),
            Platform::new("linux", "arm").with_variant("v7")
        );
        let win = p("windows(10.0.20348.2340+win32k)/amd64");
        assert_eq!(win.os, "windows");
        assert_eq!(win.os_version.as_deref(), Some("10.0.20348.2340"));
        assert_eq!(win.os_features, ["win32k"]);
        assert_eq!(win.to_string(), "windows(10.0.20348.2340+win32k)/amd64");
        assert_eq!(p("windows(+win32k)/amd64").os_version, None);
        assert_eq!(
            Platform::new("windows", "amd64")
                .with_os_version("10.0.1.2")
                .to_string(),
            "windows(10.0.1.2)/amd64"
        );
    }

    #[test]
    fn parse_errors() {
        use ParsePlatformError as E;
        let err = |s: &str| s.parse::<Platform>().unwrap_err();
        assert_eq!(err(""), E::Empty);
        assert!(matches!(err("linux"), E::MissingArchitecture { .. }));
        assert!(matches!(
            err("linux/"),
            E::InvalidPart {
                part: "architecture",
                ..
            }
        ));
        assert!(matches!(err("/amd64"), E::InvalidPart { part: "os", .. }));
        assert!(matches!(
            err("linux/arm/"),
            E::InvalidPart {
                part: "variant",
                ..
            }
        ));
        assert!(matches!(err("a/b/c/d"), E::TooManyParts { .. }));
        assert!(matches!(err("linux/amd 64"), E::InvalidPart { .. }));
        assert!(matches!(err("linux/*"), E::InvalidPart { .. }));
        assert!(matches!(
            err("li.nux/amd64"),
            E::InvalidPart { part: "os", .. }
        ));
        assert!(matches!(err("windows(10.0/amd64"), E::InvalidPart { .. }));
        assert!(matches!(err("windows(1)x/amd64"), E::InvalidPart { .. }));
        assert!(matches!(
            err("windows(1+)/amd64"),
            E::InvalidPart {
                part: "os feature",
                ..
            }
        ));
        let message = err("linux").to_string();
        assert!(
            message.contains("\"linux\"") && message.contains("os/arch"),
            "{message}"
        );
    }

    #[test]
    fn host_platform() {
        let host = Platform::host();
        assert!(!host.os.is_empty() && !host.architecture.is_empty());
        assert_eq!(host.to_string().parse::<Platform>(), Ok(host.clone()));
        assert!(PlatformMatcher::new(&host).matches(&host));
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        assert_eq!(host.to_string(), "linux/amd64");
        #[cfg(all(target_arch = "aarch64", target_os = "linux"))]
        assert_eq!(host.to_string(), "linux/arm64/v8");
        #[cfg(target_os = "macos")]
        assert_eq!(host.os, "darwin");
    }

    fn word() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_-]{1,8}"
    }

    fn dotted() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_.-]{1,8}"
    }

    fn platform() -> impl Strategy<Value = Platform> {
        (
            word(),
            dotted(),
            proptest::option::of(dotted()),
            proptest::option::of(dotted()),
            prop::collection::vec(dotted(), 0..3),
        )
            .prop_map(
                |(os, architecture, variant, os_version, os_features)| Platform {
                    os,
                    architecture,
                    variant,
                    os_version,
                    os_features,
                },
            )
    }

    fn known() -> impl Strategy<Value = Platform> {
        let arch = prop::sample::select(vec![
            "amd64", "x86_64", "386", "i386", "arm", "armhf", "armel", "arm64", "aarch64",
        ]);
        let variant = proptest::option::of(prop::sample::select(vec![
            "v1", "v2", "v3", "v5", "v6", "v7", "v8", "v8.1", "v8.3", "v9", "v9.2", "7", "8",
        ]));
        (arch, variant).prop_map(|(a, v)| {
            let p = Platform::new("linux", a);
            match v {
                Some(v) => p.with_variant(v),
                None => p,
            }
        })
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(platform in platform()) {
            let text = platform.to_string();
            prop_assert_eq!(text.parse::<Platform>(), Ok(platform), "{}", text);
        }

        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = s.parse::<Platform>();
        }

        #[test]
        fn parsed_text_re_displays_to_itself(s in "[a-z0-9(+)./_-]{0,24}") {
            if let Ok(platform) = s.parse::<Platform>() {
                prop_assert_eq!(platform.to_string().parse::<Platform>(), Ok(platform));
            }
        }

        #[test]
        fn normalization_is_idempotent_and_self_matching(platform in known()) {
            let once = platform.normalized();
            prop_assert_eq!(once.normalized(), once.clone());
            let matcher = PlatformMatcher::new(&platform);
            prop_assert_eq!(matcher.rank(&platform), Some(0));
            prop_assert_eq!(matcher.rank(&once), Some(0));
            prop_assert_eq!(PlatformMatcher::strict(&platform).rank(&once), Some(0));
        }

        #[test]
        fn selection_is_the_first_best(wanted in known(), entries in prop::collection::vec(proptest::option::of(known()), 0..8)) {
            let matcher = PlatformMatcher::new(&wanted);
            let picked = matcher.select_index(&entries, Clone::clone);
            let ranks: Vec<Option<usize>> = entries
                .iter()
                .map(|e| e.as_ref().and_then(|p| matcher.rank(p)))
                .collect();
            let best = ranks.iter().flatten().min().copied();
            match picked {
                None => prop_assert_eq!(best, None),
                Some(i) => {
                    prop_assert_eq!(ranks[i], best);
                    prop_assert!(ranks[..i].iter().all(|r| *r != best));
                }
            }
        }
    }
}

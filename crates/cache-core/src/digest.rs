//! Content digests: strict parsing, display, and hashing in one pass.
//!
//! A digest is the only thing that ever names a blob on disk or in a URL, so it is parsed
//! strictly *before* it is used anywhere: a known algorithm, a colon, and exactly the right
//! number of lower-case hex digits. `sha256:../../x` is rejected here and can never reach a
//! path.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// A hash algorithm the store understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the OCI default.
    Sha256,
    /// SHA-512, allowed by the OCI spec.
    Sha512,
    /// BLAKE3, for what pkgload derives itself and for fast re-verification.
    Blake3,
}

impl Algorithm {
    /// Every algorithm, in a stable order.
    pub const ALL: [Algorithm; 3] = [Algorithm::Sha256, Algorithm::Sha512, Algorithm::Blake3];

    /// The name used in `algorithm:hex` and in store paths.
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
            Algorithm::Blake3 => "blake3",
        }
    }

    /// Length of the raw digest in bytes.
    pub const fn output_len(self) -> usize {
        match self {
            Algorithm::Sha256 | Algorithm::Blake3 => 32,
            Algorithm::Sha512 => 64,
        }
    }

    /// Length of the hex encoding.
    pub const fn hex_len(self) -> usize {
        self.output_len() * 2
    }

    fn from_name(name: &str) -> Option<Self> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The digest of `data` in one call.
    pub fn digest(self, data: &[u8]) -> Digest {
        let mut hasher = Hasher::new(self);
        hasher.update(data);
        hasher.finalize()
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDigestError {
    /// No `:` separates algorithm and hex.
    #[error(
        "invalid digest {input:?}: expected `algorithm:hex`, e.g. `sha256:` followed by 64 hex digits"
    )]
    MissingSeparator {
        /// The rejected input (truncated to a sane length).
        input: String,
    },
    /// The algorithm is not one we support.
    #[error(
        "invalid digest {input:?}: unknown algorithm {algorithm:?} (supported: sha256, sha512, blake3)"
    )]
    UnknownAlgorithm {
        /// The rejected input (truncated to a sane length).
        input: String,
        /// The algorithm as written.
        algorithm: String,
    },
    /// The hex part has the wrong length for the algorithm.
    #[error("invalid digest {input:?}: {algorithm} needs {expected} hex digits, found {found}")]
    WrongLength {
        /// The rejected input (truncated to a sane length).
        input: String,
        /// The algorithm named by the input.
        algorithm: Algorithm,
        /// Required number of hex digits.
        expected: usize,
        /// Number of characters found.
        found: usize,
    },
    /// The hex part holds something other than `0-9a-f`.
    #[error("invalid digest {input:?}: the hex part may only hold lower-case `0-9a-f`")]
    InvalidHex {
        /// The rejected input (truncated to a sane length).
        input: String,
    },
}

/// A content digest: an algorithm and the raw hash bytes.
///
/// Displayed and parsed as `algorithm:hex` with lower-case hex of the exact length.
///
/// ```
/// use cache_core::{Algorithm, Digest};
///
/// let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse()?;
/// assert_eq!(d.algorithm(), Algorithm::Sha256);
/// assert_eq!(d, Algorithm::Sha256.digest(b""));
/// assert!("sha256:../../etc/passwd".parse::<Digest>().is_err());
/// assert!("SHA256:E3B0".parse::<Digest>().is_err());
/// # Ok::<(), cache_core::ParseDigestError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    // Large enough for sha512; the unused tail stays zero so derived Eq/Hash/Ord are exact.
    bytes: [u8; 64],
}

impl Digest {
    /// Build a digest from raw hash bytes; `None` if the length does not fit the algorithm.
    pub fn from_raw(algorithm: Algorithm, raw: &[u8]) -> Option<Self> {
        if raw.len() != algorithm.output_len() {
            return None;
        }
        let mut bytes = [0u8; 64];
        bytes.get_mut(..raw.len())?.copy_from_slice(raw);
        Some(Digest { algorithm, bytes })
    }

    /// Parse `algorithm:hex` strictly.
    pub fn parse(input: &str) -> Result<Self, ParseDigestError> {
        let shown = || truncate_for_error(input);
        let (alg, hex) = input
            .split_once(':')
            .ok_or_else(|| ParseDigestError::MissingSeparator { input: shown() })?;
        let algorithm =
            Algorithm::from_name(alg).ok_or_else(|| ParseDigestError::UnknownAlgorithm {
                input: shown(),
                algorithm: truncate_for_error(alg),
            })?;
        if hex.len() != algorithm.hex_len() {
            return Err(ParseDigestError::WrongLength {
                input: shown(),
                algorithm,
                expected: algorithm.hex_len(),
                found: hex.chars().count(),
            });
        }
        let mut bytes = [0u8; 64];
        for (slot, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let (hi, lo) = match pair {
                [hi, lo] => (hex_value(*hi), hex_value(*lo)),
                _ => (None, None),
            };
            match (hi, lo) {
                (Some(hi), Some(lo)) => *slot = (hi << 4) | lo,
                _ => return Err(ParseDigestError::InvalidHex { input: shown() }),
            }
        }
        Ok(Digest { algorithm, bytes })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The raw hash bytes.
    pub fn as_bytes(&self) -> &[u8] {
        let len = self.algorithm.output_len();
        self.bytes.get(..len).unwrap_or(&self.bytes)
    }

    /// The lower-case hex encoding, without the algorithm prefix.
    pub fn hex(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(self.algorithm.hex_len());
        for b in self.as_bytes() {
            // Writing to a String cannot fail.
            let _ = write!(out, "{b:02x}");
        }
        out
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Errors echo the input so the user can find it, but never an unbounded amount of it.
fn truncate_for_error(input: &str) -> String {
    const MAX: usize = 160;
    if input.len() <= MAX {
        return input.to_owned();
    }
    let mut end = MAX;
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", input.get(..end).unwrap_or_default())
}

impl FromStr for Digest {
    type Err = ParseDigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// Computes one or several digests in a single pass over the data.
///
/// ```
/// use cache_core::{Algorithm, Hasher};
///
/// let mut h = Hasher::with_algorithms(&[Algorithm::Sha256, Algorithm::Blake3]);
/// h.update(b"hello ");
/// h.update(b"world");
/// let [sha, b3] = h.finalize_all()[..] else { unreachable!() };
/// assert_eq!(sha, Algorithm::Sha256.digest(b"hello world"));
/// assert_eq!(b3, Algorithm::Blake3.digest(b"hello world"));
/// ```
#[derive(Clone)]
pub struct Hasher {
    states: Vec<State>,
    bytes: u64,
}

#[derive(Clone)]
enum State {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
    // Boxed: blake3's state is ~2 KiB and would bloat every Hasher.
    Blake3(Box<blake3::Hasher>),
}

impl State {
    fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => State::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => State::Sha512(sha2::Sha512::new()),
            Algorithm::Blake3 => State::Blake3(Box::default()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            State::Sha256(h) => h.update(data),
            State::Sha512(h) => h.update(data),
            State::Blake3(h) => {
                h.update(data);
            }
        }
    }

    fn finalize(self) -> Option<Digest> {
        match self {
            State::Sha256(h) => Digest::from_raw(Algorithm::Sha256, h.finalize().as_slice()),
            State::Sha512(h) => Digest::from_raw(Algorithm::Sha512, h.finalize().as_slice()),
            State::Blake3(h) => Digest::from_raw(Algorithm::Blake3, h.finalize().as_bytes()),
        }
    }
}

impl Hasher {
    /// A hasher for one algorithm.
    pub fn new(algorithm: Algorithm) -> Self {
        Self::with_algorithms(&[algorithm])
    }

    /// A hasher computing every listed algorithm (duplicates are ignored); at least one is
    /// always computed, sha256 if the list is empty.
    pub fn with_algorithms(algorithms: &[Algorithm]) -> Self {
        let mut unique: Vec<Algorithm> = Vec::with_capacity(algorithms.len());
        for &a in algorithms {
            if !unique.contains(&a) {
                unique.push(a);
            }
        }
        if unique.is_empty() {
            unique.push(Algorithm::Sha256);
        }
        Hasher {
            states: unique.into_iter().map(State::new).collect(),
            bytes: 0,
        }
    }

    /// Feed more data.
    pub fn update(&mut self, data: &[u8]) {
        for s in &mut self.states {
            s.update(data);
        }
        self.bytes += data.len() as u64;
    }

    /// Number of bytes hashed so far.
    pub fn bytes_hashed(&self) -> u64 {
        self.bytes
    }

    /// The first algorithm's digest.
    pub fn finalize(self) -> Digest {
        let mut all = self.finalize_all();
        // with_algorithms guarantees at least one state
        all.swap_remove(0)
    }

    /// Every digest, in the order the algorithms were given.
    pub fn finalize_all(self) -> Vec<Digest> {
        self.states
            .into_iter()
            .filter_map(State::finalize)
            .collect()
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algs: Vec<&str> = self
            .states
            .iter()
            .map(|s| match s {
                State::Sha256(_) => "sha256",
                State::Sha512(_) => "sha512",
                State::Blake3(_) => "blake3",
            })
            .collect();
        f.debug_struct("Hasher")
            .field("algorithms", &algs)
            .field("bytes", &self.bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn known_vectors() {
        assert_eq!(Algorithm::Sha256.digest(b"").to_string(), EMPTY_SHA256);
        assert_eq!(
            Algorithm::Blake3.digest(b"").to_string(),
            "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(
            Algorithm::Sha512.digest(b"abc").to_string(),
            "sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }

    #[test]
    fn rejects_bad_input() {
        let bad = [
            "",
            "sha256",
            "sha256:",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
            "sha256:../../../../../../../../../../../../../../../../../../../../etc/x",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85/",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8é",
            " sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n",
            "blake3:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855:",
        ];
        for input in bad {
            assert!(Digest::parse(input).is_err(), "accepted {input:?}");
        }
        let err = Digest::parse("md5:abc").unwrap_err().to_string();
        assert!(err.contains("unknown algorithm \"md5\""), "{err}");
        let err = Digest::parse("sha256:abc").unwrap_err().to_string();
        assert!(err.contains("64 hex digits, found 3"), "{err}");
    }

    #[test]
    fn hasher_dedups_and_defaults() {
        let h = Hasher::with_algorithms(&[Algorithm::Blake3, Algorithm::Blake3]);
        assert_eq!(h.finalize_all().len(), 1);
        assert_eq!(
            Hasher::with_algorithms(&[]).finalize(),
            Algorithm::Sha256.digest(b"")
        );
    }

    fn any_algorithm() -> impl Strategy<Value = Algorithm> {
        prop::sample::select(Algorithm::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(alg in any_algorithm(), raw in prop::collection::vec(any::<u8>(), 64)) {
            let d = Digest::from_raw(alg, &raw[..alg.output_len()]).unwrap();
            let text = d.to_string();
            prop_assert_eq!(text.len(), alg.name().len() + 1 + alg.hex_len());
            prop_assert_eq!(Digest::parse(&text).unwrap(), d);
        }

        #[test]
        fn parse_never_panics_and_only_accepts_canonical(s in ".{0,140}") {
            if let Ok(d) = Digest::parse(&s) {
                prop_assert_eq!(d.to_string(), s);
            }
        }

        #[test]
        fn any_chunking_gives_the_same_digest(
            data in prop::collection::vec(any::<u8>(), 0..20_000),
            cuts in prop::collection::vec(any::<usize>(), 0..16),
        ) {
            let algs = Algorithm::ALL;
            let mut whole = Hasher::with_algorithms(&algs);
            whole.update(&data);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (data.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunked = Hasher::with_algorithms(&algs);
            let mut start = 0;
            for cut in cuts.into_iter().chain([data.len()]) {
                chunked.update(&data[start..cut]);
                start = cut;
            }
            prop_assert_eq!(chunked.bytes_hashed(), data.len() as u64);
            prop_assert_eq!(chunked.finalize_all(), whole.finalize_all());
        }
    }
}

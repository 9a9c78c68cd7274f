//! Byte-level mutations: bit flips, random and "interesting" bytes, inserts, deletes,
//! duplicated ranges, decimal numbers, dictionary tokens and splices of two inputs.

use crate::rng::Rng;

/// Bytes that sit on parser boundaries: NUL, the ends of the signed and unsigned ranges,
/// separators and quotes of the formats fuzzed here, and UTF-8 lead bytes.
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0xc0, 0xe0, 0xf0, b'0', b'7', b'9', b'/', b'.', b':', b'@',
    b'"', b'\\', b',', b'=', b'\n', b' ', b'{', b'}', b'[', b']', b'-', b'+',
];

/// Decimal numbers that hit limits: zero, powers of two and their neighbours, `u64::MAX`.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "7",
    "8",
    "63",
    "64",
    "127",
    "128",
    "255",
    "256",
    "511",
    "512",
    "4095",
    "4096",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "1e309",
    "0.5",
];

/// What mutations may use besides random bytes.
#[derive(Debug, Clone, Copy)]
pub struct Mutator<'a> {
    /// Tokens of the target's format, inserted or written over the input.
    pub dictionary: &'a [&'a [u8]],
    /// Inputs never grow past this.
    pub max_len: usize,
}

impl Mutator<'_> {
    /// Applies one to four mutations to `data`; `other` is a second corpus input to splice.
    pub fn mutate(&self, rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
        let rounds = 1 + rng.below(4);
        for _ in 0..rounds {
            self.mutate_once(rng, data, other);
        }
        data.truncate(self.max_len);
    }

    fn mutate_once(&self, rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
        let len = data.len();
        match rng.below(12) {
            // Flip one bit.
            0 => {
                let bit = rng.below(8);
                if let Some(b) = data.get_mut(rng.below(len)) {
                    *b ^= 1 << bit;
                }
            }
            // Overwrite a byte with a random or an interesting one.
            1 => {
                let value = if rng.one_in(2) {
                    rng.byte()
                } else {
                    INTERESTING
                        .get(rng.below(INTERESTING.len()))
                        .copied()
                        .unwrap_or(0)
                };
                if let Some(b) = data.get_mut(rng.below(len)) {
                    *b = value;
                }
            }
            // Insert a few random or interesting bytes.
            2 => {
                let at = rng.below(len + 1);
                let count = 1 + rng.below(4);
                for _ in 0..count {
                    let value = if rng.one_in(2) {
                        rng.byte()
                    } else {
                        INTERESTING
                            .get(rng.below(INTERESTING.len()))
                            .copied()
                            .unwrap_or(0)
                    };
                    data.insert(at.min(data.len()), value);
                }
            }
            // Delete a range.
            3 => {
                if len > 0 {
                    let at = rng.below(len);
                    let count = 1 + rng.below((len - at).min(16));
                    data.drain(at..at + count);
                }
            }
            // Duplicate a range somewhere else.
            4 => {
                if len > 0 {
                    let at = rng.below(len);
                    let count = 1 + rng.below((len - at).min(64));
                    let chunk: Vec<u8> = data.get(at..at + count).unwrap_or_default().to_vec();
                    let to = rng.below(data.len() + 1);
                    data.splice(to..to, chunk);
                }
            }
            // Insert a dictionary token.
            5 | 6 => {
                if let Some(token) = rng.pick(self.dictionary) {
                    let at = rng.below(len + 1);
                    data.splice(at..at, token.iter().copied());
                }
            }
            // Overwrite with a dictionary token.
            7 => {
                if let Some(token) = rng.pick(self.dictionary) {
                    let at = rng.below(len + 1);
                    let end = (at + token.len()).min(len);
                    data.splice(at..end, token.iter().copied());
                }
            }
            // Replace a run of decimal digits (or insert) with a limit-hitting number.
            8 => {
                let number = rng.pick(NUMBERS).copied().unwrap_or("0").as_bytes();
                let digits: Vec<usize> = data
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| b.is_ascii_digit())
                    .map(|(i, _)| i)
                    .collect();
                if let Some(&start) = rng.pick(&digits) {
                    let end = data
                        .iter()
                        .skip(start)
                        .position(|b| !b.is_ascii_digit())
                        .map_or(len, |n| start + n);
                    data.splice(start..end, number.iter().copied());
                } else {
                    let at = rng.below(len + 1);
                    data.splice(at..at, number.iter().copied());
                }
            }
            // Splice: a prefix of this input and a suffix of the other.
            9 => {
                if !other.is_empty() {
                    let cut = rng.below(len + 1);
                    let from = rng.below(other.len());
                    data.truncate(cut);
                    data.extend_from_slice(other.get(from..).unwrap_or_default());
                }
            }
            // Copy a range of the other input over a range of this one.
            10 => {
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let count = 1 + rng.below((other.len() - from).min(64));
                    let chunk = other.get(from..from + count).unwrap_or_default();
                    let at = rng.below(len + 1);
                    let end = (at + chunk.len()).min(len);
                    data.splice(at..end, chunk.iter().copied());
                }
            }
            // Swap two bytes.
            _ => {
                if len > 1 {
                    data.swap(rng.below(len), rng.below(len));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_respect_the_length_limit_and_change_things() {
        let mutator = Mutator {
            dictionary: &[b"sha256:", b"../"],
            max_len: 64,
        };
        let mut rng = Rng::new(1);
        let mut changed = 0;
        for _ in 0..2000 {
            let mut data = b"sha256:0123456789abcdef".to_vec();
            mutator.mutate(&mut rng, &mut data, b"other input with digits 42");
            assert!(data.len() <= 64);
            if data != b"sha256:0123456789abcdef" {
                changed += 1;
            }
        }
        assert!(changed > 1500, "{changed}");
        // Empty inputs grow.
        let mut data = Vec::new();
        for _ in 0..100 {
            mutator.mutate(&mut rng, &mut data, b"");
        }
        assert!(!data.is_empty());
    }
}

//! A gzip stream (one member or several, concatenated) decoded from input that arrives in
//! pieces, as range responses do.
//!
//! flate2's own gzip readers keep a member's file name and comment, which a liar can make
//! as long as the blob; this one keeps nothing of a header but its flags and a counter, so
//! memory stays what the caller's buffers are. Each member's CRC-32 and length are
//! checked when it ends (the files' sha256 is the real guard; a bad trailer just says so
//! sooner).

use flate2::{Crc, Decompress, FlushDecompress, Status};

/// Flag bits RFC 1952 reserves: a member with any set is not one we can read.
const RESERVED: u8 = 0xe0;
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;

/// Where in a member the decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The fixed 10 bytes (`have` of them seen so far, `flags` from byte 3).
    Fixed { have: u8, flags: u8 },
    /// The 2-byte length of the extra field.
    ExtraLen { flags: u8, have: u8, len: u16 },
    /// Bytes of the extra field left to skip.
    Extra { flags: u8, left: u16 },
    /// Inside the zero-terminated file name.
    Name { flags: u8 },
    /// Inside the zero-terminated comment.
    Comment { flags: u8 },
    /// Bytes of the header CRC left to skip.
    HeaderCrc { left: u8 },
    /// Deflate data.
    Body,
    /// The 8-byte trailer: CRC-32 and length, little-endian.
    Trailer { have: u8, bytes: [u8; 8] },
}

/// See the module docs.
pub(crate) struct Gunzip {
    state: State,
    inflate: Decompress,
    crc: Crc,
    /// Members completed so far.
    members: u64,
}

impl Gunzip {
    pub(crate) fn new() -> Self {
        Gunzip {
            state: State::Fixed { have: 0, flags: 0 },
            inflate: Decompress::new(false),
            crc: Crc::new(),
            members: 0,
        }
    }

    /// Whether the input so far ended exactly where a member does (and held one at least).
    pub(crate) fn at_member_end(&self) -> bool {
        self.members > 0 && self.state == State::Fixed { have: 0, flags: 0 }
    }

    /// Decodes from `input` into `out`; returns (bytes of `input` consumed, bytes of `out`
    /// written). Call again with the rest of the input (empty once it is all consumed:
    /// the inflater may still hold output) until both are 0.
    pub(crate) fn step(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize), String> {
        let mut used = 0;
        loop {
            if self.state == State::Body {
                let rest = input.get(used..).unwrap_or_default();
                let (n, written, end) = self.inflate(rest, out)?;
                used += n;
                if end {
                    self.state = State::Trailer {
                        have: 0,
                        bytes: [0; 8],
                    };
                }
                if written > 0 || (n == 0 && !end) {
                    return Ok((used, written));
                }
            } else {
                let Some(&byte) = input.get(used) else {
                    return Ok((used, 0));
                };
                self.state = self.header_byte(self.state, byte)?;
                used += 1;
            }
        }
    }

    /// One deflate step: (input consumed, output written, whether the member's data ended).
    fn inflate(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize, bool), String> {
        let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
        let status = self
            .inflate
            .decompress(input, out, FlushDecompress::None)
            .map_err(|e| format!("deflate data does not decode: {e}"))?;
        let n = usize::try_from(self.inflate.total_in() - in_before).unwrap_or(usize::MAX);
        let written = usize::try_from(self.inflate.total_out() - out_before).unwrap_or(0);
        self.crc.update(out.get(..written).unwrap_or_default());
        Ok((n, written, status == Status::StreamEnd))
    }

    /// The state after one more byte of a member's header or trailer.
    fn header_byte(&mut self, state: State, byte: u8) -> Result<State, String> {
        let after_extra = |flags: u8| {
            if flags & FNAME != 0 {
                State::Name { flags }
            } else {
                after_name(flags)
            }
        };
        Ok(match state {
            State::Fixed { have, flags } => {
                let flags = if have == 3 { byte } else { flags };
                let expected = match have {
                    0 => Some(0x1f),
                    1 => Some(0x8b),
                    2 => Some(8),
                    _ => None,
                };
                if expected.is_some_and(|e| e != byte) {
                    return Err(format!(
                        "not a gzip member (byte {have} of its header is {byte:#04x})"
                    ));
                }
                if have == 3 && flags & RESERVED != 0 {
                    return Err("a gzip header with reserved flags set".into());
                }
                match (have, flags & FEXTRA != 0) {
                    (9, true) => State::ExtraLen {
                        flags,
                        have: 0,
                        len: 0,
                    },
                    (9, false) => after_extra(flags),
                    _ => State::Fixed {
                        have: have + 1,
                        flags,
                    },
                }
            }
            State::ExtraLen { flags, have, len } => {
                let len = len | (u16::from(byte) << (8 * have));
                match (have, len) {
                    (0, _) => State::ExtraLen {
                        flags,
                        have: 1,
                        len,
                    },
                    (_, 0) => after_extra(flags),
                    _ => State::Extra { flags, left: len },
                }
            }
            State::Extra { flags, left } => match left {
                0 | 1 => after_extra(flags),
                _ => State::Extra {
                    flags,
                    left: left - 1,
                },
            },
            State::Name { flags } if byte == 0 => after_name(flags),
            State::Comment { flags } if byte == 0 => after_comment(flags),
            s @ (State::Name { .. } | State::Comment { .. }) => s,
            State::HeaderCrc { left } => match left {
                0 | 1 => State::Body,
                _ => State::HeaderCrc { left: left - 1 },
            },
            State::Trailer { have, mut bytes } => {
                if let Some(b) = bytes.get_mut(usize::from(have)) {
                    *b = byte;
                }
                if have < 7 {
                    return Ok(State::Trailer {
                        have: have + 1,
                        bytes,
                    });
                }
                let [c0, c1, c2, c3, l0, l1, l2, l3] = bytes;
                let crc = u32::from_le_bytes([c0, c1, c2, c3]);
                let len = u32::from_le_bytes([l0, l1, l2, l3]);
                if crc != self.crc.sum() || len != self.crc.amount() {
                    return Err("a gzip member's CRC or length does not match its data".into());
                }
                self.members += 1;
                self.inflate.reset(false);
                self.crc.reset();
                State::Fixed { have: 0, flags: 0 }
            }
            State::Body => State::Body,
        })
    }
}

fn after_name(flags: u8) -> State {
    if flags & FCOMMENT != 0 {
        State::Comment { flags }
    } else {
        after_comment(flags)
    }
}

fn after_comment(flags: u8) -> State {
    if flags & FHCRC != 0 {
        State::HeaderCrc { left: 2 }
    } else {
        State::Body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn member(data: &[u8], builder: flate2::GzBuilder) -> Vec<u8> {
        let mut enc = builder.write(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn decode(input: &[u8], piece: usize, out_len: usize) -> Result<Vec<u8>, String> {
        let mut gz = Gunzip::new();
        let mut decoded = Vec::new();
        let mut out = vec![0; out_len];
        for mut chunk in input.chunks(piece) {
            loop {
                let (used, written) = gz.step(chunk, &mut out)?;
                decoded.extend_from_slice(&out[..written]);
                chunk = &chunk[used..];
                if used == 0 && written == 0 {
                    break;
                }
            }
        }
        assert!(gz.at_member_end());
        Ok(decoded)
    }

    #[test]
    fn members_with_every_header_field_decode_in_any_pieces() {
        let mut blob = member(b"hello ", flate2::GzBuilder::new());
        blob.extend(member(
            &vec![7u8; 100_000],
            flate2::GzBuilder::new()
                .filename("name")
                .comment("comment")
                .extra(vec![1, 2, 3]),
        ));
        blob.extend(member(b"", flate2::GzBuilder::new()));
        let mut expected = b"hello ".to_vec();
        expected.extend(vec![7u8; 100_000]);
        for (piece, out) in [(1, 1), (3, 7), (4096, 100), (usize::MAX, 1 << 20)] {
            assert_eq!(decode(&blob, piece.min(blob.len()), out).unwrap(), expected);
        }
    }

    #[test]
    fn garbage_and_bad_trailers_are_refused() {
        assert!(decode(b"not gzip", 3, 10).is_err());
        let mut blob = member(b"data", flate2::GzBuilder::new());
        let n = blob.len();
        blob[n - 1] ^= 1;
        assert!(decode(&blob, 5, 10).is_err());
    }
}

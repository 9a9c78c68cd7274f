//! The container's outer framing, walked before the `webc` crate sees the bytes.
//!
//! The crate slices by lengths it reads from the file; most of its slicing is checked, the
//! v1 reader's is not (it indexes and panics). A panic is caught around every call into the
//! crate, but a length that is only *used*, never sliced, could still make it allocate
//! without bound, and `catch_unwind` cannot stop an allocation failure. So every length the
//! framing declares is checked against the file here first, and a lie is a typed error
//! naming the offset.
//!
//! ```text
//! all:  "\0webc" + 3 ASCII digits of version
//! v1:   16-byte checksum type, 256-byte checksum, u32 signature length, 1024-byte
//!       signature; then LEB128-prefixed: manifest, atoms volume, and (name, volume) pairs
//!       to the end, each volume starting with a LEB128-prefixed header
//! v2/3: sections, each a tag byte and a little-endian u64 length (v3 puts a 32-byte hash
//!       between them, except in the first, the index)
//! ```

/// Bytes before the first section: magic and version.
pub(crate) const HEADER: usize = 8;
/// v1's fixed preamble after the header: checksum type, checksum, signature length and
/// signature.
const V1_PREAMBLE: usize = 16 + 256 + 4 + 1024;

/// A framing problem: what was read, and where.
#[derive(Debug)]
pub(crate) struct FrameError {
    pub(crate) what: String,
    pub(crate) offset: u64,
}

fn bad(what: impl Into<String>, offset: usize) -> FrameError {
    FrameError {
        what: what.into(),
        offset: offset as u64,
    }
}

/// The version digits, once the magic is right.
pub(crate) fn version(bytes: &[u8]) -> Option<u8> {
    match bytes.get(..HEADER)? {
        [0, b'w', b'e', b'b', b'c', b'0', b'0', v @ b'1'..=b'3'] => Some(v - b'0'),
        _ => None,
    }
}

/// Checks the framing of a container of `version` (1, 2 or 3).
pub(crate) fn check(bytes: &[u8], version: u8) -> Result<(), FrameError> {
    match version {
        1 => check_v1(bytes),
        _ => check_sections(bytes, version),
    }
}

fn check_v1(bytes: &[u8]) -> Result<(), FrameError> {
    let mut at = HEADER + V1_PREAMBLE;
    if bytes.len() < at {
        return Err(bad(
            "the fixed header (checksum and signature) is cut short",
            bytes.len(),
        ));
    }
    at = prefixed(bytes, at, "the manifest")?;
    at = prefixed(bytes, at, "the atoms volume")?;
    while at < bytes.len() {
        at = prefixed(bytes, at, "a volume name")?;
        let (len, body) = leb128(bytes, at, "a volume length")?;
        let end = end_of(body, len, bytes.len(), at, "a volume")?;
        // Each volume starts with its own header, which must fit in the volume.
        let (header, header_body) = leb128(bytes, body, "a volume header length")?;
        end_of(header_body, header, end, body, "a volume header")?;
        at = end;
    }
    Ok(())
}

fn check_sections(bytes: &[u8], version: u8) -> Result<(), FrameError> {
    let mut at = HEADER;
    let mut first = true;
    if bytes.len() == at {
        return Err(bad("no index section", at));
    }
    while at < bytes.len() {
        let hash = if version == 3 && !first { 32 } else { 0 };
        let length_at = at + 1 + hash;
        let length = bytes
            .get(length_at..length_at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .ok_or_else(|| bad("a section header is cut short", at))?;
        at = end_of(length_at + 8, length, bytes.len(), at, "a section")?;
        first = false;
    }
    Ok(())
}

/// Skips a LEB128-length-prefixed field at `at`, returning where the next one starts.
fn prefixed(bytes: &[u8], at: usize, what: &str) -> Result<usize, FrameError> {
    let (len, body) = leb128(bytes, at, what)?;
    end_of(body, len, bytes.len(), at, what)
}

/// `start + len`, if it stays within `limit`.
fn end_of(
    start: usize,
    len: u64,
    limit: usize,
    at: usize,
    what: &str,
) -> Result<usize, FrameError> {
    usize::try_from(len)
        .ok()
        .and_then(|len| start.checked_add(len))
        .filter(|&end| end <= limit)
        .ok_or_else(|| bad(format!("{what} declares {len} bytes, past the end"), at))
}

/// An unsigned LEB128 number at `at` and the offset after it.
fn leb128(bytes: &[u8], at: usize, what: &str) -> Result<(u64, usize), FrameError> {
    let mut value = 0u64;
    for (i, shift) in (0..10u32).map(|i| (i as usize, i * 7)) {
        let byte = *bytes
            .get(at + i)
            .ok_or_else(|| bad(format!("the length of {what} is cut short"), at))?;
        let part = u64::from(byte & 0x7f);
        if shift == 63 && part > 1 {
            break;
        }
        value |= part << shift;
        if byte & 0x80 == 0 {
            return Ok((value, at + i + 1));
        }
    }
    Err(bad(
        format!("the length of {what} is not a valid LEB128 number"),
        at,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb128_reads_and_refuses() {
        assert_eq!(leb128(&[0x05], 0, "x").unwrap(), (5, 1));
        assert_eq!(leb128(&[0xe5, 0x8e, 0x26], 0, "x").unwrap(), (624_485, 3));
        assert!(leb128(&[0x80, 0x80], 0, "x").is_err());
        assert!(leb128(&[0xff; 11], 0, "x").is_err());
    }

    #[test]
    fn sections_that_lie_are_refused() {
        let mut v2 = b"\0webc002".to_vec();
        v2.push(1);
        v2.extend_from_slice(&u64::MAX.to_le_bytes());
        let err = check(&v2, 2).unwrap_err();
        assert!(err.what.contains("past the end"), "{}", err.what);
        assert_eq!(err.offset, 8);
        let mut ok = b"\0webc002".to_vec();
        ok.push(1);
        ok.extend_from_slice(&3u64.to_le_bytes());
        ok.extend_from_slice(b"abc");
        check(&ok, 2).unwrap();
        ok.pop();
        assert!(check(&ok, 2).is_err());
    }

    #[test]
    fn version_needs_the_magic() {
        assert_eq!(version(b"\0webc003rest"), Some(3));
        assert_eq!(version(b"\0webc004"), None);
        assert_eq!(version(b"webc003!"), None);
        assert_eq!(version(b"\0we"), None);
    }
}

//! Test data shared by the integration tests and the benchmark. The servers themselves come
//! from the `test-servers` crate.

#![allow(dead_code, clippy::unwrap_used)]

use bytes::Bytes;

/// Deterministic incompressible bytes; different seeds give different data.
pub fn random_bytes(len: usize, seed: u64) -> Bytes {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed.wrapping_mul(2).wrapping_add(1);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// The `N` of a request's `Range: bytes=N-`.
pub fn range_start(req: &test_servers::fault::RecordedRequest) -> Option<u64> {
    req.header("range")?
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()
}

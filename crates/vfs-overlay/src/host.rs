//! [`HostRange`]: a file's content as a byte range of a host file, and reads of it that
//! hold no more of it in memory than the caller's buffer.
//!
//! A tar-backed volume serves whole files as slices of its memory-mapped tar, which is
//! zero-copy but makes every page read part of the process's resident set until the map is
//! dropped: reading a 2 GiB file through the map makes the process 2 GiB large. Reading the
//! same range with `pread` (or copying it with `copy_file_range`) goes through the page
//! cache instead, which the kernel may reclaim and which is not the process's memory.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;

/// `len` bytes of `file` from `offset`: where a regular file's content lives on the host.
#[derive(Debug, Clone)]
pub struct HostRange {
    /// The host file, shared: a volume opens it once, not per read.
    pub file: Arc<File>,
    /// Where the content starts in `file`.
    pub offset: u64,
    /// The content's length.
    pub len: u64,
}

impl HostRange {
    /// A whole file.
    ///
    /// # Errors
    /// Whatever `fstat` reports.
    pub fn whole(file: File) -> io::Result<HostRange> {
        let len = file.metadata()?.len();
        Ok(HostRange {
            file: Arc::new(file),
            offset: 0,
            len,
        })
    }

    /// Reads from `at` (relative to the range) into `buf`; how many bytes (0 at the end of
    /// the range). Short of the range's end, a host file that ends early is an
    /// `UnexpectedEof` error rather than a short file.
    ///
    /// # Errors
    /// Whatever `pread` reports; `UnexpectedEof` as above.
    pub fn read_at(&self, at: u64, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(at);
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let Some(dst) = buf.get_mut(..want) else {
            return Ok(0);
        };
        if dst.is_empty() {
            return Ok(0);
        }
        let pos = self
            .offset
            .checked_add(at)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset overflows"))?;
        loop {
            match pread(&self.file, dst, pos) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the host file ends before the file's content does",
                    ));
                }
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// A `Read + Seek` handle over the range.
    pub fn reader(self) -> HostRangeReader {
        HostRangeReader {
            range: self,
            pos: 0,
        }
    }
}

#[cfg(unix)]
fn pread(file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, pos)
}

#[cfg(windows)]
fn pread(file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, pos)
}

/// Reads a [`HostRange`] with `pread`: each `read` costs one system call and maps nothing.
#[derive(Debug)]
pub struct HostRangeReader {
    range: HostRange,
    pos: u64,
}

impl Read for HostRangeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.range.read_at(self.pos, buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for HostRangeReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.range.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_only_inside_the_range_and_reports_a_short_host_file() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"0123456789").unwrap();
        let range = HostRange {
            file: Arc::new(f),
            offset: 2,
            len: 5,
        };
        let mut buf = [0u8; 16];
        assert_eq!(range.read_at(0, &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"23456");
        assert_eq!(range.read_at(4, &mut buf).unwrap(), 1);
        assert_eq!(range.read_at(5, &mut buf).unwrap(), 0);
        assert_eq!(range.read_at(u64::MAX, &mut buf).unwrap(), 0);

        let mut reader = range.clone().reader();
        reader.seek(SeekFrom::End(-2)).unwrap();
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"56");
        assert!(reader.seek(SeekFrom::Current(-10)).is_err());

        let beyond = HostRange {
            offset: 8,
            len: 5,
            ..range
        };
        assert_eq!(beyond.read_at(0, &mut buf).unwrap(), 2);
        let err = beyond.read_at(2, &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}

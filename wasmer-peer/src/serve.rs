//! `serve`: a static HTTP/1.1 file server on loopback, for the URL trees of the oracle and
//! the benchmark. Both loaders talk to the same server, with the same added latency.
//!
//! What a package host offers and the loaders use: keep-alive, GET and HEAD, a strong
//! `ETag` (the file's sha256, so both loaders' revalidation has something real to
//! compare), `If-None-Match` → 304 and `Range: bytes=N-` → 206 (resumption).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct Options {
    pub dir: PathBuf,
    pub port: u16,
    pub delay: Duration,
}

/// ETags by path, valid while the file's size and mtime stay the same: hashing a 3 MiB
/// file on every request would put the server's CPU into the loaders' timings.
type Etags = Arc<Mutex<HashMap<PathBuf, (u64, SystemTime, String)>>>;

/// An idle keep-alive connection is dropped after this, so no thread lingers forever.
const IDLE: Duration = Duration::from_secs(60);
/// Request heads larger than this are refused (the loaders send well under 1 KiB).
const MAX_HEAD: usize = 64 * 1024;

pub fn run(options: &Options) -> Result<()> {
    let dir = options
        .dir
        .canonicalize()
        .with_context(|| format!("{}", options.dir.display()))?;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, options.port))
        .with_context(|| format!("binding 127.0.0.1:{}", options.port))?;
    let addr = listener.local_addr()?;
    // The first line is the contract with whoever started us (port 0 picks a free port).
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{addr}")?;
    stdout.flush()?;
    drop(stdout);
    let etags: Etags = Arc::default();
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let (dir, etags, delay) = (dir.clone(), Arc::clone(&etags), options.delay);
        std::thread::spawn(move || {
            let _ = connection(stream, &dir, &etags, delay);
        });
    }
    Ok(())
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    close: bool,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn connection(stream: TcpStream, dir: &Path, etags: &Etags, delay: Duration) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IDLE))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let Some(request) = read_request(&mut reader)? else {
            return Ok(());
        };
        std::thread::sleep(delay);
        respond(&mut writer, &request, dir, etags)?;
        writer.flush()?;
        if request.close {
            return Ok(());
        }
    }
}

/// `None` at a clean end of the connection.
fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader
            .take((MAX_HEAD - head.len()) as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        head.extend_from_slice(&line);
        if head.len() > MAX_HEAD {
            return Err(io::Error::other("request head too large"));
        }
        if line == b"\r\n" || line == b"\n" {
            if head.len() == line.len() {
                // Blank lines before a request line are allowed (RFC 9112 §2.2).
                head.clear();
                continue;
            }
            break;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.lines();
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let (method, target, version) = (
        first.next().unwrap_or_default().to_owned(),
        first.next().unwrap_or_default().to_owned(),
        first.next().unwrap_or_default().to_owned(),
    );
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let connection = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("connection"))
        .map(|(_, v)| v.to_ascii_lowercase());
    let close = match connection.as_deref() {
        Some(v) if v.contains("close") => true,
        Some(v) if v.contains("keep-alive") => false,
        _ => version != "HTTP/1.1",
    };
    Ok(Some(Request {
        method,
        target,
        headers,
        close,
    }))
}

fn respond(out: &mut impl Write, request: &Request, dir: &Path, etags: &Etags) -> io::Result<()> {
    let head_only = request.method == "HEAD";
    if request.method != "GET" && !head_only {
        return simple(
            out,
            405,
            "Method Not Allowed",
            request.close,
            &[("Allow", "GET, HEAD")],
        );
    }
    let Some(path) = file_path(dir, &request.target) else {
        return simple(out, 404, "Not Found", request.close, &[]);
    };
    let Ok(mut file) = File::open(&path) else {
        return simple(out, 404, "Not Found", request.close, &[]);
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return simple(out, 404, "Not Found", request.close, &[]);
    }
    let len = meta.len();
    let etag = etag(&path, &meta, etags)?;
    if let Some(tags) = request.header("If-None-Match")
        && tags.split(',').any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == etag
        })
    {
        return simple(out, 304, "Not Modified", request.close, &[("ETag", &etag)]);
    }
    let range = request.header("Range").and_then(|r| parse_range(r, len));
    let connection = if request.close { "close" } else { "keep-alive" };
    let (status, start, end) = match range {
        Some(Ok((start, end))) => (206, start, end),
        Some(Err(())) => {
            return simple(
                out,
                416,
                "Range Not Satisfiable",
                request.close,
                &[("Content-Range", &format!("bytes */{len}"))],
            );
        }
        None => (200, 0, len),
    };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/webc\r\nContent-Length: {}\r\n\
         ETag: {etag}\r\nAccept-Ranges: bytes\r\nConnection: {connection}\r\n",
        if status == 206 {
            "Partial Content"
        } else {
            "OK"
        },
        end - start
    );
    if status == 206 {
        head.push_str(&format!(
            "Content-Range: bytes {start}-{}/{len}\r\n",
            end.saturating_sub(1)
        ));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if !head_only {
        file.seek(SeekFrom::Start(start))?;
        io::copy(&mut file.take(end - start), out)?;
    }
    Ok(())
}

fn simple(
    out: &mut impl Write,
    status: u16,
    reason: &str,
    close: bool,
    headers: &[(&str, &str)],
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: {}\r\n",
        if close { "close" } else { "keep-alive" }
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())
}

/// The file a request target names inside `dir`: percent-decoded, query and fragment
/// dropped, and only plain components (no `..`, no hidden files), so nothing outside
/// `dir` is ever served.
fn file_path(dir: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next()?;
    let decoded = percent_decode(path)?;
    let mut out = dir.to_path_buf();
    let mut any = false;
    for part in decoded.split('/').filter(|p| !p.is_empty()) {
        if part.starts_with('.') || part.contains('\\') || part.contains('\0') {
            return None;
        }
        out.push(part);
        any = true;
    }
    any.then_some(out)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `bytes=N-` or `bytes=N-M` within `len`: `Some(Ok((start, end_exclusive)))`,
/// `Some(Err(()))` when unsatisfiable, `None` for forms we ignore (a full 200 is then
/// a correct answer).
#[allow(clippy::result_unit_err)]
pub fn parse_range(value: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end = match end.trim() {
        "" => len,
        end => end.parse::<u64>().ok()?.saturating_add(1).min(len),
    };
    if start >= len || start >= end {
        return Some(Err(()));
    }
    Some(Ok((start, end)))
}

fn etag(path: &Path, meta: &std::fs::Metadata, etags: &Etags) -> io::Result<String> {
    let mtime = meta.modified()?;
    let key = path.to_path_buf();
    if let Ok(map) = etags.lock()
        && let Some((len, time, tag)) = map.get(&key)
        && *len == meta.len()
        && *time == mtime
    {
        return Ok(tag.clone());
    }
    let mut hasher = Sha256::new();
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    let tag = format!("\"{}\"", hex(&hasher.finalize()));
    if let Ok(mut map) = etags.lock() {
        map.insert(key, (meta.len(), mtime, tag.clone()));
    }
    Ok(tag)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=10-", 100), Some(Ok((10, 100))));
        assert_eq!(parse_range("bytes=10-19", 100), Some(Ok((10, 20))));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=-5", 100), None);
        assert_eq!(parse_range("items=1-", 100), None);
    }

    #[test]
    fn targets_stay_inside_the_directory() {
        let dir = Path::new("/srv");
        assert_eq!(
            file_path(dir, "/bench--p00@1.0.0.webc"),
            Some(PathBuf::from("/srv/bench--p00@1.0.0.webc"))
        );
        assert_eq!(
            file_path(dir, "/bench--p00%401.0.0.webc?x=1"),
            Some(PathBuf::from("/srv/bench--p00@1.0.0.webc"))
        );
        assert_eq!(file_path(dir, "/../etc/passwd"), None);
        assert_eq!(file_path(dir, "/%2e%2e/etc/passwd"), None);
        assert_eq!(file_path(dir, "/"), None);
    }
}

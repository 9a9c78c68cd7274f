//! `shaped-proxy UPSTREAM LATENCY_MS BYTES_PER_SEC`: a [`ShapedProxy`] as a process, for
//! `cargo xtask bench` (which keeps its own dependencies few): it prints the address it
//! listens on, then answers each line on stdin: `bytes` prints the bytes served so far,
//! `clear` resets the count; end of input stops it. A cap of 0 means none.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::time::Duration;

use test_servers::shaped::{Shape, ShapedProxy};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shaped-proxy: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [upstream, latency_ms, rate] = args.as_slice() else {
        return Err("usage: shaped-proxy UPSTREAM LATENCY_MS BYTES_PER_SEC".into());
    };
    let upstream: SocketAddr = upstream.parse()?;
    let rate: u64 = rate.parse()?;
    let shape = Shape {
        latency: Duration::from_millis(latency_ms.parse()?),
        bytes_per_sec: (rate > 0).then_some(rate),
    };
    let proxy = ShapedProxy::start(upstream, shape)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", proxy.host())?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        match line?.trim() {
            "bytes" => writeln!(out, "{}", proxy.bytes_served())?,
            "clear" => {
                proxy.clear();
                writeln!(out, "ok")?;
            }
            other => writeln!(out, "unknown command {other:?}")?,
        }
        out.flush()?;
    }
    Ok(())
}

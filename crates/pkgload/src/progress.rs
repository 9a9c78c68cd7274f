//! A progress bar on standard error, only when it is a terminal.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use cache_core::Digest;
use fetch_http::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use loader::{LoadEvent, ProgressSink};

/// A sink drawing one bar of bytes, or `None` when stderr is not a terminal.
pub fn bar() -> Option<ProgressSink> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    // Bytes held per blob, so a resumed or retried transfer moves the bar by what is new.
    let done: Mutex<HashMap<Digest, u64>> = Mutex::new(HashMap::new());
    Some(Arc::new(move |event| match event {
        LoadEvent::Planned {
            blobs,
            bytes,
            cached,
        } => {
            bar.set_length(bytes);
            bar.set_message(format!("{blobs} blobs ({cached} cached)"));
        }
        LoadEvent::Blob(p) => {
            let (digest, now) = match p {
                Progress::Started { digest, offset, .. } => (digest, offset),
                Progress::Advanced { digest, done, .. } => (digest, done),
                Progress::Finished { digest, bytes, .. } => (digest, bytes),
                Progress::Retrying { .. } => return,
            };
            let mut map = done.lock().unwrap_or_else(|e| e.into_inner());
            let before = map.insert(digest, now).unwrap_or(0);
            if now > before {
                bar.inc(now - before);
            }
            if bar.length().is_some_and(|l| bar.position() >= l) {
                bar.finish_and_clear();
            }
        }
    }))
}

//! Which hosts sent the blobs of a load. `load --json` reports it, so that whoever runs a
//! fleet behind a mirror can see the mirror served what it should.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use fetch_http::Progress;
use loader::{LoadEvent, ProgressSink};
use serde_json::json;

/// Blobs and bytes per host (`host[:port]`), filled from the loader's progress events.
#[derive(Clone, Default)]
pub struct Served(Arc<Mutex<BTreeMap<String, (u64, u64)>>>);

impl Served {
    /// A sink that counts finished downloads, then hands every event on to `next`.
    pub fn sink(&self, next: Option<ProgressSink>) -> ProgressSink {
        let tally = self.0.clone();
        Arc::new(move |event: LoadEvent| {
            if let LoadEvent::Blob(Progress::Finished {
                bytes,
                from: Some(host),
                ..
            }) = &event
            {
                let mut tally = tally.lock().unwrap_or_else(|e| e.into_inner());
                let entry = tally.entry(host.clone()).or_default();
                entry.0 += 1;
                entry.1 += bytes;
            }
            if let Some(next) = &next {
                next(event);
            }
        })
    }

    /// `[{"host": …, "blobs": …, "bytes": …}]`, by host name; empty when the cache held
    /// everything.
    pub fn json(&self) -> serde_json::Value {
        let tally = self.0.lock().unwrap_or_else(|e| e.into_inner());
        tally
            .iter()
            .map(|(host, (blobs, bytes))| json!({ "host": host, "blobs": blobs, "bytes": bytes }))
            .collect()
    }
}

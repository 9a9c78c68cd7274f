//! The response body: streams its bytes in chunks, optionally slowly, and can end in a
//! truncation or a connection reset.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use tokio::time::Sleep;

use super::route::{CutKind, Throttle};

/// Chunk size when not throttled: large bodies stream instead of going out in one write.
const CHUNK: usize = 64 * 1024;

/// Pause before a cut takes effect. hyper flushes what it has written while the body is
/// pending, so this is what makes the bytes before a cut actually leave the socket (a reset
/// throws away whatever is still in the send buffer).
const FLUSH_PAUSE: Duration = Duration::from_millis(30);

/// Counts responses in progress (headers being prepared through the last body byte) and
/// remembers the highest count seen.
#[derive(Debug, Default)]
pub(crate) struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Gauge {
    /// Counts one more response until the returned guard is dropped.
    pub(crate) fn enter(self: &Arc<Self>) -> InFlight {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        InFlight(Arc::clone(self))
    }

    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// One response in progress; see [`Gauge`].
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Gauge>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How the body ends once `stop` bytes are out.
#[derive(Debug)]
enum Ending {
    Complete,
    Truncate,
    /// Raise the connection's reset flag, then fail the body so hyper drops the connection.
    Reset(Arc<AtomicBool>),
}

/// A response body; see the module docs.
#[derive(Debug)]
pub(crate) struct FaultBody {
    data: Bytes,
    /// Bytes to send before ending; never more than `data.len()`.
    stop: usize,
    sent: usize,
    chunk: usize,
    delay: Option<Duration>,
    ending: Ending,
    paused: bool,
    finished: bool,
    timer: Option<Pin<Box<Sleep>>>,
    _in_flight: Option<InFlight>,
}

impl FaultBody {
    /// A body sending all of `data`.
    pub(crate) fn full(data: Bytes) -> Self {
        FaultBody {
            stop: data.len(),
            data,
            sent: 0,
            chunk: CHUNK,
            delay: None,
            ending: Ending::Complete,
            paused: false,
            finished: false,
            timer: None,
            _in_flight: None,
        }
    }

    /// An empty body.
    pub(crate) fn empty() -> Self {
        Self::full(Bytes::new())
    }

    /// Ends the body after `after` bytes: truncated, or with a reset of the connection whose
    /// flag is `reset`.
    pub(crate) fn cut(mut self, after: usize, kind: CutKind, reset: &Arc<AtomicBool>) -> Self {
        self.stop = after.min(self.data.len());
        self.ending = match kind {
            CutKind::Truncate => Ending::Truncate,
            CutKind::Reset => Ending::Reset(Arc::clone(reset)),
        };
        self
    }

    pub(crate) fn throttle(mut self, throttle: Throttle) -> Self {
        self.chunk = throttle.bytes.max(1);
        self.delay = Some(throttle.delay);
        self
    }

    pub(crate) fn counted(mut self, in_flight: InFlight) -> Self {
        self._in_flight = Some(in_flight);
        self
    }
}

impl Body for FaultBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        loop {
            if this.finished {
                return Poll::Ready(None);
            }
            if let Some(timer) = this.timer.as_mut() {
                ready!(timer.as_mut().poll(cx));
                this.timer = None;
            }
            if this.sent < this.stop {
                let end = this.stop.min(this.sent.saturating_add(this.chunk));
                let frame = this.data.slice(this.sent..end);
                this.sent = end;
                if let Some(delay) = this.delay.filter(|_| this.sent < this.stop) {
                    this.timer = Some(Box::pin(tokio::time::sleep(delay)));
                }
                return Poll::Ready(Some(Ok(Frame::data(frame))));
            }
            if matches!(this.ending, Ending::Complete) {
                this.finished = true;
                return Poll::Ready(None);
            }
            if !this.paused {
                this.paused = true;
                this.timer = Some(Box::pin(tokio::time::sleep(FLUSH_PAUSE)));
                continue;
            }
            this.finished = true;
            return match &this.ending {
                Ending::Reset(flag) => {
                    flag.store(true, Ordering::SeqCst);
                    Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "test-servers: injected connection reset",
                    ))))
                }
                // Ending early under a larger Content-Length makes hyper close the
                // connection, normally.
                Ending::Truncate | Ending::Complete => Poll::Ready(None),
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        // Only a body that has nothing at all to send may say so up front: hyper then drops a
        // GET's Content-Length, but keeps a HEAD's, which is what HEAD needs. A cut body must
        // not, or the announced length would vanish. `size_hint` stays unknown on purpose:
        // an exact hint that disagrees with Content-Length trips a hyper debug assertion.
        self.finished || (self.stop == 0 && matches!(self.ending, Ending::Complete))
    }
}

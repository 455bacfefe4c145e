//! Where a request's outputs go: an [`OutputSink`] called on the engine thread with each delta,
//! or an [`OutputStream`] read from any thread (a channel; one send per delta, closed after
//! the request's last output).

use crate::RequestOutput;
use crate::scheduler::RequestId;
use std::ops::ControlFlow;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

/// Receives one request's output deltas, on the engine thread, in order. It must return
/// quickly (the engine waits for it) and must not wait for an engine: such calls fail with
/// [`ServingError::Reentrant`](super::ServingError::Reentrant). Dropped after the request's
/// last output, or when the engine thread ends.
pub trait OutputSink: Send {
    /// One delta; `request_done` is true on the request's last one (every sequence of it
    /// finished). `Break` says the consumer is gone: the request is aborted, with no more
    /// outputs.
    fn deliver(&mut self, output: RequestOutput, request_done: bool) -> ControlFlow<()>;
}

impl<F> OutputSink for F
where
    F: FnMut(RequestOutput, bool) -> ControlFlow<()> + Send,
{
    fn deliver(&mut self, output: RequestOutput, request_done: bool) -> ControlFlow<()> {
        self(output, request_done)
    }
}

/// A channel's sender as a sink: a dropped receiver aborts the request.
impl OutputSink for Sender<RequestOutput> {
    fn deliver(&mut self, output: RequestOutput, _request_done: bool) -> ControlFlow<()> {
        match self.send(output) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    }
}

/// One request's outputs as a queue: iterate, or `recv` / `recv_timeout`. The stream ends
/// after the request's last output, or early when the engine stops (see
/// [`EngineHandle::stop_reason`](super::EngineHandle::stop_reason)). Dropping it before the
/// end aborts the request.
#[derive(Debug)]
pub struct OutputStream {
    id: RequestId,
    rx: Receiver<RequestOutput>,
}

impl OutputStream {
    pub(crate) fn new(id: RequestId, rx: Receiver<RequestOutput>) -> Self {
        Self { id, rx }
    }

    /// The request's id.
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// The next delta, waiting for it; `None` at the end of the stream.
    pub fn recv(&self) -> Option<RequestOutput> {
        self.rx.recv().ok()
    }

    /// The next delta, waiting at most `timeout`: `Timeout` when none came,
    /// `Disconnected` at the end of the stream.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<RequestOutput, RecvTimeoutError> {
        self.rx.recv_timeout(timeout)
    }
}

impl Iterator for OutputStream {
    type Item = RequestOutput;

    fn next(&mut self) -> Option<RequestOutput> {
        self.recv()
    }
}

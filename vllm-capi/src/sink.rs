//! The two C sinks of a request's outputs, each delta copied into one [`OwnedOutput`] block:
//! the caller's callback (called on the engine thread), or the engine's [`Queues`] for
//! `vllm_poll` / `vllm_wait`.

use crate::output::OwnedOutput;
use crate::queue::Queues;
use crate::types::{VllmOutput, VllmOutputCallback};
use std::ffi::c_void;
use std::ops::ControlFlow;
use std::sync::Arc;
use vllm_engine::RequestOutput;
use vllm_engine::serving::OutputSink;

/// A C callback and its user data.
pub(crate) struct CallbackSink {
    f: unsafe extern "C" fn(*const VllmOutput, *mut c_void),
    user: *mut c_void,
}

// SAFETY: the API documents that the callback is called on the engine thread with the user
// data given at submission; the caller promises both are usable from that thread.
unsafe impl Send for CallbackSink {}

impl CallbackSink {
    /// The sink of a non-NULL callback.
    pub(crate) fn new(f: VllmOutputCallback, user: *mut c_void) -> Option<Self> {
        f.map(|f| Self { f, user })
    }
}

impl OutputSink for CallbackSink {
    fn deliver(&mut self, o: RequestOutput, _request_done: bool) -> ControlFlow<()> {
        let owned = OwnedOutput::new(&o);
        // SAFETY: `f` is the caller's callback, documented to take a pointer valid for the
        // call and the user data given at submission; `owned` outlives the call.
        unsafe { (self.f)(&owned.c, self.user) };
        ControlFlow::Continue(())
    }
}

/// Outputs queued for `vllm_poll` / `vllm_wait`.
pub(crate) struct QueueSink(pub(crate) Arc<Queues>);

impl OutputSink for QueueSink {
    fn deliver(&mut self, o: RequestOutput, request_done: bool) -> ControlFlow<()> {
        self.0
            .push(o.request_id, OwnedOutput::new(&o), request_done);
        ControlFlow::Continue(())
    }
}

impl Drop for QueueSink {
    /// Dropped after the request's last output, or when the engine stops: a waiter rechecks.
    fn drop(&mut self) {
        self.0.wake();
    }
}

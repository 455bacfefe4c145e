//! The engine thread: one [`Engine`](crate::Engine) served to any number of threads through a
//! cloneable [`EngineHandle`]. Every front end (the C ABI, the CLI, an HTTP server) talks to
//! the engine this way.
//!
//! Design. The handle owns a command channel to the engine thread. Submit, abort and stats
//! are commands answered on a reply channel, so their errors come back to the caller, typed
//! ([`ServingError`]). Between commands the thread steps the engine and hands every output
//! delta to its request's [`OutputSink`] (a closure, or the channel behind an
//! [`OutputStream`]); a sink that reports its consumer gone, or panics, gets its request
//! aborted while the others keep running. A sink runs on the engine thread: calls from there
//! that would wait for the engine are refused with [`ServingError::Reentrant`] instead of
//! deadlocking. A panic inside a step stops the engine: every live request gets a final
//! output with [`FinishReason::Error`](crate::scheduler::FinishReason::Error) and later calls
//! fail with [`ServingError::Stopped`]. Dropping the last handle (or [`EngineHandle::shutdown`])
//! aborts what is in flight, each sink getting its final output, and joins the thread.
//!
//! Cost: a command is one channel send and one reply, and waits for the engine thread's next
//! turn (at most one step); an output delta is one sink call (one channel send for a stream);
//! the idle thread blocks on its channel and uses no CPU. Per loop: one engine step plus
//! O(outputs) sink calls.

mod handle;
mod sink;
mod worker;

pub use handle::EngineHandle;
pub use sink::{OutputSink, OutputStream};

use crate::EngineError;
use crate::scheduler::RequestId;
use std::cell::Cell;

/// Why a serving call failed.
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    /// The engine refused the request or could not be built.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// `abort` of an id that is unknown or already finished.
    #[error("request {id} is unknown or already finished")]
    UnknownRequest { id: RequestId },
    /// The engine thread has stopped (shut down, or after an internal error); the reason.
    #[error("{0}")]
    Stopped(String),
    /// Called on an engine thread (from an output sink), where waiting for an engine would
    /// deadlock.
    #[error("called from an output sink on the engine thread, where it would deadlock")]
    Reentrant,
    /// The engine thread could not be started.
    #[error("cannot start the engine thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// Building the engine panicked (a bug); the message.
    #[error("building the engine failed (internal error): {0}")]
    Panicked(String),
}

thread_local! {
    /// True on an engine thread (sinks run there).
    static ON_ENGINE_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current thread is an engine thread (any engine's): there, a call that waits
/// for an engine would deadlock.
pub fn on_engine_thread() -> bool {
    ON_ENGINE_THREAD.with(Cell::get)
}

/// The text of a panic payload (`panic!` with a string or a format), else "panic".
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

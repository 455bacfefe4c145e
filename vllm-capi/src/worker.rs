//! The engine thread. The C handle owns a channel to it; submissions, aborts and stats are
//! commands answered on a reply channel (so errors come back to the caller), and between
//! commands the thread steps the engine and routes every output delta to its request's sink:
//! the C callback (called on this thread) or a queue that `vllm_poll` / `vllm_wait` read.
//! A panic inside a step stops the engine: every live request gets an ERROR output and later
//! calls return VLLM_STATUS_ENGINE_STOPPED. Cost per loop: one engine step plus O(outputs).

use crate::error::VllmStatus;
use crate::output::OwnedOutput;
use crate::types::{VllmOutput, VllmOutputCallback};
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::ffi::c_void;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use vllm_engine::engine::EngineStats;
use vllm_engine::scheduler::FinishReason;
use vllm_engine::{Engine, EngineError, Prompt, RequestOutput, SamplingParams};

/// A C callback and its user data.
#[derive(Clone, Copy)]
pub(crate) struct Callback {
    pub f: unsafe extern "C" fn(*const VllmOutput, *mut c_void),
    pub user: *mut c_void,
}

// SAFETY: the API documents that the callback is called on the engine thread with the user
// data given at submission; the caller promises both are usable from that thread.
unsafe impl Send for Callback {}

impl Callback {
    pub(crate) fn new(f: VllmOutputCallback, user: *mut c_void) -> Option<Self> {
        f.map(|f| Self { f, user })
    }
}

pub(crate) enum Sink {
    Callback(Callback),
    Queue,
}

pub(crate) type Reply<T> = SyncSender<Result<T, (VllmStatus, String)>>;

pub(crate) enum Cmd {
    Submit {
        prompt: Prompt,
        params: Box<SamplingParams>,
        sink: Sink,
        reply: Reply<u64>,
    },
    Abort {
        id: u64,
        reply: Reply<()>,
    },
    Stats {
        reply: Reply<EngineStats>,
    },
    Shutdown,
}

/// Outputs waiting for `vllm_poll` / `vllm_wait`, per queued request.
#[derive(Default)]
pub(crate) struct Queue {
    pub items: VecDeque<Box<OwnedOutput>>,
    /// Every sequence of the request has finished (its last output may still be queued).
    pub done: bool,
}

/// State shared between the handle and the engine thread.
#[derive(Default)]
pub(crate) struct Shared {
    pub queues: Mutex<HashMap<u64, Queue>>,
    pub ready: Condvar,
    /// Set when the engine thread has stopped.
    pub stopped: Mutex<Option<String>>,
}

thread_local! {
    /// True on an engine thread (callbacks run there).
    pub(crate) static ON_ENGINE_THREAD: Cell<bool> = const { Cell::new(false) };
}

struct Live {
    sink: Sink,
    /// Sequences of the request not finished yet.
    left: usize,
}

pub(crate) fn status_of(e: &EngineError) -> VllmStatus {
    match e {
        EngineError::Params(_)
        | EngineError::Args(_)
        | EngineError::BadArgs(_)
        | EngineError::Tokenize(_) => VllmStatus::InvalidArgument,
        EngineError::Chat(_) | EngineError::NoTokenizer => VllmStatus::InvalidArgument,
        EngineError::Schedule(vllm_engine::scheduler::ScheduleError::EmptyPrompt { .. }) => {
            VllmStatus::InvalidArgument
        }
        EngineError::Schedule(_) => VllmStatus::Rejected,
        EngineError::Load(_) | EngineError::Kv(_) => VllmStatus::LoadFailed,
        EngineError::Unsupported { .. } | EngineError::Device(_) => VllmStatus::Unsupported,
        EngineError::Runner(_) => VllmStatus::Internal,
    }
}

struct Worker {
    engine: Engine,
    shared: Arc<Shared>,
    live: HashMap<u64, Live>,
}

impl Worker {
    fn deliver(&mut self, o: &RequestOutput) {
        let Some(l) = self.live.get_mut(&o.request_id) else {
            return;
        };
        if o.finished {
            l.left = l.left.saturating_sub(1);
        }
        let done = l.left == 0;
        let owned = OwnedOutput::new(o);
        match &l.sink {
            Sink::Callback(cb) => {
                // SAFETY: `f` is the caller's callback, documented to take a pointer valid for
                // the call and the user data given at submission; `owned` outlives the call.
                unsafe { (cb.f)(&owned.c, cb.user) };
            }
            Sink::Queue => {
                let mut q = self.shared.queues.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(q) = q.get_mut(&o.request_id) {
                    q.items.push_back(owned);
                    q.done = done;
                }
                self.shared.ready.notify_all();
            }
        }
        if done {
            self.live.remove(&o.request_id);
        }
    }

    fn command(&mut self, cmd: Cmd) -> bool {
        match cmd {
            Cmd::Submit {
                prompt,
                params,
                sink,
                reply,
            } => {
                let n = params.n.max(1);
                let r = self.engine.add_request(prompt, *params);
                let r = r.map_err(|e| (status_of(&e), e.to_string()));
                if let Ok(id) = r {
                    if let Sink::Queue = sink {
                        let mut q = self.shared.queues.lock().unwrap_or_else(|p| p.into_inner());
                        q.insert(id, Queue::default());
                    }
                    self.live.insert(id, Live { sink, left: n });
                }
                let _ = reply.send(r);
            }
            Cmd::Abort { id, reply } => {
                let r = match self.engine.abort(id) {
                    Some(outs) => {
                        for o in &outs {
                            self.deliver(o);
                        }
                        Ok(())
                    }
                    None => Err((
                        VllmStatus::NotFound,
                        format!("request {id} is unknown or already finished"),
                    )),
                };
                let _ = reply.send(r);
            }
            Cmd::Stats { reply } => {
                let _ = reply.send(Ok(self.engine.stats()));
            }
            Cmd::Shutdown => return false,
        }
        true
    }

    /// Fails every live request with `reason` (destroy: Abort; a crashed step: Error).
    fn end_all(&mut self, reason: FinishReason, error: Option<&str>) {
        let ids: Vec<u64> = self.live.keys().copied().collect();
        for id in ids {
            let outs = self.engine.abort(id).unwrap_or_default();
            for mut o in outs {
                o.finish_reason = Some(reason);
                o.error = error.map(str::to_string);
                self.deliver(&o);
            }
            // A request the engine no longer knows still gets its last output(s).
            while self.live.contains_key(&id) {
                let o = RequestOutput {
                    request_id: id,
                    index: 0,
                    text: String::new(),
                    token_ids: Vec::new(),
                    logprobs: None,
                    prompt_logprobs: None,
                    finished: true,
                    finish_reason: Some(reason),
                    stop_reason: None,
                    error: error.map(str::to_string),
                    metrics: Default::default(),
                };
                self.deliver(&o);
            }
        }
    }
}

/// The text of a panic payload.
pub(crate) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// Records that the engine thread stopped (keeps the first reason) and wakes every waiter:
/// queued outputs are still handed out, then waiters get ENGINE_STOPPED.
pub(crate) fn mark_stopped(shared: &Shared, why: &str) {
    let _q = shared.queues.lock().unwrap_or_else(|p| p.into_inner());
    let mut s = shared.stopped.lock().unwrap_or_else(|p| p.into_inner());
    if s.is_none() {
        *s = Some(why.to_string());
    }
    drop(s);
    shared.ready.notify_all();
}

/// Marks the engine stopped however the thread ends (normal exit, or a panic anywhere).
struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        let why = if std::thread::panicking() {
            "the engine thread stopped after an internal error"
        } else {
            "the engine was destroyed"
        };
        mark_stopped(&self.0, why);
    }
}

/// The engine thread's loop: commands first; while work remains, one step per turn. A panic
/// in a command unwinds out of here; the guard then wakes every waiter.
pub(crate) fn run(engine: Engine, shared: Arc<Shared>, rx: Receiver<Cmd>) {
    ON_ENGINE_THREAD.with(|f| f.set(true));
    let _guard = StopGuard(shared.clone());
    let mut w = Worker {
        engine,
        shared,
        live: HashMap::new(),
    };
    loop {
        // Block for a command while idle; otherwise take what is there and step.
        let first = if w.engine.has_unfinished() {
            rx.try_recv().ok()
        } else {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        };
        let mut keep = true;
        if let Some(c) = first {
            keep = w.command(c);
            while keep && let Ok(c) = rx.try_recv() {
                keep = w.command(c);
            }
        }
        if !keep {
            break;
        }
        if !w.engine.has_unfinished() {
            continue;
        }
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.engine.step()));
        match step {
            Ok(outs) => {
                for o in &outs {
                    w.deliver(o);
                }
            }
            Err(p) => {
                let msg = format!("engine step failed (internal error): {}", panic_text(&*p));
                // Outputs first, then the stopped mark: a waiter sees its ERROR output.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    w.end_all(FinishReason::Error, Some(&msg))
                }));
                mark_stopped(&w.shared, &msg);
                // Answer commands until shutdown so callers are not left waiting.
                while let Ok(c) = rx.recv() {
                    match c {
                        Cmd::Shutdown => return,
                        Cmd::Submit { reply, .. } => {
                            let _ = reply.send(Err((VllmStatus::EngineStopped, msg.clone())));
                        }
                        Cmd::Abort { reply, .. } => {
                            let _ = reply.send(Err((VllmStatus::EngineStopped, msg.clone())));
                        }
                        Cmd::Stats { reply } => {
                            let _ = reply.send(Err((VllmStatus::EngineStopped, msg.clone())));
                        }
                    }
                }
                return;
            }
        }
    }
    w.end_all(FinishReason::Abort, None);
}

/// Waits on `shared` for the next output of queued request `id`, at most until `deadline`.
pub(crate) fn next_output(
    shared: &Shared,
    id: u64,
    deadline: Option<Instant>,
) -> Result<Option<Box<OwnedOutput>>, (VllmStatus, String)> {
    let mut q = shared.queues.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let Some(entry) = q.get_mut(&id) else {
            return Err((
                VllmStatus::NotFound,
                format!("request {id} is unknown, streams to a callback, or has no outputs left"),
            ));
        };
        if let Some(o) = entry.items.pop_front() {
            if entry.done && entry.items.is_empty() {
                q.remove(&id);
            }
            return Ok(Some(o));
        }
        if let Some(msg) = shared
            .stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Err((VllmStatus::EngineStopped, msg));
        }
        match deadline {
            None => q = shared.ready.wait(q).unwrap_or_else(|p| p.into_inner()),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return Ok(None);
                }
                q = shared
                    .ready
                    .wait_timeout(q, d - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
    }
}

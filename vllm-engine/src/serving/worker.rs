//! The engine thread's loop. Commands first (blocking on the channel while the engine is
//! idle); while work remains, one step per turn, its outputs routed to each request's sink by
//! request id (one hash lookup per delta). A panic in a step ends every live request with an
//! ERROR output and leaves the thread answering commands with `Stopped` until shutdown; a
//! panic in a command unwinds out of the thread, and the stop guard still records why.

use super::sink::OutputSink;
use super::{ON_ENGINE_THREAD, ServingError, panic_message};
use crate::engine::EngineStats;
use crate::scheduler::{FinishReason, RequestId};
use crate::{Engine, Prompt, RequestOutput, SamplingParams};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};

/// Where a command's answer goes.
pub(super) type Reply<T> = SyncSender<Result<T, ServingError>>;

pub(super) enum Cmd {
    Submit {
        prompt: Prompt,
        params: Box<SamplingParams>,
        sink: Box<dyn OutputSink>,
        reply: Reply<RequestId>,
    },
    Abort {
        id: RequestId,
        reply: Reply<()>,
    },
    Stats {
        reply: Reply<EngineStats>,
    },
    Shutdown,
}

impl Cmd {
    /// Answers the command with `err` (the engine has stopped).
    fn refuse(self, err: impl Fn() -> ServingError) {
        match self {
            Cmd::Submit { reply, .. } => drop(reply.send(Err(err()))),
            Cmd::Abort { reply, .. } => drop(reply.send(Err(err()))),
            Cmd::Stats { reply } => drop(reply.send(Err(err()))),
            Cmd::Shutdown => {}
        }
    }
}

/// State shared by the handles and the engine thread: why the thread stopped, once it has.
#[derive(Debug, Default)]
pub(super) struct Shared {
    stopped: Mutex<Option<String>>,
}

impl Shared {
    /// Records that the engine stopped; the first reason is kept.
    pub(super) fn mark_stopped(&self, why: &str) {
        let mut s = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        if s.is_none() {
            *s = Some(why.to_string());
        }
    }

    pub(super) fn stop_reason(&self) -> Option<String> {
        self.stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Marks the engine stopped however the thread ends (normal exit, or a panic anywhere).
/// Declared after the worker in [`run`], so it runs before the sinks are dropped: a consumer
/// woken by its sink's drop finds the reason.
struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.mark_stopped(if std::thread::panicking() {
            "the engine thread stopped after an internal error"
        } else {
            "the engine was shut down"
        });
    }
}

/// A request being served: its sink and how many of its sequences are still running.
struct Live {
    sink: Box<dyn OutputSink>,
    left: usize,
}

struct Worker {
    engine: Engine,
    live: HashMap<RequestId, Live>,
}

impl Worker {
    /// Hands `o` to its request's sink. A sink that breaks or panics loses its request,
    /// which is aborted; the request is forgotten after its last output.
    fn deliver(&mut self, o: RequestOutput) {
        let id = o.request_id;
        let Some(l) = self.live.get_mut(&id) else {
            return;
        };
        if o.finished {
            l.left = l.left.saturating_sub(1);
        }
        let done = l.left == 0;
        let sink = &mut l.sink;
        let flow = catch_unwind(AssertUnwindSafe(|| sink.deliver(o, done)));
        if done {
            self.live.remove(&id);
        } else if !matches!(flow, Ok(ControlFlow::Continue(()))) {
            self.live.remove(&id);
            // Nobody takes its outputs any more: its final ones are dropped.
            let _ = self.engine.abort(id);
        }
    }

    /// Runs one command; false on shutdown.
    fn command(&mut self, cmd: Cmd) -> bool {
        match cmd {
            Cmd::Submit {
                prompt,
                params,
                sink,
                reply,
            } => {
                let left = params.n.max(1);
                let r = self.engine.add_request(prompt, *params);
                if let Ok(id) = r {
                    self.live.insert(id, Live { sink, left });
                }
                let _ = reply.send(r.map_err(ServingError::from));
            }
            Cmd::Abort { id, reply } => {
                let r = match self.engine.abort(id) {
                    Some(outs) => {
                        outs.into_iter().for_each(|o| self.deliver(o));
                        Ok(())
                    }
                    None => Err(ServingError::UnknownRequest { id }),
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

    /// Ends every live request with `reason` (shutdown: Abort; a failed step: Error).
    fn end_all(&mut self, reason: FinishReason, error: Option<&str>) {
        let ids: Vec<RequestId> = self.live.keys().copied().collect();
        for id in ids {
            for mut o in self.engine.abort(id).unwrap_or_default() {
                o.finish_reason = Some(reason);
                o.error = error.map(str::to_string);
                self.deliver(o);
            }
            // A request the engine no longer knows still gets its last output(s).
            while self.live.contains_key(&id) {
                self.deliver(RequestOutput {
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
                });
            }
        }
    }

    /// One engine step, its outputs delivered; the panic message if the step panicked.
    fn step(&mut self) -> Result<(), String> {
        let outs = catch_unwind(AssertUnwindSafe(|| self.engine.step()))
            .map_err(|p| panic_message(&*p))?;
        outs.into_iter().for_each(|o| self.deliver(o));
        Ok(())
    }
}

/// The engine thread: serves `engine` until shutdown or until every handle is gone.
pub(super) fn run(engine: Engine, shared: Arc<Shared>, rx: Receiver<Cmd>) {
    ON_ENGINE_THREAD.with(|f| f.set(true));
    let mut w = Worker {
        engine,
        live: HashMap::new(),
    };
    let _guard = StopGuard(shared.clone());
    loop {
        // Block for a command while idle; otherwise take what is there and step.
        let mut next = if w.engine.has_unfinished() {
            rx.try_recv().ok()
        } else {
            match rx.recv() {
                Ok(c) => Some(c),
                Err(_) => break,
            }
        };
        while let Some(c) = next {
            if !w.command(c) {
                w.end_all(FinishReason::Abort, None);
                return;
            }
            next = rx.try_recv().ok();
        }
        if !w.engine.has_unfinished() {
            continue;
        }
        if let Err(panic) = w.step() {
            let msg = format!("engine step failed (internal error): {panic}");
            // Outputs first, then the stopped mark: a consumer sees its ERROR output.
            let _ = catch_unwind(AssertUnwindSafe(|| {
                w.end_all(FinishReason::Error, Some(&msg))
            }));
            shared.mark_stopped(&msg);
            // Sinks not ended above are dropped now, so their consumers stop waiting.
            w.live.clear();
            // Answer commands until shutdown so callers are not left waiting.
            while let Ok(c) = rx.recv() {
                if let Cmd::Shutdown = c {
                    return;
                }
                c.refuse(|| ServingError::Stopped(msg.clone()));
            }
            return;
        }
    }
    w.end_all(FinishReason::Abort, None);
}

//! [`EngineHandle`]: the caller's side of the engine thread. Each call sends one command and
//! waits for its reply; the handle is cheap to clone and every clone may be used from any
//! thread. The last clone dropped shuts the thread down and joins it.

use super::sink::{OutputSink, OutputStream};
use super::worker::{self, Cmd, Reply, Shared};
use super::{ServingError, on_engine_thread, panic_message};
use crate::engine::EngineStats;
use crate::scheduler::RequestId;
use crate::tokenizer::Tokenizer;
use crate::{Engine, EngineArgs, EngineError, Prompt, RequestOutput, SamplingParams};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Sender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, ThreadId};

/// A running engine thread. Clone it freely: clones share the thread.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tx: Sender<Cmd>,
    shared: Arc<Shared>,
    tokenizer: Option<Arc<Tokenizer>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: ThreadId,
}

impl EngineHandle {
    /// Builds the engine for `args` on a new engine thread and serves it there. Start-up
    /// errors (bad arguments, a model that does not load) come back as
    /// [`ServingError::Engine`].
    pub fn spawn(args: EngineArgs) -> Result<Self, ServingError> {
        Self::spawn_with(move || Engine::new(&args))
    }

    /// Serves an engine built by the caller on a new engine thread.
    pub fn start(engine: Engine) -> Result<Self, ServingError> {
        Self::spawn_with(move || Ok(engine))
    }

    /// Starts the engine thread, builds the engine there with `build`, and returns once it
    /// serves (or with the build's error; a panic in `build` is [`ServingError::Panicked`]).
    fn spawn_with(
        build: impl FnOnce() -> Result<Engine, EngineError> + Send + 'static,
    ) -> Result<Self, ServingError> {
        let shared = Arc::new(Shared::default());
        let (tx, rx) = channel();
        let (ready_tx, ready_rx) = sync_channel(1);
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("vllm-engine".into())
            .spawn(move || {
                let built = catch_unwind(AssertUnwindSafe(build));
                match built {
                    Ok(Ok(engine)) => {
                        let _ = ready_tx.send(Ok(engine.tokenizer().cloned()));
                        worker::run(engine, thread_shared, rx);
                    }
                    Ok(Err(e)) => {
                        let _ = ready_tx.send(Err(ServingError::Engine(e)));
                    }
                    Err(p) => {
                        let _ = ready_tx.send(Err(ServingError::Panicked(panic_message(&*p))));
                    }
                }
            })
            .map_err(ServingError::Spawn)?;
        let thread_id = thread.thread().id();
        let ready = ready_rx.recv().unwrap_or_else(|_| {
            Err(ServingError::Panicked(
                "the engine thread ended during start-up".into(),
            ))
        });
        let tokenizer = match ready {
            Ok(t) => t,
            Err(e) => {
                let _ = thread.join();
                return Err(e);
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                tx,
                shared,
                tokenizer,
                thread: Mutex::new(Some(thread)),
                thread_id,
            }),
        })
    }

    /// The model's tokenizer (usable on any thread, also inside a sink), if it has one.
    pub fn tokenizer(&self) -> Option<&Arc<Tokenizer>> {
        self.inner.tokenizer.as_ref()
    }

    /// Why the engine thread stopped, once it has.
    pub fn stop_reason(&self) -> Option<String> {
        self.inner.shared.stop_reason()
    }

    /// Queues a request whose deltas go to `sink` (on the engine thread); its id. The
    /// engine's refusals (invalid parameters, a prompt that can never run) come back as
    /// [`ServingError::Engine`], and nothing is queued then.
    pub fn submit(
        &self,
        prompt: Prompt,
        params: SamplingParams,
        sink: impl OutputSink + 'static,
    ) -> Result<RequestId, ServingError> {
        self.call(|reply| Cmd::Submit {
            prompt,
            params: Box::new(params),
            sink: Box::new(sink),
            reply,
        })
    }

    /// Queues a request whose deltas are read from the returned stream.
    pub fn submit_stream(
        &self,
        prompt: Prompt,
        params: SamplingParams,
    ) -> Result<OutputStream, ServingError> {
        let (tx, rx) = channel();
        let id = self.submit(prompt, params, tx)?;
        Ok(OutputStream::new(id, rx))
    }

    /// Submits a request and blocks until every sequence of it finished; its deltas in
    /// arrival order (join `text` per `index` for whole texts; a failed sequence's last
    /// delta carries `error`). Other requests keep running meanwhile.
    pub fn generate(
        &self,
        prompt: Prompt,
        params: SamplingParams,
    ) -> Result<Vec<RequestOutput>, ServingError> {
        let mut left = params.n.max(1);
        let stream = self.submit_stream(prompt, params)?;
        let mut outs = Vec::new();
        for o in stream {
            left = left.saturating_sub(usize::from(o.finished));
            outs.push(o);
        }
        if left > 0 {
            return Err(self.stopped());
        }
        Ok(outs)
    }

    /// Aborts every sequence of request `id`: each gets its final output (finish reason
    /// Abort) before this returns. [`ServingError::UnknownRequest`] if it is unknown or
    /// already finished.
    pub fn abort(&self, id: RequestId) -> Result<(), ServingError> {
        self.call(|reply| Cmd::Abort { id, reply })
    }

    /// The engine's counters.
    pub fn stats(&self) -> Result<EngineStats, ServingError> {
        self.call(|reply| Cmd::Stats { reply })
    }

    /// Stops the engine thread now, for every clone: requests in flight are aborted (each
    /// sink gets its final output before this returns) and the thread is joined. Later calls
    /// fail with [`ServingError::Stopped`]. Refused on an engine thread.
    pub fn shutdown(&self) -> Result<(), ServingError> {
        if on_engine_thread() {
            return Err(ServingError::Reentrant);
        }
        self.inner.stop();
        Ok(())
    }

    /// Sends a command built around a fresh reply channel and waits for the answer.
    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, ServingError> {
        if on_engine_thread() {
            return Err(ServingError::Reentrant);
        }
        let (tx, rx) = sync_channel(1);
        if self.inner.tx.send(make(tx)).is_err() {
            return Err(self.stopped());
        }
        rx.recv().map_err(|_| self.stopped())?
    }

    fn stopped(&self) -> ServingError {
        ServingError::Stopped(
            self.stop_reason()
                .unwrap_or_else(|| "the engine thread has stopped".into()),
        )
    }
}

impl Inner {
    /// Asks the thread to stop and joins it, unless called on that very thread (the last
    /// handle dropped inside one of its sinks): then it stops after the current turn.
    fn stop(&self) {
        let _ = self.tx.send(Cmd::Shutdown);
        if std::thread::current().id() == self.thread_id {
            return;
        }
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
        self.shared.mark_stopped("the engine was shut down");
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop();
    }
}

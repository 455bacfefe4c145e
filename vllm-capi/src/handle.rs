//! [`VllmEngine`], the opaque handle C holds: the engine crate's serving handle (the engine
//! thread) plus the poll/wait queues of this engine's requests. What the exports share lives
//! here: submitting with a C callback or a queue, tokenizing a text prompt, taking queued
//! outputs, and the reentrancy check of calls that wait.

use crate::args::str_arg;
use crate::error::VllmStatus;
use crate::failure::{Failure, REENTRANT};
use crate::output::OwnedOutput;
use crate::queue::Queues;
use crate::sink::{CallbackSink, QueueSink};
use crate::types::VllmOutputCallback;
use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::Instant;
use vllm_engine::serving::{EngineHandle, on_engine_thread};
use vllm_engine::tokenizer::Tokenizer;
use vllm_engine::{Engine, EngineArgs, Prompt, SamplingParams};

/// An engine and its thread. Opaque to C.
pub struct VllmEngine {
    pub(crate) serving: EngineHandle,
    queues: Arc<Queues>,
}

impl std::fmt::Debug for VllmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VllmEngine").finish_non_exhaustive()
    }
}

/// REENTRANT when called on an engine thread (from an output callback).
pub(crate) fn not_reentrant() -> Result<(), Failure> {
    if on_engine_thread() {
        return Err(Failure::new(VllmStatus::Reentrant, REENTRANT));
    }
    Ok(())
}

impl VllmEngine {
    /// Loads the model (on the calling thread) and starts its engine thread.
    pub(crate) fn create(args: &EngineArgs) -> Result<Box<Self>, Failure> {
        let engine = Engine::new(args)?;
        Ok(Box::new(Self {
            serving: EngineHandle::start(engine)?,
            queues: Arc::default(),
        }))
    }

    pub(crate) fn tokenizer(&self) -> Result<&Tokenizer, Failure> {
        self.serving.tokenizer().map(|t| &**t).ok_or_else(|| {
            Failure::new(
                VllmStatus::Unsupported,
                "the model has no tokenizer (dummy weights without tokenizer files)",
            )
        })
    }

    /// The ids of a text prompt (BOS added as the model wants).
    ///
    /// # Safety
    /// `prompt` must be NULL or NUL-terminated.
    pub(crate) unsafe fn text_prompt(&self, prompt: *const c_char) -> Result<Vec<u32>, Failure> {
        // SAFETY: by the caller's contract.
        let text = unsafe { str_arg(prompt, "prompt") }?;
        self.tokenizer()?
            .encode(text, true)
            .map_err(|err| Failure::invalid(err.to_string()))
    }

    /// Submits `ids`: outputs to `callback` when given, else queued for poll/wait. The id.
    pub(crate) fn submit(
        &self,
        ids: Vec<u32>,
        params: SamplingParams,
        callback: VllmOutputCallback,
        user: *mut c_void,
    ) -> Result<u64, Failure> {
        let prompt = Prompt::Tokens(ids);
        if let Some(sink) = CallbackSink::new(callback, user) {
            return Ok(self.serving.submit(prompt, params, sink)?);
        }
        let id = self
            .serving
            .submit(prompt, params, QueueSink(self.queues.clone()))?;
        self.queues.open(id);
        Ok(id)
    }

    /// The next queued output of `id` (see [`Queues::next`]).
    pub(crate) fn next_output(
        &self,
        id: u64,
        deadline: Option<Instant>,
    ) -> Result<Option<Box<OwnedOutput>>, Failure> {
        self.queues
            .next(id, deadline, || self.serving.stop_reason())
    }
}

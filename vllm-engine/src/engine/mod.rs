//! The engine: requests in, streaming outputs out, one [`Engine::step`] at a time.
//!
//! A step reads schedule -> run -> process (`step.rs`): the scheduler picks work (continuous
//! batching, chunked prefill, preemption) and lays it out as a [`StepBatch`] (tokens,
//! positions, slots, block tables); the model runner computes logits for the rows that sample
//! (or draws their tokens on its device); the output processor samples the host rows with each
//! sequence's own generator, the scheduler records the tokens, and the output processor
//! detokenizes them and decides, in one call per token, whether the sequence ends (EOS, stop
//! token, length, stop string); the scheduler then frees it. Async scheduling wraps the run
//! (`pipeline.rs`): step N+1 is launched before step N is collected. A request with `n > 1`
//! runs as `n` sequences ([`SeqId`]s) of one request id. The scheduler holds the only request
//! table; the output processor holds each sequence's output state. Engine arguments are
//! checked once, before any weight is read (`validate.rs`). Cost per step: the runner's
//! forward plus O(batch) bookkeeping and O(vocab) sampling per host-sampled row.
//!
//! [`StepBatch`]: crate::runner::StepBatch

pub mod args;
mod build;
pub mod load;
pub mod output;
mod output_processor;
mod pipeline;
mod step;
pub mod validate;

pub use args::{EngineArgs, GenerationDefaults, KvCacheDType, LoadFormat, ModelDType};
pub use load::{LoadedModel, ModelFiles, load_model, load_model_with, open_model};
pub use output::{RequestMetrics, RequestOutput, TokenLogprobs};
pub use validate::{ArgsError, ValidEngineArgs};

use crate::chat::ChatMessage;
use crate::config::ModelConfig;
use crate::detokenizer::Decode;
use crate::device::Device;
use crate::kv_cache::KvCacheError;
use crate::loader::LoadError;
use crate::runner::{ModelRunner, RunnerError};
use crate::sampling::{SamplingParams, SamplingParamsError, ValidSamplingParams};
use crate::scheduler::{FinishReason, RequestId, ScheduleError, Scheduler, SeqId};
use crate::tokenizer::{ChatError, TokenizeError, Tokenizer};
use output_processor::{OutputProcessor, SeqOutput};
use std::sync::Arc;

/// Anything that stops an engine from being built or a request from being accepted.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("engine args: {0}")]
    Args(#[from] ArgsError),
    #[error("engine args: {0}")]
    BadArgs(String),
    #[error(transparent)]
    Kv(#[from] KvCacheError),
    #[error(transparent)]
    Params(#[from] SamplingParamsError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
    #[error(transparent)]
    Chat(#[from] ChatError),
    #[error("the model has no tokenizer; pass token ids or a tokenizer folder")]
    NoTokenizer,
    #[error("{what} is not supported yet")]
    Unsupported { what: &'static str },
    #[error("device {0}: not available in this build or on this machine")]
    Device(String),
    #[error(transparent)]
    Runner(#[from] RunnerError),
}

/// A prompt: text (tokenized with the model's tokenizer) or token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
}

impl From<&str> for Prompt {
    fn from(s: &str) -> Self {
        Prompt::Text(s.to_string())
    }
}

impl From<String> for Prompt {
    fn from(s: String) -> Self {
        Prompt::Text(s)
    }
}

impl From<Vec<u32>> for Prompt {
    fn from(t: Vec<u32>) -> Self {
        Prompt::Tokens(t)
    }
}

/// Engine state and counters, for stats endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    pub running: usize,
    pub waiting: usize,
    pub kv_blocks_total: usize,
    pub kv_blocks_used: usize,
    pub kv_blocks_free: usize,
    pub prefix_cache_hit_blocks: u64,
}

/// The streaming engine. Not thread-safe by itself: one owner calls `step` in a loop.
pub struct Engine {
    config: ModelConfig,
    tokenizer: Option<Arc<Tokenizer>>,
    /// The only request table: every sequence's tokens, parameters and blocks.
    scheduler: Scheduler,
    runner: Box<dyn ModelRunner>,
    /// Every sequence's output state (generator, detokenizer, logprobs, metrics).
    output: OutputProcessor,
    generation_defaults: GenerationDefaults,
    /// Launch the next step before collecting this one (async scheduling).
    async_scheduling: bool,
    /// The step launched and not yet collected.
    inflight: Option<pipeline::Launched>,
    /// Set when max_model_len was lowered to the KV cache's capacity (for the report).
    cache_note: Option<String>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("architecture", &self.config.architecture)
            .field("device", &self.runner.device())
            .field("sequences", &self.output.num_seqs())
            .finish()
    }
}

impl Engine {
    /// The start-up summary: the runner's (device, KV cache, graphs) and, when the KV cache
    /// holds fewer tokens than the model's context, the max_model_len it was lowered to.
    pub fn device_report(&self) -> Option<String> {
        let parts: Vec<String> = self
            .runner
            .report()
            .into_iter()
            .chain(self.cache_note.clone())
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// The runner's per-step timing (`VLLM_STEP_TIMING=1` on CUDA), if collected.
    pub fn step_timing(&self) -> Option<String> {
        self.runner.timing()
    }

    /// Device memory in use (bytes), where the runner can tell.
    pub fn device_memory_in_use(&self) -> Option<usize> {
        self.runner.memory_in_use()
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// vLLM's defaults with the model's `generation_config.json` sampling fields applied
    /// (temperature, top_p, top_k, min_p, repetition_penalty).
    pub fn default_sampling_params(&self) -> SamplingParams {
        let d = &self.generation_defaults;
        let base = SamplingParams::default();
        SamplingParams {
            temperature: d.temperature.unwrap_or(base.temperature),
            top_p: d.top_p.unwrap_or(base.top_p),
            top_k: d.top_k.unwrap_or(base.top_k),
            min_p: d.min_p.unwrap_or(base.min_p),
            repetition_penalty: d.repetition_penalty.unwrap_or(base.repetition_penalty),
            ..base
        }
    }

    pub fn tokenizer(&self) -> Option<&Arc<Tokenizer>> {
        self.tokenizer.as_ref()
    }

    pub fn device(&self) -> Device {
        self.runner.device()
    }

    /// End-of-sequence ids (config, generation config and tokenizer).
    pub fn eos_token_ids(&self) -> &[u32] {
        self.output.eos()
    }

    pub fn stats(&self) -> EngineStats {
        let b = self.scheduler.block_manager();
        EngineStats {
            running: self.scheduler.num_running(),
            waiting: self.scheduler.num_waiting(),
            kv_blocks_total: b.num_blocks(),
            kv_blocks_used: b.num_used_blocks(),
            kv_blocks_free: b.num_available_blocks(),
            prefix_cache_hit_blocks: b.stats().hit_blocks,
        }
    }

    /// The scheduler (block manager, limits), for inspection.
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// Tokens of `text` as a prompt (with the tokenizer's special tokens, e.g. BOS).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        let t = self.tokenizer.as_ref().ok_or(EngineError::NoTokenizer)?;
        Ok(t.encode(text, true)?)
    }

    /// Text of `ids`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, EngineError> {
        let t = self.tokenizer.as_ref().ok_or(EngineError::NoTokenizer)?;
        Ok(t.decode(ids, skip_special_tokens))
    }

    /// Prompt text for `messages` by the model's chat template, with the assistant turn opened.
    pub fn apply_chat_template(&self, messages: &[ChatMessage]) -> Result<String, EngineError> {
        let t = self.tokenizer.as_ref().ok_or(EngineError::NoTokenizer)?;
        Ok(t.apply_chat_template(messages)?)
    }

    /// Token ids of a chat (see [`Tokenizer::encode_chat`]).
    pub fn encode_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, EngineError> {
        let t = self.tokenizer.as_ref().ok_or(EngineError::NoTokenizer)?;
        Ok(t.encode_chat(messages)?)
    }

    /// Queues a request; returns its id. Invalid parameters or a prompt that can never run
    /// are refused here, and nothing else is affected.
    pub fn add_request(
        &mut self,
        prompt: Prompt,
        params: SamplingParams,
    ) -> Result<RequestId, EngineError> {
        let ids = match prompt {
            Prompt::Tokens(t) => t,
            Prompt::Text(s) => self.encode(&s)?,
        };
        let vocab = self.config.vocab_size;
        let valid = params.validate(vocab)?;
        if let Some(&bad) = ids.iter().find(|&&t| t as usize >= vocab) {
            return Err(EngineError::BadArgs(format!(
                "prompt token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        let (request_id, first_seq) = self.output.next_ids();
        let mut seqs = Vec::with_capacity(valid.n);
        for index in 0..valid.n {
            let seq_id = SeqId(first_seq + index as u64);
            let mut p: SamplingParams = (*valid).clone();
            // Each of the n sequences draws from its own generator.
            p.seed = p.seed.map(|s| s.wrapping_add(index as u64));
            p.n = 1;
            let seed = p.seed;
            let pv: ValidSamplingParams = p.validate(vocab)?;
            if let Err(e) = self.scheduler.add_request(seq_id, ids.clone(), pv) {
                for (s, _) in &seqs {
                    self.scheduler.abort(*s);
                }
                return Err(e.into());
            }
            let detokenize = self.output.detokenizes();
            let state = SeqOutput::new(request_id, index, seed, &ids, &valid, detokenize);
            seqs.push((seq_id, state));
        }
        self.output.insert(request_id, seqs);
        Ok(request_id)
    }

    /// Aborts every sequence of `request_id`; returns their final outputs, or `None` if the
    /// request is unknown or already finished.
    pub fn abort(&mut self, request_id: RequestId) -> Option<Vec<RequestOutput>> {
        let seq_ids = self.output.take_request(request_id)?;
        Some(
            seq_ids
                .into_iter()
                .filter_map(|s| self.end(s, FinishReason::Abort, None))
                .collect(),
        )
    }

    pub fn has_unfinished(&self) -> bool {
        self.scheduler.has_unfinished() || self.inflight.is_some()
    }
}

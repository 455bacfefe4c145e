//! The engine: requests in, streaming outputs out, one [`Engine::step`] at a time.
//!
//! A step: the scheduler picks work (continuous batching, chunked prefill, preemption); the
//! engine lays it out as a [`StepBatch`] (tokens, positions, slots, block tables); the model
//! runner computes logits for the rows that sample; the sampler draws each sequence's token
//! with its own generator; the scheduler records them and finishes sequences (EOS, stop
//! tokens, length); the detokenizer turns tokens into text deltas and finds stop strings. A
//! request with `n > 1` runs as `n` sequences sharing the request id. Nothing is global: each
//! stage owns its state. Cost per step: the runner's forward plus O(batch) bookkeeping and
//! O(vocab) sampling per sampled row.

pub mod args;
pub mod output;
mod step;

pub use args::{
    EngineArgs, GenerationDefaults, LoadFormat, LoadedModel, ModelDType, load_model,
    load_model_with,
};
pub use output::{RequestMetrics, RequestOutput, TokenLogprobs};
/// The KV cache element type of [`EngineArgs::kv_cache_dtype`].
pub use vllm_kernels::CacheDType;

use crate::chat::ChatMessage;
use crate::config::ModelConfig;
use crate::detokenizer::{Decode, OutputText};
use crate::device::Device;
use crate::kv_cache::{BlockManager, KvCacheError};
use crate::loader::LoadError;
use crate::runner::cpu::CpuRunner;
use crate::runner::{KvGeometry, ModelRunner, RunnerError};
use crate::sampling::{SamplerState, SamplingParams, SamplingParamsError, ValidSamplingParams};
use crate::scheduler::{FinishReason, RequestId, ScheduleError, Scheduler, SchedulerConfig};
use crate::tokenizer::{ChatError, TokenizeError, Tokenizer};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Anything that stops an engine from being built or a request from being accepted.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Load(#[from] LoadError),
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

/// One sequence the scheduler runs.
#[derive(Debug)]
struct Seq {
    request_id: RequestId,
    index: usize,
    sampler: SamplerState,
    text: Option<OutputText>,
    arrival: Instant,
    first_token: Option<Instant>,
    want_logprobs: bool,
    num_prompt_tokens: usize,
    num_output_tokens: usize,
    num_cached_tokens: usize,
    /// `prompt_logprobs` asked for: top-k per prompt token.
    prompt_logprobs: Option<usize>,
    /// Prompt logprobs computed but not yet returned.
    prompt_lp: Vec<TokenLogprobs>,
    /// The next prompt position whose logprob is due (position 0 has none).
    prompt_lp_next: usize,
}

/// The streaming engine. Not thread-safe by itself: one owner calls `step` in a loop.
pub struct Engine {
    config: ModelConfig,
    tokenizer: Option<Arc<Tokenizer>>,
    scheduler: Scheduler,
    runner: Box<dyn ModelRunner>,
    eos: Vec<u32>,
    /// Scheduler sequence id -> its state.
    seqs: HashMap<RequestId, Seq>,
    /// Request id -> its sequence ids.
    requests: HashMap<RequestId, Vec<RequestId>>,
    next_request: RequestId,
    next_seq: RequestId,
    generation_defaults: GenerationDefaults,
    /// Launch the next step before collecting this one (async scheduling).
    async_scheduling: bool,
    /// The step launched and not yet collected.
    inflight: Option<step::Launched>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("architecture", &self.config.architecture)
            .field("device", &self.runner.device())
            .field("sequences", &self.seqs.len())
            .finish()
    }
}

impl Engine {
    /// Loads the model named by `args` and builds the engine on the chosen device
    /// (`args.device`, the CPU when unset).
    pub fn new(args: &EngineArgs) -> Result<Self, EngineError> {
        match args.device.unwrap_or(Device::Cpu) {
            Device::Cpu if args.kv_cache_dtype != vllm_kernels::CacheDType::Auto => {
                Err(EngineError::BadArgs(format!(
                    "kv_cache_dtype {} needs the CUDA backend; the CPU keeps its cache in f32",
                    args.kv_cache_dtype
                )))
            }
            Device::Cpu => Self::from_loaded(load_model(args)?, args),
            Device::Cuda { ordinal } => Self::new_cuda(args, ordinal),
        }
    }

    #[cfg(not(feature = "cuda"))]
    fn new_cuda(_args: &EngineArgs, ordinal: usize) -> Result<Self, EngineError> {
        Err(EngineError::Device(format!(
            "cuda:{ordinal} (this build has no CUDA backend: build with --features cuda)"
        )))
    }

    #[cfg(feature = "cuda")]
    fn new_cuda(args: &EngineArgs, ordinal: usize) -> Result<Self, EngineError> {
        use half::{bf16, f16};
        use vllm_kernels::{CacheDType, Fp8E4m3};
        match (args.dtype, args.kv_cache_dtype) {
            (ModelDType::Auto | ModelDType::BF16, CacheDType::Auto) => {
                Self::build_cuda::<bf16, bf16>(args, ordinal)
            }
            (ModelDType::Auto | ModelDType::BF16, CacheDType::Fp8E4m3) => {
                Self::build_cuda::<bf16, Fp8E4m3>(args, ordinal)
            }
            (ModelDType::F16, CacheDType::Auto) => Self::build_cuda::<f16, f16>(args, ordinal),
            (ModelDType::F16, CacheDType::Fp8E4m3) => {
                Self::build_cuda::<f16, Fp8E4m3>(args, ordinal)
            }
        }
    }

    #[cfg(feature = "cuda")]
    fn build_cuda<T: crate::runner::cuda::RunnerFloat, C: crate::runner::cuda::RunnerCache<T>>(
        args: &EngineArgs,
        ordinal: usize,
    ) -> Result<Self, EngineError> {
        use crate::runner::cuda::{CudaOptions, CudaRunner, uploader};
        check_block_size(args.block_size)?;
        let (ctx, stream) = CudaRunner::<T>::open(ordinal)?;
        let loaded = load_model_with(args, &mut uploader::<T>(stream.clone()))?;
        let max_model_len = resolve_max_model_len(args, &loaded.config)?;
        let opts = CudaOptions {
            ordinal,
            block_size: args.block_size,
            max_model_len,
            max_num_seqs: args.max_num_seqs,
            max_num_batched_tokens: args.max_num_batched_tokens,
            gpu_memory_utilization: args.gpu_memory_utilization,
            num_kv_blocks: args.num_kv_blocks,
            enforce_eager: args.enforce_eager,
        };
        let runner =
            CudaRunner::<T, C>::new(loaded.config.clone(), loaded.weights, ctx, stream, &opts)?;
        Self::from_parts(
            loaded.config,
            loaded.tokenizer,
            loaded.generation_defaults,
            Box::new(runner),
            args,
            max_model_len,
        )
    }

    /// Builds an engine around an already-loaded model (CPU backend).
    pub fn from_loaded(loaded: LoadedModel, args: &EngineArgs) -> Result<Self, EngineError> {
        let LoadedModel {
            config,
            weights,
            tokenizer,
            generation_defaults,
        } = loaded;
        check_block_size(args.block_size)?;
        let max_model_len = resolve_max_model_len(args, &config)?;
        let block_bytes = CpuRunner::block_bytes(&config, args.block_size);
        let num_blocks = match args.num_kv_blocks {
            Some(n) => n,
            None => {
                // Enough for max_num_seqs full-length sequences, within the memory budget.
                let want = args.max_num_seqs * max_model_len.div_ceil(args.block_size);
                want.min(args.kv_cache_memory_bytes / block_bytes).max(1)
            }
        };
        let kv = KvGeometry {
            num_blocks,
            block_size: args.block_size,
        };
        let runner = Box::new(CpuRunner::new(config.clone(), weights, kv));
        Self::from_parts(
            config,
            tokenizer,
            generation_defaults,
            runner,
            args,
            max_model_len,
        )
    }

    /// An engine around a runner built elsewhere (another backend, or a stand-in that
    /// measures the engine's own cost): the runner's KV geometry sizes the block manager;
    /// no tokenizer, so requests are token ids.
    pub fn with_runner(
        config: ModelConfig,
        runner: Box<dyn ModelRunner>,
        args: &EngineArgs,
    ) -> Result<Self, EngineError> {
        check_block_size(args.block_size)?;
        let max_model_len = resolve_max_model_len(args, &config)?;
        Self::from_parts(
            config,
            None,
            GenerationDefaults::default(),
            runner,
            args,
            max_model_len,
        )
    }

    /// The engine around a built runner (its KV geometry sizes the block manager).
    fn from_parts(
        config: ModelConfig,
        tokenizer: Option<Tokenizer>,
        generation_defaults: GenerationDefaults,
        runner: Box<dyn ModelRunner>,
        args: &EngineArgs,
        max_model_len: usize,
    ) -> Result<Self, EngineError> {
        let kv = runner.kv_geometry();
        let blocks = BlockManager::new(kv.num_blocks, kv.block_size, args.enable_prefix_caching)?;
        let scheduler = Scheduler::new(
            SchedulerConfig {
                max_num_batched_tokens: args.max_num_batched_tokens,
                max_num_seqs: args.max_num_seqs,
                max_model_len,
                chunked_prefill: args.enable_chunked_prefill,
            },
            blocks,
        )?;
        let mut eos = config.eos_token_ids.clone();
        if let Some(t) = &tokenizer {
            for &e in &t.eos_token_ids {
                if !eos.contains(&e) {
                    eos.push(e);
                }
            }
        }
        Ok(Self {
            config,
            tokenizer: tokenizer.map(Arc::new),
            scheduler,
            runner,
            eos,
            seqs: HashMap::new(),
            requests: HashMap::new(),
            next_request: 0,
            next_seq: 0,
            generation_defaults,
            async_scheduling: args.async_scheduling,
            inflight: None,
        })
    }

    /// The runner's start-up summary (device, KV cache, graphs), if it has one.
    pub fn device_report(&self) -> Option<String> {
        self.runner.report()
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
        &self.eos
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
        let request_id = self.next_request;
        let n = valid.n;
        let mut seq_ids = Vec::with_capacity(n);
        for index in 0..n {
            let seq_id = self.next_seq + index as u64;
            let mut p: SamplingParams = (*valid).clone();
            // Each of the n sequences draws from its own generator.
            p.seed = p.seed.map(|s| s.wrapping_add(index as u64));
            p.n = 1;
            let seed = p.seed;
            let pv: ValidSamplingParams = p.validate(vocab)?;
            if let Err(e) = self.scheduler.add_request(seq_id, ids.clone(), pv) {
                for &s in &seq_ids {
                    self.scheduler.abort(s);
                    self.seqs.remove(&s);
                }
                return Err(e.into());
            }
            let text = self.tokenizer.as_ref().map(|_| {
                OutputText::new(
                    &ids,
                    &valid.stop,
                    valid.include_stop_str_in_output,
                    valid.skip_special_tokens,
                )
            });
            self.seqs.insert(
                seq_id,
                Seq {
                    request_id,
                    index,
                    sampler: SamplerState::new(seed),
                    text,
                    arrival: Instant::now(),
                    first_token: None,
                    want_logprobs: valid.logprobs.is_some(),
                    num_prompt_tokens: ids.len(),
                    num_output_tokens: 0,
                    num_cached_tokens: 0,
                    prompt_logprobs: valid.prompt_logprobs,
                    prompt_lp: Vec::new(),
                    prompt_lp_next: 1,
                },
            );
            seq_ids.push(seq_id);
        }
        self.next_seq += n as u64;
        self.next_request += 1;
        self.requests.insert(request_id, seq_ids);
        Ok(request_id)
    }

    /// Aborts every sequence of `request_id`; returns their final outputs, or `None` if the
    /// request is unknown or already finished.
    pub fn abort(&mut self, request_id: RequestId) -> Option<Vec<RequestOutput>> {
        let seq_ids = self.requests.remove(&request_id)?;
        let mut out = Vec::new();
        for s in seq_ids {
            if let Some(f) = self.scheduler.abort(s)
                && let Some(seq) = self.seqs.remove(&s)
            {
                out.push(final_output(&seq, FinishReason::Abort, f.preemptions, None));
            }
        }
        Some(out)
    }

    pub fn has_unfinished(&self) -> bool {
        self.scheduler.has_unfinished() || self.inflight.is_some()
    }

    /// Drops a finished sequence's state and its request once all its sequences are done.
    fn retire(&mut self, seq_id: RequestId) {
        if let Some(seq) = self.seqs.remove(&seq_id)
            && let Some(list) = self.requests.get_mut(&seq.request_id)
        {
            list.retain(|&s| s != seq_id);
            if list.is_empty() {
                self.requests.remove(&seq.request_id);
            }
        }
    }

    /// A failed forward: the step's sequences end with an error; the rest keep running.
    fn fail_step(
        &mut self,
        plan: &crate::scheduler::SchedulerOutput,
        msg: &str,
    ) -> Vec<RequestOutput> {
        let mut out = Vec::new();
        for s in &plan.scheduled {
            if let Some(f) = self.scheduler.finish(s.id, FinishReason::Error)
                && let Some(seq) = self.seqs.get(&s.id)
            {
                out.push(final_output(
                    seq,
                    FinishReason::Error,
                    f.preemptions,
                    Some(msg),
                ));
                self.retire(s.id);
            }
        }
        out
    }
}

fn check_block_size(block_size: usize) -> Result<(), EngineError> {
    if block_size == 0 || !block_size.is_power_of_two() || block_size > 256 {
        return Err(EngineError::BadArgs(format!(
            "block_size must be a power of two in 1..=256, got {block_size}"
        )));
    }
    Ok(())
}

fn resolve_max_model_len(args: &EngineArgs, config: &ModelConfig) -> Result<usize, EngineError> {
    let max_model_len = args.max_model_len.unwrap_or(config.max_position_embeddings);
    if max_model_len == 0 || max_model_len > config.max_position_embeddings {
        return Err(EngineError::BadArgs(format!(
            "max_model_len must be in 1..={} (the model's max_position_embeddings), got {max_model_len}",
            config.max_position_embeddings
        )));
    }
    Ok(max_model_len)
}

fn metrics_of(seq: &Seq, preemptions: u32, now: Instant) -> RequestMetrics {
    RequestMetrics {
        num_prompt_tokens: seq.num_prompt_tokens,
        num_output_tokens: seq.num_output_tokens,
        num_cached_tokens: seq.num_cached_tokens,
        preemptions,
        time_to_first_token: seq.first_token.map(|t| t - seq.arrival),
        elapsed: now - seq.arrival,
    }
}

fn final_output(
    seq: &Seq,
    reason: FinishReason,
    preemptions: u32,
    error: Option<&str>,
) -> RequestOutput {
    RequestOutput {
        request_id: seq.request_id,
        index: seq.index,
        text: String::new(),
        token_ids: Vec::new(),
        logprobs: seq.want_logprobs.then(Vec::new),
        prompt_logprobs: None,
        finished: true,
        finish_reason: Some(reason),
        stop_reason: None,
        error: error.map(str::to_string),
        metrics: metrics_of(seq, preemptions, Instant::now()),
    }
}

//! The C structs and enums of the API (see include/vllm.h for each field's contract).

use std::ffi::{c_char, c_void};

/// Why a sequence finished.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VllmFinishReason {
    /// Not finished.
    None = 0,
    /// An EOS token, a stop token or a stop string.
    Stop = 1,
    /// max_tokens or max_model_len reached.
    Length = 2,
    /// Aborted (vllm_abort, or the engine was destroyed).
    Abort = 3,
    /// The step computing it failed; `error` says why.
    Error = 4,
}

/// How model weights are read.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VllmLoadFormat {
    /// A .gguf file as GGUF, a folder as safetensors.
    Auto = 0,
    Safetensors = 1,
    Gguf = 2,
    /// Random weights from config.json alone (benchmarks).
    Dummy = 3,
}

/// Where the model runs.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VllmDevice {
    /// The GPU when the library was built with CUDA and one is present (bf16, CUDA graphs, 90%
    /// of its memory), else the CPU.
    Auto = 0,
    Cpu = 1,
    Cuda = 2,
}

/// Weights and activations on the GPU.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VllmDtype {
    /// bfloat16.
    Auto = 0,
    Bfloat16 = 1,
    Float16 = 2,
}

/// KV cache elements on the GPU.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VllmKvCacheDtype {
    /// The model's dtype.
    Auto = 0,
    /// FP8 E4M3 with per-tensor scales of 1.0 (half the bytes per token).
    Fp8E4m3 = 1,
}

/// Engine configuration; fill with `vllm_engine_default_params` first.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VllmEngineParams {
    /// A folder with tokenizer.json to use instead of the model's tokenizer; NULL: the model's.
    pub tokenizer_path: *const c_char,
    /// A `VllmLoadFormat` value (an integer, so a bad value is an error, not undefined).
    pub load_format: u32,
    /// A `VllmDevice` value.
    pub device: u32,
    /// Prompt + output tokens per request; 0: the model's max_position_embeddings.
    pub max_model_len: u32,
    pub max_num_seqs: u32,
    pub max_num_batched_tokens: u32,
    /// KV block size in tokens (a power of two, 1..=256).
    pub block_size: u32,
    /// KV cache size in blocks; 0: from kv_cache_memory_bytes.
    pub num_kv_blocks: u64,
    pub kv_cache_memory_bytes: u64,
    pub enable_prefix_caching: bool,
    pub enable_chunked_prefill: bool,
    /// Seed of dummy weights.
    pub seed: u64,
    /// A `VllmDtype` value (CUDA).
    pub dtype: u32,
    /// A `VllmKvCacheDtype` value (CUDA; the CPU keeps its cache in f32).
    pub kv_cache_dtype: u32,
    /// Fraction of the GPU's memory for weights, activations and the KV cache, in (0, 1].
    pub gpu_memory_utilization: f32,
    /// Decode eagerly, without CUDA graphs.
    pub enforce_eager: bool,
    /// Plan and launch the next step while the GPU computes this one (vLLM's
    /// `--async-scheduling`; on in `vllm_engine_default_params`, as in vLLM); steps needing
    /// logits on the host still run one at a time. Same outputs either way.
    pub async_scheduling: bool,
}

/// Sampling parameters of one request (vLLM's); fill with `vllm_sampling_default_params`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VllmSamplingParams {
    /// Sequences to generate for the prompt (>= 1).
    pub n: u32,
    /// 0 means greedy.
    pub temperature: f32,
    pub top_p: f32,
    /// -1 or 0 disables.
    pub top_k: i32,
    pub min_p: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub repetition_penalty: f32,
    /// Whether `seed` is used (else a random seed).
    pub use_seed: bool,
    pub seed: u64,
    /// `num_stop` NUL-terminated UTF-8 stop strings (copied at submission).
    pub stop: *const *const c_char,
    pub num_stop: usize,
    pub stop_token_ids: *const u32,
    pub num_stop_token_ids: usize,
    pub include_stop_str_in_output: bool,
    pub ignore_eos: bool,
    /// Output tokens at most; 0: up to max_model_len.
    pub max_tokens: u32,
    pub min_tokens: u32,
    /// Top-k alternatives per output token (0..=20); -1: no logprobs.
    pub logprobs: i32,
    /// Top-k alternatives per prompt token (0..=20); -1: none.
    pub prompt_logprobs: i32,
    /// `num_logit_bias` token ids and the values added to their logits.
    pub logit_bias_token_ids: *const u32,
    pub logit_bias_values: *const f32,
    pub num_logit_bias: usize,
    pub skip_special_tokens: bool,
}

/// One chat message (role "system", "user", "assistant", ...), UTF-8.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VllmChatMessage {
    pub role: *const c_char,
    pub content: *const c_char,
}

/// A token and its log-probability.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VllmTopLogprob {
    pub token: u32,
    pub logprob: f32,
}

/// A chosen (or prompt) token, its log-probability and the top alternatives.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VllmLogprob {
    pub token: u32,
    pub logprob: f32,
    pub top: *const VllmTopLogprob,
    pub num_top: usize,
}

/// One streaming delta of one sequence. Owned by the library: valid during the callback, or
/// until `vllm_output_free` for outputs from `vllm_poll` / `vllm_wait`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VllmOutput {
    pub request_id: u64,
    /// Which of the request's `n` sequences.
    pub index: u32,
    /// New UTF-8 text, NUL-terminated (`text_len` bytes before the NUL); never NULL. A
    /// generated U+0000 is given as U+FFFD, so the text never holds an inner NUL.
    pub text: *const c_char,
    pub text_len: usize,
    /// New token ids.
    pub token_ids: *const u32,
    pub num_tokens: usize,
    /// One per new token when the request asked for logprobs, else NULL / 0.
    pub logprobs: *const VllmLogprob,
    pub num_logprobs: usize,
    /// With prompt_logprobs, in the first output: entry i scores prompt token i + 1.
    pub prompt_logprobs: *const VllmLogprob,
    pub num_prompt_logprobs: usize,
    /// This sequence ended (a request with `n` sequences is done after `n` finished outputs).
    pub finished: bool,
    pub finish_reason: VllmFinishReason,
    /// The stop string or "token N" that ended the sequence; NULL otherwise.
    pub stop_reason: *const c_char,
    /// Why the sequence failed (finish_reason ERROR); NULL otherwise.
    pub error: *const c_char,
    pub num_prompt_tokens: u32,
    pub num_output_tokens: u32,
    pub num_cached_tokens: u32,
    /// Arrival to first token in milliseconds; -1 before the first token.
    pub time_to_first_token_ms: f64,
}

/// Engine counters.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct VllmStats {
    pub running: u64,
    pub waiting: u64,
    pub kv_blocks_total: u64,
    pub kv_blocks_used: u64,
    pub kv_blocks_free: u64,
    pub prefix_cache_hit_blocks: u64,
}

/// Called on the engine's thread with each output delta of a request submitted with it.
/// `output` is valid only during the call. Must return quickly and must not unwind. From a
/// callback, only calls that do not wait for an engine thread are allowed (vllm_tokenize,
/// vllm_detokenize, vllm_poll, vllm_last_error, vllm_status_str, vllm_version); the others
/// (submit, abort, stats, generate, vllm_wait with a timeout, destroy) return
/// VLLM_STATUS_REENTRANT, for any engine, because they would deadlock.
pub type VllmOutputCallback =
    Option<unsafe extern "C" fn(output: *const VllmOutput, user_data: *mut c_void)>;

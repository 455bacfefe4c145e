//! What the engine returns: per-step deltas for streaming and whole outputs, with metrics.

use crate::sampling::TokenLogprob;
use crate::scheduler::{FinishReason, RequestId};
use std::time::Duration;

/// One generated token's log-probability and the top alternatives, when asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    pub token: u32,
    pub logprob: f32,
    pub top: Vec<TokenLogprob>,
}

/// Timings and counts of one sequence.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RequestMetrics {
    pub num_prompt_tokens: usize,
    pub num_output_tokens: usize,
    /// Prompt tokens served from the prefix cache (last admission).
    pub num_cached_tokens: usize,
    pub preemptions: u32,
    /// Arrival to first output token.
    pub time_to_first_token: Option<Duration>,
    /// Arrival to now (or to the finish).
    pub elapsed: Duration,
}

/// What one engine step produced for one sequence (a streaming delta), or, from
/// [`crate::LLM::generate`], a whole output.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestOutput {
    /// The id the caller's request got.
    pub request_id: RequestId,
    /// Which of the request's `n` sequences.
    pub index: usize,
    /// New text (empty while a possible stop string is held back).
    pub text: String,
    /// New token ids.
    pub token_ids: Vec<u32>,
    /// Per new token, when the request asked for logprobs.
    pub logprobs: Option<Vec<TokenLogprobs>>,
    /// With `prompt_logprobs`: entry i scores prompt token i + 1 (the first prompt token has
    /// none), delivered with the sequence's first output.
    pub prompt_logprobs: Option<Vec<TokenLogprobs>>,
    pub finished: bool,
    pub finish_reason: Option<FinishReason>,
    /// The stop string or stop token that ended the sequence.
    pub stop_reason: Option<String>,
    /// Why the sequence failed, with `FinishReason::Error`.
    pub error: Option<String>,
    pub metrics: RequestMetrics,
}

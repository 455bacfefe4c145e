//! When a sequence ends: the one rule, [`check_stop`], applied to each newly recorded token.
//!
//! In order: a stop token (an EOS id unless `ignore_eos`, or one of `stop_token_ids`) once
//! more than `min_tokens` output tokens exist (the sampler masks stop tokens before that) ends
//! it as [`FinishReason::Stop`]; else `max_tokens` output tokens or `max_model_len` tokens in
//! all end it as [`FinishReason::Length`]; else a stop string the detokenizer completed with
//! this token ends it as [`FinishReason::Stop`]. The stop reason reported is the stop string
//! when one was completed (whatever the finish reason), else `token <id>` for a stop token.
//! Aborts and failed steps are decided by their caller and end the sequence the same way
//! ([`crate::scheduler::Scheduler::finish`]). Cost: O(eos ids + stop token ids) per token.

use super::Request;

/// Why a request stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An EOS token or one of `stop_token_ids` was generated.
    Stop,
    /// `max_tokens` output tokens, or the model's maximum length, reached.
    Length,
    /// Aborted by the caller.
    Abort,
    /// The step computing it failed (the engine reports why).
    Error,
}

impl FinishReason {
    /// vLLM's spelling: "stop", "length", "abort", "error".
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::Abort => "abort",
            Self::Error => "error",
        }
    }
}

/// A sequence's end, decided by [`check_stop`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    pub reason: FinishReason,
    /// The stop string or stop token (`token <id>`) that ended it, if one did.
    pub stop_reason: Option<String>,
}

/// Whether `r`'s latest output token ends it (see the module doc for the order);
/// `stop_string` is the stop string the detokenizer completed with that token, if any.
pub fn check_stop(
    r: &Request,
    max_model_len: usize,
    eos_token_ids: &[u32],
    stop_string: Option<&str>,
) -> Option<Finish> {
    let &tok = r.output.last()?;
    let p = &r.params;
    let stop_ok = r.output.len() > p.min_tokens;
    let is_eos = !p.ignore_eos && eos_token_ids.contains(&tok);
    let reason = if stop_ok && (is_eos || p.stop_token_ids.contains(&tok)) {
        FinishReason::Stop
    } else if length_reached(r, max_model_len) {
        FinishReason::Length
    } else if stop_string.is_some() {
        FinishReason::Stop
    } else {
        return None;
    };
    let stop_reason = match stop_string {
        Some(s) => Some(s.to_string()),
        None if reason == FinishReason::Stop => Some(format!("token {tok}")),
        None => None,
    };
    Some(Finish {
        reason,
        stop_reason,
    })
}

/// `max_tokens` output tokens or `max_model_len` tokens in all.
pub fn length_reached(r: &Request, max_model_len: usize) -> bool {
    r.params.max_tokens.is_some_and(|m| r.output.len() >= m) || r.num_tokens() >= max_model_len
}

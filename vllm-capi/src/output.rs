//! Outputs handed to C: an engine [`RequestOutput`] copied into one heap block that owns
//! every buffer its [`VllmOutput`] points into. The block's first field is the `VllmOutput`,
//! so the pointer given to C is the block's address and `vllm_output_free` gets it back.

use crate::types::{VllmFinishReason, VllmLogprob, VllmOutput, VllmTopLogprob};
use std::ffi::{CString, c_char};
use vllm_engine::RequestOutput;
use vllm_engine::engine::TokenLogprobs;
use vllm_engine::scheduler::FinishReason;

/// A `VllmOutput` with the storage it points into. Heap buffers do not move when the box
/// does, so the pointers stay valid for the box's life.
#[repr(C)]
pub(crate) struct OwnedOutput {
    pub c: VllmOutput,
    text: Vec<u8>,
    tokens: Vec<u32>,
    logprobs: Vec<VllmLogprob>,
    prompt_logprobs: Vec<VllmLogprob>,
    tops: Vec<Vec<VllmTopLogprob>>,
    stop: Option<CString>,
    error: Option<CString>,
}

// SAFETY: every raw pointer in `c` points into buffers owned by this same value, which is
// moved between threads as a whole and never shared while mutable.
unsafe impl Send for OwnedOutput {}

fn reason(r: Option<FinishReason>) -> VllmFinishReason {
    match r {
        None => VllmFinishReason::None,
        Some(FinishReason::Stop) => VllmFinishReason::Stop,
        Some(FinishReason::Length) => VllmFinishReason::Length,
        Some(FinishReason::Abort) => VllmFinishReason::Abort,
        Some(FinishReason::Error) => VllmFinishReason::Error,
    }
}

/// A C string of `s` with interior NULs replaced (C strings cannot hold them).
fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "\u{FFFD}")).unwrap_or_default()
}

fn c_logprobs(src: &[TokenLogprobs], tops: &mut Vec<Vec<VllmTopLogprob>>) -> Vec<VllmLogprob> {
    src.iter()
        .map(|l| {
            let top: Vec<VllmTopLogprob> = l
                .top
                .iter()
                .map(|t| VllmTopLogprob {
                    token: t.token,
                    logprob: t.logprob,
                })
                .collect();
            let out = VllmLogprob {
                token: l.token,
                logprob: l.logprob,
                top: if top.is_empty() {
                    std::ptr::null()
                } else {
                    top.as_ptr()
                },
                num_top: top.len(),
            };
            tops.push(top);
            out
        })
        .collect()
}

fn ptr_or_null<T>(v: &[T]) -> *const T {
    if v.is_empty() {
        std::ptr::null()
    } else {
        v.as_ptr()
    }
}

impl OwnedOutput {
    pub(crate) fn new(o: &RequestOutput) -> Box<Self> {
        // C strings end at the first NUL: a generated U+0000 becomes U+FFFD (documented).
        let mut text = o.text.replace('\0', "\u{FFFD}").into_bytes();
        let text_len = text.len();
        text.push(0);
        let mut tops = Vec::new();
        let logprobs = o
            .logprobs
            .as_deref()
            .map(|l| c_logprobs(l, &mut tops))
            .unwrap_or_default();
        let prompt_logprobs = o
            .prompt_logprobs
            .as_deref()
            .map(|l| c_logprobs(l, &mut tops))
            .unwrap_or_default();
        let stop = o.stop_reason.as_deref().map(c_string);
        let error = o.error.as_deref().map(c_string);
        let tokens = o.token_ids.clone();
        let m = &o.metrics;
        let c = VllmOutput {
            request_id: o.request_id,
            index: o.index as u32,
            text: text.as_ptr().cast::<c_char>(),
            text_len,
            token_ids: ptr_or_null(&tokens),
            num_tokens: tokens.len(),
            logprobs: ptr_or_null(&logprobs),
            num_logprobs: logprobs.len(),
            prompt_logprobs: ptr_or_null(&prompt_logprobs),
            num_prompt_logprobs: prompt_logprobs.len(),
            finished: o.finished,
            finish_reason: reason(o.finish_reason),
            stop_reason: stop.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            error: error.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            num_prompt_tokens: m.num_prompt_tokens as u32,
            num_output_tokens: m.num_output_tokens as u32,
            num_cached_tokens: m.num_cached_tokens as u32,
            time_to_first_token_ms: m
                .time_to_first_token
                .map_or(-1.0, |d| d.as_secs_f64() * 1e3),
        };
        Box::new(Self {
            c,
            text,
            tokens,
            logprobs,
            prompt_logprobs,
            tops,
            stop,
            error,
        })
    }
}

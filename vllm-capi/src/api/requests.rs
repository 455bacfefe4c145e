//! Requests: submit (text, token ids, chat), take queued outputs (poll, wait), abort,
//! generate a whole text, and free what the library returned. Cost per call: one command to
//! the engine thread (submit, abort, generate) or one queue lookup (poll, wait).

use crate::args::{Out, slice_arg, try_ref};
use crate::boundary::guarded;
use crate::error::VllmStatus;
use crate::failure::Failure;
use crate::handle::{VllmEngine, not_reentrant};
use crate::output::OwnedOutput;
use crate::params;
use crate::types::{VllmChatMessage, VllmOutput, VllmOutputCallback, VllmSamplingParams};
use std::ffi::{CString, c_char, c_void};
use std::time::{Duration, Instant};
use vllm_engine::Prompt;

/// The body every submit shares: the engine handle, the prompt's ids from `ids`, the
/// out-pointer and parameter checks, then the submission.
///
/// # Safety
/// `engine` NULL or a live handle; `params` NULL or valid; `out_id` NULL or writable.
unsafe fn submit(
    engine: *const VllmEngine,
    ids: impl FnOnce(&VllmEngine) -> Result<Vec<u32>, Failure>,
    params: *const VllmSamplingParams,
    callback: VllmOutputCallback,
    user: *mut c_void,
    out_id: *mut u64,
) -> Result<(), Failure> {
    // SAFETY: by the caller's contract.
    let e = unsafe { try_ref(engine, "engine") }?;
    let ids = ids(e)?;
    // SAFETY: NULL or writable by the caller's contract.
    let out = unsafe { Out::new(out_id, "out_request_id") }?;
    // SAFETY: NULL or valid by the caller's contract.
    let params = unsafe { params::sampling_params(params) }?;
    out.write(e.submit(ids, params, callback, user)?);
    Ok(())
}

/// Submits a text prompt (tokenized with the model's tokenizer, BOS added as the model
/// wants). `params` may be NULL for the defaults. With a callback, every output delta of the
/// request is passed to `callback(output, user_data)` on the engine thread; with NULL, outputs
/// queue for `vllm_poll` / `vllm_wait` and are held by the engine until taken (or until
/// `vllm_engine_destroy`): take them to the last one, also after `vllm_abort`. On success `*out_request_id` is the request's id.
/// Errors: INVALID_ARGUMENT (NULL pointers, invalid UTF-8, out-of-range sampling values: the
/// message names the field, limit and value), REJECTED (prompt longer than max_model_len or
/// the KV cache), ENGINE_STOPPED, REENTRANT. Nothing is queued on failure. Thread-safe: any
/// number of threads may submit at once.
///
/// # Safety
/// `engine` a live handle; `prompt` NULL or NUL-terminated; `params` NULL or valid;
/// `out_request_id` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vllm_submit_text(
    engine: *const VllmEngine,
    prompt: *const c_char,
    params: *const VllmSamplingParams,
    callback: VllmOutputCallback,
    user_data: *mut c_void,
    out_request_id: *mut u64,
) -> VllmStatus {
    // SAFETY: `prompt` NULL or NUL-terminated by the caller's contract.
    let ids = |e: &VllmEngine| unsafe { e.text_prompt(prompt) };
    // SAFETY: by the caller's contract.
    guarded(|| unsafe { submit(engine, ids, params, callback, user_data, out_request_id) })
}

/// As `vllm_submit_text` with `num_tokens` token ids (copied) as the prompt.
///
/// # Safety
/// `tokens` NULL or `num_tokens` readable ids; the rest as `vllm_submit_text`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vllm_submit_tokens(
    engine: *const VllmEngine,
    tokens: *const u32,
    num_tokens: usize,
    params: *const VllmSamplingParams,
    callback: VllmOutputCallback,
    user_data: *mut c_void,
    out_request_id: *mut u64,
) -> VllmStatus {
    let ids = |_: &VllmEngine| {
        if tokens.is_null() {
            return Err(Failure::invalid("tokens is NULL"));
        }
        // SAFETY: `num_tokens` readable ids by the caller's contract.
        Ok(unsafe { slice_arg(tokens, num_tokens, "tokens") }?.to_vec())
    };
    // SAFETY: by the caller's contract.
    guarded(|| unsafe { submit(engine, ids, params, callback, user_data, out_request_id) })
}

/// As `vllm_submit_text` with `num_messages` chat messages rendered by the model's chat
/// template (assistant turn opened). INVALID_ARGUMENT if the model has no template.
///
/// # Safety
/// `messages` NULL or `num_messages` messages with NUL-terminated strings; the rest as
/// `vllm_submit_text`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vllm_submit_chat(
    engine: *const VllmEngine,
    messages: *const VllmChatMessage,
    num_messages: usize,
    params: *const VllmSamplingParams,
    callback: VllmOutputCallback,
    user_data: *mut c_void,
    out_request_id: *mut u64,
) -> VllmStatus {
    let ids = |e: &VllmEngine| {
        // SAFETY: `num_messages` messages with NUL-terminated strings by the caller's contract.
        let msgs = unsafe { params::chat_messages(messages, num_messages) }?;
        e.tokenizer()?
            .encode_chat(&msgs)
            .map_err(|err| Failure::invalid(err.to_string()))
    };
    // SAFETY: by the caller's contract.
    guarded(|| unsafe { submit(engine, ids, params, callback, user_data, out_request_id) })
}

/// Takes the next queued output of a request submitted without a callback, without
/// waiting: `*out` is the output (free it with `vllm_output_free`), or NULL when none is
/// ready yet. After the request's last output (finished, for every sequence) has been taken,
/// the id is forgotten: NOT_FOUND. Errors: INVALID_ARGUMENT, NOT_FOUND (unknown id, a
/// callback request, or all outputs taken), ENGINE_STOPPED. Thread-safe; one consumer per
/// request is expected.
///
/// # Safety
/// `engine` a live handle; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vllm_poll(
    engine: *const VllmEngine,
    request_id: u64,
    out: *mut *mut VllmOutput,
) -> VllmStatus {
    // SAFETY: same contract.
    unsafe { vllm_wait(engine, request_id, 0, out) }
}

/// As `vllm_poll`, waiting up to `timeout_ms` milliseconds (negative: forever) for an
/// output. TIMEOUT (with `*out` NULL) when none arrived in time.
///
/// # Safety
/// As `vllm_poll`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vllm_wait(
    engine: *const VllmEngine,
    request_id: u64,
    timeout_ms: i64,
    out: *mut *mut VllmOutput,
) -> VllmStatus {
    guarded(|| {
        // SAFETY: by the caller's contract.
        let e = unsafe { try_ref(engine, "engine") }?;
        // SAFETY: NULL or writable by the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        out.write(std::ptr::null_mut());
        if timeout_ms != 0 {
            not_reentrant()?;
        }
        // A timeout too large to represent waits forever.
        let deadline = (timeout_ms >= 0)
            .then(|| Instant::now().checked_add(Duration::from_millis(timeout_ms as u64)))
            .flatten();
        match e.next_output(request_id, deadline)? {
            // The box's first field is the VllmOutput (repr(C)).
            Some(o) => out.write(Box::into_raw(o).cast::<VllmOutput>()),
            None if timeout_ms == 0 => {}
            None => {
                return Err(Failure::new(
                    VllmStatus::Timeout,
                    format!("no output of request {request_id} within {timeout_ms} ms"),
                ));
            }
        }
        Ok(())
    })
}

/// Frees an output from `vllm_poll` / `vllm_wait`. NULL is accepted. Never pass the pointer
/// a callback received (the library owns it). Thread-safe.
///
/// # Safety
/// `output` NULL or an output from vllm_poll / vllm_wait not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vllm_output_free(output: *mut VllmOutput) {
    let _ = guarded(|| {
        if !output.is_null() {
            // SAFETY: produced by Box::into_raw of an OwnedOutput whose first field is the
            // VllmOutput, and not freed before (caller's contract).
            drop(unsafe { Box::from_raw(output.cast::<OwnedOutput>()) });
        }
        Ok(())
    });
}

/// Aborts a request at any time: its sequences finish with ABORT (callbacks get the final
/// output before this returns; pollers find it queued). NOT_FOUND if the id is unknown or the
/// request already finished (aborting twice is NOT_FOUND the second time). Thread-safe.
///
/// # Safety
/// `engine` a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vllm_abort(engine: *const VllmEngine, request_id: u64) -> VllmStatus {
    guarded(|| {
        // SAFETY: by the caller's contract.
        let e = unsafe { try_ref(engine, "engine") }?;
        Ok(e.serving.abort(request_id)?)
    })
}

/// Generates a whole completion for `prompt` and returns it in `*out_text` (NUL-terminated
/// UTF-8 as the streamed deltas give it, U+0000 as U+FFFD; free with `vllm_string_free`).
/// `params->n` must be 1 (INVALID_ARGUMENT otherwise). Blocks the calling thread (other threads' requests
/// keep running). On failure `*out_text` is NULL. Errors as `vllm_submit_text`, plus the
/// request's own error if its step failed. Thread-safe.
///
/// # Safety
/// `engine` a live handle; `prompt` NULL or NUL-terminated; `params` NULL or valid;
/// `out_text` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vllm_generate(
    engine: *const VllmEngine,
    prompt: *const c_char,
    params: *const VllmSamplingParams,
    out_text: *mut *mut c_char,
) -> VllmStatus {
    guarded(|| {
        // SAFETY: NULL or writable by the caller's contract.
        let out = unsafe { Out::new(out_text, "out_text") }?;
        out.write(std::ptr::null_mut());
        // SAFETY: NULL or valid by the caller's contract.
        let n = unsafe { params.as_ref() }.map_or(1, |p| p.n);
        if n != 1 {
            return Err(Failure::invalid(format!(
                "vllm_generate returns one text: params.n must be 1, got {n}"
            )));
        }
        // SAFETY: by the caller's contract.
        let e = unsafe { try_ref(engine, "engine") }?;
        // SAFETY: by the caller's contract.
        let ids = unsafe { e.text_prompt(prompt) }?;
        // SAFETY: by the caller's contract.
        let params = unsafe { params::sampling_params(params) }?;
        let mut text = String::new();
        for o in e.serving.generate(Prompt::Tokens(ids), params)? {
            if let Some(err) = o.error {
                return Err(Failure::new(VllmStatus::Internal, err));
            }
            text.push_str(&o.text);
        }
        // C strings end at the first NUL: a generated U+0000 becomes U+FFFD (documented), so
        // this cannot fail.
        let c = CString::new(text.replace('\0', "\u{FFFD}"))
            .map_err(|_| Failure::new(VllmStatus::Internal, "generated text holds a NUL"))?;
        out.write(c.into_raw());
        Ok(())
    })
}

/// Frees a string returned by the library. NULL is accepted. Thread-safe.
///
/// # Safety
/// `s` NULL or a string from vllm_generate not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vllm_string_free(s: *mut c_char) {
    let _ = guarded(|| {
        if !s.is_null() {
            // SAFETY: produced by CString::into_raw in vllm_generate (caller's contract).
            drop(unsafe { CString::from_raw(s) });
        }
        Ok(())
    });
}

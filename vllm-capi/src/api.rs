//! The exported engine functions. Each runs inside a panic boundary, validates every pointer
//! and value before acting, records a message for `vllm_last_error` on failure, and leaves the
//! engine unchanged when it fails.

use crate::convert::{self, Bad, chat_messages, engine_args, sampling_params, slice_arg, str_arg};
use crate::error::{VllmStatus, clear, fail};
use crate::output::OwnedOutput;
use crate::types::{
    VllmChatMessage, VllmEngineParams, VllmOutput, VllmOutputCallback, VllmSamplingParams,
    VllmStats,
};
use crate::worker::{self, Callback, Cmd, ON_ENGINE_THREAD, Reply, Shared, Sink};
use std::ffi::{CString, c_char, c_void};
use std::sync::mpsc::{Sender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vllm_engine::detokenizer::Decode;
use vllm_engine::tokenizer::Tokenizer;
use vllm_engine::{Engine, Prompt};

/// An engine and its thread. Opaque to C.
pub struct VllmEngine {
    tx: Mutex<Sender<Cmd>>,
    shared: Arc<Shared>,
    tokenizer: Option<Arc<Tokenizer>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for VllmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VllmEngine").finish_non_exhaustive()
    }
}

fn status(r: Result<(), Bad>) -> VllmStatus {
    match r {
        Ok(()) => {
            clear();
            VllmStatus::Ok
        }
        Err((s, m)) => fail(s, m),
    }
}

/// Runs `body` behind the panic boundary, mapping its error to a status and message.
fn guarded(body: impl FnOnce() -> Result<(), Bad> + std::panic::UnwindSafe) -> VllmStatus {
    match std::panic::catch_unwind(|| status(body())) {
        Ok(s) => s,
        Err(p) => fail(
            VllmStatus::Internal,
            format!(
                "internal error (panic) in libvllm: {}",
                worker::panic_text(&*p)
            ),
        ),
    }
}

/// `&VllmEngine` from the handle.
///
/// # Safety
/// `e` must be NULL or a live handle from `vllm_engine_create`.
unsafe fn engine_ref<'a>(e: *const VllmEngine) -> Result<&'a VllmEngine, Bad> {
    if e.is_null() {
        return Err((VllmStatus::InvalidArgument, "engine is NULL".into()));
    }
    // SAFETY: a live handle by the caller's contract.
    Ok(unsafe { &*e })
}

fn out_arg<T>(p: *mut T, name: &str) -> Result<(), Bad> {
    if p.is_null() {
        Err((VllmStatus::InvalidArgument, format!("{name} is NULL")))
    } else {
        Ok(())
    }
}

fn not_reentrant() -> Result<(), Bad> {
    if ON_ENGINE_THREAD.with(|f| f.get()) {
        return Err((
            VllmStatus::Reentrant,
            "called from an output callback (the engine thread); only vllm_tokenize and vllm_detokenize may be".into(),
        ));
    }
    Ok(())
}

impl VllmEngine {
    /// Sends a command built around a fresh reply channel and waits for the answer.
    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, Bad> {
        not_reentrant()?;
        let (tx, rx) = sync_channel(1);
        let sent = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(make(tx));
        let stopped = || {
            let m = self
                .shared
                .stopped
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            (
                VllmStatus::EngineStopped,
                m.clone()
                    .unwrap_or_else(|| "the engine thread has stopped".into()),
            )
        };
        if sent.is_err() {
            return Err(stopped());
        }
        rx.recv().map_err(|_| stopped())?
    }

    fn submit(
        &self,
        prompt: Prompt,
        params: *const VllmSamplingParams,
        cb: VllmOutputCallback,
        user: *mut c_void,
        out_id: *mut u64,
    ) -> Result<(), Bad> {
        out_arg(out_id, "out_request_id")?;
        // SAFETY: params is NULL or valid by the caller's contract.
        let params = unsafe { sampling_params(params) }?;
        let sink = match Callback::new(cb, user) {
            Some(c) => Sink::Callback(c),
            None => Sink::Queue,
        };
        let id = self.call(|reply| Cmd::Submit {
            prompt,
            params: Box::new(params),
            sink,
            reply,
        })?;
        // SAFETY: checked non-NULL above; a u64 slot by contract.
        unsafe { *out_id = id };
        Ok(())
    }

    fn tokenizer(&self) -> Result<&Tokenizer, Bad> {
        self.tokenizer.as_deref().ok_or((
            VllmStatus::Unsupported,
            "the model has no tokenizer (dummy weights without tokenizer files)".into(),
        ))
    }
}

/// Fills `out` with the default engine parameters (vLLM's limits sized for the CPU: 256
/// sequences, 2048 batched tokens, block size 16, 1 GiB of KV cache, prefix caching, chunked
/// prefill and async scheduling on). Returns VLLM_STATUS_INVALID_ARGUMENT if `out` is NULL. Thread-safe.
///
/// # Safety
/// `out` must be NULL or point to writable memory for a `VllmEngineParams`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vllm_engine_default_params(out: *mut VllmEngineParams) -> VllmStatus {
    guarded(|| {
        out_arg(out, "out")?;
        // SAFETY: non-NULL and writable by contract.
        unsafe { out.write(convert::default_engine_params()) };
        Ok(())
    })
}

/// Fills `out` with vLLM's default sampling parameters (n 1, temperature 1, top_p 1, top_k
/// off, max_tokens 16, no logprobs). Returns VLLM_STATUS_INVALID_ARGUMENT if `out` is NULL.
/// Thread-safe.
///
/// # Safety
/// `out` must be NULL or point to writable memory for a `VllmSamplingParams`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vllm_sampling_default_params(out: *mut VllmSamplingParams) -> VllmStatus {
    guarded(|| {
        out_arg(out, "out")?;
        // SAFETY: non-NULL and writable by contract.
        unsafe { out.write(convert::default_sampling_params()) };
        Ok(())
    })
}

/// Loads the model at `model_path` (a HuggingFace folder or a .gguf file) and starts its
/// engine thread. `params` may be NULL for the defaults. On success `*out_engine` owns the
/// engine (free it with `vllm_engine_destroy`); on failure `*out_engine` is set to NULL and
/// nothing is left allocated. Errors: INVALID_ARGUMENT (NULL or non-UTF-8 path, bad params),
/// LOAD_FAILED (missing path, malformed or truncated file, missing tensor, unsupported
/// architecture), UNSUPPORTED (device not available). Thread-safe.
///
/// # Safety
/// `model_path` must be NULL or NUL-terminated; `params` NULL or valid; `out_engine` NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vllm_engine_create(
    model_path: *const c_char,
    params: *const VllmEngineParams,
    out_engine: *mut *mut VllmEngine,
) -> VllmStatus {
    guarded(|| {
        out_arg(out_engine, "out_engine")?;
        // SAFETY: checked non-NULL; writable by contract.
        unsafe { *out_engine = std::ptr::null_mut() };
        // SAFETY: by the caller's contract.
        let model = unsafe { str_arg(model_path, "model_path") }?;
        // SAFETY: by the caller's contract.
        let args = unsafe { engine_args(model, params) }?;
        let engine = Engine::new(&args).map_err(|e| (worker::status_of(&e), e.to_string()))?;
        let tokenizer = engine.tokenizer().cloned();
        let shared = Arc::new(Shared::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let s2 = shared.clone();
        let thread = std::thread::Builder::new()
            .name("vllm-engine".into())
            .spawn(move || worker::run(engine, s2, rx))
            .map_err(|e| {
                (
                    VllmStatus::Internal,
                    format!("cannot start the engine thread: {e}"),
                )
            })?;
        let handle = Box::new(VllmEngine {
            tx: Mutex::new(tx),
            shared,
            tokenizer,
            thread: Mutex::new(Some(thread)),
        });
        // SAFETY: checked non-NULL above.
        unsafe { *out_engine = Box::into_raw(handle) };
        Ok(())
    })
}

/// Stops the engine and frees it. Requests still in flight are aborted first: callbacks get
/// their final ABORT output before this returns; queued outputs not yet taken are freed.
/// NULL is accepted (no-op). Must not be called from an output callback (it would deadlock:
/// the call is ignored and the last error says so), nor while other threads still use the
/// handle.
///
/// # Safety
/// `engine` must be NULL or a live handle, not used again after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vllm_engine_destroy(engine: *mut VllmEngine) {
    let _ = guarded(|| {
        if engine.is_null() {
            return Ok(());
        }
        not_reentrant()?;
        // SAFETY: a live handle from vllm_engine_create, owned by the caller, not used again.
        let e = unsafe { Box::from_raw(engine) };
        let _ =
            e.tx.lock()
                .unwrap_or_else(|p| p.into_inner())
                .send(Cmd::Shutdown);
        if let Some(t) = e.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
        worker::mark_stopped(&e.shared, "the engine was destroyed");
        Ok(())
    });
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
    guarded(|| {
        // SAFETY: by the caller's contract.
        let e = unsafe { engine_ref(engine) }?;
        // SAFETY: by the caller's contract.
        let text = unsafe { str_arg(prompt, "prompt") }?;
        let ids = e
            .tokenizer()?
            .encode(text, true)
            .map_err(|err| (VllmStatus::InvalidArgument, err.to_string()))?;
        e.submit(
            Prompt::Tokens(ids),
            params,
            callback,
            user_data,
            out_request_id,
        )
    })
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
    guarded(|| {
        // SAFETY: by the caller's contract.
        let e = unsafe { engine_ref(engine) }?;
        if tokens.is_null() {
            return Err((VllmStatus::InvalidArgument, "tokens is NULL".into()));
        }
        // SAFETY: by the caller's contract.
        let ids = unsafe { slice_arg(tokens, num_tokens, "tokens") }?.to_vec();
        e.submit(
            Prompt::Tokens(ids),
            params,
            callback,
            user_data,
            out_request_id,
        )
    })
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
    guarded(|| {
        // SAFETY: by the caller's contract.
        let e = unsafe { engine_ref(engine) }?;
        // SAFETY: by the caller's contract.
        let msgs = unsafe { chat_messages(messages, num_messages) }?;
        let ids = e
            .tokenizer()?
            .encode_chat(&msgs)
            .map_err(|err| (VllmStatus::InvalidArgument, err.to_string()))?;
        e.submit(
            Prompt::Tokens(ids),
            params,
            callback,
            user_data,
            out_request_id,
        )
    })
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
        let e = unsafe { engine_ref(engine) }?;
        out_arg(out, "out")?;
        // SAFETY: checked non-NULL; writable by contract.
        unsafe { *out = std::ptr::null_mut() };
        if timeout_ms != 0 {
            not_reentrant()?;
        }
        // A timeout too large to represent waits forever.
        let deadline = (timeout_ms >= 0)
            .then(|| Instant::now().checked_add(Duration::from_millis(timeout_ms as u64)))
            .flatten();
        // Hold the shared state itself while waiting, not the handle.
        let shared = e.shared.clone();
        match worker::next_output(&shared, request_id, deadline)? {
            Some(o) => {
                // The box's first field is the VllmOutput (repr(C)).
                // SAFETY: checked non-NULL above.
                unsafe { *out = Box::into_raw(o).cast::<VllmOutput>() };
                Ok(())
            }
            None if timeout_ms == 0 => Ok(()),
            None => Err((
                VllmStatus::Timeout,
                format!("no output of request {request_id} within {timeout_ms} ms"),
            )),
        }
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
        let e = unsafe { engine_ref(engine) }?;
        e.call(|reply| Cmd::Abort {
            id: request_id,
            reply,
        })
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
        out_arg(out_text, "out_text")?;
        // SAFETY: checked non-NULL; writable by contract.
        unsafe { *out_text = std::ptr::null_mut() };
        let n = if params.is_null() {
            1
        } else {
            // SAFETY: non-NULL params are valid by the caller's contract.
            unsafe { (*params).n }
        };
        if n != 1 {
            return Err((
                VllmStatus::InvalidArgument,
                format!("vllm_generate returns one text: params.n must be 1, got {n}"),
            ));
        }
        let mut id = 0u64;
        // SAFETY: same contract as vllm_submit_text.
        let s = unsafe {
            vllm_submit_text(engine, prompt, params, None, std::ptr::null_mut(), &mut id)
        };
        if s != VllmStatus::Ok {
            return Err((s, crate::error::last_message()));
        }
        // SAFETY: checked by vllm_submit_text.
        let shared = unsafe { engine_ref(engine) }?.shared.clone();
        let mut text = Vec::new();
        loop {
            let o = worker::next_output(&shared, id, None)?;
            let Some(o) = o else { continue };
            text.extend_from_slice(o.text());
            if let Some(err) = (!o.c.error.is_null()).then(|| {
                // SAFETY: a NUL-terminated string owned by `o`.
                unsafe { std::ffi::CStr::from_ptr(o.c.error) }
                    .to_string_lossy()
                    .into_owned()
            }) {
                return Err((VllmStatus::Internal, err));
            }
            if o.c.finished {
                break;
            }
        }
        // The deltas hold no NUL (OwnedOutput replaces it), so this cannot fail.
        let c = CString::new(text).map_err(|_| {
            (
                VllmStatus::Internal,
                "generated text holds a NUL".to_string(),
            )
        })?;
        // SAFETY: checked non-NULL above.
        unsafe { *out_text = c.into_raw() };
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

/// Token ids of `text` into `tokens` (capacity `capacity`); `*num_tokens` receives the count.
/// BUFFER_TOO_SMALL (with `*num_tokens` the count needed, nothing written) when it does not
/// fit; `tokens` may be NULL with capacity 0 to ask for the count. `add_special_tokens` adds
/// BOS as the model wants. Thread-safe, and allowed in callbacks.
///
/// # Safety
/// `engine` a live handle; `text` NULL or NUL-terminated; `tokens` NULL or `capacity`
/// writable ids; `num_tokens` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vllm_tokenize(
    engine: *const VllmEngine,
    text: *const c_char,
    add_special_tokens: bool,
    tokens: *mut u32,
    capacity: usize,
    num_tokens: *mut usize,
) -> VllmStatus {
    guarded(|| {
        // SAFETY: by the caller's contract.
        let e = unsafe { engine_ref(engine) }?;
        // SAFETY: by the caller's contract.
        let text = unsafe { str_arg(text, "text") }?;
        out_arg(num_tokens, "num_tokens")?;
        let ids = e
            .tokenizer()?
            .encode(text, add_special_tokens)
            .map_err(|err| (VllmStatus::InvalidArgument, err.to_string()))?;
        // SAFETY: checked non-NULL; writable by contract.
        unsafe { *num_tokens = ids.len() };
        if ids.len() > capacity || (tokens.is_null() && !ids.is_empty()) {
            return Err((
                VllmStatus::BufferTooSmall,
                format!("{} tokens do not fit a buffer of {capacity}", ids.len()),
            ));
        }
        if !ids.is_empty() {
            // SAFETY: `tokens` is non-NULL with `capacity` >= ids.len() writable slots.
            unsafe { std::ptr::copy_nonoverlapping(ids.as_ptr(), tokens, ids.len()) };
        }
        Ok(())
    })
}

/// The text of `num_tokens` ids into `buf` (capacity `capacity` bytes, NUL-terminated);
/// `*text_len` receives the length in bytes without the NUL. BUFFER_TOO_SMALL (with
/// `*text_len` the length needed; the buffer needs one more byte for the NUL) when it does
/// not fit. Ids outside the vocabulary are skipped. Thread-safe, and allowed in callbacks.
///
/// # Safety
/// `engine` a live handle; `tokens` NULL or `num_tokens` readable ids; `buf` NULL or
/// `capacity` writable bytes; `text_len` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vllm_detokenize(
    engine: *const VllmEngine,
    tokens: *const u32,
    num_tokens: usize,
    skip_special_tokens: bool,
    buf: *mut c_char,
    capacity: usize,
    text_len: *mut usize,
) -> VllmStatus {
    guarded(|| {
        // SAFETY: by the caller's contract.
        let e = unsafe { engine_ref(engine) }?;
        // SAFETY: by the caller's contract.
        let ids = unsafe { slice_arg(tokens, num_tokens, "tokens") }?;
        out_arg(text_len, "text_len")?;
        let text = e.tokenizer()?.decode(ids, skip_special_tokens);
        // SAFETY: checked non-NULL; writable by contract.
        unsafe { *text_len = text.len() };
        if buf.is_null() || text.len() + 1 > capacity {
            return Err((
                VllmStatus::BufferTooSmall,
                format!(
                    "{} bytes + NUL do not fit a buffer of {capacity}",
                    text.len()
                ),
            ));
        }
        // SAFETY: `buf` has `capacity` > text.len() writable bytes by contract.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
            *buf.add(text.len()) = 0;
        }
        Ok(())
    })
}

/// Engine counters (requests running and waiting, KV blocks total / used / free, prefix
/// cache hits) into `out`. Thread-safe.
///
/// # Safety
/// `engine` a live handle; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vllm_engine_stats(
    engine: *const VllmEngine,
    out: *mut VllmStats,
) -> VllmStatus {
    guarded(|| {
        // SAFETY: by the caller's contract.
        let e = unsafe { engine_ref(engine) }?;
        out_arg(out, "out")?;
        let s = e.call(|reply| Cmd::Stats { reply })?;
        let v = VllmStats {
            running: s.running as u64,
            waiting: s.waiting as u64,
            kv_blocks_total: s.kv_blocks_total as u64,
            kv_blocks_used: s.kv_blocks_used as u64,
            kv_blocks_free: s.kv_blocks_free as u64,
            prefix_cache_hit_blocks: s.prefix_cache_hit_blocks,
        };
        // SAFETY: checked non-NULL; writable by contract.
        unsafe { out.write(v) };
        Ok(())
    })
}

//! Engine lifecycle: the default parameter structs, create (load the model, start the
//! engine thread) and destroy (abort what is in flight, join the thread, free the handle).
//! Each export is its checks and one call; the engine work is in `vllm_engine::serving`.

use crate::args::{Out, str_arg};
use crate::boundary::guarded;
use crate::error::VllmStatus;
use crate::handle::{VllmEngine, not_reentrant};
use crate::params;
use crate::types::{VllmEngineParams, VllmSamplingParams};
use std::ffi::c_char;

/// Fills `out` with the default engine parameters (vLLM's limits sized for the CPU: 256
/// sequences, 2048 batched tokens, block size 16, 1 GiB of KV cache, prefix caching, chunked
/// prefill and async scheduling on). Returns VLLM_STATUS_INVALID_ARGUMENT if `out` is NULL. Thread-safe.
///
/// # Safety
/// `out` must be NULL or point to writable memory for a `VllmEngineParams`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vllm_engine_default_params(out: *mut VllmEngineParams) -> VllmStatus {
    guarded(|| {
        // SAFETY: NULL or writable by the caller's contract.
        unsafe { Out::new(out, "out") }?.write(params::default_engine_params());
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
        // SAFETY: NULL or writable by the caller's contract.
        unsafe { Out::new(out, "out") }?.write(params::default_sampling_params());
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
        // SAFETY: NULL or writable by the caller's contract.
        let out = unsafe { Out::new(out_engine, "out_engine") }?;
        out.write(std::ptr::null_mut());
        // SAFETY: by the caller's contract.
        let model = unsafe { str_arg(model_path, "model_path") }?;
        // SAFETY: by the caller's contract.
        let args = unsafe { params::engine_args(model, params) }?;
        out.write(Box::into_raw(VllmEngine::create(&args)?));
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
        // Aborts what is in flight (callbacks get their final outputs) and joins the thread;
        // dropping `e` then frees the outputs nobody took.
        Ok(e.serving.shutdown()?)
    });
}

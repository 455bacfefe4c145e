//! Calls that read the engine without changing it: tokenize and detokenize (on the calling
//! thread, so allowed in callbacks) and the engine's counters (one command).

use crate::args::{Out, slice_arg, str_arg, try_ref, write_c_str};
use crate::boundary::guarded;
use crate::error::VllmStatus;
use crate::failure::Failure;
use crate::handle::VllmEngine;
use crate::types::VllmStats;
use std::ffi::c_char;
use vllm_engine::detokenizer::Decode;

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
        let e = unsafe { try_ref(engine, "engine") }?;
        // SAFETY: by the caller's contract.
        let text = unsafe { str_arg(text, "text") }?;
        // SAFETY: NULL or writable by the caller's contract.
        let count = unsafe { Out::new(num_tokens, "num_tokens") }?;
        let ids = e
            .tokenizer()?
            .encode(text, add_special_tokens)
            .map_err(|err| Failure::invalid(err.to_string()))?;
        count.write(ids.len());
        if ids.len() > capacity || (tokens.is_null() && !ids.is_empty()) {
            return Err(Failure::new(
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
        let e = unsafe { try_ref(engine, "engine") }?;
        // SAFETY: by the caller's contract.
        let ids = unsafe { slice_arg(tokens, num_tokens, "tokens") }?;
        // SAFETY: NULL or writable by the caller's contract.
        let len = unsafe { Out::new(text_len, "text_len") }?;
        let text = e.tokenizer()?.decode(ids, skip_special_tokens);
        len.write(text.len());
        if buf.is_null() || text.len() + 1 > capacity {
            return Err(Failure::new(
                VllmStatus::BufferTooSmall,
                format!(
                    "{} bytes + NUL do not fit a buffer of {capacity}",
                    text.len()
                ),
            ));
        }
        // SAFETY: `buf` has `capacity` > text.len() writable bytes by contract.
        unsafe { write_c_str(buf, text.as_bytes()) };
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
        let e = unsafe { try_ref(engine, "engine") }?;
        // SAFETY: NULL or writable by the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        let s = e.serving.stats()?;
        out.write(VllmStats {
            running: s.running as u64,
            waiting: s.waiting as u64,
            kv_blocks_total: s.kv_blocks_total as u64,
            kv_blocks_used: s.kv_blocks_used as u64,
            kv_blocks_free: s.kv_blocks_free as u64,
            prefix_cache_hit_blocks: s.prefix_cache_hit_blocks,
        });
        Ok(())
    })
}

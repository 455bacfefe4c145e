//! Status codes and the thread-local last error: every failing call stores a message naming
//! the argument, limit and value; `vllm_last_error` copies it into a caller buffer.

use crate::args::write_c_str;
use std::cell::RefCell;
use std::ffi::c_char;

/// Result of a vllm_* call. Stable numbers: values are only ever appended.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VllmStatus {
    /// Success.
    Ok = 0,
    /// An argument was NULL, out of range, or not valid UTF-8 (the message names it).
    InvalidArgument = 1,
    /// The requested operation is not supported by this build or device.
    Unsupported = 2,
    /// A CUDA error.
    CudaError = 3,
    /// An internal error (a bug); the library state is unchanged.
    Internal = 4,
    /// The request id is unknown, or the request finished and its outputs were all taken.
    NotFound = 5,
    /// The model could not be loaded (missing path, malformed or truncated file, missing
    /// tensor, unsupported architecture).
    LoadFailed = 6,
    /// The request can never run (prompt longer than max_model_len or the KV cache).
    Rejected = 7,
    /// The caller's buffer is too small; the size needed was written to the size argument.
    BufferTooSmall = 8,
    /// `vllm_wait` timed out before an output was ready.
    Timeout = 9,
    /// The engine thread has stopped (after an internal error); destroy the engine.
    EngineStopped = 10,
    /// Called from inside an output callback, where engine calls would deadlock.
    Reentrant = 11,
}

/// Names for `vllm_status_str`, indexed by status value.
pub(crate) const STATUS_NAMES: [&std::ffi::CStr; 12] = [
    c"ok",
    c"invalid argument",
    c"unsupported",
    c"CUDA error",
    c"internal error",
    c"not found",
    c"load failed",
    c"rejected",
    c"buffer too small",
    c"timeout",
    c"engine stopped",
    c"reentrant call from a callback",
];

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records `msg` as this thread's last error and returns `status`.
pub(crate) fn fail(status: VllmStatus, msg: impl Into<String>) -> VllmStatus {
    let msg = msg.into();
    LAST_ERROR.with(|e| *e.borrow_mut() = msg);
    status
}

/// Clears this thread's last error (on success).
pub(crate) fn clear() {
    LAST_ERROR.with(|e| e.borrow_mut().clear());
}

/// Copies this thread's last error message into `buf` (NUL-terminated, truncated to `cap`
/// bytes) and returns its full length in bytes without the NUL. `buf` may be NULL with `cap`
/// 0 to ask for the length. The message is "" after a successful call. Thread-safe: each
/// thread has its own.
///
/// # Safety
/// `buf` must be NULL or point to `cap` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vllm_last_error(buf: *mut c_char, cap: usize) -> usize {
    crate::boundary::boundary(
        || {
            LAST_ERROR.with(|e| {
                let e = e.borrow();
                let bytes = e.as_bytes();
                if !buf.is_null() && cap > 0 {
                    let n = bytes.len().min(cap - 1);
                    // SAFETY: the caller guarantees `buf` has `cap` > n writable bytes.
                    unsafe { write_c_str(buf, &bytes[..n]) };
                }
                bytes.len()
            })
        },
        |_| 0,
    )
}

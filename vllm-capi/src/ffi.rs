//! Exported functions. `unsafe` in this crate lives here only.

use std::ffi::{c_char, c_int};

/// Result of a vllm_* call. Stable numbers: values are only ever appended.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VllmStatus {
    /// Success.
    Ok = 0,
    /// An argument was NULL, out of range, or not valid UTF-8.
    InvalidArgument = 1,
    /// The requested operation is not supported by this build or device.
    Unsupported = 2,
    /// A CUDA error.
    CudaError = 3,
    /// An internal error (a bug); the library state is unchanged.
    Internal = 4,
}

/// Runs `body`, turning a panic into `on_panic`: no unwinding crosses the C ABI.
fn boundary<T>(on_panic: T, body: impl FnOnce() -> T + std::panic::UnwindSafe) -> T {
    std::panic::catch_unwind(body).unwrap_or(on_panic)
}

/// The library version as "MAJOR.MINOR.PATCH"; a static string, never NULL. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn vllm_version() -> *const c_char {
    boundary(c"?".as_ptr(), || VERSION.as_ptr().cast())
}

/// The library version as major * 10000 + minor * 100 + patch. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn vllm_version_number() -> c_int {
    boundary(-1, || {
        let part = |s: &str| s.parse::<c_int>().unwrap_or(0);
        part(env!("CARGO_PKG_VERSION_MAJOR")) * 10000
            + part(env!("CARGO_PKG_VERSION_MINOR")) * 100
            + part(env!("CARGO_PKG_VERSION_PATCH"))
    })
}

/// A static English name of a status ("ok", "invalid argument", ...); "unknown status" for a
/// value outside the enum. Never NULL. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn vllm_status_str(status: c_int) -> *const c_char {
    boundary(c"internal error".as_ptr(), || {
        let s = match status {
            0 => c"ok",
            1 => c"invalid argument",
            2 => c"unsupported",
            3 => c"CUDA error",
            4 => c"internal error",
            _ => c"unknown status",
        };
        s.as_ptr()
    })
}

const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn text(p: *const c_char) -> String {
        // SAFETY: the functions under test return static NUL-terminated strings.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    #[test]
    fn version_matches_cargo() {
        assert_eq!(text(vllm_version()), env!("CARGO_PKG_VERSION"));
        assert_eq!(vllm_version_number(), 100);
    }

    #[test]
    fn status_names() {
        assert_eq!(text(vllm_status_str(VllmStatus::Ok as c_int)), "ok");
        assert_eq!(
            text(vllm_status_str(VllmStatus::InvalidArgument as c_int)),
            "invalid argument"
        );
        assert_eq!(text(vllm_status_str(99)), "unknown status");
        assert_eq!(text(vllm_status_str(-1)), "unknown status");
    }

    #[test]
    fn boundary_catches_panics() {
        let r = boundary(7, || -> i32 { panic!("boom") });
        assert_eq!(r, 7);
    }
}

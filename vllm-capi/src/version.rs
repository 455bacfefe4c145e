//! The library version and the names of the statuses: static strings, O(1).

use crate::boundary::boundary;
use crate::error::STATUS_NAMES;
use std::ffi::{c_char, c_int};

/// The library version as "MAJOR.MINOR.PATCH"; a static string, never NULL. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn vllm_version() -> *const c_char {
    boundary(|| VERSION.as_ptr().cast(), |_| c"?".as_ptr())
}

/// The library version as major * 10000 + minor * 100 + patch. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn vllm_version_number() -> c_int {
    boundary(
        || {
            let part = |s: &str| s.parse::<c_int>().unwrap_or(0);
            part(env!("CARGO_PKG_VERSION_MAJOR")) * 10000
                + part(env!("CARGO_PKG_VERSION_MINOR")) * 100
                + part(env!("CARGO_PKG_VERSION_PATCH"))
        },
        |_| -1,
    )
}

/// A static English name of a status ("ok", "invalid argument", ...); "unknown status" for a
/// value outside the enum. Never NULL. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn vllm_status_str(status: c_int) -> *const c_char {
    boundary(
        || {
            let s = usize::try_from(status)
                .ok()
                .and_then(|i| STATUS_NAMES.get(i))
                .copied()
                .unwrap_or(c"unknown status");
            s.as_ptr()
        },
        |_| c"internal error".as_ptr(),
    )
}

const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::VllmStatus;
    use std::ffi::CStr;

    fn text(p: *const c_char) -> String {
        // SAFETY: the functions under test return static NUL-terminated strings.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    #[test]
    fn version_matches_cargo() {
        assert_eq!(text(vllm_version()), env!("CARGO_PKG_VERSION"));
        assert_eq!(vllm_version_number(), 200);
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
}

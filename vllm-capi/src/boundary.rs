//! The one panic boundary: every exported function runs its body through [`boundary`] (value
//! returns) or [`guarded`] (status returns), so no unwinding ever crosses the C ABI and a
//! failure always leaves a message for `vllm_last_error`. Cost: one `catch_unwind` per call
//! (free unless a panic happens).

use crate::error::{VllmStatus, clear, fail};
use crate::failure::Failure;
use std::panic::{UnwindSafe, catch_unwind};
use vllm_engine::serving::panic_message;

/// Runs `body`; a panic becomes `on_panic(its message)`.
pub(crate) fn boundary<T>(
    body: impl FnOnce() -> T + UnwindSafe,
    on_panic: impl FnOnce(String) -> T,
) -> T {
    catch_unwind(body).unwrap_or_else(|p| on_panic(panic_message(&*p)))
}

/// Runs a status-returning body: OK clears the last error, a [`Failure`] records its message,
/// a panic is INTERNAL with the panic's message.
pub(crate) fn guarded(body: impl FnOnce() -> Result<(), Failure> + UnwindSafe) -> VllmStatus {
    boundary(
        || match body() {
            Ok(()) => {
                clear();
                VllmStatus::Ok
            }
            Err(f) => f.record(),
        },
        |msg| {
            fail(
                VllmStatus::Internal,
                format!("internal error (panic) in libvllm: {msg}"),
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_catches_panics() {
        let r = boundary(|| -> i32 { panic!("boom") }, |_| 7);
        assert_eq!(r, 7);
    }

    #[test]
    fn guarded_records_the_panic() {
        let s = guarded(|| panic!("boom"));
        assert_eq!(s, VllmStatus::Internal);
    }
}

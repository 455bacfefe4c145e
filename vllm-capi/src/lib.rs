//! The C ABI of vllm-rs: `libvllm.so` / `libvllm.a`, header `include/vllm.h` (cbindgen).
//!
//! Conventions (rustls-ffi and llama.h style): opaque handles created and destroyed by the
//! library; parameter structs filled by `*_default_params` and passed by pointer; every
//! function returns a `VllmStatus` (or a documented value), runs inside a panic boundary, and
//! never aborts the process; on failure a message naming the argument, limit and value is
//! kept per thread for `vllm_last_error`, and the engine is left unchanged. The engine runs on
//! its own thread (`worker`); every call is thread-safe. `unsafe` lives in the modules that
//! touch C pointers (`api`, `convert`, `error`, `output`, `worker`), each use with a
//! `// SAFETY:` comment.

mod api;
mod convert;
mod error;
mod ffi;
mod output;
mod types;
mod worker;

pub use api::*;
pub use error::{VllmStatus, vllm_last_error};
pub use ffi::*;
pub use types::*;

//! The C ABI of vllm-rs: `libvllm.so` / `libvllm.a`, header `include/vllm.h` (cbindgen).
//!
//! Conventions (rustls-ffi and llama.h style): opaque handles created and destroyed by the
//! library; parameter structs filled by `*_default_params` and passed by pointer; every
//! function returns a `VllmStatus` (or a documented value), runs inside the one panic
//! boundary (`boundary`), and never aborts the process; on failure a message naming the
//! argument, limit and value is kept per thread for `vllm_last_error`, and the engine is left
//! unchanged. This crate holds only the C conversions: the engine thread is the engine
//! crate's serving handle (`vllm_engine::serving`), which `handle` wraps with the C sinks
//! (callback or poll/wait queue). Every call is thread-safe. `unsafe` lives in the modules
//! that touch C pointers (`api`, `args`, `error`, `handle`, `output`, `params`, `sink`), each
//! use with a `// SAFETY:` comment.

mod api;
mod args;
mod boundary;
mod error;
mod failure;
mod handle;
mod output;
mod params;
mod queue;
mod sink;
mod types;
mod version;

pub use api::*;
pub use error::{VllmStatus, vllm_last_error};
pub use handle::VllmEngine;
pub use types::*;
pub use version::*;

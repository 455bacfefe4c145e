//! The C ABI of vllm-rs. Conventions (see include/vllm.h): every function returns a
//! `VllmStatus` or a value documented at its declaration, runs inside a panic boundary, and
//! never aborts the process. This first cut exports the version and the status names; engine
//! handles, requests and streaming follow with the engine.

mod ffi;

pub use ffi::*;

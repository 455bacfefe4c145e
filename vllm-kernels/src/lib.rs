//! vllm-kernels: the CUDA kernels of vllm-rs, compiled ahead of time from `csrc/` by nvcc
//! (feature `cuda`), their safe wrappers over cudarc, and a CPU reference for every op.
//!
//! Every op takes an `args` struct that is validated by the same code on both paths
//! ([`args`]); the CPU reference is in [`cpu`], the CUDA wrappers in `cuda` (feature `cuda`).
//! The paged KV cache layout is documented in [`args::PagedKvLayout`]'s module.

pub mod args;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod dtype;
pub mod error;
#[cfg(feature = "cuda")]
mod sys;

pub use dtype::{CacheDType, DType, Float, Fp8E4m3, KvCacheElem};
pub use error::{KernelError, Result};

//! vllm-kernels: the CUDA kernels of vllm-rs, compiled ahead of time from `csrc/` by nvcc
//! (feature `cuda`), their safe wrappers over cudarc, and a CPU reference for every op.
//!
//! Every op takes an `args` struct that is validated by the same code on both paths
//! ([`args`]); the CPU reference is in [`cpu`], the CUDA wrappers in `cuda` (feature `cuda`).
//! Ops with many buffers take them as one operand struct (`PagedAttentionIo`,
//! `PrefillAttentionIo` in both modules; the sampler's per-row parameters as
//! [`args::SampleRow`] on the host and `cuda::SampleRowsDev` on the device), and decode and
//! prefill attention share [`args::AttentionGeometry`] and its checks. The paged KV cache layout
//! is documented in [`args::PagedKvLayout`]'s module.
//!
//! Tests (`tests/`) are grouped by op, one file each; a case written once over
//! `tests/common/device.rs`'s `Device` runs on the CPU reference and on the GPU
//! (`test_device!`), GPU-only comparisons against the CPU reference sit in each file's `gpu`
//! module, and `gpu_kernels` holds the launchers' own checks.

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

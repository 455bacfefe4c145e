//! vllm-engine: from a model to generated text. So far: the device choice and the KV-cache
//! block manager, sampling parameters and the CPU sampler; loaders, scheduler and model
//! runners follow.
#![forbid(unsafe_code)]

pub mod device;
pub mod kv_cache;
pub mod sampling;
pub mod scheduler;

pub use device::Device;

//! vllm-engine: from a model to generated text. So far: the device choice and the KV-cache
//! block manager; loaders, scheduler, sampler and model runners follow.
#![forbid(unsafe_code)]

pub mod device;
pub mod kv_cache;

pub use device::Device;

//! vllm-engine: from a model to generated text. So far: the model config (`config.json`), the
//! device choice, the KV-cache block manager, sampling parameters and the CPU sampler, the
//! scheduler, and incremental detokenization with stop strings; weight loaders, models and
//! model runners follow.
#![forbid(unsafe_code)]

pub mod config;
pub mod detokenizer;
pub mod device;
pub mod kv_cache;
pub mod sampling;
pub mod scheduler;

pub use device::Device;

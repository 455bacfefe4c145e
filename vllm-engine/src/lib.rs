//! vllm-engine: from a model to generated text. For now it holds the device choice that the
//! model runners will be built on; loaders, block manager, scheduler and sampler follow.
#![forbid(unsafe_code)]

pub mod device;

pub use device::Device;

//! vllm-engine: from a model folder or GGUF file to generated text.
//!
//! Data flows one way: request -> tokenizer -> scheduler (block manager) -> model runner ->
//! sampler -> detokenizer -> output. [`LLM`] runs offline batches; [`Engine`] streams deltas
//! step by step. Loaders (`loader`), the model written once (`model`: weights, layer types and
//! the decoder over the layer-ops seam) and the backends that implement those ops (`runner`:
//! CPU, and CUDA with the `cuda` feature) are separate modules, each stating its algorithm and
//! cost. No `unsafe` here: the FFI lives in `vllm-kernels` and `vllm-capi`.
#![forbid(unsafe_code)]

pub mod chat;
pub mod config;
pub mod detokenizer;
pub mod device;
pub mod engine;
pub mod kv_cache;
pub mod llm;
pub mod loader;
pub mod model;
pub mod runner;
pub mod sampling;
pub mod scheduler;
pub mod serving;
pub mod tokenizer;

pub use device::Device;
pub use engine::{Engine, EngineArgs, EngineError, LoadFormat, Prompt, RequestOutput};
pub use llm::{GenerateOutput, LLM};
pub use sampling::SamplingParams;

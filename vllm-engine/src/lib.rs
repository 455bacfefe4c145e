//! vllm-engine: from a model folder or GGUF file to generated text.
//!
//! Data flows one way: request -> tokenizer -> scheduler (block manager) -> model runner ->
//! sampler -> detokenizer -> output. [`LLM`] runs offline batches; [`Engine`] streams deltas
//! step by step. Loaders (`loader`), the shared decoder (`model`) and the backend seam
//! (`runner`, CPU today) are separate modules, each stating its algorithm and cost.
#![deny(unsafe_code)]

pub mod chat;
pub mod config;
pub mod detokenizer;
pub mod device;
pub mod engine;
pub mod kv_cache;
pub mod linalg;
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

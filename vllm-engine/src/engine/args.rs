//! Engine arguments (vLLM's names and defaults) and the enums they take. Each value is checked
//! once, by [`EngineArgs::validate`] (`validate.rs`), before any weight is read.

use crate::device::Device;
use std::path::PathBuf;

/// How weights are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadFormat {
    /// `.gguf` file -> GGUF; folder -> safetensors.
    #[default]
    Auto,
    Safetensors,
    Gguf,
    /// Random weights of the right shapes from `config.json` alone.
    Dummy,
}

impl std::str::FromStr for LoadFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => Self::Auto,
            "safetensors" => Self::Safetensors,
            "gguf" => Self::Gguf,
            "dummy" => Self::Dummy,
            _ => {
                return Err(format!(
                    "load format {s:?}; supported: auto, safetensors, gguf, dummy"
                ));
            }
        })
    }
}

/// The element type of weights and activations on the GPU (the CPU computes in f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModelDType {
    /// bf16.
    #[default]
    Auto,
    BF16,
    F16,
}

impl std::str::FromStr for ModelDType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => Self::Auto,
            "bfloat16" | "bf16" => Self::BF16,
            "float16" | "half" | "f16" => Self::F16,
            _ => return Err(format!("dtype {s:?}; supported: auto, bfloat16, float16")),
        })
    }
}

/// The KV cache element type (CUDA): the model's, or FP8 E4M3 with per-tensor scales of 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KvCacheDType {
    /// The model's dtype.
    #[default]
    Auto,
    /// OCP FP8 E4M3, one scale per tensor.
    Fp8E4m3,
}

impl std::fmt::Display for KvCacheDType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Fp8E4m3 => "fp8_e4m3",
        })
    }
}

impl std::str::FromStr for KvCacheDType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => Self::Auto,
            "fp8" | "fp8_e4m3" => Self::Fp8E4m3,
            _ => {
                return Err(format!(
                    "kv cache dtype {s:?}; supported: auto, fp8, fp8_e4m3"
                ));
            }
        })
    }
}

/// Everything that configures an engine. `Default` gives vLLM-like limits sized for the CPU.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineArgs {
    /// A HuggingFace folder (config.json, safetensors, tokenizer.json) or a `.gguf` file.
    pub model: PathBuf,
    /// A folder with tokenizer.json to use instead of the model's own.
    pub tokenizer: Option<PathBuf>,
    pub load_format: LoadFormat,
    /// `None`: the CPU (callers pick [`Device::best_available`] to prefer a GPU).
    pub device: Option<Device>,
    /// Weights and activations on the GPU.
    pub dtype: ModelDType,
    /// Fraction of GPU memory for weights, activations and the KV cache (CUDA).
    pub gpu_memory_utilization: f32,
    /// Run decode eagerly instead of through CUDA graphs.
    pub enforce_eager: bool,
    /// Plan and launch the next step while the device computes this one (vLLM's
    /// `--async-scheduling`, on by default there and here), on runners that can (CUDA; the
    /// CPU runner always runs one step at a time); steps that need logits on the host
    /// (logprobs, penalties, bias, unmet `min_tokens`) still run one at a time. Same outputs
    /// either way; measured on an H200, +1.3-3.2% output tok/s on Llama-3-8B and +4.7-8.9% on
    /// Qwen3-0.6B (benches/results/raw/2026-11-30-h200-async/report.md).
    pub async_scheduling: bool,
    /// KV cache element type (CUDA): the model's, or FP8 E4M3 with per-tensor scales of 1.
    pub kv_cache_dtype: KvCacheDType,
    /// Cap on prompt + output tokens; default the model's `max_position_embeddings`.
    pub max_model_len: Option<usize>,
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
    pub block_size: usize,
    /// KV cache size in blocks; default from `kv_cache_memory_bytes`.
    pub num_kv_blocks: Option<usize>,
    /// KV cache budget when `num_kv_blocks` is not given (CPU backend).
    pub kv_cache_memory_bytes: usize,
    pub enable_prefix_caching: bool,
    pub enable_chunked_prefill: bool,
    /// Seed of dummy weights.
    pub seed: u64,
}

impl Default for EngineArgs {
    fn default() -> Self {
        Self {
            model: PathBuf::new(),
            tokenizer: None,
            load_format: LoadFormat::Auto,
            device: None,
            dtype: ModelDType::Auto,
            gpu_memory_utilization: 0.9,
            enforce_eager: false,
            async_scheduling: true,
            kv_cache_dtype: KvCacheDType::Auto,
            max_model_len: None,
            max_num_seqs: 256,
            max_num_batched_tokens: 2048,
            block_size: 16,
            num_kv_blocks: None,
            kv_cache_memory_bytes: 1 << 30,
            enable_prefix_caching: true,
            enable_chunked_prefill: true,
            seed: 0,
        }
    }
}

impl EngineArgs {
    pub fn new(model: impl Into<PathBuf>) -> Self {
        Self {
            model: model.into(),
            ..Self::default()
        }
    }
}

/// Sampling defaults a model ships in `generation_config.json` (vLLM applies them to requests
/// that do not set the field; here [`crate::Engine::default_sampling_params`] returns them).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GenerationDefaults {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i32>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
}

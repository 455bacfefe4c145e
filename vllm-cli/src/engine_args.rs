//! Engine flags shared by `generate`, `chat` and `bench` (vLLM's names).

use clap::Args;
use std::path::PathBuf;
use vllm_engine::engine::{KvCacheDType, ModelDType};
use vllm_engine::{Device, EngineArgs, LoadFormat};

#[derive(Debug, Clone, Args)]
pub struct ModelFlags {
    /// A HuggingFace model folder (config.json, *.safetensors, tokenizer.json) or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// A folder with tokenizer.json to use instead of the model's own.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// auto, safetensors, gguf or dummy (random weights from config.json).
    #[arg(long, default_value = "auto")]
    pub load_format: LoadFormat,
    /// cpu, cuda or cuda:N (default: the GPU when built with CUDA and present, else the CPU).
    #[arg(long)]
    pub device: Option<String>,
    /// Weights and activations on the GPU: auto (bfloat16), bfloat16 or float16.
    #[arg(long, default_value = "auto")]
    pub dtype: ModelDType,
    /// Fraction of GPU memory for weights, activations and the KV cache.
    #[arg(long, default_value_t = 0.9)]
    pub gpu_memory_utilization: f32,
    /// Decode eagerly (no CUDA graphs).
    #[arg(long)]
    pub enforce_eager: bool,
    /// Plan and launch the next step while the GPU computes this one (the default; steps that
    /// need logits on the host, for logprobs, penalties or bias, still run one at a time).
    #[arg(long, overrides_with = "no_async_scheduling")]
    pub async_scheduling: bool,
    /// Run one step at a time: plan, compute, collect, then plan the next.
    #[arg(long, overrides_with = "async_scheduling")]
    pub no_async_scheduling: bool,
    /// KV cache element type on the GPU: auto (the model's) or fp8 (E4M3, scales 1.0).
    #[arg(long, default_value = "auto")]
    pub kv_cache_dtype: String,
    #[arg(long)]
    pub max_model_len: Option<usize>,
    #[arg(long, default_value_t = 256)]
    pub max_num_seqs: usize,
    #[arg(long, default_value_t = 2048)]
    pub max_num_batched_tokens: usize,
    #[arg(long, default_value_t = 16)]
    pub block_size: usize,
    /// KV cache size in blocks (default: from --kv-cache-memory-gib).
    #[arg(long)]
    pub num_kv_blocks: Option<usize>,
    /// KV cache budget in GiB when --num-kv-blocks is not given.
    #[arg(long, default_value_t = 1.0)]
    pub kv_cache_memory_gib: f64,
    #[arg(long)]
    pub no_prefix_caching: bool,
    #[arg(long)]
    pub no_chunked_prefill: bool,
    /// Seed of dummy weights.
    #[arg(long, default_value_t = 0)]
    pub weight_seed: u64,
}

impl ModelFlags {
    pub fn engine_args(&self) -> Result<EngineArgs, String> {
        let device = match self.device.as_deref() {
            None => Device::best_available(),
            Some("cpu") => Device::Cpu,
            Some("cuda") => Device::Cuda { ordinal: 0 },
            Some(other) => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(ordinal)) => Device::Cuda { ordinal },
                _ => return Err(format!("--device {other:?}; supported: cpu, cuda, cuda:N")),
            },
        };
        let kv_cache_dtype = match self.kv_cache_dtype.as_str() {
            "auto" => KvCacheDType::Auto,
            "fp8" | "fp8_e4m3" => KvCacheDType::Fp8E4m3,
            other => {
                return Err(format!(
                    "--kv-cache-dtype {other:?}; supported: auto, fp8, fp8_e4m3"
                ));
            }
        };
        if !(self.gpu_memory_utilization > 0.0 && self.gpu_memory_utilization <= 1.0) {
            return Err(format!(
                "--gpu-memory-utilization must be in (0, 1], got {}",
                self.gpu_memory_utilization
            ));
        }
        if !(self.kv_cache_memory_gib > 0.0 && self.kv_cache_memory_gib.is_finite()) {
            return Err(format!(
                "--kv-cache-memory-gib must be > 0, got {}",
                self.kv_cache_memory_gib
            ));
        }
        Ok(EngineArgs {
            model: self.model.clone(),
            tokenizer: self.tokenizer.clone(),
            load_format: self.load_format,
            device: Some(device),
            dtype: self.dtype,
            gpu_memory_utilization: self.gpu_memory_utilization,
            enforce_eager: self.enforce_eager,
            async_scheduling: !self.no_async_scheduling,
            kv_cache_dtype,
            max_model_len: self.max_model_len,
            max_num_seqs: self.max_num_seqs,
            max_num_batched_tokens: self.max_num_batched_tokens,
            block_size: self.block_size,
            num_kv_blocks: self.num_kv_blocks,
            kv_cache_memory_bytes: (self.kv_cache_memory_gib * (1u64 << 30) as f64) as usize,
            enable_prefix_caching: !self.no_prefix_caching,
            enable_chunked_prefill: !self.no_chunked_prefill,
            seed: self.weight_seed,
        })
    }
}

/// Sampling flags; an unset flag takes the model's `generation_config.json` value, else
/// vLLM's default (temperature 1, top-p 1, top-k off).
#[derive(Debug, Clone, Args)]
pub struct SamplingFlags {
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// 0 means greedy.
    #[arg(long)]
    pub temperature: Option<f32>,
    #[arg(long)]
    pub top_p: Option<f32>,
    /// -1 or 0 disables.
    #[arg(long)]
    pub top_k: Option<i32>,
    #[arg(long)]
    pub min_p: Option<f32>,
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop strings (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    #[arg(long)]
    pub ignore_eos: bool,
}

impl SamplingFlags {
    /// The request parameters: these flags over `defaults` (the engine's).
    pub fn params(&self, defaults: vllm_engine::SamplingParams) -> vllm_engine::SamplingParams {
        vllm_engine::SamplingParams {
            max_tokens: Some(self.max_tokens),
            temperature: self.temperature.unwrap_or(defaults.temperature),
            top_p: self.top_p.unwrap_or(defaults.top_p),
            top_k: self.top_k.unwrap_or(defaults.top_k),
            min_p: self.min_p.unwrap_or(defaults.min_p),
            repetition_penalty: self
                .repetition_penalty
                .unwrap_or(defaults.repetition_penalty),
            seed: self.seed,
            stop: self.stop.clone(),
            ignore_eos: self.ignore_eos,
            ..defaults
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ModelFlags;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        m: ModelFlags,
    }

    fn async_of(flags: &[&str]) -> bool {
        let argv = [&["vllm", "--model", "m", "--device", "cpu"][..], flags].concat();
        Cli::try_parse_from(argv)
            .unwrap()
            .m
            .engine_args()
            .unwrap()
            .async_scheduling
    }

    #[test]
    fn async_scheduling_is_on_unless_turned_off() {
        assert!(async_of(&[]));
        assert!(async_of(&["--async-scheduling"]));
        assert!(!async_of(&["--no-async-scheduling"]));
        // The last of the two flags wins, as in vLLM's argparse.
        assert!(async_of(&["--no-async-scheduling", "--async-scheduling"]));
        assert!(!async_of(&["--async-scheduling", "--no-async-scheduling"]));
    }
}

//! Engine arguments (vLLM's names) and model loading: a HuggingFace folder, a GGUF file, or
//! dummy weights from a `config.json`.

use crate::config::ModelConfig;
use crate::device::Device;
use crate::loader::dummy::DummySource;
use crate::loader::gguf::GgufFile;
use crate::loader::gguf_model::GgufSource;
use crate::loader::safetensors::SafetensorsSource;
use crate::loader::{LoadError, WeightSource};
use crate::model::ModelWeights;
use crate::tokenizer::Tokenizer;
use std::path::{Path, PathBuf};

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
    /// Qwen3-0.6B (benches/results/engine-h200-2026-11-30-async.md).
    pub async_scheduling: bool,
    /// KV cache element type (CUDA): the model's, or FP8 E4M3 with per-tensor scales of 1.
    pub kv_cache_dtype: vllm_kernels::CacheDType,
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
            kv_cache_dtype: vllm_kernels::CacheDType::Auto,
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

/// A loaded model: its config, f32 weights and tokenizer (absent for dummy weights without
/// tokenizer files), and the sampling defaults of its `generation_config.json`.
#[derive(Debug)]
pub struct LoadedModel<W = Vec<f32>> {
    pub config: ModelConfig,
    pub weights: ModelWeights<W>,
    pub tokenizer: Option<Tokenizer>,
    pub generation_defaults: GenerationDefaults,
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

fn is_gguf(p: &Path) -> bool {
    p.is_file()
        && p.extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// Loads what `args` names, weights in f32 on the host.
pub fn load_model(args: &EngineArgs) -> Result<LoadedModel, LoadError> {
    load_model_with(args, &mut |_, v| Ok(v))
}

/// Loads what `args` names, handing each weight tensor to `convert` as it is read (the CUDA
/// runner uploads it).
pub fn load_model_with<W>(
    args: &EngineArgs,
    convert: &mut crate::model::weights::ConvertTensor<'_, W>,
) -> Result<LoadedModel<W>, LoadError> {
    let path = &args.model;
    let file = path.display().to_string();
    if !path.exists() {
        return Err(LoadError::Io {
            file,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        });
    }
    let format = match args.load_format {
        LoadFormat::Auto if is_gguf(path) => LoadFormat::Gguf,
        LoadFormat::Auto => LoadFormat::Safetensors,
        f => f,
    };
    let extra_tokenizer = match &args.tokenizer {
        Some(t) => Some(Tokenizer::from_hf_dir(t)?),
        None => None,
    };
    let (config, weights, tokenizer) = match format {
        LoadFormat::Gguf => {
            let gguf = GgufFile::open(path)?;
            let tokenizer = match extra_tokenizer {
                Some(t) => t,
                None => Tokenizer::from_gguf(&gguf)?,
            };
            let (src, config) = GgufSource::new(gguf)?;
            let w = ModelWeights::load_with(&config, &src, convert)?;
            (config, w, Some(tokenizer))
        }
        LoadFormat::Safetensors | LoadFormat::Dummy => {
            if !path.is_dir() {
                return Err(LoadError::malformed(
                    &file,
                    "expected a model folder (config.json, *.safetensors) or a .gguf file",
                ));
            }
            let config = ModelConfig::from_file(&path.join("config.json"))?;
            let src: Box<dyn WeightSource> = if format == LoadFormat::Dummy {
                Box::new(DummySource::new(config.tie_word_embeddings, args.seed))
            } else {
                Box::new(SafetensorsSource::open(path)?)
            };
            let w = ModelWeights::load_with(&config, src.as_ref(), convert)?;
            let tokenizer = match extra_tokenizer {
                Some(t) => Some(t),
                None if path.join("tokenizer.json").exists() => Some(Tokenizer::from_hf_dir(path)?),
                None => None,
            };
            (config, w, tokenizer)
        }
        LoadFormat::Auto => unreachable!("resolved above"),
    };
    let (config, generation_defaults) = with_generation_config(config, path)?;
    Ok(LoadedModel {
        config,
        weights,
        tokenizer,
        generation_defaults,
    })
}

/// Adds `generation_config.json`'s EOS ids (a folder's file may list several) and reads its
/// sampling defaults.
fn with_generation_config(
    mut c: ModelConfig,
    dir: &Path,
) -> Result<(ModelConfig, GenerationDefaults), LoadError> {
    let p = dir.join("generation_config.json");
    if !dir.is_dir() || !p.exists() {
        return Ok((c, GenerationDefaults::default()));
    }
    let file = p.display().to_string();
    let text = std::fs::read_to_string(&p).map_err(|source| LoadError::Io {
        file: file.clone(),
        source,
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| LoadError::malformed(&file, format!("not JSON: {e}")))?;
    let ids: Vec<u32> = match v.get("eos_token_id") {
        Some(serde_json::Value::Number(n)) => {
            n.as_u64().map(|x| vec![x as u32]).unwrap_or_default()
        }
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64())
            .map(|x| x as u32)
            .collect(),
        _ => Vec::new(),
    };
    for id in ids {
        if !c.eos_token_ids.contains(&id) {
            c.eos_token_ids.push(id);
        }
    }
    let f = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_f64)
            .map(|x| x as f32)
    };
    // transformers' do_sample = false means greedy whatever the temperature says.
    let greedy = v.get("do_sample").and_then(serde_json::Value::as_bool) == Some(false);
    let d = GenerationDefaults {
        temperature: if greedy { Some(0.0) } else { f("temperature") },
        top_p: f("top_p"),
        top_k: v
            .get("top_k")
            .and_then(serde_json::Value::as_i64)
            .map(|x| x as i32),
        min_p: f("min_p"),
        repetition_penalty: f("repetition_penalty"),
    };
    Ok((c, d))
}

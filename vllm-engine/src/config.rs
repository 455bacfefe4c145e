//! A model's `config.json` (HuggingFace layout) read into a validated [`ModelConfig`] for the
//! architectures the engine runs. Every error names the file and the field.

use serde::Deserialize;
use std::path::Path;

/// Model families. Layers are shared; these differ only in the listed switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Llama 2 and 3 (llama3 RoPE scaling).
    Llama,
    /// Llama with an optional sliding window.
    Mistral,
    /// Bias on the q, k, v projections.
    Qwen2,
    /// RMSNorm on q and k per head, before RoPE.
    Qwen3,
}

/// Architectures accepted in `architectures[0]`.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &[
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
];

/// RoPE frequency scaling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// Llama 3.1's piecewise scaling of the inverse frequencies.
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max_position_embeddings: usize,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    pub rope_scaling: Option<RopeScaling>,
    pub tie_word_embeddings: bool,
    /// Attention to the last `w` tokens only.
    pub sliding_window: Option<usize>,
    /// Bias on the q, k, v projections.
    pub qkv_bias: bool,
    /// Per-head RMSNorm on q and k.
    pub qk_norm: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not valid JSON for a model config: {message}")]
    Json { file: String, message: String },
    #[error("{file}: missing field `{field}`")]
    Missing { file: String, field: &'static str },
    #[error("{file}: field `{field}` {reason}")]
    Invalid {
        file: String,
        field: &'static str,
        reason: String,
    },
    #[error("{file}: unsupported architecture {value:?}; supported: {supported}")]
    UnsupportedArchitecture {
        file: String,
        value: String,
        supported: String,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

#[derive(Deserialize)]
struct RawRopeScaling {
    rope_type: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    factor: Option<f32>,
    low_freq_factor: Option<f32>,
    high_freq_factor: Option<f32>,
    original_max_position_embeddings: Option<usize>,
    /// transformers >= 5 keeps the base here (`rope_parameters`).
    rope_theta: Option<f32>,
}

#[derive(Deserialize)]
struct Raw {
    architectures: Option<Vec<String>>,
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    max_position_embeddings: Option<usize>,
    rms_norm_eps: Option<f32>,
    rope_theta: Option<f32>,
    rope_scaling: Option<RawRopeScaling>,
    /// transformers >= 5: `rope_type`, `rope_theta` and the scaling fields in one object.
    rope_parameters: Option<RawRopeScaling>,
    tie_word_embeddings: Option<bool>,
    sliding_window: Option<usize>,
    use_sliding_window: Option<bool>,
    attention_bias: Option<bool>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<OneOrMany>,
}

impl ModelConfig {
    /// Reads and validates `path` (a `config.json`).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: file.clone(),
            source,
        })?;
        Self::from_json(&text, &file)
    }

    /// Parses and validates a config; `file` names the source in errors.
    pub fn from_json(text: &str, file: &str) -> Result<Self, ConfigError> {
        let f = || file.to_string();
        let raw: Raw = serde_json::from_str(text).map_err(|e| ConfigError::Json {
            file: f(),
            message: e.to_string(),
        })?;
        let arch_name =
            raw.architectures
                .as_ref()
                .and_then(|a| a.first())
                .ok_or(ConfigError::Missing {
                    file: f(),
                    field: "architectures",
                })?;
        let architecture = match arch_name.as_str() {
            "LlamaForCausalLM" => Architecture::Llama,
            "MistralForCausalLM" => Architecture::Mistral,
            "Qwen2ForCausalLM" => Architecture::Qwen2,
            "Qwen3ForCausalLM" => Architecture::Qwen3,
            other => {
                return Err(ConfigError::UnsupportedArchitecture {
                    file: f(),
                    value: other.to_string(),
                    supported: SUPPORTED_ARCHITECTURES.join(", "),
                });
            }
        };
        let need = |v: Option<usize>, field: &'static str| -> Result<usize, ConfigError> {
            match v {
                None => Err(ConfigError::Missing { file: f(), field }),
                Some(0) => Err(ConfigError::Invalid {
                    file: f(),
                    field,
                    reason: "must be > 0, got 0".into(),
                }),
                Some(x) => Ok(x),
            }
        };
        let hidden_size = need(raw.hidden_size, "hidden_size")?;
        let num_attention_heads = need(raw.num_attention_heads, "num_attention_heads")?;
        let num_key_value_heads = need(
            raw.num_key_value_heads.or(Some(num_attention_heads)),
            "num_key_value_heads",
        )?;
        if num_attention_heads % num_key_value_heads != 0 {
            return Err(ConfigError::Invalid {
                file: f(),
                field: "num_key_value_heads",
                reason: format!(
                    "{num_key_value_heads} does not divide num_attention_heads {num_attention_heads}"
                ),
            });
        }
        let head_dim = match raw.head_dim {
            Some(d) => need(Some(d), "head_dim")?,
            None if hidden_size % num_attention_heads == 0 => hidden_size / num_attention_heads,
            None => {
                return Err(ConfigError::Invalid {
                    file: f(),
                    field: "hidden_size",
                    reason: format!(
                        "{hidden_size} is not a multiple of num_attention_heads {num_attention_heads} and head_dim is absent"
                    ),
                });
            }
        };
        let rms_norm_eps = raw.rms_norm_eps.unwrap_or(1e-6);
        if !(rms_norm_eps.is_finite() && rms_norm_eps > 0.0) {
            return Err(ConfigError::Invalid {
                file: f(),
                field: "rms_norm_eps",
                reason: format!("must be > 0, got {rms_norm_eps}"),
            });
        }
        let rope_params = raw.rope_parameters.or(raw.rope_scaling);
        let rope_theta = raw
            .rope_theta
            .or(rope_params.as_ref().and_then(|r| r.rope_theta))
            .unwrap_or(10000.0);
        if !(rope_theta.is_finite() && rope_theta > 0.0) {
            return Err(ConfigError::Invalid {
                file: f(),
                field: "rope_theta",
                reason: format!("must be > 0, got {rope_theta}"),
            });
        }
        let rope_scaling = match rope_params {
            None => None,
            Some(r) => {
                let kind = r.rope_type.or(r.kind).unwrap_or_default();
                match kind.as_str() {
                    "llama3" => Some(RopeScaling::Llama3 {
                        factor: r.factor.ok_or(ConfigError::Missing {
                            file: f(),
                            field: "rope_scaling.factor",
                        })?,
                        low_freq_factor: r.low_freq_factor.unwrap_or(1.0),
                        high_freq_factor: r.high_freq_factor.unwrap_or(4.0),
                        original_max_position_embeddings: r
                            .original_max_position_embeddings
                            .unwrap_or(8192),
                    }),
                    "default" => None,
                    other => {
                        return Err(ConfigError::Invalid {
                            file: f(),
                            field: "rope_scaling",
                            reason: format!(
                                "type {other:?} is not supported (supported: llama3, default)"
                            ),
                        });
                    }
                }
            }
        };
        // A window of 0 tokens would see nothing: taken as no window, as the GPU kernels do.
        let sliding_window = match architecture {
            Architecture::Mistral => raw.sliding_window,
            Architecture::Qwen2 | Architecture::Qwen3 if raw.use_sliding_window == Some(true) => {
                raw.sliding_window
            }
            _ => None,
        }
        .filter(|&w| w > 0);
        Ok(Self {
            architecture,
            vocab_size: need(raw.vocab_size, "vocab_size")?,
            hidden_size,
            intermediate_size: need(raw.intermediate_size, "intermediate_size")?,
            num_hidden_layers: need(raw.num_hidden_layers, "num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            max_position_embeddings: need(raw.max_position_embeddings, "max_position_embeddings")?,
            rms_norm_eps,
            rope_theta,
            rope_scaling,
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            sliding_window,
            qkv_bias: architecture == Architecture::Qwen2 || raw.attention_bias.unwrap_or(false),
            qk_norm: architecture == Architecture::Qwen3,
            bos_token_id: raw.bos_token_id,
            eos_token_ids: match raw.eos_token_id {
                None => Vec::new(),
                Some(OneOrMany::One(x)) => vec![x],
                Some(OneOrMany::Many(v)) => v,
            },
        })
    }
}

//! A GGUF file as a model: the [`ModelConfig`] rebuilt from `{arch}.*` metadata, and tensors
//! served under their HuggingFace names. llama.cpp's converter permutes the rows of Llama's
//! q and k projections (per head, from the halves layout to interleaved pairs, for its
//! GPT-J-style RoPE); [`GgufSource`] undoes it so the shared NeoX-style layers apply.

use super::gguf::{GgufFile, MetaValue};
use super::{LoadError, WeightSource};
use crate::config::{Architecture, ModelConfig};

/// GGUF `general.architecture` values the engine runs.
pub const SUPPORTED_GGUF_ARCHS: &str = "llama, qwen2, qwen3";

/// A GGUF model file's tensors by HuggingFace name.
#[derive(Debug)]
pub struct GgufSource {
    pub gguf: GgufFile,
    arch: Architecture,
    /// (q heads, kv heads) for undoing the llama permutation.
    heads: (usize, usize),
}

/// The GGUF name of a HuggingFace tensor name, if it has one.
fn gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.into());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (module, suffix) = rest.rsplit_once('.')?;
    let g = match module {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{g}.{suffix}"))
}

/// Undoes llama.cpp's permutation of q/k rows: within each head of `head_dim` rows, GGUF row
/// `2 i + j` holds HF row `j * head_dim / 2 + i`.
fn unpermute(data: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let hd = rows / heads;
    let half = hd / 2;
    let mut out = vec![0.0; data.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let src = (h * hd + 2 * i + j) * cols;
                let dst = (h * hd + j * half + i) * cols;
                out[dst..dst + cols].copy_from_slice(&data[src..src + cols]);
            }
        }
    }
    out
}

impl GgufSource {
    /// Wraps a parsed GGUF file and derives its model config.
    pub fn new(gguf: GgufFile) -> Result<(Self, ModelConfig), LoadError> {
        let config = config_from_gguf(&gguf)?;
        let heads = (config.num_attention_heads, config.num_key_value_heads);
        Ok((
            Self {
                gguf,
                arch: config.architecture,
                heads,
            },
            config,
        ))
    }
}

impl WeightSource for GgufSource {
    fn contains(&self, name: &str) -> bool {
        gguf_name(name).is_some_and(|g| self.gguf.tensors.contains_key(&g))
    }

    fn file(&self) -> &str {
        &self.gguf.file
    }

    fn load_any(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), LoadError> {
        let g = gguf_name(name).ok_or_else(|| LoadError::MissingTensor {
            file: self.gguf.file.clone(),
            tensor: name.into(),
        })?;
        let (shape, data) = self.gguf.tensor_f32(&g)?;
        let permuted = self.arch == Architecture::Llama
            && (name.contains("self_attn.q_proj.") || name.contains("self_attn.k_proj."));
        if !permuted {
            return Ok((shape, data));
        }
        let heads = if name.contains("q_proj") {
            self.heads.0
        } else {
            self.heads.1
        };
        let rows = shape[0];
        let cols = if shape.len() > 1 { shape[1] } else { 1 };
        if !rows.is_multiple_of(heads * 2) {
            return Err(LoadError::malformed(
                &self.gguf.file,
                format!("tensor {g}: {rows} rows do not split into {heads} heads of pairs"),
            ));
        }
        Ok((shape, unpermute(&data, rows, cols, heads)))
    }
}

fn config_from_gguf(g: &GgufFile) -> Result<ModelConfig, LoadError> {
    let arch_name = g.meta_str("general.architecture")?;
    let architecture = match arch_name {
        "llama" => Architecture::Llama,
        "qwen2" => Architecture::Qwen2,
        "qwen3" => Architecture::Qwen3,
        other => {
            return Err(LoadError::Unsupported {
                file: g.file.clone(),
                what: "general.architecture".into(),
                value: other.into(),
                supported: SUPPORTED_GGUF_ARCHS.into(),
            });
        }
    };
    if g.tensors.contains_key("rope_freqs.weight") {
        return Err(LoadError::Unsupported {
            file: g.file.clone(),
            what: "tensor".into(),
            value: "rope_freqs.weight (Llama 3.1 RoPE scaling stored as factors)".into(),
            supported: "GGUF files without rope_freqs; load the HF folder instead".into(),
        });
    }
    let key = |k: &str| format!("{arch_name}.{k}");
    let u = |k: &str| -> Result<usize, LoadError> {
        let v = g.meta_u64(&key(k))? as usize;
        if v == 0 {
            return Err(LoadError::malformed(&g.file, format!("{} is 0", key(k))));
        }
        Ok(v)
    };
    let f = |k: &str, default: f64| -> f32 {
        g.meta(&key(k))
            .and_then(MetaValue::as_f64)
            .unwrap_or(default) as f32
    };
    let hidden_size = u("embedding_length")?;
    let heads = u("attention.head_count")?;
    let kv_heads = g
        .meta(&key("attention.head_count_kv"))
        .and_then(MetaValue::as_u64)
        .map_or(heads, |v| v as usize);
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(LoadError::malformed(
            &g.file,
            format!("head_count_kv {kv_heads} does not divide head_count {heads}"),
        ));
    }
    let head_dim = match g
        .meta(&key("attention.key_length"))
        .and_then(MetaValue::as_u64)
    {
        Some(d) => d as usize,
        None if hidden_size.is_multiple_of(heads) => hidden_size / heads,
        None => {
            return Err(LoadError::malformed(
                &g.file,
                format!("embedding_length {hidden_size} is not a multiple of head_count {heads}"),
            ));
        }
    };
    let vocab_size = match g
        .meta("tokenizer.ggml.tokens")
        .and_then(MetaValue::as_array)
    {
        Some(t) => t.len(),
        None => u("vocab_size")?,
    };
    let id = |k: &str| g.meta(k).and_then(MetaValue::as_u64).map(|v| v as u32);
    let mut eos_token_ids: Vec<u32> =
        ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"]
            .iter()
            .filter_map(|k| id(k))
            .collect();
    eos_token_ids.dedup();
    Ok(ModelConfig {
        architecture,
        vocab_size,
        hidden_size,
        intermediate_size: u("feed_forward_length")?,
        num_hidden_layers: u("block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim,
        max_position_embeddings: u("context_length")?,
        rms_norm_eps: f("attention.layer_norm_rms_epsilon", 1e-6),
        rope_theta: f("rope.freq_base", 10000.0),
        rope_scaling: None,
        tie_word_embeddings: !g.tensors.contains_key("output.weight"),
        sliding_window: None,
        qkv_bias: g.tensors.contains_key("blk.0.attn_q.bias"),
        qk_norm: g.tensors.contains_key("blk.0.attn_q_norm.weight"),
        bos_token_id: id("tokenizer.ggml.bos_token_id"),
        eos_token_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways_we_need() {
        assert_eq!(
            gguf_name("model.layers.12.self_attn.q_proj.bias").as_deref(),
            Some("blk.12.attn_q.bias")
        );
        assert_eq!(
            gguf_name("model.layers.0.mlp.down_proj.weight").as_deref(),
            Some("blk.0.ffn_down.weight")
        );
        assert_eq!(gguf_name("model.layers.0.weird.weight"), None);
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: w.reshape(heads, 2, hd/2, cols).swapaxes(1, 2)
        let (heads, hd, cols) = (2, 4, 3);
        let rows = heads * hd;
        let hf: Vec<f32> = (0..rows * cols).map(|x| x as f32).collect();
        let mut gg = vec![0.0; hf.len()];
        for h in 0..heads {
            for i in 0..hd / 2 {
                for j in 0..2 {
                    let dst = (h * hd + 2 * i + j) * cols;
                    let src = (h * hd + j * (hd / 2) + i) * cols;
                    gg[dst..dst + cols].copy_from_slice(&hf[src..src + cols]);
                }
            }
        }
        assert_eq!(unpermute(&gg, rows, cols, heads), hf);
    }
}

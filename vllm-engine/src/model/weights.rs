//! Model weights in f32, loaded by HuggingFace name from any [`WeightSource`], every shape
//! checked against the config. q/k/v are stored fused as one `[(H + 2 KV) D, hidden]` matrix
//! and gate/up as one `[2 I, hidden]`, so a layer takes four matrix products.

use crate::config::ModelConfig;
use crate::loader::{LoadError, WeightSource};

/// One decoder layer.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    pub input_norm: Vec<f32>,
    /// `[(H + 2 KV) D, hidden]`: q rows, then k, then v.
    pub qkv: Vec<f32>,
    pub qkv_bias: Option<Vec<f32>>,
    /// Per-head RMSNorm weights `[D]` (Qwen3).
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    /// `[hidden, H D]`
    pub o_proj: Vec<f32>,
    pub post_norm: Vec<f32>,
    /// `[2 I, hidden]`: gate rows, then up.
    pub gate_up: Vec<f32>,
    /// `[hidden, I]`
    pub down: Vec<f32>,
}

/// The whole model.
#[derive(Debug, Clone)]
pub struct ModelWeights {
    /// `[vocab, hidden]`
    pub embed: Vec<f32>,
    pub layers: Vec<LayerWeights>,
    pub norm: Vec<f32>,
    /// `[vocab, hidden]`; `None` when tied to `embed`.
    pub lm_head: Option<Vec<f32>>,
}

impl ModelWeights {
    /// Loads every tensor `config` calls for from `src`.
    pub fn load(config: &ModelConfig, src: &dyn WeightSource) -> Result<Self, LoadError> {
        let c = config;
        let (h, d) = (c.hidden_size, c.head_dim);
        let (nq, nkv) = (c.num_attention_heads * d, c.num_key_value_heads * d);
        let i = c.intermediate_size;
        let embed = src.load("model.embed_tokens.weight", &[c.vocab_size, h])?;
        let lm_head = if c.tie_word_embeddings && !src.contains("lm_head.weight") {
            None
        } else {
            Some(src.load("lm_head.weight", &[c.vocab_size, h])?)
        };
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for l in 0..c.num_hidden_layers {
            let p = |s: &str| format!("model.layers.{l}.{s}");
            let mut qkv = src.load(&p("self_attn.q_proj.weight"), &[nq, h])?;
            qkv.extend(src.load(&p("self_attn.k_proj.weight"), &[nkv, h])?);
            qkv.extend(src.load(&p("self_attn.v_proj.weight"), &[nkv, h])?);
            let qkv_bias = if c.qkv_bias {
                let mut b = src.load(&p("self_attn.q_proj.bias"), &[nq])?;
                b.extend(src.load(&p("self_attn.k_proj.bias"), &[nkv])?);
                b.extend(src.load(&p("self_attn.v_proj.bias"), &[nkv])?);
                Some(b)
            } else {
                None
            };
            let (q_norm, k_norm) = if c.qk_norm {
                (
                    Some(src.load(&p("self_attn.q_norm.weight"), &[d])?),
                    Some(src.load(&p("self_attn.k_norm.weight"), &[d])?),
                )
            } else {
                (None, None)
            };
            let mut gate_up = src.load(&p("mlp.gate_proj.weight"), &[i, h])?;
            gate_up.extend(src.load(&p("mlp.up_proj.weight"), &[i, h])?);
            layers.push(LayerWeights {
                input_norm: src.load(&p("input_layernorm.weight"), &[h])?,
                qkv,
                qkv_bias,
                q_norm,
                k_norm,
                o_proj: src.load(&p("self_attn.o_proj.weight"), &[h, nq])?,
                post_norm: src.load(&p("post_attention_layernorm.weight"), &[h])?,
                gate_up,
                down: src.load(&p("mlp.down_proj.weight"), &[h, i])?,
            });
        }
        Ok(Self {
            embed,
            layers,
            norm: src.load("model.norm.weight", &[h])?,
            lm_head,
        })
    }

    /// The LM head matrix `[vocab, hidden]`.
    pub fn head(&self) -> &[f32] {
        self.lm_head.as_deref().unwrap_or(&self.embed)
    }
}

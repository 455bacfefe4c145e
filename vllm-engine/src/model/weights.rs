//! Model weights, loaded by HuggingFace name from any [`WeightSource`], every shape checked
//! against the config. q/k/v are stored fused as one `[(H + 2 KV) D, hidden]` matrix and
//! gate/up as one `[2 I, hidden]`, so a layer takes four matrix products.
//!
//! The tensor type `W` is `Vec<f32>` on the CPU; [`ModelWeights::load_with`] converts each
//! tensor as it is read (the CUDA runner uploads it as bf16/f16), so a large model never sits
//! in host memory whole.

use super::{Linear, Mlp};
use crate::config::ModelConfig;
use crate::loader::{LoadError, WeightSource};

/// Turns one f32 tensor (by name) into the runner's tensor type.
pub type ConvertTensor<'a, W> = dyn FnMut(&str, Vec<f32>) -> Result<W, LoadError> + 'a;

/// One decoder layer.
#[derive(Debug, Clone)]
pub struct LayerWeights<W = Vec<f32>> {
    pub input_norm: W,
    /// `[(H + 2 KV) D, hidden]`: q rows, then k, then v.
    pub qkv: Linear<W>,
    /// `[(H + 2 KV) D]` (Qwen2).
    pub qkv_bias: Option<W>,
    /// Per-head RMSNorm weights `[D]` (Qwen3).
    pub q_norm: Option<W>,
    pub k_norm: Option<W>,
    /// `[hidden, H D]`
    pub o_proj: Linear<W>,
    pub post_norm: W,
    pub mlp: Mlp<W>,
}

/// The whole model.
#[derive(Debug, Clone)]
pub struct ModelWeights<W = Vec<f32>> {
    /// `[vocab, hidden]`: the embedding table, and the LM head when tied.
    pub embed: Linear<W>,
    pub layers: Vec<LayerWeights<W>>,
    pub norm: W,
    /// `[vocab, hidden]`; `None` when tied to `embed`.
    pub lm_head: Option<Linear<W>>,
}

impl ModelWeights {
    /// Loads every tensor `config` calls for from `src` in f32.
    pub fn load(config: &ModelConfig, src: &dyn WeightSource) -> Result<Self, LoadError> {
        Self::load_with(config, src, &mut |_, v| Ok(v))
    }
}

impl<W> ModelWeights<W> {
    /// Loads every tensor `config` calls for from `src`, handing each (fused where the layout
    /// says so) to `convert` with its name as soon as it is read.
    pub fn load_with(
        config: &ModelConfig,
        src: &dyn WeightSource,
        convert: &mut ConvertTensor<'_, W>,
    ) -> Result<Self, LoadError> {
        let c = config;
        let (h, d) = (c.hidden_size, c.head_dim);
        let (nq, nkv) = (c.num_attention_heads * d, c.num_key_value_heads * d);
        let i = c.intermediate_size;
        let one = |convert: &mut ConvertTensor<'_, W>, name: &str, shape: &[usize]| {
            convert(name, src.load(name, shape)?)
        };
        let v = c.vocab_size;
        let embed = Linear::dense(one(convert, "model.embed_tokens.weight", &[v, h])?, v, h);
        let lm_head = if c.tie_word_embeddings && !src.contains("lm_head.weight") {
            None
        } else {
            Some(Linear::dense(
                one(convert, "lm_head.weight", &[v, h])?,
                v,
                h,
            ))
        };
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for l in 0..c.num_hidden_layers {
            let p = |s: &str| format!("model.layers.{l}.{s}");
            let mut qkv = src.load(&p("self_attn.q_proj.weight"), &[nq, h])?;
            qkv.extend(src.load(&p("self_attn.k_proj.weight"), &[nkv, h])?);
            qkv.extend(src.load(&p("self_attn.v_proj.weight"), &[nkv, h])?);
            let qkv = Linear::dense(
                convert(&p("self_attn.qkv_proj.weight"), qkv)?,
                nq + 2 * nkv,
                h,
            );
            let qkv_bias = if c.qkv_bias {
                let mut b = src.load(&p("self_attn.q_proj.bias"), &[nq])?;
                b.extend(src.load(&p("self_attn.k_proj.bias"), &[nkv])?);
                b.extend(src.load(&p("self_attn.v_proj.bias"), &[nkv])?);
                Some(convert(&p("self_attn.qkv_proj.bias"), b)?)
            } else {
                None
            };
            let (q_norm, k_norm) = if c.qk_norm {
                (
                    Some(one(convert, &p("self_attn.q_norm.weight"), &[d])?),
                    Some(one(convert, &p("self_attn.k_norm.weight"), &[d])?),
                )
            } else {
                (None, None)
            };
            let mut gate_up = src.load(&p("mlp.gate_proj.weight"), &[i, h])?;
            gate_up.extend(src.load(&p("mlp.up_proj.weight"), &[i, h])?);
            let gate_up = Linear::dense(convert(&p("mlp.gate_up_proj.weight"), gate_up)?, 2 * i, h);
            let down = Linear::dense(one(convert, &p("mlp.down_proj.weight"), &[h, i])?, h, i);
            layers.push(LayerWeights {
                input_norm: one(convert, &p("input_layernorm.weight"), &[h])?,
                qkv,
                qkv_bias,
                q_norm,
                k_norm,
                o_proj: Linear::dense(
                    one(convert, &p("self_attn.o_proj.weight"), &[h, nq])?,
                    h,
                    nq,
                ),
                post_norm: one(convert, &p("post_attention_layernorm.weight"), &[h])?,
                mlp: Mlp::Dense { gate_up, down },
            });
        }
        Ok(Self {
            embed,
            layers,
            norm: one(convert, "model.norm.weight", &[h])?,
            lm_head,
        })
    }

    /// The LM head `[vocab, hidden]`.
    pub fn head(&self) -> &Linear<W> {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }
}

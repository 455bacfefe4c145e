//! The decoder of the Llama family, written once for every backend: Llama 2/3, Mistral, Qwen2
//! and Qwen3 differ only in [`crate::config::ModelConfig`] switches (a q | k | v bias, per-head
//! q/k norms, a sliding window, RoPE scaling), which reach this loop as optional weights and
//! the backend's attention geometry.
//!
//! Per layer: RMSNorm -> fused QKV product (+ bias) (-> per-head q/k RMSNorm) -> RoPE and the
//! KV cache write -> causal attention over the paged cache -> output product -> residual add
//! and RMSNorm -> MLP (SwiGLU) -> residual add; then the final norm and the LM head. Cost per
//! step of T tokens: 2 T x parameters flops for the products, plus attention over each token's
//! context, O(T x hidden) for everything else.

use super::ops::{LayerOps, NormSite, Proj};
use super::{Mlp, ModelWeights};

/// One forward step over the tokens the backend was given.
pub fn forward<O: LayerOps>(w: &ModelWeights<O::Tensor>, ops: &mut O) -> Result<(), O::Error> {
    ops.embed(&w.embed)?;
    for (l, lw) in w.layers.iter().enumerate() {
        ops.norm(NormSite::Input { first: l == 0 }, &lw.input_norm)?;
        ops.linear(Proj::Qkv, &lw.qkv)?;
        if let Some(bias) = &lw.qkv_bias {
            ops.qkv_bias(bias)?;
        }
        if let (Some(q), Some(k)) = (&lw.q_norm, &lw.k_norm) {
            ops.qk_norm(q, k)?;
        }
        ops.rotary_and_cache(l)?;
        ops.attention(l)?;
        ops.linear(Proj::O, &lw.o_proj)?;
        ops.norm(NormSite::PostAttention, &lw.post_norm)?;
        mlp(&lw.mlp, ops)?;
    }
    ops.norm(NormSite::Final, &w.norm)?;
    ops.logits(w.head())
}

/// The feed-forward block: its output is left in the hidden states for the next norm to add.
fn mlp<O: LayerOps>(m: &Mlp<O::Tensor>, ops: &mut O) -> Result<(), O::Error> {
    match m {
        Mlp::Dense { gate_up, down } => {
            ops.linear(Proj::GateUp, gate_up)?;
            ops.silu_and_mul()?;
            ops.linear(Proj::Down, down)
        }
    }
}

//! The layer-ops seam: what a backend provides so that [`super::llama::forward`], written
//! once, runs on it. A backend owns the step's activations (the residual stream, the normed
//! hidden states, the fused q | k | v rows, the attention output, the MLP's intermediate) and
//! its KV cache; each op reads and writes those in place, so the decoder names no buffer.
//! The CPU runner implements it over `vllm-kernels`' CPU ops in f32; the CUDA runner over the
//! CUDA kernels and cuBLAS, keeping graph-safe buffers, the decode / prefill attention split and
//! async scheduling on its side. Calls are monomorphized: the seam costs nothing per op.

use super::Linear;

/// Where a norm sits in the decoder; the residual rule follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormSite {
    /// Before attention. In layer 0 (`first`) the residual is the embedding: `hidden =
    /// norm(residual)`; later, the previous MLP's output is added first.
    Input { first: bool },
    /// After attention: `residual += hidden; hidden = norm(residual)`.
    PostAttention,
    /// After the last layer, same rule; `hidden` is then the final hidden state.
    Final,
}

/// The decoder's products, each naming its input and output activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proj {
    /// normed hidden -> fused q | k | v rows.
    Qkv,
    /// attention output -> hidden (added to the residual by the next norm).
    O,
    /// normed hidden -> gate | up.
    GateUp,
    /// activation -> hidden (added to the residual by the next norm).
    Down,
}

impl Proj {
    /// The op's name in timings.
    pub fn label(self) -> &'static str {
        match self {
            Proj::Qkv => "qkv_proj",
            Proj::O => "o_proj",
            Proj::GateUp => "gate_up_proj",
            Proj::Down => "down_proj",
        }
    }
}

impl NormSite {
    /// The op's name in timings.
    pub fn label(self) -> &'static str {
        match self {
            NormSite::Input { .. } => "input_norm",
            NormSite::PostAttention => "post_norm",
            NormSite::Final => "final_norm",
        }
    }
}

/// The ops one decoder step is made of, over the backend's own activations.
pub trait LayerOps {
    /// A weight tensor on this backend.
    type Tensor;
    type Error;
    /// `residual = table[tokens]`.
    fn embed(&mut self, table: &Linear<Self::Tensor>) -> Result<(), Self::Error>;
    /// RMSNorm with the residual rule of `site`.
    fn norm(&mut self, site: NormSite, weight: &Self::Tensor) -> Result<(), Self::Error>;
    /// `out = in W^T` for the activations `proj` names.
    fn linear(&mut self, proj: Proj, w: &Linear<Self::Tensor>) -> Result<(), Self::Error>;
    /// Adds the q | k | v bias to every row (Qwen2).
    fn qkv_bias(&mut self, bias: &Self::Tensor) -> Result<(), Self::Error>;
    /// Per-head RMSNorm of the query and key heads (Qwen3).
    fn qk_norm(&mut self, q: &Self::Tensor, k: &Self::Tensor) -> Result<(), Self::Error>;
    /// Rotary embedding of the query and key heads, then the keys and values written to layer
    /// `layer`'s cache at the tokens' slots.
    fn rotary_and_cache(&mut self, layer: usize) -> Result<(), Self::Error>;
    /// Causal attention of every query row over its sequence in layer `layer`'s cache.
    fn attention(&mut self, layer: usize) -> Result<(), Self::Error>;
    /// `act = silu(gate) * up`.
    fn silu_and_mul(&mut self) -> Result<(), Self::Error>;
    /// The LM head over the final hidden states of the step's logits rows (and, on a backend
    /// that samples, the draw).
    fn logits(&mut self, head: &Linear<Self::Tensor>) -> Result<(), Self::Error>;
}

//! The decoder-only transformer the supported families share (Llama, Mistral, Qwen2, Qwen3):
//! embedding; per layer RMSNorm -> q/k/v projections (+ bias for Qwen2) -> per-head q/k RMSNorm
//! (Qwen3) -> RoPE (NeoX halves; llama3 frequency scaling) -> causal attention over the paged
//! KV cache (sliding window for Mistral) -> output projection + residual -> RMSNorm -> SwiGLU
//! MLP + residual; final RMSNorm; LM head (tied to the embedding when configured). The
//! architectures differ only in [`crate::config::ModelConfig`] switches; this module holds the
//! weights and RoPE tables, the runners hold the compute.

pub mod rope;
pub mod weights;

pub use rope::Rope;
pub use weights::{LayerWeights, ModelWeights};

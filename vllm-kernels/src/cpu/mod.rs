//! The CPU reference of every op: plain loops in f32 over the same validated arguments as the
//! CUDA wrappers, rounding to the storage type at the same points as the kernels. GPU tests
//! compare against these, and the CPU model runner calls them. Ops with many buffers take them
//! as one operand struct of slices ([`PagedAttentionIo`], [`PrefillAttentionIo`]; the CUDA
//! wrappers take the same structs over device buffers).

mod activation;
mod attention;
mod cache;
mod gemm;
mod norm;
mod prefill;
mod rotary;
mod rows;
mod sampling;

pub use activation::act_and_mul;
pub use attention::{PagedAttentionIo, paged_attention};
pub use cache::{copy_blocks, reshape_and_cache, swap_blocks};
pub use gemm::{skinny_gemm, sm90_gemm};
pub use norm::{fused_add_rms_norm, head_rms_norm, rms_norm};
pub use prefill::{PrefillAttentionIo, prefill_attention};
pub use rotary::rotary_embedding;
pub use rows::{add_bias, gather_rows};
pub use sampling::{fill_tokens, gumbel, sample_score, sample_tokens, uniform};

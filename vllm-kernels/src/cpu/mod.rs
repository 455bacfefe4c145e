//! The CPU reference of every op: plain loops in f32 over the same validated arguments as the
//! CUDA wrappers, rounding to the storage type at the same points as the kernels. GPU tests
//! compare against these, and the CPU model runner calls them (rayon-parallel over rows where the
//! work is per row, which leaves each row's arithmetic unchanged; [`matmul_bt`] is the runner's
//! f32 product, [`causal_attention`] its attention for any head size). Ops with many buffers take them
//! as one operand struct of slices ([`PagedAttentionIo`], [`PrefillAttentionIo`]; the CUDA
//! wrappers take the same structs over device buffers).

mod activation;
mod attention;
mod cache;
mod gemm;
mod linalg;
mod norm;
mod prefill;
mod rotary;
mod rows;
mod sampling;

pub use activation::act_and_mul;
pub use attention::{PagedAttentionIo, paged_attention};
pub use cache::{copy_blocks, reshape_and_cache, swap_blocks};
pub use gemm::{skinny_gemm, sm90_gemm};
pub use linalg::{SMALL_M, dot_product, matmul_bt};
pub use norm::{fused_add_rms_norm, head_rms_norm, rms_norm};
pub use prefill::{PrefillAttentionIo, causal_attention, prefill_attention};
pub use rotary::{rotary_embedding, rotary_embedding_qkv};
pub use rows::{add_bias, gather_rows};
pub use sampling::{fill_tokens, gumbel, sample_score, sample_tokens, uniform};

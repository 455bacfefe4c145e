//! Arguments of prefill attention over the paged KV cache (varlen, causal, GQA, sliding window):
//! the shared [`AttentionGeometry`] plus the batch (sequences, query rows, longest query run).
//! Validation is O(1); the host-side check of offsets, lengths and tables O(seqs).

use super::attention_geometry::{ATTENTION_DTYPES, AttentionGeometry, AttentionLens};
use super::{check_dtype, check_eq};
use crate::dtype::{CacheDType, DType};
use crate::error::{KernelError, Result};

const OP: &str = "prefill_attention";

/// The new query tokens of `num_seqs` sequences (concatenated, `cu_query_lens` marks where each
/// starts) attend causally to their sequences' contexts in the paged cache: the cached prefix and
/// the new tokens themselves (written by `reshape_and_cache` first). Query `i` of sequence `s`
/// sits at position `seq_lens[s] - q_len(s) + i` and sees the keys at positions up to its own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrefillAttentionArgs {
    /// Heads, head size, cache, query stride, window, scale, cache dtype.
    pub geometry: AttentionGeometry,
    pub num_seqs: usize,
    /// Query rows in all (= `cu_query_lens[num_seqs]`).
    pub num_tokens: usize,
    /// Longest query run of a sequence (sizes the grid).
    pub max_query_len: usize,
    /// Keep the softmax weights P as hi + lo 16-bit halves in P.V (two MMAs, ~25% slower):
    /// ~16-bit weights, so every output element is within the dtype's element-wise tolerance
    /// even where a row's output cancels to near zero. Default `false`: P is rounded once to the
    /// dtype, as FlashAttention and PyTorch's SDPA do; the error is then bounded by ~one rounding
    /// of the weights times the largest |V| the row sees (2^-9 max|V| for bf16, 2^-12 for f16),
    /// see benches/results/NOTES.md.
    pub split_p: bool,
}

/// Element counts of prefill attention's buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrefillAttentionLens {
    pub common: AttentionLens,
    pub cu_query_lens: usize,
}

impl PrefillAttentionArgs {
    /// `num_tokens` query rows of `num_seqs` sequences, runs of at most `max_query_len`.
    pub fn new(
        geometry: AttentionGeometry,
        num_seqs: usize,
        num_tokens: usize,
        max_query_len: usize,
    ) -> Self {
        Self {
            geometry,
            num_seqs,
            num_tokens,
            max_query_len,
            split_p: false,
        }
    }

    /// The same arguments over an FP8 E4M3 cache with these per-tensor scales.
    pub fn with_fp8_cache(self, k_scale: f32, v_scale: f32) -> Self {
        Self {
            geometry: self.geometry.with_fp8_cache(k_scale, v_scale),
            ..self
        }
    }

    /// Buffer lengths and supported values (everything the GPU wrapper can check without reading
    /// device memory).
    pub fn validate(&self, dtype: DType, lens: &PrefillAttentionLens) -> Result<()> {
        check_dtype(OP, dtype, ATTENTION_DTYPES)?;
        self.validate_shapes(lens)
    }

    /// The shape checks alone (the CPU reference also takes f32).
    pub fn validate_shapes(&self, lens: &PrefillAttentionLens) -> Result<()> {
        self.geometry.check(OP, self.num_seqs)?;
        self.validate_layout(lens)
    }

    /// The layout checks alone, for any head size and block size (the CPU model runner's
    /// attention; [`Self::validate_shapes`] adds the sets the GPU kernel is compiled for).
    pub fn validate_layout(&self, lens: &PrefillAttentionLens) -> Result<()> {
        let g = &self.geometry;
        g.check_layout(OP)?;
        if g.cache_dtype == CacheDType::Fp8E4m3 && !(g.scale * g.k_scale).is_finite() {
            return Err(KernelError::invalid(OP, "scale * k_scale must be finite"));
        }
        if self.max_query_len > i32::MAX as usize || self.num_tokens > i32::MAX as usize {
            return Err(KernelError::invalid(
                OP,
                "num_tokens and max_query_len must fit in i32",
            ));
        }
        g.check_lens(OP, (self.num_seqs, self.num_tokens), &lens.common)?;
        check_eq(
            OP,
            "cu_query_lens length (num_seqs + 1)",
            self.num_seqs + 1,
            lens.cu_query_lens,
        )
    }

    /// Host-side check of the offsets, lengths and block tables (the kernel trusts them).
    pub fn validate_tables(
        &self,
        block_tables: &[i32],
        cu_query_lens: &[i32],
        seq_lens: &[i32],
        num_blocks: usize,
    ) -> Result<()> {
        let g = &self.geometry;
        if cu_query_lens.first() != Some(&0)
            || cu_query_lens.last().map(|&x| x as i64) != Some(self.num_tokens as i64)
        {
            return Err(KernelError::invalid(
                OP,
                format!(
                    "cu_query_lens must run from 0 to num_tokens {}",
                    self.num_tokens
                ),
            ));
        }
        let cap = g.max_blocks_per_seq * g.block_size;
        for (s, &len) in seq_lens.iter().enumerate() {
            let q_len = cu_query_lens[s + 1] as i64 - cu_query_lens[s] as i64;
            if q_len < 0 || q_len as usize > self.max_query_len {
                return Err(KernelError::OutOfRange {
                    op: OP,
                    what: "query length",
                    value: q_len,
                    limit: self.max_query_len + 1,
                });
            }
            if (len as i64) < q_len || len as usize > cap {
                return Err(KernelError::invalid(
                    OP,
                    format!(
                        "seq_len {len} of sequence {s} must be >= its {q_len} query tokens and <= {cap}"
                    ),
                ));
            }
            g.check_table_row(OP, block_tables, (s, len as usize), num_blocks)?;
        }
        Ok(())
    }

    /// Keys each query row sees, summed over the rows of all sequences (the causal work; times
    /// 4 * head_size * num_heads it is the flop count).
    pub fn visible_pairs(&self, cu_query_lens: &[i32], seq_lens: &[i32]) -> u64 {
        let w = self.geometry.sliding_window.unwrap_or(usize::MAX) as u64;
        (0..seq_lens.len())
            .map(|s| {
                let q_len = (cu_query_lens[s + 1] - cu_query_lens[s]) as u64;
                let ctx0 = seq_lens[s] as u64 - q_len;
                (0..q_len).map(|i| (ctx0 + i + 1).min(w)).sum::<u64>()
            })
            .sum()
    }
}

//! Arguments of prefill attention over the paged KV cache (varlen, causal, GQA, sliding window).

use super::attention::{check_attention_common, check_block_row, check_fp8_attention};
use super::{ATTENTION_DTYPES, check_dtype, check_eq, check_rows};
use crate::dtype::{CacheDType, DType};
use crate::error::{KernelError, Result};

/// The new query tokens of `num_seqs` sequences (concatenated, `cu_query_lens` marks where each
/// starts) attend causally to their sequences' contexts in the paged cache: the cached prefix and
/// the new tokens themselves (written by `reshape_and_cache` first). Query `i` of sequence `s`
/// sits at position `seq_lens[s] - q_len(s) + i` and sees the keys at positions up to its own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrefillAttentionArgs {
    pub num_seqs: usize,
    /// Query rows in all (= `cu_query_lens[num_seqs]`).
    pub num_tokens: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_size: usize,
    pub block_size: usize,
    /// Columns of the block table.
    pub max_blocks_per_seq: usize,
    /// Elements between query rows (>= num_heads * head_size).
    pub q_stride: usize,
    /// Longest query run of a sequence (sizes the grid).
    pub max_query_len: usize,
    /// Attend to the last `w` positions only (a query's own included).
    pub sliding_window: Option<usize>,
    pub scale: f32,
    /// Keep the softmax weights P as hi + lo 16-bit halves in P.V (two MMAs, ~25% slower):
    /// ~16-bit weights, so every output element is within the dtype's element-wise tolerance
    /// even where a row's output cancels to near zero. Default `false`: P is rounded once to the
    /// dtype, as FlashAttention and PyTorch's SDPA do; the error is then bounded by ~one rounding
    /// of the weights times the largest |V| the row sees (2^-9 max|V| for bf16, 2^-12 for f16),
    /// see benches/results/NOTES.md.
    pub split_p: bool,
    /// [`CacheDType::Fp8E4m3`]: the caches hold e4m3 bytes, key = byte value * `k_scale`,
    /// value = byte value * `v_scale` (dequantized on load; head sizes
    /// [`super::attention::ATTENTION_FP8_HEAD_SIZES`], as decode).
    pub cache_dtype: CacheDType,
    pub k_scale: f32,
    pub v_scale: f32,
}

impl PrefillAttentionArgs {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        num_seqs: usize,
        num_tokens: usize,
        num_heads: usize,
        num_kv_heads: usize,
        head_size: usize,
        block_size: usize,
        max_blocks_per_seq: usize,
        max_query_len: usize,
    ) -> Self {
        Self {
            num_seqs,
            num_tokens,
            num_heads,
            num_kv_heads,
            head_size,
            block_size,
            max_blocks_per_seq,
            q_stride: num_heads * head_size,
            max_query_len,
            sliding_window: None,
            scale: 1.0 / (head_size as f32).sqrt(),
            split_p: false,
            cache_dtype: CacheDType::Auto,
            k_scale: 1.0,
            v_scale: 1.0,
        }
    }

    /// The same arguments over an FP8 E4M3 cache with these per-tensor scales.
    pub fn with_fp8_cache(self, k_scale: f32, v_scale: f32) -> Self {
        Self {
            cache_dtype: CacheDType::Fp8E4m3,
            k_scale,
            v_scale,
            ..self
        }
    }

    /// Buffer lengths and supported values (everything the GPU wrapper can check without reading
    /// device memory).
    #[allow(clippy::too_many_arguments)]
    pub fn validate(
        &self,
        dtype: DType,
        out_len: usize,
        query_len: usize,
        key_cache_len: usize,
        value_cache_len: usize,
        block_tables_len: usize,
        cu_query_lens_len: usize,
        seq_lens_len: usize,
    ) -> Result<()> {
        const OP: &str = "prefill_attention";
        check_dtype(OP, dtype, ATTENTION_DTYPES)?;
        self.validate_shapes(
            out_len,
            query_len,
            key_cache_len,
            value_cache_len,
            block_tables_len,
            cu_query_lens_len,
            seq_lens_len,
        )
    }

    /// The shape checks alone (the CPU reference also takes f32).
    #[allow(clippy::too_many_arguments)]
    pub fn validate_shapes(
        &self,
        out_len: usize,
        query_len: usize,
        key_cache_len: usize,
        value_cache_len: usize,
        block_tables_len: usize,
        cu_query_lens_len: usize,
        seq_lens_len: usize,
    ) -> Result<()> {
        const OP: &str = "prefill_attention";
        check_attention_common(
            OP,
            self.head_size,
            self.block_size,
            (self.num_seqs, self.num_heads, self.num_kv_heads),
            self.max_blocks_per_seq,
            self.scale,
        )?;
        check_fp8_attention(
            OP,
            self.cache_dtype,
            self.head_size,
            self.k_scale,
            self.v_scale,
        )?;
        self.validate_layout(
            out_len,
            query_len,
            key_cache_len,
            value_cache_len,
            block_tables_len,
            cu_query_lens_len,
            seq_lens_len,
        )
    }

    /// The layout checks alone, for any head size and block size (the CPU model runner's
    /// attention; [`Self::validate_shapes`] adds the sets the GPU kernel is compiled for).
    #[allow(clippy::too_many_arguments)]
    pub fn validate_layout(
        &self,
        out_len: usize,
        query_len: usize,
        key_cache_len: usize,
        value_cache_len: usize,
        block_tables_len: usize,
        cu_query_lens_len: usize,
        seq_lens_len: usize,
    ) -> Result<()> {
        const OP: &str = "prefill_attention";
        for (what, v) in [
            ("head_size", self.head_size),
            ("block_size", self.block_size),
            ("num_kv_heads", self.num_kv_heads),
        ] {
            super::check_positive(OP, what, v)?;
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(KernelError::invalid(
                OP,
                format!(
                    "num_heads {} is not a multiple of num_kv_heads {}",
                    self.num_heads, self.num_kv_heads
                ),
            ));
        }
        if self.cache_dtype == CacheDType::Fp8E4m3 && !(self.scale * self.k_scale).is_finite() {
            return Err(KernelError::invalid(OP, "scale * k_scale must be finite"));
        }
        if self.max_query_len > i32::MAX as usize || self.num_tokens > i32::MAX as usize {
            return Err(KernelError::invalid(
                OP,
                "num_tokens and max_query_len must fit in i32",
            ));
        }
        let row = self.num_heads * self.head_size;
        check_rows(OP, "query", query_len, self.num_tokens, row, self.q_stride)?;
        check_rows(OP, "out", out_len, self.num_tokens, row, row)?;
        let block = self.num_kv_heads * self.block_size * self.head_size;
        if key_cache_len == 0 || !key_cache_len.is_multiple_of(block) {
            return Err(KernelError::invalid(
                OP,
                format!("key_cache length {key_cache_len} is not a positive number of blocks"),
            ));
        }
        check_eq(
            OP,
            "value_cache length (= key_cache length)",
            key_cache_len,
            value_cache_len,
        )?;
        check_eq(
            OP,
            "block_tables length (num_seqs * max_blocks_per_seq)",
            self.num_seqs * self.max_blocks_per_seq,
            block_tables_len,
        )?;
        check_eq(
            OP,
            "cu_query_lens length (num_seqs + 1)",
            self.num_seqs + 1,
            cu_query_lens_len,
        )?;
        check_eq(
            OP,
            "seq_lens length (num_seqs)",
            self.num_seqs,
            seq_lens_len,
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
        const OP: &str = "prefill_attention";
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
            let cap = self.max_blocks_per_seq * self.block_size;
            if (len as i64) < q_len || len as usize > cap {
                return Err(KernelError::invalid(
                    OP,
                    format!(
                        "seq_len {len} of sequence {s} must be >= its {q_len} query tokens and <= {cap}"
                    ),
                ));
            }
            let row = &block_tables[s * self.max_blocks_per_seq..];
            check_block_row(OP, row, len as usize, self.block_size, num_blocks)?;
        }
        Ok(())
    }

    /// Keys each query row sees, summed over the rows of all sequences (the causal work; times
    /// 4 * head_size * num_heads it is the flop count).
    pub fn visible_pairs(&self, cu_query_lens: &[i32], seq_lens: &[i32]) -> u64 {
        let w = self.sliding_window.unwrap_or(usize::MAX) as u64;
        (0..seq_lens.len())
            .map(|s| {
                let q_len = (cu_query_lens[s + 1] - cu_query_lens[s]) as u64;
                let ctx0 = seq_lens[s] as u64 - q_len;
                (0..q_len).map(|i| (ctx0 + i + 1).min(w)).sum::<u64>()
            })
            .sum()
    }
}

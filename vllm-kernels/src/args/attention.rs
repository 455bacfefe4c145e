//! Arguments of paged decode attention (v1 / v2).

use super::{check_dtype, check_eq, check_kv_scales, check_positive, check_rows};
use crate::dtype::{CacheDType, DType};
use crate::error::{KernelError, Result};

/// Head sizes the attention kernels are compiled for.
pub const ATTENTION_HEAD_SIZES: &[usize] = &[64, 80, 96, 112, 128, 256];
/// Block sizes the attention kernels take.
pub const ATTENTION_BLOCK_SIZES: &[usize] = &[16, 32];
/// Element types of query, cache and output.
pub const ATTENTION_DTYPES: &[DType] = &[DType::F16, DType::BF16];
/// Head sizes the attention kernels take with an FP8 E4M3 cache.
pub const ATTENTION_FP8_HEAD_SIZES: &[usize] = &[128, 256];
/// Smallest v2 partition (tokens); partitions are powers of two from here up, so always a
/// multiple of every supported block size.
pub const MIN_PARTITION_SIZE: usize = 256;
/// Largest v2 partition [`PagedAttentionArgs::partition_tokens`] may ask for (the kernels index
/// tokens with 32-bit ints).
pub const MAX_PARTITION_SIZE: usize = 1 << 20;
/// CTAs a decode launch needs to keep an H100 / H200 (132 SMs) streaming at full bandwidth:
/// v1 launches one CTA per (sequence, KV head, tile of 8 query heads); below this many, v2 splits
/// the contexts until the partitions make up the difference. Measured on an H200
/// (benches/results/NOTES.md): 64 CTAs of 4096 tokens reach 60% of copy bandwidth, 128 CTAs of
/// 2048 tokens 80-85%, 512 CTAs 100%+.
pub const TARGET_CTAS: usize = 128;

/// Which decode kernel to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionVersion {
    /// [`PagedAttentionArgs::pick_version`] decides.
    Auto,
    V1,
    V2,
}

/// One query token per sequence against its paged K/V.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PagedAttentionArgs {
    pub num_seqs: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_size: usize,
    pub block_size: usize,
    /// Columns of the block table.
    pub max_blocks_per_seq: usize,
    /// Elements between the query rows of two sequences (>= num_heads * head_size).
    pub q_stride: usize,
    /// Longest `seq_lens` entry (known on the host; sizes v2's partitions).
    pub max_seq_len: usize,
    /// Attend to the last `w` tokens only (Mistral).
    pub sliding_window: Option<usize>,
    pub scale: f32,
    pub version: AttentionVersion,
    /// v2's tokens per partition, overriding [`Self::partition_size`]'s rule (and making
    /// [`AttentionVersion::Auto`] pick v2): a power of two >= [`MIN_PARTITION_SIZE`].
    pub partition_tokens: Option<usize>,
    /// [`CacheDType::Fp8E4m3`]: the caches hold e4m3 bytes, key = byte value * `k_scale`,
    /// value = byte value * `v_scale` (dequantized on load).
    pub cache_dtype: CacheDType,
    pub k_scale: f32,
    pub v_scale: f32,
}

impl PagedAttentionArgs {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        num_seqs: usize,
        num_heads: usize,
        num_kv_heads: usize,
        head_size: usize,
        block_size: usize,
        max_blocks_per_seq: usize,
        max_seq_len: usize,
    ) -> Self {
        Self {
            num_seqs,
            num_heads,
            num_kv_heads,
            head_size,
            block_size,
            max_blocks_per_seq,
            q_stride: num_heads * head_size,
            max_seq_len,
            sliding_window: None,
            scale: 1.0 / (head_size as f32).sqrt(),
            version: AttentionVersion::Auto,
            partition_tokens: None,
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

    /// CTAs v1 launches: one per (sequence, KV head, tile of up to 8 query heads).
    pub fn v1_ctas(&self) -> usize {
        let group = self.num_heads / self.num_kv_heads.max(1);
        self.num_seqs * self.num_kv_heads * group.div_ceil(8).max(1)
    }

    /// Tokens per v2 partition: the largest power of two >= [`MIN_PARTITION_SIZE`] that still
    /// gives [`TARGET_CTAS`] CTAs (and at least two partitions of the longest context).
    /// Longer partitions cost less per token (pipeline fill, merge, reduce): on an H200 at
    /// 1 x 32768 tokens, 2048-token partitions (128 CTAs) read 80-83% of copy bandwidth where
    /// 512-token ones (512 CTAs) read 61-67%.
    pub fn partition_size(&self) -> usize {
        if let Some(p) = self.partition_tokens {
            return p;
        }
        let ctas = self.v1_ctas().max(1);
        let len = self.max_seq_len.max(1);
        let mut p = MIN_PARTITION_SIZE;
        while p * 2 < len && ctas * len.div_ceil(p * 2) >= TARGET_CTAS {
            p *= 2;
        }
        p
    }

    /// v2's partitions for the longest sequence.
    pub fn num_partitions(&self) -> usize {
        self.max_seq_len.div_ceil(self.partition_size()).max(1)
    }

    /// v1 or v2. v2 splits the contexts over more CTAs and merges the parts in a second kernel;
    /// that pays only when v1 would launch too few CTAs to keep the memory system busy. The rule,
    /// from H200 measurements (benches/results/NOTES.md): v1 when it launches at least
    /// [`TARGET_CTAS`] CTAs or the longest context fits one minimum partition; v2 otherwise, with
    /// [`Self::partition_size`] tokens per partition.
    pub fn pick_version(&self) -> AttentionVersion {
        match self.version {
            AttentionVersion::Auto => {
                if self.partition_tokens.is_some() {
                    AttentionVersion::V2
                } else if self.v1_ctas() >= TARGET_CTAS || self.max_seq_len <= MIN_PARTITION_SIZE {
                    AttentionVersion::V1
                } else {
                    AttentionVersion::V2
                }
            }
            v => v,
        }
    }

    /// Floats of workspace v2 needs (exp sums, max logits, partial outputs).
    pub fn workspace_floats(&self) -> usize {
        self.num_seqs * self.num_heads * self.num_partitions() * (self.head_size + 2)
    }

    /// Blocks in a cache of `len` elements, if `len` is a whole number of blocks.
    pub fn cache_blocks(&self, len: usize) -> Option<usize> {
        let block = self.num_kv_heads * self.block_size * self.head_size;
        (block > 0 && len.is_multiple_of(block)).then(|| len / block)
    }

    /// Everything the GPU kernels need: [`Self::validate_shapes`] and a supported dtype.
    #[allow(clippy::too_many_arguments)]
    pub fn validate(
        &self,
        dtype: DType,
        out_len: usize,
        query_len: usize,
        key_cache_len: usize,
        value_cache_len: usize,
        block_tables_len: usize,
        seq_lens_len: usize,
        alibi_len: Option<usize>,
    ) -> Result<()> {
        check_dtype("paged_attention", dtype, ATTENTION_DTYPES)?;
        self.validate_shapes(
            out_len,
            query_len,
            key_cache_len,
            value_cache_len,
            block_tables_len,
            seq_lens_len,
            alibi_len,
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
        seq_lens_len: usize,
        alibi_len: Option<usize>,
    ) -> Result<()> {
        const OP: &str = "paged_attention";
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
        if let Some(p) = self.partition_tokens
            && (!(MIN_PARTITION_SIZE..=MAX_PARTITION_SIZE).contains(&p) || !p.is_power_of_two())
        {
            return Err(KernelError::invalid(
                OP,
                format!(
                    "partition_tokens {p} must be a power of two in \
                     {MIN_PARTITION_SIZE}..={MAX_PARTITION_SIZE}"
                ),
            ));
        }
        if self.max_seq_len > self.max_blocks_per_seq * self.block_size {
            return Err(KernelError::OutOfRange {
                op: OP,
                what: "max_seq_len",
                value: self.max_seq_len as i64,
                limit: self.max_blocks_per_seq * self.block_size + 1,
            });
        }
        let row = self.num_heads * self.head_size;
        check_rows(OP, "query", query_len, self.num_seqs, row, self.q_stride)?;
        check_rows(OP, "out", out_len, self.num_seqs, row, row)?;
        let kb = self.cache_blocks(key_cache_len).ok_or_else(|| {
            KernelError::invalid(
                OP,
                format!("key_cache length {key_cache_len} is not a whole number of blocks"),
            )
        })?;
        check_eq(
            OP,
            "value_cache length (= key_cache length)",
            key_cache_len,
            value_cache_len,
        )?;
        if kb == 0 {
            return Err(KernelError::invalid(OP, "the cache has no blocks"));
        }
        check_eq(
            OP,
            "block_tables length (num_seqs * max_blocks_per_seq)",
            self.num_seqs * self.max_blocks_per_seq,
            block_tables_len,
        )?;
        check_eq(
            OP,
            "seq_lens length (num_seqs)",
            self.num_seqs,
            seq_lens_len,
        )?;
        if let Some(n) = alibi_len {
            check_eq(OP, "alibi_slopes length (num_heads)", self.num_heads, n)?;
        }
        Ok(())
    }

    /// Host-side check of the block tables and lengths (the kernels trust them).
    pub fn validate_tables(
        &self,
        block_tables: &[i32],
        seq_lens: &[i32],
        num_blocks: usize,
    ) -> Result<()> {
        const OP: &str = "paged_attention";
        for (s, &len) in seq_lens.iter().enumerate() {
            if len < 1 || len as usize > self.max_seq_len {
                return Err(KernelError::OutOfRange {
                    op: OP,
                    what: "seq_len",
                    value: len as i64,
                    limit: self.max_seq_len + 1,
                });
            }
            let row = &block_tables[s * self.max_blocks_per_seq..];
            check_block_row(OP, row, len as usize, self.block_size, num_blocks)?;
        }
        Ok(())
    }
}

/// The block ids a sequence of `len` tokens uses (the first `ceil(len / block_size)` of its
/// table row) are in `0..num_blocks`.
pub(crate) fn check_block_row(
    op: &'static str,
    row: &[i32],
    len: usize,
    block_size: usize,
    num_blocks: usize,
) -> Result<()> {
    match row[..len.div_ceil(block_size)]
        .iter()
        .find(|&&b| b < 0 || b as usize >= num_blocks)
    {
        Some(&b) => Err(KernelError::OutOfRange {
            op,
            what: "block id",
            value: b as i64,
            limit: num_blocks,
        }),
        None => Ok(()),
    }
}

/// The cache-dtype checks every attention kernel shares: FP8 caches only for the head sizes
/// with an FP8 kernel, and finite positive k/v scales.
pub(crate) fn check_fp8_attention(
    op: &'static str,
    cache: CacheDType,
    head_size: usize,
    k_scale: f32,
    v_scale: f32,
) -> Result<()> {
    if cache == CacheDType::Fp8E4m3 && !ATTENTION_FP8_HEAD_SIZES.contains(&head_size) {
        return Err(unsupported(
            op,
            "head_size (fp8_e4m3 cache)",
            head_size,
            ATTENTION_FP8_HEAD_SIZES,
        ));
    }
    check_kv_scales(op, cache, k_scale, v_scale)
}

fn unsupported(op: &'static str, what: &'static str, value: usize, list: &[usize]) -> KernelError {
    KernelError::Unsupported {
        op,
        what,
        value: value.to_string(),
        supported: crate::error::list(list),
    }
}

/// The checks decode and prefill attention share: supported head and block sizes, head counts
/// (`(num_seqs, num_heads, num_kv_heads)`, each <= 65535, a whole GQA group), a block table with
/// columns, a finite positive scale.
pub(crate) fn check_attention_common(
    op: &'static str,
    head_size: usize,
    block_size: usize,
    (num_seqs, num_heads, num_kv_heads): (usize, usize, usize),
    max_blocks_per_seq: usize,
    scale: f32,
) -> Result<()> {
    if !ATTENTION_HEAD_SIZES.contains(&head_size) {
        return Err(unsupported(
            op,
            "head_size",
            head_size,
            ATTENTION_HEAD_SIZES,
        ));
    }
    if !ATTENTION_BLOCK_SIZES.contains(&block_size) {
        return Err(unsupported(
            op,
            "block_size",
            block_size,
            ATTENTION_BLOCK_SIZES,
        ));
    }
    check_positive(op, "num_heads", num_heads)?;
    check_positive(op, "num_kv_heads", num_kv_heads)?;
    check_positive(op, "max_blocks_per_seq", max_blocks_per_seq)?;
    if !num_heads.is_multiple_of(num_kv_heads) {
        return Err(KernelError::invalid(
            op,
            format!("num_heads {num_heads} is not a multiple of num_kv_heads {num_kv_heads}"),
        ));
    }
    if num_seqs > 65535 || num_heads > 65535 {
        return Err(KernelError::invalid(
            op,
            "num_seqs and num_heads must be <= 65535",
        ));
    }
    if !(scale.is_finite() && scale > 0.0) {
        return Err(KernelError::invalid(
            op,
            format!("scale must be finite and > 0, got {scale}"),
        ));
    }
    Ok(())
}

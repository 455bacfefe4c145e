//! What decode and prefill attention share: the model's attention geometry (heads, head size,
//! the paged cache and its block table, query stride, window, softmax scale, cache dtype) and
//! the checks of it and of the buffers both ops take. Each op's args hold an
//! [`AttentionGeometry`] and add their own batch sizes; both validate through the functions
//! here, so a value is checked by one rule whichever kernel runs. Cost: O(1) per call, plus
//! O(seqs) for the host-side table checks.

use super::{check_eq, check_kv_scales, check_positive, check_rows};
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
/// Largest grid dimension the kernels put sequences and heads on.
const MAX_SEQS_OR_HEADS: usize = 65535;

/// The attention shape of a model over its paged KV cache, the same for every step: decode
/// ([`super::PagedAttentionArgs`]) and prefill ([`super::PrefillAttentionArgs`]) add the batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionGeometry {
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_size: usize,
    pub block_size: usize,
    /// Columns of the block table.
    pub max_blocks_per_seq: usize,
    /// Elements between query rows (>= num_heads * head_size).
    pub q_stride: usize,
    /// Attend to the last `w` positions only (a query's own included; Mistral).
    pub sliding_window: Option<usize>,
    pub scale: f32,
    /// [`CacheDType::Fp8E4m3`]: the caches hold e4m3 bytes, key = byte value * `k_scale`,
    /// value = byte value * `v_scale` (dequantized on load; head sizes
    /// [`ATTENTION_FP8_HEAD_SIZES`]).
    pub cache_dtype: CacheDType,
    pub k_scale: f32,
    pub v_scale: f32,
}

/// Element counts of the buffers both attention ops take (validated against the geometry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttentionLens {
    pub out: usize,
    pub query: usize,
    pub key_cache: usize,
    pub value_cache: usize,
    pub block_tables: usize,
    pub seq_lens: usize,
}

/// The [`AttentionLens`] of an operand struct whose fields `out`, `query`, `key_cache`,
/// `value_cache`, `block_tables` and `seq_lens` have a `len()` (host slices or device buffers).
macro_rules! attention_lens {
    ($io:expr) => {
        $crate::args::AttentionLens {
            out: $io.out.len(),
            query: $io.query.len(),
            key_cache: $io.key_cache.len(),
            value_cache: $io.value_cache.len(),
            block_tables: $io.block_tables.len(),
            seq_lens: $io.seq_lens.len(),
        }
    };
}
pub(crate) use attention_lens;

impl AttentionGeometry {
    /// Contiguous query rows, scale `1 / sqrt(head_size)`, no window, a cache of the model dtype.
    pub fn new(
        num_heads: usize,
        num_kv_heads: usize,
        head_size: usize,
        block_size: usize,
        max_blocks_per_seq: usize,
    ) -> Self {
        Self {
            num_heads,
            num_kv_heads,
            head_size,
            block_size,
            max_blocks_per_seq,
            q_stride: num_heads * head_size,
            sliding_window: None,
            scale: 1.0 / (head_size as f32).sqrt(),
            cache_dtype: CacheDType::Auto,
            k_scale: 1.0,
            v_scale: 1.0,
        }
    }

    /// The same geometry over an FP8 E4M3 cache with these per-tensor scales.
    pub fn with_fp8_cache(self, k_scale: f32, v_scale: f32) -> Self {
        Self {
            cache_dtype: CacheDType::Fp8E4m3,
            k_scale,
            v_scale,
            ..self
        }
    }

    /// Elements of one cache block (all KV heads).
    pub fn block_numel(&self) -> usize {
        self.num_kv_heads * self.block_size * self.head_size
    }

    /// Blocks in a cache of `len` elements, if `len` is a whole number of blocks.
    pub fn cache_blocks(&self, len: usize) -> Option<usize> {
        let block = self.block_numel();
        (block > 0 && len.is_multiple_of(block)).then(|| len / block)
    }

    /// The values themselves: supported head and block sizes, head counts (`num_seqs` and
    /// `num_heads` <= 65535, a whole GQA group), a block table with columns, a finite positive
    /// scale; with an FP8 cache, a head size with an FP8 kernel and finite positive k/v scales.
    pub(crate) fn check(&self, op: &'static str, num_seqs: usize) -> Result<()> {
        check_listed(op, "head_size", self.head_size, ATTENTION_HEAD_SIZES)?;
        check_listed(op, "block_size", self.block_size, ATTENTION_BLOCK_SIZES)?;
        self.check_layout(op)?;
        if num_seqs > MAX_SEQS_OR_HEADS || self.num_heads > MAX_SEQS_OR_HEADS {
            return Err(KernelError::invalid(
                op,
                "num_seqs and num_heads must be <= 65535",
            ));
        }
        if self.cache_dtype == CacheDType::Fp8E4m3 {
            check_listed(
                op,
                "head_size (fp8_e4m3 cache)",
                self.head_size,
                ATTENTION_FP8_HEAD_SIZES,
            )?;
        }
        check_kv_scales(op, self.cache_dtype, self.k_scale, self.v_scale)
    }

    /// The checks that hold for any head size and block size (the CPU model runner's
    /// attention): positive sizes, a whole GQA group, a finite positive scale.
    pub(crate) fn check_layout(&self, op: &'static str) -> Result<()> {
        let (heads, kv) = (self.num_heads, self.num_kv_heads);
        check_positive(op, "head_size", self.head_size)?;
        check_positive(op, "block_size", self.block_size)?;
        check_positive(op, "num_heads", heads)?;
        check_positive(op, "num_kv_heads", kv)?;
        check_positive(op, "max_blocks_per_seq", self.max_blocks_per_seq)?;
        if !heads.is_multiple_of(kv) {
            return Err(KernelError::invalid(
                op,
                format!("num_heads {heads} is not a multiple of num_kv_heads {kv}"),
            ));
        }
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(KernelError::invalid(
                op,
                format!("scale must be finite and > 0, got {}", self.scale),
            ));
        }
        check_kv_scales(op, self.cache_dtype, self.k_scale, self.v_scale)
    }

    /// The buffers of `num_seqs` sequences with `rows` query rows: query rows `q_stride` apart,
    /// contiguous output rows, caches of a positive whole number of blocks (the same length),
    /// one table row and one length per sequence.
    pub(crate) fn check_lens(
        &self,
        op: &'static str,
        (num_seqs, rows): (usize, usize),
        l: &AttentionLens,
    ) -> Result<()> {
        let row = self.num_heads * self.head_size;
        check_rows(op, "query", l.query, rows, row, self.q_stride)?;
        check_rows(op, "out", l.out, rows, row, row)?;
        if self.cache_blocks(l.key_cache).is_none_or(|b| b == 0) {
            return Err(KernelError::invalid(
                op,
                format!(
                    "key_cache length {} is not a positive whole number of blocks",
                    l.key_cache
                ),
            ));
        }
        check_eq(
            op,
            "value_cache length (= key_cache length)",
            l.key_cache,
            l.value_cache,
        )?;
        check_eq(
            op,
            "block_tables length (num_seqs * max_blocks_per_seq)",
            num_seqs * self.max_blocks_per_seq,
            l.block_tables,
        )?;
        check_eq(op, "seq_lens length (num_seqs)", num_seqs, l.seq_lens)
    }

    /// The block ids sequence `s` of `len` tokens uses (the first `ceil(len / block_size)` of
    /// its table row) are in `0..num_blocks`.
    pub(crate) fn check_table_row(
        &self,
        op: &'static str,
        block_tables: &[i32],
        (s, len): (usize, usize),
        num_blocks: usize,
    ) -> Result<()> {
        let row = &block_tables[s * self.max_blocks_per_seq..];
        match row[..len.div_ceil(self.block_size)]
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

    /// The launcher's `sliding_window` (0: none).
    #[cfg(feature = "cuda")]
    pub(crate) fn window_i32(&self) -> i32 {
        self.sliding_window
            .map_or(0, |w| w.min(i32::MAX as usize) as i32)
    }
}

fn check_listed(op: &'static str, what: &'static str, value: usize, list: &[usize]) -> Result<()> {
    if list.contains(&value) {
        return Ok(());
    }
    Err(KernelError::Unsupported {
        op,
        what,
        value: value.to_string(),
        supported: crate::error::list(list),
    })
}

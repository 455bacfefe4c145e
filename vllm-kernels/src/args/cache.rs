//! The paged KV cache layout and the arguments of the cache ops.
//!
//! # Layout
//! Each layer has a key cache and a value cache, both `[num_blocks, num_kv_heads, block_size,
//! head_size]` ("HND"). Slot `s` of the cache is token offset `s % block_size` of block
//! `s / block_size`.
//!
//! Why HND rather than vLLM's split-x key layout or flash-attention's `[.., block_size,
//! num_kv_heads, head_size]`: a (block, kv head) pair is one contiguous `block_size x head_size`
//! tile (4 KiB for 16 x 128 bf16). Decode attention reads the tile with whole 16-byte vectors
//! per thread and every query head of a GQA group reuses the same tile; prefill attention
//! copies it into shared memory as one burst (cp.async / TMA) with no gather; and
//! `reshape_and_cache` writes each new token's head row as `head_size` contiguous elements.
//! A block of all heads is still one contiguous range, so copy/swap of blocks are plain memcpys.

use super::{check_dtype, check_eq, check_kv_scales, check_positive, check_rows, check_rows_limit};
use crate::dtype::{CacheDType, DType, FLOAT_DTYPES};
use crate::error::{KernelError, Result};

/// Shape of one layer's key (or value) cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PagedKvLayout {
    pub num_blocks: usize,
    pub num_kv_heads: usize,
    pub block_size: usize,
    pub head_size: usize,
}

impl PagedKvLayout {
    /// Elements of one block (all heads).
    pub fn block_numel(&self) -> usize {
        self.num_kv_heads * self.block_size * self.head_size
    }

    /// Elements of the whole cache.
    pub fn numel(&self) -> usize {
        self.num_blocks * self.block_numel()
    }

    pub fn num_slots(&self) -> usize {
        self.num_blocks * self.block_size
    }

    /// Index of element `e` of head `h` of the token in `slot`.
    pub fn index(&self, slot: usize, head: usize, e: usize) -> usize {
        let (block, offset) = (slot / self.block_size, slot % self.block_size);
        ((block * self.num_kv_heads + head) * self.block_size + offset) * self.head_size + e
    }

    pub(crate) fn validate(&self, op: &'static str) -> Result<()> {
        check_positive(op, "num_kv_heads", self.num_kv_heads)?;
        check_positive(op, "block_size", self.block_size)?;
        check_positive(op, "head_size", self.head_size)?;
        if self.num_kv_heads * self.head_size > i32::MAX as usize {
            return Err(KernelError::invalid(
                op,
                "num_kv_heads * head_size exceeds i32::MAX",
            ));
        }
        Ok(())
    }
}

/// Writes `num_tokens` new K/V rows into the cache at `slot_mapping[t]`; negative slots (padding)
/// are skipped. With [`CacheDType::Fp8E4m3`] the caches hold `e4m3(key / k_scale)` and
/// `e4m3(value / v_scale)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReshapeAndCacheArgs {
    pub num_tokens: usize,
    pub layout: PagedKvLayout,
    /// Elements between key rows (>= num_kv_heads * head_size).
    pub key_stride: usize,
    /// Elements between value rows (>= num_kv_heads * head_size).
    pub value_stride: usize,
    pub cache_dtype: CacheDType,
    /// FP8 caches: per-tensor scales (finite, > 0); ignored for [`CacheDType::Auto`].
    pub k_scale: f32,
    pub v_scale: f32,
}

impl ReshapeAndCacheArgs {
    pub fn new(num_tokens: usize, layout: PagedKvLayout) -> Self {
        let row = layout.num_kv_heads * layout.head_size;
        Self {
            num_tokens,
            layout,
            key_stride: row,
            value_stride: row,
            cache_dtype: CacheDType::Auto,
            k_scale: 1.0,
            v_scale: 1.0,
        }
    }

    /// The same with an FP8 E4M3 cache and its scales.
    pub fn fp8(num_tokens: usize, layout: PagedKvLayout, k_scale: f32, v_scale: f32) -> Self {
        Self {
            cache_dtype: CacheDType::Fp8E4m3,
            k_scale,
            v_scale,
            ..Self::new(num_tokens, layout)
        }
    }

    pub fn validate(
        &self,
        dtype: DType,
        key_len: usize,
        value_len: usize,
        key_cache_len: usize,
        value_cache_len: usize,
        slot_mapping_len: usize,
    ) -> Result<()> {
        const OP: &str = "reshape_and_cache";
        check_dtype(OP, dtype, FLOAT_DTYPES)?;
        check_kv_scales(OP, self.cache_dtype, self.k_scale, self.v_scale)?;
        self.layout.validate(OP)?;
        check_rows_limit(OP, self.num_tokens)?;
        let row = self.layout.num_kv_heads * self.layout.head_size;
        check_rows(OP, "key", key_len, self.num_tokens, row, self.key_stride)?;
        check_rows(
            OP,
            "value",
            value_len,
            self.num_tokens,
            row,
            self.value_stride,
        )?;
        check_eq(OP, "key_cache length", self.layout.numel(), key_cache_len)?;
        check_eq(
            OP,
            "value_cache length",
            self.layout.numel(),
            value_cache_len,
        )?;
        check_eq(
            OP,
            "slot_mapping length (num_tokens)",
            self.num_tokens,
            slot_mapping_len,
        )
    }

    /// Host-side slot check: every slot is padding (< 0) or inside the cache.
    pub fn validate_slots(&self, slots: &[i64]) -> Result<()> {
        let limit = self.layout.num_slots();
        match slots.iter().find(|&&s| s >= 0 && s as u64 >= limit as u64) {
            Some(&s) => Err(KernelError::OutOfRange {
                op: "reshape_and_cache",
                what: "slot",
                value: s,
                limit,
            }),
            None => Ok(()),
        }
    }
}

/// `(src, dst)` block numbers.
pub type BlockPair = (usize, usize);

fn check_block(op: &'static str, what: &'static str, b: usize, num_blocks: usize) -> Result<()> {
    if b >= num_blocks {
        return Err(KernelError::OutOfRange {
            op,
            what,
            value: b as i64,
            limit: num_blocks,
        });
    }
    Ok(())
}

fn check_distinct_dst(op: &'static str, pairs: &[BlockPair]) -> Result<()> {
    let mut dsts: Vec<usize> = pairs.iter().map(|p| p.1).collect();
    dsts.sort_unstable();
    if let Some(w) = dsts.windows(2).find(|w| w[0] == w[1]) {
        return Err(KernelError::invalid(
            op,
            format!("destination block {} appears twice", w[0]),
        ));
    }
    Ok(())
}

/// `copy_blocks` pairs: in range, destinations distinct and never a source (no ordering races).
pub fn validate_copy_pairs(pairs: &[BlockPair], num_blocks: usize) -> Result<()> {
    const OP: &str = "copy_blocks";
    for &(s, d) in pairs {
        check_block(OP, "source block", s, num_blocks)?;
        check_block(OP, "destination block", d, num_blocks)?;
    }
    check_distinct_dst(OP, pairs)?;
    let srcs: std::collections::HashSet<usize> = pairs.iter().map(|p| p.0).collect();
    if let Some(&(_, d)) = pairs.iter().find(|p| srcs.contains(&p.1)) {
        return Err(KernelError::invalid(
            OP,
            format!("block {d} is both a source and a destination"),
        ));
    }
    Ok(())
}

/// `swap_blocks` pairs: in range of their own cache, destinations distinct.
pub fn validate_swap_pairs(
    pairs: &[BlockPair],
    src_blocks: usize,
    dst_blocks: usize,
) -> Result<()> {
    const OP: &str = "swap_blocks";
    for &(s, d) in pairs {
        check_block(OP, "source block", s, src_blocks)?;
        check_block(OP, "destination block", d, dst_blocks)?;
    }
    check_distinct_dst(OP, pairs)
}

/// Checks a cache buffer against its layout, for copy and swap.
pub(crate) fn check_cache(
    op: &'static str,
    dtype: DType,
    layout: &PagedKvLayout,
    len: usize,
) -> Result<()> {
    check_dtype(op, dtype, FLOAT_DTYPES)?;
    layout.validate(op)?;
    check_eq(
        op,
        "cache length (num_blocks * block numel)",
        layout.numel(),
        len,
    )
}

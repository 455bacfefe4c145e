//! Arguments of paged decode attention (v1 / v2): the shared [`AttentionGeometry`] plus the
//! batch (sequences, longest context) and the v1 / v2 choice. The rule picking v1 or v2 and
//! v2's partition size is O(log context); validation is O(1), the host table check O(seqs).

use super::attention_geometry::{ATTENTION_DTYPES, AttentionGeometry, AttentionLens};
use super::{check_dtype, check_eq};
use crate::dtype::DType;
use crate::error::{KernelError, Result};

const OP: &str = "paged_attention";
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
    /// Heads, head size, cache, query stride, window, scale, cache dtype.
    pub geometry: AttentionGeometry,
    pub num_seqs: usize,
    /// Longest `seq_lens` entry (known on the host; sizes v2's partitions).
    pub max_seq_len: usize,
    pub version: AttentionVersion,
    /// v2's tokens per partition, overriding [`Self::partition_size`]'s rule (and making
    /// [`AttentionVersion::Auto`] pick v2): a power of two >= [`MIN_PARTITION_SIZE`].
    pub partition_tokens: Option<usize>,
}

/// Element counts of decode attention's buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PagedAttentionLens {
    pub common: AttentionLens,
    /// `None`: no ALiBi.
    pub alibi_slopes: Option<usize>,
}

impl PagedAttentionArgs {
    /// `num_seqs` sequences of at most `max_seq_len` tokens; the kernel version picked by
    /// [`Self::pick_version`].
    pub fn new(geometry: AttentionGeometry, num_seqs: usize, max_seq_len: usize) -> Self {
        Self {
            geometry,
            num_seqs,
            max_seq_len,
            version: AttentionVersion::Auto,
            partition_tokens: None,
        }
    }

    /// The same arguments over an FP8 E4M3 cache with these per-tensor scales.
    pub fn with_fp8_cache(self, k_scale: f32, v_scale: f32) -> Self {
        Self {
            geometry: self.geometry.with_fp8_cache(k_scale, v_scale),
            ..self
        }
    }

    /// CTAs v1 launches: one per (sequence, KV head, tile of up to 8 query heads).
    pub fn v1_ctas(&self) -> usize {
        let g = &self.geometry;
        let group = g.num_heads / g.num_kv_heads.max(1);
        self.num_seqs * g.num_kv_heads * group.div_ceil(8).max(1)
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
        let g = &self.geometry;
        self.num_seqs * g.num_heads * self.num_partitions() * (g.head_size + 2)
    }

    /// Everything the GPU kernels need: [`Self::validate_shapes`] and a supported dtype.
    pub fn validate(&self, dtype: DType, lens: &PagedAttentionLens) -> Result<()> {
        check_dtype(OP, dtype, ATTENTION_DTYPES)?;
        self.validate_shapes(lens)
    }

    /// The shape checks alone (the CPU reference also takes f32).
    pub fn validate_shapes(&self, lens: &PagedAttentionLens) -> Result<()> {
        let g = &self.geometry;
        g.check(OP, self.num_seqs)?;
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
        let cap = g.max_blocks_per_seq * g.block_size;
        if self.max_seq_len > cap {
            return Err(KernelError::OutOfRange {
                op: OP,
                what: "max_seq_len",
                value: self.max_seq_len as i64,
                limit: cap + 1,
            });
        }
        g.check_lens(OP, (self.num_seqs, self.num_seqs), &lens.common)?;
        if let Some(n) = lens.alibi_slopes {
            check_eq(OP, "alibi_slopes length (num_heads)", g.num_heads, n)?;
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
        for (s, &len) in seq_lens.iter().enumerate() {
            if len < 1 || len as usize > self.max_seq_len {
                return Err(KernelError::OutOfRange {
                    op: OP,
                    what: "seq_len",
                    value: len as i64,
                    limit: self.max_seq_len + 1,
                });
            }
            self.geometry
                .check_table_row(OP, block_tables, (s, len as usize), num_blocks)?;
        }
        Ok(())
    }
}

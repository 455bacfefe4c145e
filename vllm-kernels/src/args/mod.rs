//! Validated op arguments, shared by the CPU reference and the CUDA wrappers: both call the same
//! `validate` before touching any memory, so a bad shape is the same typed error on either path.
//!
//! Each op has a scalar args struct (sizes, strides, options) and takes the element counts of
//! its buffers from the operands themselves: short lists as arguments, longer ones as a lens
//! struct (e.g. [`PagedAttentionLens`]) that the CPU and CUDA operand structs produce. Decode
//! and prefill attention share [`AttentionGeometry`] and its checks. Every check is O(1) per
//! call except the host-side table checks (O(sequences)).

mod activation;
mod attention;
mod attention_geometry;
mod cache;
mod gemm;
mod norm;
mod prefill;
mod rotary;
mod rows;
mod sampling;

pub use activation::{ActAndMulArgs, Activation};
pub use attention::{
    AttentionVersion, MAX_PARTITION_SIZE, MIN_PARTITION_SIZE, PagedAttentionArgs,
    PagedAttentionLens, TARGET_CTAS,
};
pub(crate) use attention_geometry::attention_lens;
pub use attention_geometry::{
    ATTENTION_BLOCK_SIZES, ATTENTION_DTYPES, ATTENTION_FP8_HEAD_SIZES, ATTENTION_HEAD_SIZES,
    AttentionGeometry, AttentionLens,
};
pub(crate) use cache::check_cache;
pub use cache::{
    BlockPair, PagedKvLayout, ReshapeAndCacheArgs, validate_copy_pairs, validate_swap_pairs,
};
pub use gemm::{
    MatmulArgs, SKINNY_GEMM_MAX_K, SKINNY_GEMM_MAX_M, SM90_GEMM_TILES, SkinnyGemmArgs, Sm90GemmArgs,
};
pub use norm::{FusedAddRmsNormArgs, HeadRmsNormArgs, RmsNormArgs};
pub use prefill::{PrefillAttentionArgs, PrefillAttentionLens};
pub use rotary::RotaryArgs;
pub use rows::{AddBiasArgs, GatherRowsArgs};
pub use sampling::{FillTokensArgs, MAX_VOCAB, SampleArgs, SampleRow};

use crate::dtype::DType;
use crate::error::{KernelError, Result};

/// Largest row count a launcher takes (one CTA per row, grid.x is an int32 there).
pub const MAX_ROWS: usize = i32::MAX as usize;

pub(crate) fn check_dtype(op: &'static str, dtype: DType, supported: &[DType]) -> Result<()> {
    if supported.contains(&dtype) {
        Ok(())
    } else {
        Err(KernelError::unsupported_dtype(op, dtype, supported))
    }
}

/// The per-tensor scales of an FP8 cache: finite and > 0 (unused for an `Auto` cache).
pub(crate) fn check_kv_scales(
    op: &'static str,
    cache: crate::dtype::CacheDType,
    k_scale: f32,
    v_scale: f32,
) -> Result<()> {
    if cache == crate::dtype::CacheDType::Auto {
        return Ok(());
    }
    for (what, s) in [("k_scale", k_scale), ("v_scale", v_scale)] {
        if !(s.is_finite() && s > 0.0) {
            return Err(KernelError::invalid(
                op,
                format!("{what} of a {cache} cache must be finite and > 0, got {s}"),
            ));
        }
    }
    Ok(())
}

/// The buffers given match the cache dtype the arguments name (the FP8 entry points take byte
/// caches, the others caches of the model dtype).
pub(crate) fn check_cache_dtype(
    op: &'static str,
    args: crate::dtype::CacheDType,
    buffers: crate::dtype::CacheDType,
) -> Result<()> {
    if args == buffers {
        Ok(())
    } else {
        Err(KernelError::invalid(
            op,
            format!("the arguments name a {args} cache but the buffers given are {buffers}"),
        ))
    }
}

/// Elements spanned by `rows` rows of `row_len` elements placed `stride` apart.
pub(crate) fn span(rows: usize, row_len: usize, stride: usize) -> usize {
    if rows == 0 {
        0
    } else {
        (rows - 1).saturating_mul(stride).saturating_add(row_len)
    }
}

/// A strided 2-D buffer: the stride covers the row, and the buffer covers every row.
pub(crate) fn check_rows(
    op: &'static str,
    name: &'static str,
    len: usize,
    rows: usize,
    row_len: usize,
    stride: usize,
) -> Result<()> {
    if stride < row_len {
        return Err(KernelError::BadStride {
            op,
            name,
            stride,
            row_len,
        });
    }
    check_len(op, name, len, span(rows, row_len, stride))
}

pub(crate) fn check_len(
    op: &'static str,
    name: &'static str,
    len: usize,
    need: usize,
) -> Result<()> {
    if len < need {
        return Err(KernelError::BufferTooSmall {
            op,
            name,
            len,
            need,
        });
    }
    Ok(())
}

pub(crate) fn check_eq(
    op: &'static str,
    what: &'static str,
    expected: usize,
    got: usize,
) -> Result<()> {
    if expected != got {
        return Err(KernelError::ShapeMismatch {
            op,
            what,
            expected,
            got,
        });
    }
    Ok(())
}

pub(crate) fn check_positive(op: &'static str, name: &'static str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(KernelError::invalid(op, format!("{name} must be > 0")));
    }
    Ok(())
}

pub(crate) fn check_rows_limit(op: &'static str, rows: usize) -> Result<()> {
    if rows > MAX_ROWS {
        return Err(KernelError::OutOfRange {
            op,
            what: "num_tokens",
            value: rows as i64,
            limit: MAX_ROWS + 1,
        });
    }
    Ok(())
}

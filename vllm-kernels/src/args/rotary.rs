//! Arguments of `rotary_embedding`.

use super::{check_dtype, check_eq, check_positive, check_rows, check_rows_limit};
use crate::dtype::{DType, FLOAT_DTYPES};
use crate::error::{KernelError, Result};

/// In-place rotary embedding of `query` (and `key`) rows at given positions.
///
/// `cos_sin_cache` is `[max_position, rot_dim]`: cos in the first half of a row, sin in the
/// second. NeoX style rotates pairs `(i, i + rot_dim/2)`, GPT-J style pairs `(2i, 2i + 1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotaryArgs {
    pub num_tokens: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_size: usize,
    /// Rotated leading part of each head: even, `<= head_size`.
    pub rot_dim: usize,
    /// Elements between query rows (>= num_heads * head_size).
    pub query_stride: usize,
    /// Elements between key rows (>= num_kv_heads * head_size).
    pub key_stride: usize,
    pub max_position: usize,
    pub is_neox: bool,
}

impl RotaryArgs {
    /// Contiguous query `[num_tokens, num_heads, head_size]` and key `[num_tokens, num_kv_heads, head_size]`.
    pub fn new(
        num_tokens: usize,
        num_heads: usize,
        num_kv_heads: usize,
        head_size: usize,
        rot_dim: usize,
        max_position: usize,
        is_neox: bool,
    ) -> Self {
        Self {
            num_tokens,
            num_heads,
            num_kv_heads,
            head_size,
            rot_dim,
            query_stride: num_heads * head_size,
            key_stride: num_kv_heads * head_size,
            max_position,
            is_neox,
        }
    }

    /// `key_len` is `None` when only the query is rotated.
    pub fn validate(
        &self,
        dtype: DType,
        positions_len: usize,
        query_len: usize,
        key_len: Option<usize>,
        cache_len: usize,
    ) -> Result<()> {
        const OP: &str = "rotary_embedding";
        check_dtype(OP, dtype, FLOAT_DTYPES)?;
        check_positive(OP, "num_heads", self.num_heads)?;
        check_positive(OP, "head_size", self.head_size)?;
        check_positive(OP, "max_position", self.max_position)?;
        check_rows_limit(OP, self.num_tokens)?;
        if self.rot_dim == 0 || !self.rot_dim.is_multiple_of(2) || self.rot_dim > self.head_size {
            return Err(KernelError::Unsupported {
                op: OP,
                what: "rot_dim",
                value: self.rot_dim.to_string(),
                supported: format!("an even number in 2..={}", self.head_size),
            });
        }
        if self.num_heads * self.head_size > i32::MAX as usize {
            return Err(KernelError::invalid(
                OP,
                "num_heads * head_size exceeds i32::MAX",
            ));
        }
        check_eq(
            OP,
            "positions length (num_tokens)",
            self.num_tokens,
            positions_len,
        )?;
        check_eq(
            OP,
            "cos_sin_cache length (max_position * rot_dim)",
            self.max_position * self.rot_dim,
            cache_len,
        )?;
        check_rows(
            OP,
            "query",
            query_len,
            self.num_tokens,
            self.num_heads * self.head_size,
            self.query_stride,
        )?;
        if let Some(key_len) = key_len {
            check_positive(OP, "num_kv_heads", self.num_kv_heads)?;
            check_rows(
                OP,
                "key",
                key_len,
                self.num_tokens,
                self.num_kv_heads * self.head_size,
                self.key_stride,
            )?;
        }
        Ok(())
    }

    /// Query and key in one buffer (a fused q | k | v row per token, the key heads at
    /// `key_offset` of each row): the key heads must not overlap the query heads and both
    /// share the row stride. Then the checks of [`Self::validate`].
    pub fn validate_fused(
        &self,
        dtype: DType,
        positions_len: usize,
        qkv_len: usize,
        key_offset: usize,
        cache_len: usize,
    ) -> Result<()> {
        let (qw, kw) = (
            self.num_heads * self.head_size,
            self.num_kv_heads * self.head_size,
        );
        if key_offset < qw
            || key_offset + kw > self.query_stride
            || self.key_stride != self.query_stride
            || key_offset > qkv_len
        {
            return Err(KernelError::invalid(
                "rotary_embedding",
                format!(
                    "key_offset {key_offset} with query / key strides {} / {}: the key heads \
                     must lie in {qw}..{} of each row and both strides be equal",
                    self.query_stride, self.key_stride, self.query_stride
                ),
            ));
        }
        self.validate(
            dtype,
            positions_len,
            qkv_len,
            Some(qkv_len - key_offset),
            cache_len,
        )
    }

    /// Host-side position check (the GPU kernel leaves out-of-range tokens untouched).
    pub fn validate_positions(&self, positions: &[i64]) -> Result<()> {
        match positions
            .iter()
            .find(|&&p| p < 0 || p as u64 >= self.max_position as u64)
        {
            Some(&p) => Err(KernelError::OutOfRange {
                op: "rotary_embedding",
                what: "position",
                value: p,
                limit: self.max_position,
            }),
            None => Ok(()),
        }
    }
}

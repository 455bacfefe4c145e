//! Arguments of `rms_norm`, `fused_add_rms_norm` and `head_rms_norm`.

use super::{MAX_ROWS, check_dtype, check_eq, check_positive, check_rows, check_rows_limit};
use crate::dtype::{DType, FLOAT_DTYPES};
use crate::error::{KernelError, Result};

/// Longest row the norm kernels take (the launcher's limit).
pub const MAX_HIDDEN: usize = 1 << 20;

/// `out[t] = rms_norm(input[t]) * weight` for `num_tokens` rows of `hidden_size` elements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsNormArgs {
    pub num_tokens: usize,
    pub hidden_size: usize,
    /// Elements between input rows (>= hidden_size).
    pub input_stride: usize,
    /// Elements between output rows (>= hidden_size).
    pub out_stride: usize,
    pub epsilon: f32,
}

impl RmsNormArgs {
    /// Contiguous input and output.
    pub fn new(num_tokens: usize, hidden_size: usize, epsilon: f32) -> Self {
        Self {
            num_tokens,
            hidden_size,
            input_stride: hidden_size,
            out_stride: hidden_size,
            epsilon,
        }
    }

    pub fn validate(
        &self,
        dtype: DType,
        out_len: usize,
        input_len: usize,
        weight_len: usize,
    ) -> Result<()> {
        const OP: &str = "rms_norm";
        check_common(
            OP,
            dtype,
            self.num_tokens,
            self.hidden_size,
            self.epsilon,
            weight_len,
        )?;
        check_rows(
            OP,
            "input",
            input_len,
            self.num_tokens,
            self.hidden_size,
            self.input_stride,
        )?;
        check_rows(
            OP,
            "out",
            out_len,
            self.num_tokens,
            self.hidden_size,
            self.out_stride,
        )
    }
}

/// In place: `residual = input + residual; input = rms_norm(residual) * weight`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FusedAddRmsNormArgs {
    pub num_tokens: usize,
    pub hidden_size: usize,
    /// Elements between input rows (>= hidden_size); the residual is contiguous.
    pub input_stride: usize,
    pub epsilon: f32,
}

impl FusedAddRmsNormArgs {
    pub fn new(num_tokens: usize, hidden_size: usize, epsilon: f32) -> Self {
        Self {
            num_tokens,
            hidden_size,
            input_stride: hidden_size,
            epsilon,
        }
    }

    pub fn validate(
        &self,
        dtype: DType,
        input_len: usize,
        residual_len: usize,
        weight_len: usize,
    ) -> Result<()> {
        const OP: &str = "fused_add_rms_norm";
        check_common(
            OP,
            dtype,
            self.num_tokens,
            self.hidden_size,
            self.epsilon,
            weight_len,
        )?;
        check_rows(
            OP,
            "input",
            input_len,
            self.num_tokens,
            self.hidden_size,
            self.input_stride,
        )?;
        check_rows(
            OP,
            "residual",
            residual_len,
            self.num_tokens,
            self.hidden_size,
            self.hidden_size,
        )
    }
}

/// In place RMSNorm of every head vector (Qwen3's q_norm / k_norm): for each token `t` and head
/// `h`, `v = x[t * token_stride + h * head_size..][..head_size]` becomes
/// `rms_norm(v) * weight` (weight `[head_size]`, shared by the heads).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadRmsNormArgs {
    pub num_tokens: usize,
    pub num_heads: usize,
    pub head_size: usize,
    /// Elements between tokens (>= num_heads * head_size): the q or k part of a fused qkv row.
    pub token_stride: usize,
    pub epsilon: f32,
}

impl HeadRmsNormArgs {
    /// Contiguous tokens (`token_stride = num_heads * head_size`).
    pub fn new(num_tokens: usize, num_heads: usize, head_size: usize, epsilon: f32) -> Self {
        Self {
            num_tokens,
            num_heads,
            head_size,
            token_stride: num_heads.saturating_mul(head_size),
            epsilon,
        }
    }

    /// `x_len` may be a view that ends right after the last head:
    /// `(num_tokens - 1) * token_stride + num_heads * head_size` elements are enough.
    pub fn validate(&self, dtype: DType, x_len: usize, weight_len: usize) -> Result<()> {
        const OP: &str = "head_rms_norm";
        check_common(
            OP,
            dtype,
            self.num_tokens,
            self.head_size,
            self.epsilon,
            weight_len,
        )?;
        check_positive(OP, "num_heads", self.num_heads)?;
        let heads = self.num_tokens.saturating_mul(self.num_heads);
        if heads > MAX_ROWS {
            return Err(KernelError::OutOfRange {
                op: OP,
                what: "num_tokens * num_heads",
                value: heads.min(i64::MAX as usize) as i64,
                limit: MAX_ROWS + 1,
            });
        }
        check_rows(
            OP,
            "x",
            x_len,
            self.num_tokens,
            self.num_heads.saturating_mul(self.head_size),
            self.token_stride,
        )
    }
}

/// The normalised length is named `hidden_size` unless `op` is `head_rms_norm` (`head_size`).
fn check_common(
    op: &'static str,
    dtype: DType,
    rows: usize,
    hidden: usize,
    epsilon: f32,
    weight_len: usize,
) -> Result<()> {
    let (dim, weight) = if op == "head_rms_norm" {
        ("head_size", "weight length (head_size)")
    } else {
        ("hidden_size", "weight length (hidden_size)")
    };
    check_dtype(op, dtype, FLOAT_DTYPES)?;
    check_positive(op, dim, hidden)?;
    if hidden > MAX_HIDDEN {
        return Err(KernelError::Unsupported {
            op,
            what: dim,
            value: hidden.to_string(),
            supported: format!("1..={MAX_HIDDEN}"),
        });
    }
    check_rows_limit(op, rows)?;
    if !(epsilon.is_finite() && epsilon >= 0.0) {
        return Err(KernelError::invalid(
            op,
            format!("epsilon must be finite and >= 0, got {epsilon}"),
        ));
    }
    check_eq(op, weight, hidden, weight_len)
}

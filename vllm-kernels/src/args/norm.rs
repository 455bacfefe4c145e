//! Arguments of `rms_norm` and `fused_add_rms_norm`.

use super::{check_dtype, check_eq, check_positive, check_rows, check_rows_limit};
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

fn check_common(
    op: &'static str,
    dtype: DType,
    rows: usize,
    hidden: usize,
    epsilon: f32,
    weight_len: usize,
) -> Result<()> {
    check_dtype(op, dtype, FLOAT_DTYPES)?;
    check_positive(op, "hidden_size", hidden)?;
    if hidden > MAX_HIDDEN {
        return Err(KernelError::Unsupported {
            op,
            what: "hidden_size",
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
    check_eq(op, "weight length (hidden_size)", hidden, weight_len)
}

//! Arguments of the gated activations `silu_and_mul` and `gelu_and_mul`.

use super::{check_dtype, check_positive, check_rows, check_rows_limit};
use crate::dtype::{DType, FLOAT_DTYPES};
use crate::error::{KernelError, Result};

/// The activation applied to the first half of each row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    Silu,
    /// Exact GELU, `0.5 x (1 + erf(x / sqrt 2))`.
    GeluErf,
    /// The tanh approximation of GELU.
    GeluTanh,
}

impl Activation {
    pub fn name(self) -> &'static str {
        match self {
            Activation::Silu => "silu_and_mul",
            Activation::GeluErf => "gelu_and_mul",
            Activation::GeluTanh => "gelu_tanh_and_mul",
        }
    }
}

/// Largest `d` the launcher takes.
pub const MAX_D: usize = 1 << 22;

/// `out[t, i] = act(input[t, i]) * input[t, d + i]` for `i < d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActAndMulArgs {
    pub num_tokens: usize,
    pub d: usize,
    /// Elements between input rows (>= 2 d); the output is contiguous.
    pub input_stride: usize,
    pub act: Activation,
}

impl ActAndMulArgs {
    pub fn new(num_tokens: usize, d: usize, act: Activation) -> Self {
        Self {
            num_tokens,
            d,
            input_stride: 2 * d,
            act,
        }
    }

    pub fn validate(&self, dtype: DType, out_len: usize, input_len: usize) -> Result<()> {
        let op = self.act.name();
        check_dtype(op, dtype, FLOAT_DTYPES)?;
        check_positive(op, "d", self.d)?;
        if self.d > MAX_D {
            return Err(KernelError::Unsupported {
                op,
                what: "d",
                value: self.d.to_string(),
                supported: format!("1..={MAX_D}"),
            });
        }
        check_rows_limit(op, self.num_tokens)?;
        check_rows(
            op,
            "input",
            input_len,
            self.num_tokens,
            2 * self.d,
            self.input_stride,
        )?;
        check_rows(op, "out", out_len, self.num_tokens, self.d, self.d)
    }
}

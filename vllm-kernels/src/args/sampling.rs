//! Arguments of `sample_tokens`: one token per row of f32 logits, with per-row temperature,
//! min-p, top-k, top-p and seed (device arrays of `num_rows` each).

use super::{check_len, check_positive, check_rows, check_rows_limit};
use crate::error::{KernelError, Result};

/// Largest vocabulary `sample_tokens` takes: token ids are i32 and `i32::MAX` is the kernel's
/// "no token yet" marker.
pub const MAX_VOCAB: usize = i32::MAX as usize - 1;

/// `num_rows` rows of `vocab` f32 logits placed `logits_stride` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleArgs {
    pub num_rows: usize,
    pub vocab: usize,
    /// Elements between logits rows (>= vocab).
    pub logits_stride: usize,
}

impl SampleArgs {
    /// Contiguous logits.
    pub fn new(num_rows: usize, vocab: usize) -> Self {
        Self {
            num_rows,
            vocab,
            logits_stride: vocab,
        }
    }

    pub fn validate(
        &self,
        out_len: usize,
        logits_len: usize,
        [temperature_len, min_p_len, top_k_len, top_p_len, seeds_len]: [usize; 5],
    ) -> Result<()> {
        const OP: &str = "sample_tokens";
        check_positive(OP, "vocab", self.vocab)?;
        if self.vocab > MAX_VOCAB {
            return Err(KernelError::Unsupported {
                op: OP,
                what: "vocab",
                value: self.vocab.to_string(),
                supported: format!("1..={MAX_VOCAB}"),
            });
        }
        check_rows_limit(OP, self.num_rows)?;
        check_rows(
            OP,
            "logits",
            logits_len,
            self.num_rows,
            self.vocab,
            self.logits_stride,
        )?;
        check_len(OP, "out", out_len, self.num_rows)?;
        check_len(OP, "temperature", temperature_len, self.num_rows)?;
        check_len(OP, "min_p", min_p_len, self.num_rows)?;
        check_len(OP, "top_k", top_k_len, self.num_rows)?;
        check_len(OP, "top_p", top_p_len, self.num_rows)?;
        check_len(OP, "seeds", seeds_len, self.num_rows)
    }
}

/// `fill_tokens`: `out[i] = sampled[from[i]]` where `from[i] >= 0`, else `tokens[i]`, for
/// `i < n` (async scheduling: the previous step's device-drawn tokens become this step's
/// inputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillTokensArgs {
    pub n: usize,
    /// Length of `sampled`: a non-negative `from[i]` must lie in `0..num_sampled`.
    pub num_sampled: usize,
}

impl FillTokensArgs {
    pub fn new(n: usize, num_sampled: usize) -> Self {
        Self { n, num_sampled }
    }

    /// The lengths; `from` itself is checked by [`Self::validate_from`] (the CPU reference
    /// does; the GPU kernel keeps the host's id for an entry out of range instead).
    pub fn validate(
        &self,
        out_len: usize,
        tokens_len: usize,
        sampled_len: usize,
        from_len: usize,
    ) -> Result<()> {
        const OP: &str = "fill_tokens";
        check_rows_limit(OP, self.n)?;
        check_len(OP, "out", out_len, self.n)?;
        check_len(OP, "tokens", tokens_len, self.n)?;
        check_len(OP, "sampled", sampled_len, self.num_sampled)?;
        check_len(OP, "from", from_len, self.n)
    }

    /// Every `from[i]` is -1 or lies in `0..num_sampled`.
    pub fn validate_from(&self, from: &[i32]) -> Result<()> {
        for &f in from.iter().take(self.n) {
            if f < -1 || f >= 0 && f as usize >= self.num_sampled {
                return Err(KernelError::OutOfRange {
                    op: "fill_tokens",
                    what: "source",
                    value: i64::from(f),
                    limit: self.num_sampled,
                });
            }
        }
        Ok(())
    }
}

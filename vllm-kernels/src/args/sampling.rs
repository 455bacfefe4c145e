//! Arguments of `sample_tokens`: one token per row of f32 logits, with per-row temperature,
//! min-p, top-k, top-p and seed ([`SampleRow`] on the host; on the device five arrays of
//! `num_rows` each, as the launcher takes them), and of `fill_tokens`. Validation is O(1).

use super::{check_len, check_positive, check_rows, check_rows_limit};
use crate::error::{KernelError, Result};

/// Largest vocabulary `sample_tokens` takes: token ids are i32 and `i32::MAX` is the kernel's
/// "no token yet" marker.
pub const MAX_VOCAB: usize = i32::MAX as usize - 1;

/// The sampling parameters of one row (the host-side form; see `cpu::sample_tokens` for the
/// rule). `repr(C)`: 24 bytes, `seed` 8-byte aligned.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleRow {
    /// `> 0`: Gumbel-max at this temperature; `<= 0` or NaN: greedy.
    pub temperature: f32,
    /// Keep tokens with `p_i >= min_p * p_max` (`<= 0`: all).
    pub min_p: f32,
    /// Keep the `top_k` best (`0`, or `>= vocab`: all).
    pub top_k: i32,
    /// Keep the shortest best-first prefix holding `top_p` of the weight (`>= 1`: all).
    pub top_p: f32,
    pub seed: u64,
}

impl SampleRow {
    /// Greedy argmax (no filters).
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            min_p: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

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

    /// The lengths of `out`, `logits` and each per-row parameter buffer, named (the host API
    /// passes one `"rows"` slice of [`SampleRow`], the device API five arrays).
    pub fn validate(
        &self,
        out_len: usize,
        logits_len: usize,
        per_row: &[(&'static str, usize)],
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
        for &(name, len) in per_row {
            check_len(OP, name, len, self.num_rows)?;
        }
        Ok(())
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

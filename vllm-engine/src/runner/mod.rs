//! The backend seam. The engine turns each scheduler step into a [`StepBatch`] (flattened
//! tokens with their positions and KV slots, one [`SeqSlice`] per scheduled request with its
//! block table, the rows whose logits are needed, and copy-on-write block copies); a
//! [`ModelRunner`] computes the step and returns those logits, or, for rows the engine marks
//! [`RowSampling::Device`] on a runner that samples itself, the drawn tokens (so a GPU runner
//! copies token ids back instead of whole vocabulary rows). Swapping the CPU backend for CUDA
//! swaps only the runner.
//!
//! Async scheduling: a runner that can keep a step in flight ([`ModelRunner::can_launch`])
//! takes [`ModelRunner::launch`] (enqueue and return) and [`ModelRunner::collect`] (wait for
//! the oldest launched step's tokens), so the engine plans step N+1 while the device computes
//! step N. The tokens step N draws are then unknown when step N+1 is built: such rows are
//! listed in [`StepBatch::pending`] and the runner takes their ids from step N's draws on the
//! device.

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;

use crate::device::Device;
use crate::sampling::DeviceSampling;

/// One scheduled request's share of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqSlice {
    /// First row of this request's tokens in [`StepBatch::tokens`].
    pub first_row: usize,
    pub num_tokens: usize,
    /// Tokens in the KV cache once this step has written: `start + num_tokens`.
    pub context_len: usize,
    /// Physical KV blocks in logical order.
    pub block_table: Vec<u32>,
}

/// Everything a runner needs for one forward step, built on the host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepBatch {
    pub tokens: Vec<u32>,
    pub positions: Vec<usize>,
    /// KV slot (`block * block_size + offset`) each token's K/V is written to.
    pub slots: Vec<i64>,
    /// The sequences, any order; the engine puts the one-token sequences first (each its own
    /// row `i`), which lets the CUDA runner run decode attention on them and prefill attention
    /// on the rest only.
    pub seqs: Vec<SeqSlice>,
    /// Rows of `tokens` whose next-token logits are returned, in this order.
    pub logits_rows: Vec<usize>,
    /// Whole KV blocks to copy (src, dst) before anything is written (fork copy-on-write).
    pub block_copies: Vec<(u32, u32)>,
    /// How each logits row becomes a token, parallel to `logits_rows`; empty means every row
    /// is [`RowSampling::Host`].
    pub row_sampling: Vec<RowSampling>,
    /// `(row, r)`: the token at `row` is the one drawn for logits row `r` of the step launched
    /// just before this one (async scheduling; `tokens[row]` is a placeholder). Only for
    /// [`ModelRunner::launch`].
    pub pending: Vec<(usize, usize)>,
}

/// Who turns a logits row into a token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RowSampling {
    /// The runner returns the row's logits; the engine's sampler draws (penalties, bias,
    /// logprobs and every other parameter).
    Host,
    /// The runner draws on its device: argmax when the temperature is 0, else a Gumbel-max
    /// draw from softmax(logits / temperature) restricted by min-p, top-k and top-p, its
    /// randomness keyed by `seed`. Only for runners whose [`ModelRunner::samples_on_device`]
    /// is true.
    Device { params: DeviceSampling, seed: u64 },
}

/// What a step returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepOutput {
    /// `vocab` logits per [`RowSampling::Host`] row, in row order.
    pub logits: Vec<f32>,
    /// One entry per logits row: the token for device-sampled rows, `None` for host rows.
    pub tokens: Vec<Option<u32>>,
}

impl StepOutput {
    /// Every row returned as logits (`rows` of them).
    pub fn all_logits(logits: Vec<f32>, rows: usize) -> Self {
        Self {
            logits,
            tokens: vec![None; rows],
        }
    }
}

/// A runner failure; the engine fails the step's requests with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunnerError {
    #[error("bad step input: {0}")]
    BadInput(String),
    #[error("{0}")]
    Backend(String),
}

/// KV cache geometry a runner was built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvGeometry {
    pub num_blocks: usize,
    pub block_size: usize,
}

/// Computes forward steps for one model on one device.
pub trait ModelRunner: Send {
    /// Runs `batch`: logits for its host-sampled rows, tokens for its device-sampled ones.
    fn execute(&mut self, batch: &StepBatch) -> Result<StepOutput, RunnerError>;
    /// Whether [`RowSampling::Device`] rows are accepted.
    fn samples_on_device(&self) -> bool {
        false
    }
    /// Whether `batch` can go through [`Self::launch`] now: every logits row sampled on the
    /// device and room for another step in flight.
    fn can_launch(&self, _batch: &StepBatch) -> bool {
        false
    }
    /// Enqueues `batch` and returns without waiting for it; [`Self::collect`] returns its
    /// tokens. Rows in `batch.pending` take the token the previously launched step draws.
    fn launch(&mut self, _batch: &StepBatch) -> Result<(), RunnerError> {
        Err(RunnerError::BadInput(
            "this runner cannot launch steps asynchronously".into(),
        ))
    }
    /// Waits for the oldest launched step; its tokens, one per logits row.
    fn collect(&mut self) -> Result<StepOutput, RunnerError> {
        Err(RunnerError::BadInput("no step was launched".into()))
    }
    /// A start-up summary for logs (device, KV cache size, graphs).
    fn report(&self) -> Option<String> {
        None
    }
    /// Device memory in use, bytes, where the runner can tell.
    fn memory_in_use(&self) -> Option<usize> {
        None
    }
    /// Per-step timing collected so far, when the runner was asked to collect it.
    fn timing(&self) -> Option<String> {
        None
    }
    fn vocab_size(&self) -> usize;
    fn device(&self) -> Device;
    fn kv_geometry(&self) -> KvGeometry;
}

impl StepBatch {
    /// Checks the invariants every runner relies on (rows in range, slots inside the cache,
    /// block tables long enough), so a bad batch is an error rather than a wrong answer.
    pub fn validate(&self, kv: KvGeometry, vocab: usize) -> Result<(), RunnerError> {
        let bad = |m: String| Err(RunnerError::BadInput(m));
        let n = self.tokens.len();
        if self.positions.len() != n || self.slots.len() != n {
            return bad(format!(
                "{n} tokens but {} positions and {} slots",
                self.positions.len(),
                self.slots.len()
            ));
        }
        if let Some(&t) = self.tokens.iter().find(|&&t| t as usize >= vocab) {
            return bad(format!("token id {t} is outside the vocabulary of {vocab}"));
        }
        let cap = (kv.num_blocks * kv.block_size) as i64;
        if let Some(&s) = self.slots.iter().find(|&&s| s >= cap) {
            return bad(format!("slot {s} is outside the KV cache of {cap} slots"));
        }
        let mut covered = 0;
        for s in &self.seqs {
            if s.first_row != covered || s.num_tokens == 0 || s.context_len < s.num_tokens {
                return bad(format!("sequence slice {s:?} does not tile the batch"));
            }
            covered += s.num_tokens;
            if s.block_table.len() * kv.block_size < s.context_len {
                return bad(format!(
                    "block table of {} blocks cannot hold {} tokens",
                    s.block_table.len(),
                    s.context_len
                ));
            }
            if let Some(&b) = s.block_table.iter().find(|&&b| b as usize >= kv.num_blocks) {
                return bad(format!(
                    "block {b} is outside the cache of {}",
                    kv.num_blocks
                ));
            }
        }
        if covered != n {
            return bad(format!("slices cover {covered} of {n} tokens"));
        }
        if let Some(&r) = self.logits_rows.iter().find(|&&r| r >= n) {
            return bad(format!("logits row {r} of {n}"));
        }
        if !self.row_sampling.is_empty() && self.row_sampling.len() != self.logits_rows.len() {
            return bad(format!(
                "{} row samplers for {} logits rows",
                self.row_sampling.len(),
                self.logits_rows.len()
            ));
        }
        if let Some(&(row, r)) = self.pending.iter().find(|&&(row, _)| row >= n) {
            return bad(format!("pending token row {row} (from row {r}) of {n}"));
        }
        for &(a, b) in &self.block_copies {
            if a as usize >= kv.num_blocks || b as usize >= kv.num_blocks {
                return bad(format!("block copy {a} -> {b} outside the cache"));
            }
        }
        Ok(())
    }
}

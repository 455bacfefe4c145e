//! The batch layout: a scheduler step as the runner's [`StepBatch`] (tokens, positions, KV
//! slots, block tables, logits rows) and what each logits row is for ([`Row`]).
//!
//! Order: one-token sequences (decodes) first, then the rest (prefills) in plan order, so a
//! runner can give the leading one-token sequences to its decode attention kernel and the rest
//! to prefill attention (see `StepBatch::seqs`). From [`LONGEST_FIRST_MIN_SEQS`] one-token
//! sequences on, those go longest context first: the decode kernel dispatches its CTAs in
//! sequence order, so the longest work starts first and the short tail fills in after it (LPT
//! order). Outputs go by sequence id, so the order changes nothing else. Per sequence: its
//! tokens (a placeholder still on the device becomes a `pending` entry naming the launched
//! step's row), a prompt-logprob row per prompt position still due, and a sampling row when
//! the step reaches its last token (sampled on the device when the runner can and the
//! parameters allow). Cost: O(tokens + block table entries) per step, plus sorting the
//! one-token sequences when there are many.

use super::{Scheduler, SchedulerOutput, SeqId};
use crate::runner::{RowSampling, SeqSlice, StepBatch};
use std::collections::HashMap;

/// Batches of at least this many sequences are packed longest context first. Measured on an
/// H200 (decode attention, bf16, 32/8 heads, contexts uniform in [100, 2048], both orders in one
/// run, benches/results/raw/2026-11-30-h200-engine/call3/ragged.log): 64 sequences 81.7 -> 73.2 us,
/// 128: 131.2 -> 124.2, 192: 201.6 -> 194.9, 256: 261.1 -> 254.3; but 32: 37.5 -> 43.2 (slower,
/// in both runs), 8 and 16 within 7%.
pub const LONGEST_FIRST_MIN_SEQS: usize = 64;

/// What a logits row of a step is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    /// The next token of this sequence.
    Sample(SeqId),
    /// The log-probability of this prompt token (prompt_logprobs).
    Prompt(SeqId, u32),
}

/// A step laid out for the runner.
#[derive(Debug, Clone, Default)]
pub struct StepLayout {
    pub batch: StepBatch,
    /// What each logits row is for, in row order.
    pub rows: Vec<Row>,
}

impl StepLayout {
    /// Sequence -> its sampling row (where a runner finds its draw for the next step).
    pub fn sample_rows(&self) -> HashMap<SeqId, usize> {
        self.rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match r {
                Row::Sample(id) => Some((*id, i)),
                Row::Prompt(..) => None,
            })
            .collect()
    }
}

/// What the layout needs from each sequence's output state (kept outside the scheduler).
pub trait RowSource {
    /// With `prompt_logprobs`, the first prompt position whose logprob is still due.
    fn prompt_logprobs_from(&self, id: SeqId) -> Option<usize>;
    /// The seed of the sequence's next device draw (advances its generator).
    fn next_device_seed(&mut self, id: SeqId) -> Option<u64>;
}

impl Scheduler {
    /// Lays out `plan` (see the module doc). `device_sampling`: the runner draws tokens itself;
    /// `in_flight`: the sampling rows of the launched step whose tokens are still on the device.
    pub fn layout(
        &self,
        plan: &SchedulerOutput,
        seqs: &mut impl RowSource,
        device_sampling: bool,
        in_flight: Option<&HashMap<SeqId, usize>>,
    ) -> StepLayout {
        let mut l = StepLayout::default();
        let batch = &mut l.batch;
        let mut order: Vec<_> = plan.scheduled.iter().collect();
        order.sort_by_key(|s| s.num_tokens != 1);
        let decodes = order.iter().take_while(|s| s.num_tokens == 1).count();
        if decodes >= LONGEST_FIRST_MIN_SEQS {
            order[..decodes].sort_by_key(|s| std::cmp::Reverse(s.start + s.num_tokens));
        }
        for s in order {
            let Some(r) = self.requests.get(&s.id) else {
                continue;
            };
            let Some(table) = r.table.as_ref() else {
                continue;
            };
            let first_row = batch.tokens.len();
            for pos in s.start..s.start + s.num_tokens {
                if r.is_pending(pos) {
                    // Drawn by the launched step, still on the device: the runner fills it in.
                    let from = in_flight.and_then(|f| f.get(&s.id));
                    debug_assert!(from.is_some(), "pending token of {} not in flight", s.id);
                    if let Some(&from) = from {
                        batch.pending.push((batch.tokens.len(), from));
                    }
                }
                // The scheduler only schedules positions the request has tokens for.
                batch.tokens.push(r.token_at(pos).unwrap_or(0));
                batch.positions.push(pos);
                batch.slots.push(table.slot(pos).unwrap_or(-1));
            }
            // Prompt logprobs: the row at position p scores prompt token p + 1.
            if let Some(due) = seqs.prompt_logprobs_from(s.id) {
                for p in s.start..s.start + s.num_tokens {
                    if p + 1 < r.prompt.len() && p + 1 >= due {
                        batch.logits_rows.push(first_row + p - s.start);
                        batch.row_sampling.push(RowSampling::Host);
                        l.rows.push(Row::Prompt(s.id, r.prompt[p + 1]));
                    }
                }
            }
            if s.samples {
                batch.logits_rows.push(first_row + s.num_tokens - 1);
                l.rows.push(Row::Sample(s.id));
                let params = device_sampling
                    .then(|| r.params.device_sampling(r.output.len()))
                    .flatten();
                let seed = params.and_then(|_| seqs.next_device_seed(s.id));
                batch.row_sampling.push(match (params, seed) {
                    (Some(params), Some(seed)) => RowSampling::Device { params, seed },
                    _ => RowSampling::Host,
                });
            }
            if let Some(c) = &s.copy {
                batch.block_copies.push((c.src, c.dst));
            }
            batch.seqs.push(SeqSlice {
                first_row,
                num_tokens: s.num_tokens,
                context_len: s.start + s.num_tokens,
                block_table: table.blocks().to_vec(),
            });
        }
        l
    }
}

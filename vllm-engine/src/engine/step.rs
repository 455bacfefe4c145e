//! One engine step: plan (scheduler), lay out (a [`StepBatch`]), compute (runner), then sample,
//! record and detokenize ([`Engine::process`]).
//!
//! With async scheduling (`EngineArgs::async_scheduling`, on a runner that can launch) a step
//! is launched rather than executed: [`Engine::step`] plans and launches step N+1, then
//! collects step N, resolves its placeholder tokens (see the scheduler's module doc) and
//! returns its outputs, so the host's planning, packing and output handling overlap the
//! device's compute. Step N+1's rows whose input token step N draws are listed as
//! [`StepBatch::pending`]; the runner takes those ids from step N's draws on the device. A step
//! that needs logits on the host (logprobs, penalties, bias, pending `min_tokens`) is executed
//! after step N is collected, with its pending tokens filled in on the host, as before. Outputs
//! are the same as without async scheduling (same tokens, same order per sequence); a sequence
//! ending on a stop token is computed for one extra step whose result is dropped. Cost per step:
//! O(batch) host work, now hidden behind the device's step when launched.

use super::{Engine, RequestOutput, TokenLogprobs, final_output, metrics_of};
use crate::runner::{RowSampling, SeqSlice, StepBatch, StepOutput};
use crate::sampling::{Sample, sample, token_logprobs};
use crate::scheduler::{FinishReason, RequestId, SchedulerOutput};
use std::collections::HashMap;
use std::time::Instant;

/// Batches of at least this many sequences are packed longest context first. Measured on an
/// H200 (decode attention, bf16, 32/8 heads, contexts uniform in [100, 2048], both orders in one
/// run, benches/results/engine-h200-2026-11-30/call3/ragged.log): 64 sequences 81.7 -> 73.2 us,
/// 128: 131.2 -> 124.2, 192: 201.6 -> 194.9, 256: 261.1 -> 254.3; but 32: 37.5 -> 43.2 (slower,
/// in both runs), 8 and 16 within 7%.
const LONGEST_FIRST_MIN_SEQS: usize = 64;

/// What a logits row of a step is for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Row {
    /// The next token of this sequence.
    Sample(RequestId),
    /// The log-probability of this prompt token (prompt_logprobs).
    Prompt(RequestId, u32),
}

/// A launched step, until it is collected.
#[derive(Debug)]
pub(super) struct Launched {
    plan: SchedulerOutput,
    rows: Vec<Row>,
    /// Sequence -> its logits row (where the runner finds its draw for the next step).
    row_of: HashMap<RequestId, usize>,
}

impl Engine {
    /// Runs one step; returns the deltas of every sequence that advanced or finished. With
    /// async scheduling, the deltas of the step launched by the previous call (or of the first
    /// step, launched and collected in the same call), while the next step computes.
    pub fn step(&mut self) -> Vec<RequestOutput> {
        let mut out = Vec::new();
        loop {
            let plan = self.scheduler.schedule();
            if plan.scheduled.is_empty() {
                if let Some(prev) = self.inflight.take() {
                    out.extend(self.collect(prev).0);
                }
                return out;
            }
            let (mut batch, rows) = self.build_batch(&plan);
            if !(self.async_scheduling && self.runner.can_launch(&batch)) {
                // One step at a time: first the launched one, whose tokens this one may need.
                if let Some(prev) = self.inflight.take() {
                    let (o, tokens) = self.collect(prev);
                    out.extend(o);
                    for (row, from) in std::mem::take(&mut batch.pending) {
                        batch.tokens[row] = tokens.get(from).copied().flatten().unwrap_or(0);
                    }
                }
                let step = match self.runner.execute(&batch) {
                    Ok(s) => s,
                    Err(e) => {
                        out.extend(self.fail_step(&plan, &e.to_string()));
                        return out;
                    }
                };
                out.extend(self.process(&plan, &rows, step, false));
                return out;
            }
            if let Err(e) = self.runner.launch(&batch) {
                // The launched step computed fine: its tokens (a stop token among them) count
                // before this plan's requests fail.
                if let Some(prev) = self.inflight.take() {
                    out.extend(self.collect(prev).0);
                }
                out.extend(self.fail_step(&plan, &e.to_string()));
                return out;
            }
            let row_of = rows
                .iter()
                .enumerate()
                .filter_map(|(i, r)| match r {
                    Row::Sample(id) => Some((*id, i)),
                    Row::Prompt(..) => None,
                })
                .collect();
            let launched = Launched { plan, rows, row_of };
            match self.inflight.replace(launched) {
                Some(prev) => {
                    out.extend(self.collect(prev).0);
                    if let Some(l) = &self.inflight {
                        self.scheduler.update_launched(&l.plan);
                    }
                    return out;
                }
                None => {
                    // The first launched step: its tokens are all known, record it and plan
                    // the next one right away.
                    if let Some(l) = &self.inflight {
                        self.scheduler.update_launched(&l.plan);
                    }
                }
            }
        }
    }

    /// Waits for a launched step and processes it; its outputs and its tokens by row.
    fn collect(&mut self, l: Launched) -> (Vec<RequestOutput>, Vec<Option<u32>>) {
        match self.runner.collect() {
            Ok(step) => {
                let tokens = step.tokens.clone();
                (self.process(&l.plan, &l.rows, step, true), tokens)
            }
            Err(e) => (self.fail_step(&l.plan, &e.to_string()), Vec::new()),
        }
    }

    /// Lays out `plan` for the runner; what each logits row is for.
    fn build_batch(&mut self, plan: &SchedulerOutput) -> (StepBatch, Vec<Row>) {
        let mut batch = StepBatch::default();
        // What each logits row is for, in row order.
        let mut rows = Vec::new();
        // One-token sequences (decodes) first, then the prefills in plan order: a runner can
        // then give the leading one-token sequences to its decode attention kernel and the
        // rest to prefill attention (see `StepBatch::seqs`). From LONGEST_FIRST_MIN_SEQS
        // one-token sequences on, those go longest context first: the decode kernel
        // dispatches its CTAs in sequence order, so the longest work starts first and the
        // short tail fills in after it (LPT order). Outputs go by sequence id.
        let mut order: Vec<_> = plan.scheduled.iter().collect();
        order.sort_by_key(|s| s.num_tokens != 1);
        let decodes = order.iter().take_while(|s| s.num_tokens == 1).count();
        if decodes >= LONGEST_FIRST_MIN_SEQS {
            order[..decodes].sort_by_key(|s| std::cmp::Reverse(s.start + s.num_tokens));
        }
        for s in order {
            let Some(r) = self.scheduler.request(s.id) else {
                continue;
            };
            let Some(table) = r.table.as_ref() else {
                continue;
            };
            let first_row = batch.tokens.len();
            for pos in s.start..s.start + s.num_tokens {
                if r.is_pending(pos) {
                    // Drawn by the launched step, still on the device: the runner fills it in.
                    let from = self.inflight.as_ref().and_then(|l| l.row_of.get(&s.id));
                    debug_assert!(from.is_some(), "pending token of {} not in flight", s.id);
                    if let Some(&from) = from {
                        batch.pending.push((batch.tokens.len(), from));
                    }
                }
                // The scheduler only schedules positions the request has tokens for.
                let tok = r.token_at(pos).unwrap_or(0);
                batch.tokens.push(tok);
                batch.positions.push(pos);
                batch.slots.push(table.slot(pos).unwrap_or(-1));
            }
            // Prompt logprobs: the row at position p scores prompt token p + 1.
            if let Some(seq) = self.seqs.get(&s.id)
                && seq.prompt_logprobs.is_some()
            {
                for p in s.start..s.start + s.num_tokens {
                    if p + 1 < r.prompt.len() && p + 1 >= seq.prompt_lp_next {
                        batch.logits_rows.push(first_row + p - s.start);
                        batch.row_sampling.push(RowSampling::Host);
                        rows.push(Row::Prompt(s.id, r.prompt[p + 1]));
                    }
                }
            }
            if s.samples {
                batch.logits_rows.push(first_row + s.num_tokens - 1);
                rows.push(Row::Sample(s.id));
                let device = self
                    .runner
                    .samples_on_device()
                    .then(|| r.params.device_sampling(r.output.len()))
                    .flatten();
                batch
                    .row_sampling
                    .push(match (device, self.seqs.get_mut(&s.id)) {
                        (Some(params), Some(seq)) => RowSampling::Device {
                            params,
                            seed: seq.sampler.next_seed(),
                        },
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
        (batch, rows)
    }

    /// Samples host rows, records the step's tokens with the scheduler (`launched`: they
    /// replace the placeholders of a launched step) and builds the outputs.
    fn process(
        &mut self,
        plan: &SchedulerOutput,
        rows: &[Row],
        step: StepOutput,
        launched: bool,
    ) -> Vec<RequestOutput> {
        let vocab = self.runner.vocab_size();
        let mut sampled = HashMap::new();
        let mut samples = HashMap::new();
        let mut host_row = 0;
        for (row, &use_) in rows.iter().enumerate() {
            let device_token = step.tokens.get(row).copied().flatten();
            let logits_row = if device_token.is_none() {
                host_row += 1;
                &step.logits[(host_row - 1) * vocab..host_row * vocab]
            } else {
                &[]
            };
            let id = match use_ {
                Row::Sample(id) => id,
                Row::Prompt(id, token) => {
                    if let Some(seq) = self.seqs.get_mut(&id) {
                        let k = seq.prompt_logprobs.unwrap_or(0);
                        let (logprob, top) = token_logprobs(logits_row, token, k);
                        seq.prompt_lp.push(TokenLogprobs {
                            token,
                            logprob,
                            top,
                        });
                        seq.prompt_lp_next += 1;
                    }
                    continue;
                }
            };
            let (Some(r), Some(seq)) = (self.scheduler.request(id), self.seqs.get_mut(&id)) else {
                continue;
            };
            seq.num_cached_tokens = r.cached_tokens;
            let smp = match device_token {
                Some(token) => Sample {
                    token,
                    logprob: f32::NAN,
                    top_logprobs: Vec::new(),
                },
                None => sample(
                    logits_row,
                    &r.params,
                    &r.prompt,
                    &r.output,
                    &self.eos,
                    &mut seq.sampler,
                ),
            };
            sampled.insert(id, smp.token);
            samples.insert(id, smp);
        }
        let finished = match launched {
            true => self.scheduler.resolve(plan, &sampled, &self.eos),
            false => self.scheduler.update(plan, &sampled, &self.eos),
        };
        let finished: HashMap<RequestId, _> = finished.into_iter().map(|f| (f.id, f)).collect();
        let now = Instant::now();
        let mut out = Vec::new();
        for s in plan.scheduled.iter().filter(|s| s.samples) {
            let Some(smp) = samples.remove(&s.id) else {
                continue;
            };
            let tokenizer = self.tokenizer.clone();
            let Some(seq) = self.seqs.get_mut(&s.id) else {
                continue;
            };
            seq.first_token.get_or_insert(now);
            seq.num_output_tokens += 1;
            let (mut text, mut stop_reason) = (String::new(), None);
            if let (Some(t), Some(ot)) = (&tokenizer, seq.text.as_mut()) {
                let d = ot.push(t.as_ref(), smp.token);
                text = d.text;
                stop_reason = d.stopped.map(|m| m.stop);
            }
            let mut fin = finished.get(&s.id).map(|f| (f.reason, f.preemptions));
            if fin.is_none() && stop_reason.is_some() {
                fin = self
                    .scheduler
                    .finish(s.id, FinishReason::Stop)
                    .map(|f| (f.reason, f.preemptions));
            }
            if let Some((FinishReason::Stop, _)) = fin
                && stop_reason.is_none()
            {
                stop_reason = Some(format!("token {}", smp.token));
            }
            if fin.is_some()
                && let Some(ot) = seq.text.as_mut()
            {
                text.push_str(&ot.finish());
            }
            let r_pre = fin.map(|f| f.1);
            let metrics = metrics_of(seq, r_pre.unwrap_or(0), now);
            let o = RequestOutput {
                request_id: seq.request_id,
                index: seq.index,
                text,
                token_ids: vec![smp.token],
                logprobs: seq.want_logprobs.then(|| {
                    vec![TokenLogprobs {
                        token: smp.token,
                        logprob: smp.logprob,
                        top: smp.top_logprobs,
                    }]
                }),
                prompt_logprobs: seq
                    .prompt_logprobs
                    .map(|_| std::mem::take(&mut seq.prompt_lp)),
                finished: fin.is_some(),
                finish_reason: fin.map(|f| f.0),
                stop_reason,
                error: None,
                metrics,
            };
            if fin.is_some() {
                self.retire(s.id);
            }
            out.push(o);
        }
        // Sequences finished without sampling this step (e.g. length reached on a prompt).
        for (id, f) in finished {
            if let Some(seq) = self.seqs.get(&id)
                && !out
                    .iter()
                    .any(|o| o.request_id == seq.request_id && o.index == seq.index)
            {
                out.push(final_output(seq, f.reason, f.preemptions, None));
                self.retire(id);
            }
        }
        out
    }
}

//! One engine step: schedule (the scheduler plans it and lays it out as a [`StepBatch`]), run
//! (the runner computes it), process (sample, record the tokens with the scheduler, then the
//! output processor detokenizes, decides finishes and builds the deltas).
//!
//! With async scheduling (`EngineArgs::async_scheduling`, on a runner that can launch) the run
//! is a launch instead, and the step launched before it is collected and processed meanwhile
//! (see `pipeline.rs`). Cost per step: the runner's forward plus O(batch) host work.

use super::{Engine, RequestOutput};
use crate::runner::{RunnerError, StepBatch, StepOutput};
use crate::scheduler::{FinishReason, Row, SchedulerOutput, SeqId, StepLayout};
use std::time::Instant;

impl Engine {
    /// Runs one step; returns the deltas of every sequence that advanced or finished. With
    /// async scheduling, the deltas of the step launched by the previous call (or of the first
    /// step, launched and collected in the same call), while the next step computes.
    pub fn step(&mut self) -> Vec<RequestOutput> {
        let mut out = Vec::new();
        while let Some((plan, mut layout)) = self.schedule() {
            if self.async_scheduling && self.runner.can_launch(&layout.batch) {
                if self.launch(plan, layout, &mut out) {
                    return out;
                }
                continue; // the first launch: plan the next step right away
            }
            let result = self.run(&mut layout.batch, &mut out);
            out.extend(self.process(&plan, &layout.rows, result, false));
            return out;
        }
        // Nothing new to compute: the launched step, if any, is the last.
        out.extend(self.collect_inflight().map(|(o, _)| o).unwrap_or_default());
        out
    }

    /// Plans the next step and lays it out; `None` when nothing is scheduled.
    fn schedule(&mut self) -> Option<(SchedulerOutput, StepLayout)> {
        let plan = self.scheduler.schedule();
        if plan.scheduled.is_empty() {
            return None;
        }
        let layout = self.scheduler.layout(
            &plan,
            &mut self.output,
            self.runner.samples_on_device(),
            self.inflight.as_ref().map(|l| &l.row_of),
        );
        Some((plan, layout))
    }

    /// Executes `batch` now, after the launched step if one is in flight (its outputs go to
    /// `out`; its tokens fill in `batch`'s pending rows).
    fn run(
        &mut self,
        batch: &mut StepBatch,
        out: &mut Vec<RequestOutput>,
    ) -> Result<StepOutput, RunnerError> {
        if let Some((o, tokens)) = self.collect_inflight() {
            out.extend(o);
            for (row, from) in std::mem::take(&mut batch.pending) {
                batch.tokens[row] = tokens.get(from).copied().flatten().unwrap_or(0);
            }
        }
        self.runner.execute(batch)
    }

    /// A computed step's outputs: tokens sampled and recorded with the scheduler
    /// (`launched`: they replace the placeholders of a launched step), then one delta per
    /// sampled sequence, which ends it when [`crate::scheduler::check_stop`] says so. A failed
    /// step ends its sequences with the error.
    pub(super) fn process(
        &mut self,
        plan: &SchedulerOutput,
        rows: &[Row],
        result: Result<StepOutput, RunnerError>,
        launched: bool,
    ) -> Vec<RequestOutput> {
        let step = match result {
            Ok(step) => step,
            Err(e) => return self.fail_step(plan, &e.to_string()),
        };
        let vocab = self.runner.vocab_size();
        let mut samples = self.output.sample(rows, &step, &self.scheduler, vocab);
        if !launched {
            self.scheduler.update_launched(plan);
        }
        let recorded = self
            .scheduler
            .record(plan, |id| samples.get(&id).map(|s| s.token));
        let max_model_len = self.scheduler.config().max_model_len;
        let now = Instant::now();
        let mut out = Vec::with_capacity(recorded.len());
        for id in recorded {
            let (Some(smp), Some(r)) = (samples.remove(&id), self.scheduler.request(id)) else {
                continue;
            };
            let Some(o) = self.output.on_token(id, smp, r, max_model_len, now) else {
                continue;
            };
            if let Some(reason) = o.finish_reason {
                self.scheduler.finish(id, reason);
                self.output.retire(id);
            }
            out.push(o);
        }
        out
    }

    /// A failed forward: the step's sequences end with an error; the rest keep running.
    fn fail_step(&mut self, plan: &SchedulerOutput, msg: &str) -> Vec<RequestOutput> {
        plan.scheduled
            .iter()
            .filter_map(|s| self.end(s.id, FinishReason::Error, Some(msg)))
            .collect()
    }

    /// Ends `id` without a new token (abort, failed step): the scheduler frees it and the
    /// output processor returns its last output. `None` if it is unknown or already finished.
    pub(super) fn end(
        &mut self,
        id: SeqId,
        reason: FinishReason,
        error: Option<&str>,
    ) -> Option<RequestOutput> {
        let f = self.scheduler.finish(id, reason)?;
        self.output.finish(id, reason, f.preemptions, error)
    }
}

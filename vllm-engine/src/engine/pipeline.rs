//! Async scheduling around the step: step N+1 is launched before step N is collected.
//!
//! [`Engine::launch`] hands a laid-out step to the runner without waiting, records its
//! progress with placeholder tokens (see the scheduler's module doc), then collects and
//! processes the step launched before it, so the host's planning, packing and output handling
//! overlap the device's compute. Step N+1's rows whose input token step N draws are listed as
//! `StepBatch::pending`; the runner takes those ids from step N's draws on the device. A step
//! that needs logits on the host (logprobs, penalties, bias, pending `min_tokens`) is executed
//! after step N is collected, with its pending tokens filled in on the host. Outputs are the
//! same as without async scheduling (same tokens, same order per sequence); a sequence ending
//! on a stop token is computed for one extra step whose result is dropped. Cost per step:
//! O(batch) host work, hidden behind the device's step.

use super::{Engine, RequestOutput};
use crate::scheduler::{Row, SchedulerOutput, SeqId, StepLayout};
use std::collections::HashMap;

/// A launched step, until it is collected.
#[derive(Debug)]
pub(super) struct Launched {
    plan: SchedulerOutput,
    rows: Vec<Row>,
    /// Sequence -> its sampling row (where the runner finds its draw for the next step).
    pub(super) row_of: HashMap<SeqId, usize>,
}

impl Engine {
    /// Launches a laid-out step and collects the one launched before it (its outputs go to
    /// `out`). False when no step was in flight: this was the first launch, and the caller
    /// plans the next step at once. A failed launch fails `plan`'s requests after the step
    /// before it is collected (its tokens, a stop token among them, count first).
    pub(super) fn launch(
        &mut self,
        plan: SchedulerOutput,
        layout: StepLayout,
        out: &mut Vec<RequestOutput>,
    ) -> bool {
        if let Err(e) = self.runner.launch(&layout.batch) {
            out.extend(self.collect_inflight().map(|(o, _)| o).unwrap_or_default());
            out.extend(self.process(&plan, &layout.rows, Err(e), false));
            return true;
        }
        let row_of = layout.sample_rows();
        let launched = Launched {
            plan,
            rows: layout.rows,
            row_of,
        };
        let prev = self.inflight.replace(launched);
        let collected = prev.is_some();
        if let Some(prev) = prev {
            out.extend(self.collect(prev).0);
        }
        // Recorded after the step before it resolved: one placeholder per sequence at a time.
        if let Some(l) = &self.inflight {
            self.scheduler.update_launched(&l.plan);
        }
        collected
    }

    /// Collects the launched step, if one is in flight: its outputs and its tokens by row.
    pub(super) fn collect_inflight(&mut self) -> Option<(Vec<RequestOutput>, Vec<Option<u32>>)> {
        let l = self.inflight.take()?;
        Some(self.collect(l))
    }

    /// Waits for a launched step and processes it; its outputs and its tokens by row.
    fn collect(&mut self, l: Launched) -> (Vec<RequestOutput>, Vec<Option<u32>>) {
        let result = self.runner.collect();
        let tokens = result
            .as_ref()
            .map(|s| s.tokens.clone())
            .unwrap_or_default();
        (self.process(&l.plan, &l.rows, result, true), tokens)
    }
}

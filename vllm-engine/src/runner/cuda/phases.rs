//! Per-phase GPU time of eager steps (`VLLM_PHASE_TIMING=1`): a CUDA event recorded after each
//! op of the forward, read back once the step has synchronised; a phase is charged the time
//! between the previous event and its own. Costs one event record per op and no extra sync.
//! Graph replays are one unit, so decode phases show with `--enforce-eager` (whose launches
//! run on the host between the GPU's kernels, the same kernels the graphs replay). An event
//! between two kernels also stops the second from starting early under programmatic dependent
//! launch, so each phase carries its own launch ramp and a timed step can take a little longer
//! than an untimed one (not measured separately).

use std::collections::BTreeMap;
use std::sync::Arc;
use vllm_kernels::Result;
use vllm_kernels::cuda::{CUevent_flags, CudaContext, CudaEvent, CudaStream};

/// Events of the step in flight and the totals so far, for decode and for prefill / mixed steps.
pub struct Phases {
    ctx: Arc<CudaContext>,
    pool: Vec<CudaEvent>,
    /// The label of `pool[i]` for each event recorded this step.
    marks: Vec<&'static str>,
    /// (steps, label -> total ms) for decode, then prefill / mixed steps.
    sums: [(u64, BTreeMap<&'static str, f64>); 2],
}

impl std::fmt::Debug for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Phases")
            .field("events", &self.pool.len())
            .finish()
    }
}

impl Phases {
    pub fn new(ctx: Arc<CudaContext>) -> Self {
        Self {
            ctx,
            pool: Vec::new(),
            marks: Vec::new(),
            sums: Default::default(),
        }
    }

    /// Starts a step: the first event.
    pub fn begin(&mut self, stream: &CudaStream) -> Result<()> {
        self.marks.clear();
        self.mark(stream, "start")
    }

    /// Records the end of phase `label` on `stream`.
    pub fn mark(&mut self, stream: &CudaStream, label: &'static str) -> Result<()> {
        let i = self.marks.len();
        if i == self.pool.len() {
            let e = self.ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
            self.pool.push(e);
        }
        self.pool[i].record(stream)?;
        self.marks.push(label);
        Ok(())
    }

    /// Ends the step (after the stream has been synchronised past the last mark) and adds its
    /// phases to the totals of its kind.
    pub fn finish(&mut self, decode: bool) -> Result<()> {
        let Some(last) = self.marks.len().checked_sub(1) else {
            return Ok(());
        };
        self.pool[last].synchronize()?;
        let (steps, sums) = &mut self.sums[usize::from(!decode)];
        *steps += 1;
        for i in 1..self.marks.len() {
            let ms = self.pool[i - 1].elapsed_ms(&self.pool[i])?;
            *sums.entry(self.marks[i]).or_default() += f64::from(ms);
        }
        self.marks.clear();
        Ok(())
    }

    /// "decode (N eager steps, X ms/step): attention 41.2%, gate_up 20.1%, ..." per kind,
    /// phases by time, largest first.
    pub fn summary(&self) -> String {
        let kinds = ["decode", "prefill or mixed"];
        let mut out = Vec::new();
        for (name, (steps, sums)) in kinds.iter().zip(&self.sums) {
            if *steps == 0 {
                continue;
            }
            let total: f64 = sums.values().sum();
            let mut v: Vec<_> = sums.iter().collect();
            v.sort_by(|a, b| b.1.total_cmp(a.1));
            let parts: Vec<String> = v
                .iter()
                .map(|(l, ms)| {
                    format!(
                        "{l} {:.3} ms ({:.1}%)",
                        *ms / *steps as f64,
                        100.0 * *ms / total.max(f64::MIN_POSITIVE)
                    )
                })
                .collect();
            out.push(format!(
                "{name} phases ({steps} eager steps, {:.3} ms/step): {}",
                total / *steps as f64,
                parts.join(", ")
            ));
        }
        out.join("; ")
    }
}

//! Async scheduling on the CUDA runner: [`CudaRunner::launch_step`] enqueues a step (inputs,
//! forward or graph replay, the sampled token ids copied into page-locked host memory) and
//! returns; [`CudaRunner::collect_step`] waits for the oldest launched step and hands back its
//! tokens. At most two steps are in flight: the engine launches step N+1 before it collects
//! step N, so the host plans, packs and launches while the GPU computes, and the GPU is idle
//! only for one launch's latency between steps. Tokens of step N that step N+1 consumes never
//! cross to the host first: `fill_tokens`, the forward's first kernel, reads them from the
//! device buffer step N's sampler wrote, which nothing overwrites before step N+1 has read it
//! (one stream orders everything). Cost per step: one host-to-device and one device-to-host
//! copy of a few KB, two event records.

use super::timing::{StepTiming, timing_kind};
use super::{CudaRunner, RunnerCache, RunnerFloat, backend};
use crate::runner::{RowSampling, RunnerError, StepBatch, StepOutput};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;
use vllm_kernels::KernelError;
use vllm_kernels::cuda::{self as k, CudaContext, PinnedHostSlice, pinned_zeroed};

/// Steps in flight at most (the one computing and the one queued behind it).
const MAX_IN_FLIGHT: usize = 2;

/// A launched step not yet collected.
struct Step {
    /// Logits rows, all sampled on the device.
    rows: usize,
    /// Which readback slot holds its tokens.
    slot: usize,
    /// Events around its forward (with `VLLM_STEP_TIMING`), the host's time in `launch`, and
    /// its timing kind.
    timing: Option<(k::CudaEvent, k::CudaEvent, f64, usize)>,
}

/// The launched steps and their readback slots.
pub struct InFlight {
    steps: VecDeque<Step>,
    /// Page-locked token ids, one slot per step in flight, and the event after each copy.
    readback: Vec<(PinnedHostSlice<i32>, k::CudaEvent)>,
    next_slot: usize,
    /// Logits rows of the last launched step while its draws are still in the device's
    /// `sampled` buffer (no other step has sampled since).
    draws: Option<usize>,
}

impl InFlight {
    pub fn new(ctx: &Arc<CudaContext>, max_rows: usize) -> Result<Self, KernelError> {
        let mut readback = Vec::new();
        for _ in 0..MAX_IN_FLIGHT {
            readback.push((pinned_zeroed::<i32>(ctx, max_rows)?, ctx.new_event(None)?));
        }
        Ok(Self {
            steps: VecDeque::new(),
            readback,
            next_slot: 0,
            draws: None,
        })
    }

    /// A step that samples on the device without being launched overwrites the draws.
    pub fn forget_draws(&mut self) {
        self.draws = None;
    }
}

impl<T: RunnerFloat, C: RunnerCache<T>> CudaRunner<T, C> {
    /// Whether `batch` can be launched now: every logits row sampled on the device, no more
    /// rows than one LM-head chunk, and a readback slot free.
    pub(super) fn launchable(&self, batch: &StepBatch) -> bool {
        let rows = batch.logits_rows.len();
        // Per-op phase timing (VLLM_PHASE_TIMING) reads its events after each executed step:
        // with it on, every step runs one at a time.
        self.phases.is_none()
            && self.inflight.steps.len() < MAX_IN_FLIGHT
            && rows <= self.dims.max_rows
            && batch.row_sampling.len() == rows
            && batch
                .row_sampling
                .iter()
                .all(|r| matches!(r, RowSampling::Device { .. }))
    }

    pub(super) fn launch_step(&mut self, batch: &StepBatch) -> Result<(), RunnerError> {
        let host = Instant::now();
        batch.validate(self.kv, self.config.vocab_size)?;
        if !self.launchable(batch) {
            return Err(RunnerError::BadInput(format!(
                "step cannot be launched: {} logits rows (at most {}, all sampled on the \
                 device), {} steps already in flight (at most {MAX_IN_FLIGHT})",
                batch.logits_rows.len(),
                self.dims.max_rows,
                self.inflight.steps.len()
            )));
        }
        let draws = self.inflight.draws.unwrap_or(0);
        if let Some(&(row, r)) = batch.pending.iter().find(|&&(_, r)| r >= draws) {
            return Err(RunnerError::BadInput(format!(
                "pending token at row {row} refers to row {r} of the previous launched step, \
                 which drew {draws} tokens still on the device"
            )));
        }
        self.copy_blocks(&batch.block_copies)?;
        let graph = self.graph_for(batch);
        let events = match &self.timing {
            Some(_) => {
                let ev = || {
                    self.ctx
                        .new_event(Some(k::CUevent_flags::CU_EVENT_DEFAULT))
                        .map_err(backend)
                };
                Some((ev()?, ev()?))
            }
            None => None,
        };
        let (shape, replayed) =
            self.enqueue(batch, graph, events.as_ref().map(|(a, b)| (a, b)), false)?;
        let rows = batch.logits_rows.len();
        let slot = self.inflight.next_slot;
        self.inflight.next_slot = (slot + 1) % MAX_IN_FLIGHT;
        let stream = self.blas.stream().clone();
        let (ids, done) = &mut self.inflight.readback[slot];
        if rows > 0 {
            stream
                .memcpy_dtoh(&self.bufs.sampled.slice(0..rows), ids)
                .map_err(backend)?;
        }
        done.record(&stream).map_err(backend)?;
        let kind = timing_kind(replayed, shape.decode_only(), true);
        self.inflight.steps.push_back(Step {
            rows,
            slot,
            timing: events.map(|(a, b)| (a, b, host.elapsed().as_secs_f64() * 1e3, kind)),
        });
        self.inflight.draws = Some(rows);
        Ok(())
    }

    pub(super) fn collect_step(&mut self) -> Result<StepOutput, RunnerError> {
        let step = self
            .inflight
            .steps
            .pop_front()
            .ok_or_else(|| RunnerError::BadInput("no launched step to collect".into()))?;
        let (ids, done) = &self.inflight.readback[step.slot];
        done.synchronize().map_err(backend)?;
        let ids = ids.as_slice().map_err(backend)?;
        let tokens = ids[..step.rows].iter().map(|&t| Some(t as u32)).collect();
        if let (Some(t), Some((start, end, host_ms, kind))) = (&mut self.timing, step.timing) {
            // Diagnostics only: a failed event query must not cost the step its tokens.
            if let Err(e) = add_timing(t, &start, &end, host_ms, kind) {
                eprintln!("VLLM_STEP_TIMING: {e}");
            }
        }
        Ok(StepOutput {
            logits: Vec::new(),
            tokens,
        })
    }
}

fn add_timing(
    t: &mut StepTiming,
    start: &k::CudaEvent,
    end: &k::CudaEvent,
    host_ms: f64,
    kind: usize,
) -> Result<(), RunnerError> {
    let gpu = f64::from(start.elapsed_ms(end).map_err(backend)?);
    let s = &mut t.sums[kind];
    *s = (s.0 + 1, s.1 + gpu, s.2 + host_ms);
    Ok(())
}

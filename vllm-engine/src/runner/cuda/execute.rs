//! One step on the GPU: pack the inputs (one host-to-device copy), replay the smallest graph
//! that holds a decode batch (padded) or run the forward eagerly, then copy back token ids for
//! device-sampled rows and logits only for host-sampled ones (in LM-head chunks of `max_rows`).
//! Fork copy-on-write block copies go first. Cost: the forward, plus one copy in and one or two
//! copies out per chunk.

use super::forward::{CudaOps, StepInputs};
use super::inputs::{StepShape, pack};
use super::timing::timing_kind;
use super::{CudaRunner, RunnerCache, RunnerFloat, backend};
use crate::model::llama;
use crate::runner::{RowSampling, RunnerError, StepBatch, StepOutput};
use vllm_kernels::cuda as k;

impl<T: RunnerFloat, C: RunnerCache<T>> CudaRunner<T, C> {
    /// One eager forward; `timed`: mark its phases (when `VLLM_PHASE_TIMING` is set).
    pub(super) fn forward(&mut self, shape: &StepShape, timed: bool) -> Result<(), RunnerError> {
        let mut phases = if timed { self.phases.as_mut() } else { None };
        if let Some(p) = phases.as_deref_mut() {
            p.begin(self.blas.stream()).map_err(backend)?;
        }
        let inputs = StepInputs {
            arena: &self.arena,
            sections: &self.sec,
            shape,
        };
        let mut ops = CudaOps::new(
            &self.blas,
            &self.cos_sin,
            (&mut self.cache, &mut self.bufs),
            inputs,
            &self.dims,
            phases,
        );
        llama::forward(&self.weights, &mut ops).map_err(backend)
    }

    /// Packs and enqueues `batch` (through the graph for `graph` sequences when given, with
    /// `events` recorded around the forward); whether a graph was replayed. `timed`: mark the
    /// phases of an eager forward.
    pub(super) fn enqueue(
        &mut self,
        batch: &StepBatch,
        graph: Option<usize>,
        events: Option<(&k::CudaEvent, &k::CudaEvent)>,
        timed: bool,
    ) -> Result<(StepShape, bool), RunnerError> {
        let stream = self.blas.stream().clone();
        let shape = pack(&mut self.arena, &self.sec, self.caps, batch, graph, &stream)?;
        if let Some((start, _)) = events {
            start.record(&stream).map_err(backend)?;
        }
        let replayed = match graph.and_then(|g| self.graphs.get(&g)) {
            Some(g) => {
                g.launch().map_err(backend)?;
                true
            }
            None => {
                self.forward(&shape, timed)?;
                false
            }
        };
        if let Some((_, end)) = events {
            end.record(&stream).map_err(backend)?;
        }
        Ok((shape, replayed))
    }

    /// Packs and runs `batch` (through the graph for `graph` sequences when given), then reads
    /// back what each logits row needs.
    pub(super) fn run(
        &mut self,
        batch: &StepBatch,
        graph: Option<usize>,
    ) -> Result<StepOutput, RunnerError> {
        if !batch.pending.is_empty() {
            return Err(RunnerError::BadInput(
                "a step with pending tokens must be launched, not executed".into(),
            ));
        }
        // This step overwrites the draws a pending token would be taken from.
        self.inflight.forget_draws();
        let stream = self.blas.stream().clone();
        let wall = std::time::Instant::now();
        let timing = self.timing.take();
        let enqueued = self.enqueue(
            batch,
            graph,
            timing.as_ref().map(|t| (&t.start, &t.end)),
            true,
        );
        self.timing = timing;
        let (shape, replayed) = enqueued?;
        let rows = batch.logits_rows.len();
        let vocab = self.dims.vocab;
        let host = |i: usize| {
            batch
                .row_sampling
                .get(i)
                .is_none_or(|r| *r == RowSampling::Host)
        };
        let mut out = StepOutput {
            logits: Vec::with_capacity((0..rows).filter(|&i| host(i)).count() * vocab),
            tokens: vec![None; rows],
        };
        let mut first = 0;
        while first < rows {
            if first > 0 {
                let inputs = StepInputs {
                    arena: &self.arena,
                    sections: &self.sec,
                    shape: &shape,
                };
                CudaOps::new(
                    &self.blas,
                    &self.cos_sin,
                    (&mut self.cache, &mut self.bufs),
                    inputs,
                    &self.dims,
                    None,
                )
                .lm_head_chunk(self.weights.head(), first)
                .map_err(backend)?;
            }
            let n = (rows - first).min(self.dims.max_rows);
            if (first..first + n).any(|i| !host(i)) {
                let mut ids = vec![0i32; n];
                stream
                    .memcpy_dtoh(&self.bufs.sampled.slice(0..n), &mut ids)
                    .map_err(backend)?;
                for (i, &id) in ids.iter().enumerate() {
                    if !host(first + i) {
                        out.tokens[first + i] = Some(id as u32);
                    }
                }
            }
            if (first..first + n).any(host) {
                let mut l = vec![0f32; n * vocab];
                stream
                    .memcpy_dtoh(&self.bufs.logits.slice(0..n * vocab), &mut l)
                    .map_err(backend)?;
                for i in (0..n).filter(|&i| host(first + i)) {
                    out.logits.extend_from_slice(&l[i * vocab..(i + 1) * vocab]);
                }
            }
            first += n;
        }
        if rows == 0 {
            // Nothing was read back: wait here, so the next step's host writes to the input
            // staging cannot race this step's upload.
            stream.synchronize().map_err(backend)?;
        }
        if let (Some(p), false) = (&mut self.phases, replayed) {
            p.finish(shape.decode_only()).map_err(backend)?;
        }
        if let Some(t) = &mut self.timing {
            t.end.synchronize().map_err(backend)?;
            let gpu = f64::from(t.start.elapsed_ms(&t.end).map_err(backend)?);
            let s = &mut t.sums[timing_kind(replayed, shape.decode_only(), false)];
            *s = (s.0 + 1, s.1 + gpu, s.2 + wall.elapsed().as_secs_f64() * 1e3);
        }
        Ok(out)
    }

    /// The graph size for `batch`, when it can replay one: decode only, one logits row per
    /// sequence in order.
    pub(super) fn graph_for(&self, batch: &StepBatch) -> Option<usize> {
        let n = batch.seqs.len();
        let decode = batch.tokens.len() == n
            && batch.logits_rows.len() == n
            && batch.logits_rows.iter().enumerate().all(|(i, &r)| i == r);
        if !decode {
            return None;
        }
        self.graphs.range(n..).next().map(|(&b, _)| b)
    }

    /// `block[dst] = block[src]` in every layer's K and V cache (fork copy-on-write): one
    /// device-to-device copy per (pair, cache), stream-ordered before the step.
    pub(super) fn copy_blocks(&mut self, pairs: &[(u32, u32)]) -> Result<(), RunnerError> {
        let n = self.dims.layout().block_numel();
        let stream = self.blas.stream().clone();
        for cache in self.cache.k.iter_mut().chain(self.cache.v.iter_mut()) {
            for &(src, dst) in pairs {
                let (src, dst) = (src as usize, dst as usize);
                if src == dst {
                    continue;
                }
                // Two disjoint views: split where the later block starts.
                let at = src.max(dst) * n;
                let (mut lo, mut hi) = cache.split_at_mut(at);
                if src < dst {
                    let from = lo.slice(src * n..(src + 1) * n);
                    stream
                        .memcpy_dtod(&from, &mut hi.slice_mut(0..n))
                        .map_err(backend)?;
                } else {
                    let from = hi.slice(0..n);
                    stream
                        .memcpy_dtod(&from, &mut lo.slice_mut(dst * n..(dst + 1) * n))
                        .map_err(backend)?;
                }
            }
        }
        Ok(())
    }

    /// GPU memory in use (all processes), bytes.
    pub fn memory_in_use(&self) -> Option<usize> {
        self.ctx.mem_get_info().ok().map(|(f, t)| t - f)
    }
}

//! The CUDA backend: bf16/f16 weights on one GPU, cuBLAS products (and `skinny_gemm` for
//! one-to-four-token products where it measured faster), the crate's kernels for everything
//! else (see [`forward`]), a paged KV cache (16-bit or FP8 E4M3) sized from
//! `gpu_memory_utilization` after a profiling step, on-device sampling for greedy, temperature,
//! min-p, top-k and top-p rows (penalties, bias and logprobs go to the host sampler with the
//! row's logits), and CUDA graphs for decode. `VLLM_DECODE_ATTENTION=v1|v2|v2:TOKENS` forces the
//! decode attention kernel (for measuring the automatic rule); `VLLM_STEP_TIMING=1` times each
//! step with CUDA events, `VLLM_PHASE_TIMING=1` each op of eager steps; `VLLM_GEMM_TUNE=1`
//! times cuBLASLt's candidate algorithms for the decode batch sizes at start-up.
//!
//! Start-up: upload weights; allocate activations for the largest step; run one profiling
//! forward at `max_num_batched_tokens` over a small scratch cache; size the KV cache as
//! `total * gpu_memory_utilization - (in use after profiling - scratch)`, as vLLM does; time
//! cuBLAS against `skinny_gemm` per weight shape; capture
//! one decode graph per batch size of the ladder 1, 2, 4, 8, 16, 24, ... up to `max_num_seqs`
//! (unless eager). A step: pack the inputs (one host-to-device copy), replay the smallest graph
//! that holds a decode batch (padded) or run eagerly, then copy back token ids for
//! device-sampled rows and logits only for host-sampled ones. A launched step (async
//! scheduling, [`launched`]) copies its token ids into page-locked memory and returns at once.

mod forward;
mod inputs;
mod launched;
mod phases;
mod weights;

pub use weights::{GpuWeights, uploader, weight_bytes};

use self::forward::{Buffers, Dims, KvCaches, forward, lm_head_chunk};
use self::inputs::{InputCaps, Sections, StepShape, layout, pack};
use super::{KvGeometry, ModelRunner, RowSampling, RunnerError, StepBatch, StepOutput};
use crate::config::ModelConfig;
use crate::device::Device;
use crate::model::Rope;
use crate::sampling::DeviceSampling;
use std::collections::BTreeMap;
use std::sync::Arc;
use vllm_kernels::args::{
    ATTENTION_BLOCK_SIZES, AttentionVersion, MAX_PARTITION_SIZE, MIN_PARTITION_SIZE,
    SKINNY_GEMM_MAX_M,
};
use vllm_kernels::cuda::{
    self as k, Blas, CudaContext, CudaSlice, CudaStream, GpuFloat, GpuKvCacheElem, InputArena,
    SendGraph, ValidAsZeroBits,
};
use vllm_kernels::{CacheDType, Float};

/// How the runner sizes itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CudaOptions {
    pub ordinal: usize,
    pub block_size: usize,
    pub max_model_len: usize,
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
    /// Fraction of the GPU's memory this engine may use (weights, activations, KV cache).
    pub gpu_memory_utilization: f32,
    /// A fixed KV cache size instead of the profiled one.
    pub num_kv_blocks: Option<usize>,
    /// No CUDA graphs.
    pub enforce_eager: bool,
}

/// The decode batch sizes graphs are captured for, up to `max`: 1, 2, 4, 8, then every 8.
pub fn graph_sizes(max: usize) -> Vec<usize> {
    let mut v: Vec<usize> = [1, 2, 4].into_iter().filter(|&b| b <= max).collect();
    v.extend((8..=max).step_by(8));
    if v.last().is_some_and(|&l| l < max) {
        v.push(max);
    }
    v
}

/// The element types the runner computes in (bf16, f16): device floats that may start zeroed.
pub trait RunnerFloat: GpuFloat + ValidAsZeroBits {}
impl<T: GpuFloat + ValidAsZeroBits> RunnerFloat for T {}

/// KV cache elements for a runner computing in `T`: `T` itself or FP8 E4M3.
pub trait RunnerCache<T>: GpuKvCacheElem<T> + ValidAsZeroBits {}
impl<T, C: GpuKvCacheElem<T> + ValidAsZeroBits> RunnerCache<T> for C {}

fn backend(e: impl std::fmt::Display) -> RunnerError {
    RunnerError::Backend(e.to_string())
}

/// A model on one GPU with its KV cache.
pub struct CudaRunner<T: RunnerFloat, C: RunnerCache<T> = T> {
    config: ModelConfig,
    dims: Dims,
    caps: InputCaps,
    kv: KvGeometry,
    ctx: Arc<CudaContext>,
    blas: Blas,
    weights: GpuWeights<T>,
    cos_sin: CudaSlice<T>,
    cache: KvCaches<C>,
    bufs: Buffers<T>,
    arena: InputArena,
    sec: Sections,
    graphs: BTreeMap<usize, SendGraph>,
    report: String,
    /// Per-step GPU timing (`VLLM_STEP_TIMING=1`).
    timing: Option<StepTiming>,
    /// Per-phase GPU timing of eager steps (`VLLM_PHASE_TIMING=1`).
    phases: Option<phases::Phases>,
    /// Steps launched and not yet collected, and where their tokens land.
    inflight: launched::InFlight,
}

/// GPU time (CUDA events around the forward) and runner wall time per kind of step.
struct StepTiming {
    start: k::CudaEvent,
    end: k::CudaEvent,
    /// (steps, GPU ms, wall ms) for graph decode, eager decode, prefill / mixed; then the same
    /// three for launched steps, whose wall time is the host's time in `launch`.
    sums: [(u64, f64, f64); 6],
}

/// Index into [`StepTiming::sums`].
fn timing_kind(replayed: bool, decode_only: bool, launched: bool) -> usize {
    let k = match (replayed, decode_only) {
        (true, _) => 0,
        (false, true) => 1,
        (false, false) => 2,
    };
    k + 3 * usize::from(launched)
}

impl StepTiming {
    fn summary(&self) -> String {
        let names = [
            "decode through graphs",
            "eager decode",
            "prefill or mixed",
            "launched decode through graphs (wall: host time to launch)",
            "launched eager decode (wall: host time to launch)",
            "launched prefill or mixed (wall: host time to launch)",
        ];
        let parts: Vec<String> = names
            .iter()
            .zip(&self.sums)
            .filter(|(_, s)| s.0 > 0)
            .map(|(n, &(c, g, w))| {
                format!(
                    "{n}: {c} steps, GPU {:.3} ms/step, runner wall {:.3} ms/step",
                    g / c as f64,
                    w / c as f64
                )
            })
            .collect();
        parts.join("; ")
    }
}

impl<T: RunnerFloat, C: RunnerCache<T>> std::fmt::Debug for CudaRunner<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaRunner")
            .field("dtype", &T::DTYPE)
            .field("kv_cache_dtype", &C::CACHE_DTYPE)
            .field("kv", &self.kv)
            .field("graphs", &self.graphs.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `[max_position, head_dim]` cos | sin rows, as the rotary kernel reads them.
fn cos_sin_table<T: Float>(config: &ModelConfig, max_position: usize) -> Vec<T> {
    let rope = Rope::new(config);
    let d = config.head_dim;
    let half = d / 2;
    let mut out = Vec::with_capacity(max_position * d);
    for pos in 0..max_position {
        let (mut c, mut s) = (Vec::with_capacity(half), Vec::with_capacity(half));
        for &f in rope.inv_freq() {
            // The angle in f32 (as transformers and vLLM form it), its cos/sin exactly.
            let a = f64::from(pos as f32 * f as f32);
            c.push(T::from_f32(a.cos() as f32));
            s.push(T::from_f32(a.sin() as f32));
        }
        out.extend(c);
        out.extend(s);
    }
    out
}

impl<T: RunnerFloat, C: RunnerCache<T>> CudaRunner<T, C> {
    /// The device context and stream a runner on `ordinal` uses (weights are uploaded on
    /// this stream before [`CudaRunner::new`]).
    pub fn open(ordinal: usize) -> Result<(Arc<CudaContext>, Arc<CudaStream>), RunnerError> {
        if !k::cuda_available() {
            return Err(RunnerError::Backend(
                "no CUDA device is usable (driver library missing or no GPU)".into(),
            ));
        }
        k::single_stream_context(ordinal).map_err(backend)
    }

    /// Builds the runner around uploaded weights: activations, profiling, KV cache, graphs.
    pub fn new(
        config: ModelConfig,
        weights: GpuWeights<T>,
        ctx: Arc<CudaContext>,
        stream: Arc<CudaStream>,
        o: &CudaOptions,
    ) -> Result<Self, RunnerError> {
        if !ATTENTION_BLOCK_SIZES.contains(&o.block_size) {
            return Err(RunnerError::BadInput(format!(
                "block_size {} is not supported on CUDA; supported: {ATTENTION_BLOCK_SIZES:?}",
                o.block_size
            )));
        }
        if !(0.0 < o.gpu_memory_utilization && o.gpu_memory_utilization <= 1.0) {
            return Err(RunnerError::BadInput(format!(
                "gpu_memory_utilization must be in (0, 1], got {}",
                o.gpu_memory_utilization
            )));
        }
        let blas = Blas::new(stream.clone()).map_err(backend)?;
        let max_tokens = o.max_num_batched_tokens.max(o.max_num_seqs);
        let mut dims = Dims::from_config(&config, o.block_size, o.max_model_len);
        dims.max_rows = o.max_num_seqs;
        (dims.decode_version, dims.decode_partition) = decode_attention_override()?;
        let caps = InputCaps {
            max_tokens,
            max_seqs: o.max_num_seqs.max(max_tokens.div_ceil(o.max_model_len)),
            max_blocks_per_seq: dims.max_blocks_per_seq,
        };
        let ws = caps.max_seqs
            * dims.heads
            * o.max_model_len.div_ceil(MIN_PARTITION_SIZE)
            * (dims.head_dim + 2);
        let bufs = Buffers::new(&stream, &dims, max_tokens, ws).map_err(backend)?;
        let (l, sec) = layout(caps);
        let arena = InputArena::new(&stream, &l).map_err(backend)?;
        let cos_sin = stream
            .clone_htod(&cos_sin_table::<T>(&config, o.max_model_len))
            .map_err(backend)?;
        let mut r = Self {
            dims,
            caps,
            kv: KvGeometry {
                num_blocks: 0,
                block_size: o.block_size,
            },
            blas,
            weights,
            cos_sin,
            cache: KvCaches {
                k: Vec::new(),
                v: Vec::new(),
                // Per-tensor scales of 1.0, vLLM's default without calibrated scales.
                fp8_scales: (C::CACHE_DTYPE == CacheDType::Fp8E4m3).then_some((1.0, 1.0)),
            },
            bufs,
            arena,
            sec,
            graphs: BTreeMap::new(),
            report: String::new(),
            timing: None,
            phases: None,
            inflight: launched::InFlight::new(&ctx, dims.max_rows).map_err(backend)?,
            config,
            ctx,
        };
        let block_bytes = r.block_bytes();
        let num_blocks = match o.num_kv_blocks {
            Some(n) => n,
            None => r.profile(o)? / block_bytes,
        };
        // A profiled cache must hold one full-length sequence (as vLLM requires); an explicit
        // size is taken as given (requests that can never fit are refused by the scheduler).
        let need = if o.num_kv_blocks.is_some() {
            1
        } else {
            o.max_model_len.div_ceil(o.block_size)
        };
        if num_blocks < need {
            return Err(RunnerError::Backend(format!(
                "the KV cache fits {num_blocks} blocks of {} tokens, fewer than one sequence of \
                 max_model_len {} needs ({need}); raise gpu_memory_utilization or lower \
                 max_model_len",
                o.block_size, o.max_model_len
            )));
        }
        r.alloc_cache(num_blocks)?;
        let (free, total) = r.ctx.mem_get_info().map_err(backend)?;
        r.report = format!(
            "{} (KV cache {}) on {}: weights {:.2} GiB; KV cache {} blocks x {} tokens = {} tokens, {:.2} GiB \
             (gpu_memory_utilization {}); {:.2} of {:.2} GiB free",
            T::DTYPE,
            C::CACHE_DTYPE,
            Device::Cuda { ordinal: o.ordinal }.describe(),
            gib(weight_bytes(&r.weights)),
            num_blocks,
            o.block_size,
            num_blocks * o.block_size,
            gib(num_blocks * block_bytes),
            o.gpu_memory_utilization,
            gib(free),
            gib(total)
        );
        let tuned = r.tune_gemms()?;
        r.report += &tuned;
        if std::env::var_os("VLLM_STEP_TIMING").is_some() {
            let ev = || {
                r.ctx
                    .new_event(Some(k::CUevent_flags::CU_EVENT_DEFAULT))
                    .map_err(backend)
            };
            r.timing = Some(StepTiming {
                start: ev()?,
                end: ev()?,
                sums: [(0, 0.0, 0.0); 6],
            });
        }
        if std::env::var_os("VLLM_PHASE_TIMING").is_some() {
            r.phases = Some(phases::Phases::new(r.ctx.clone()));
        }
        if !o.enforce_eager {
            let t0 = std::time::Instant::now();
            for b in graph_sizes(o.max_num_seqs) {
                r.capture(b)?;
            }
            r.report += &format!(
                "; {} decode graphs (batch 1..={}) captured in {:.1} s",
                r.graphs.len(),
                o.max_num_seqs,
                t0.elapsed().as_secs_f64()
            );
        } else {
            r.report += "; eager (no CUDA graphs)";
        }
        Ok(r)
    }

    /// Measures cuBLAS against `skinny_gemm` for one-token products of every weight shape (over
    /// all layers' matrices, so from memory) and keeps the faster for decode batches of up to
    /// 4 tokens. Returns the report.
    fn tune_gemms(&mut self) -> Result<String, RunnerError> {
        let w = &self.weights;
        let (h, qw, qkvw, i) = (
            self.dims.hidden,
            self.dims.q_width(),
            self.dims.qkv_width(),
            self.dims.inter,
        );
        let ls = &w.layers;
        let shapes: Vec<(&str, usize, usize, Vec<&CudaSlice<T>>)> = vec![
            ("qkv", qkvw, h, ls.iter().map(|l| &l.qkv).collect()),
            ("o", h, qw, ls.iter().map(|l| &l.o_proj).collect()),
            ("gate_up", 2 * i, h, ls.iter().map(|l| &l.gate_up).collect()),
            ("down", h, i, ls.iter().map(|l| &l.down).collect()),
            ("lm_head", self.dims.vocab, h, vec![w.head()]),
        ];
        let mut parts = Vec::new();
        for (name, n, k, ws) in &shapes {
            let (n, k) = (*n, *k);
            let t = self
                .blas
                .tune_skinny(ws, n, k, &self.bufs.gate_up, &mut self.bufs.logits)
                .map_err(backend)?;
            if let Some((cublas, skinny, preload)) = t {
                let gbps = |us: f64| (n * k * std::mem::size_of::<T>()) as f64 / us / 1e3;
                parts.push(format!(
                    "{name} {n}x{k}: cuBLAS {cublas:.1} us ({:.0} GB/s), skinny{} {skinny:.1} us ({:.0} GB/s) -> {}",
                    gbps(cublas),
                    if preload { " (preload)" } else { "" },
                    gbps(skinny),
                    if skinny < cublas { "skinny" } else { "cuBLAS" }
                ));
            }
        }
        let mut report = format!("; one-token products: {}", parts.join(", "));
        // Opt-in (VLLM_GEMM_TUNE=1): the decode graphs' batch sizes, cublasGemmEx timed against
        // cuBLASLt's candidates. On an H200 the chosen candidates were 2-30% faster in
        // isolation but decode steps took the same GPU time end to end (Llama-3-8B 9.84 vs
        // 9.85 ms, Qwen3-0.6B 5.280 vs 5.280 ms; benches/results/engine-h200-2026-11-30.md),
        // so it is off by default until that gap is understood.
        // The Hopper products last, so that they are timed against the route kept here.
        if std::env::var("VLLM_GEMM_TUNE").map_or(true, |v| v != "1") {
            report += &tune_sm90(&mut self.blas, &mut self.bufs, self.dims.max_rows, &shapes)?;
            return Ok(report);
        }
        let sizes: Vec<usize> = graph_sizes(self.dims.max_rows)
            .into_iter()
            .filter(|&m| m > SKINNY_GEMM_MAX_M)
            .collect();
        let mut lt_parts = Vec::new();
        for (name, n, k, ws) in &shapes {
            let mut tally = Tally::default();
            for &m in &sizes {
                let t = if *name == "lm_head" {
                    self.blas.tune_lt::<T, f32>(
                        ws,
                        (m, *n, *k),
                        &self.bufs.act,
                        &mut self.bufs.logits,
                    )
                } else {
                    self.blas.tune_lt::<T, T>(
                        ws,
                        (m, *n, *k),
                        &self.bufs.act,
                        &mut self.bufs.gate_up,
                    )
                }
                .map_err(backend)?;
                if let Some((ex, best)) = t {
                    tally.add(ex, best);
                }
            }
            lt_parts.extend(tally.part(name, sizes.len()));
        }
        if !lt_parts.is_empty() {
            report += &format!(
                "; cuBLASLt algorithms faster than cublasGemmEx at batch sizes {}..={}: {}",
                sizes[0],
                sizes[sizes.len() - 1],
                lt_parts.join(", ")
            );
        }
        report += &tune_sm90(&mut self.blas, &mut self.bufs, self.dims.max_rows, &shapes)?;
        Ok(report)
    }

    /// Bytes of K + V one block takes over all layers.
    pub fn block_bytes(&self) -> usize {
        2 * self.config.num_hidden_layers
            * self.dims.kv_heads
            * self.dims.head_dim
            * self.kv.block_size
            * std::mem::size_of::<C>()
    }

    fn alloc_cache(&mut self, num_blocks: usize) -> Result<(), RunnerError> {
        self.cache.k.clear();
        self.cache.v.clear();
        self.kv.num_blocks = num_blocks;
        self.dims.num_blocks = num_blocks;
        let n = self.dims.layout().numel();
        let stream = self.blas.stream().clone();
        for _ in 0..self.config.num_hidden_layers * usize::from(n > 0) {
            self.cache
                .k
                .push(stream.alloc_zeros::<C>(n).map_err(backend)?);
            self.cache
                .v
                .push(stream.alloc_zeros::<C>(n).map_err(backend)?);
        }
        Ok(())
    }

    /// One forward of `max_num_batched_tokens` prompt tokens over a scratch cache; returns the
    /// bytes left for the KV cache under `gpu_memory_utilization`.
    fn profile(&mut self, o: &CudaOptions) -> Result<usize, RunnerError> {
        let bs = o.block_size;
        let t = self.caps.max_tokens;
        let mut batch = StepBatch::default();
        let mut next_block = 0u32;
        let mut pos = 0;
        while pos < t {
            let n = (t - pos).min(o.max_model_len);
            let blocks = n.div_ceil(bs);
            let table: Vec<u32> = (next_block..next_block + blocks as u32).collect();
            batch.seqs.push(super::SeqSlice {
                first_row: pos,
                num_tokens: n,
                context_len: n,
                block_table: table.clone(),
            });
            for i in 0..n {
                batch.tokens.push(0);
                batch.positions.push(i);
                batch
                    .slots
                    .push((table[i / bs] as usize * bs + i % bs) as i64);
            }
            batch.logits_rows.push(pos + n - 1);
            next_block += blocks as u32;
            pos += n;
        }
        // The largest logits chunk too.
        while batch.logits_rows.len() < self.dims.max_rows.min(t) {
            batch.logits_rows.push(batch.logits_rows.len());
        }
        batch.row_sampling = vec![
            RowSampling::Device {
                params: DeviceSampling {
                    temperature: 1.0,
                    ..DeviceSampling::GREEDY
                },
                seed: 0
            };
            batch.logits_rows.len()
        ];
        self.alloc_cache(next_block as usize)?;
        let scratch = next_block as usize * self.block_bytes();
        self.run(&batch, None)?;
        self.blas.stream().synchronize().map_err(backend)?;
        let (free, total) = self.ctx.mem_get_info().map_err(backend)?;
        self.alloc_cache(0)?;
        let used = total - free - scratch;
        let budget = (total as f64 * f64::from(o.gpu_memory_utilization)) as usize;
        if budget <= used {
            return Err(RunnerError::Backend(format!(
                "gpu_memory_utilization {} allows {:.2} GiB but the model and activations \
                 already use {:.2} GiB; raise it",
                o.gpu_memory_utilization,
                gib(budget),
                gib(used)
            )));
        }
        Ok(budget - used)
    }

    /// Captures the decode graph for `b` sequences (after one eager warm-up of the same step).
    fn capture(&mut self, b: usize) -> Result<(), RunnerError> {
        let stream = self.blas.stream().clone();
        let mut shape = pack(
            &mut self.arena,
            &self.sec,
            self.caps,
            &StepBatch::default(),
            Some(b),
            &stream,
        )?;
        shape.max_seq_len = self.dims.max_position;
        shape.any_device_rows = true;
        self.forward(&shape, false)?;
        k::begin_capture(&stream).map_err(backend)?;
        let run = self.forward(&shape, false);
        let graph = k::end_capture(&stream).map_err(backend);
        run?;
        self.graphs.insert(b, graph?);
        Ok(())
    }

    /// One eager forward; `timed`: mark its phases (when `VLLM_PHASE_TIMING` is set).
    fn forward(&mut self, shape: &StepShape, timed: bool) -> Result<(), RunnerError> {
        let mut phases = if timed { self.phases.as_mut() } else { None };
        if let Some(p) = phases.as_deref_mut() {
            p.begin(self.blas.stream()).map_err(backend)?;
        }
        forward(
            &self.blas,
            &self.weights,
            &self.cos_sin,
            &mut self.cache,
            &mut self.bufs,
            &self.arena,
            &self.sec,
            &self.dims,
            shape,
            phases,
        )
        .map_err(backend)
    }

    /// Packs and enqueues `batch` (through the graph for `graph` sequences when given, with
    /// `events` recorded around the forward); whether a graph was replayed. `timed`: mark the
    /// phases of an eager forward.
    fn enqueue(
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
    fn run(&mut self, batch: &StepBatch, graph: Option<usize>) -> Result<StepOutput, RunnerError> {
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
                lm_head_chunk(
                    &self.blas,
                    &self.weights,
                    &mut self.bufs,
                    &self.arena,
                    &self.sec,
                    &self.dims,
                    &shape,
                    first,
                )
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
    fn graph_for(&self, batch: &StepBatch) -> Option<usize> {
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
    fn copy_blocks(&mut self, pairs: &[(u32, u32)]) -> Result<(), RunnerError> {
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

/// `VLLM_DECODE_ATTENTION=v1|v2|v2:TOKENS`: forces the decode attention kernel (and v2's
/// partition) instead of [`vllm_kernels::args::PagedAttentionArgs::pick_version`]'s rule; for measuring the rule.
fn decode_attention_override() -> Result<(AttentionVersion, Option<usize>), RunnerError> {
    let Ok(v) = std::env::var("VLLM_DECODE_ATTENTION") else {
        return Ok((AttentionVersion::Auto, None));
    };
    let bad = || {
        RunnerError::BadInput(format!(
            "VLLM_DECODE_ATTENTION={v:?}: expected v1, v2 or v2:TOKENS (a power of two in \
             {MIN_PARTITION_SIZE}..={MAX_PARTITION_SIZE})"
        ))
    };
    match v.split_once(':') {
        None if v == "v1" => Ok((AttentionVersion::V1, None)),
        None if v == "v2" => Ok((AttentionVersion::V2, None)),
        Some(("v2", p)) => {
            let p: usize = p.parse().map_err(|_| bad())?;
            if !(MIN_PARTITION_SIZE..=MAX_PARTITION_SIZE).contains(&p) || !p.is_power_of_two() {
                return Err(bad());
            }
            Ok((AttentionVersion::V2, Some(p)))
        }
        _ => Err(bad()),
    }
}

fn gib(b: usize) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

impl<T: RunnerFloat, C: RunnerCache<T>> ModelRunner for CudaRunner<T, C> {
    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn device(&self) -> Device {
        Device::Cuda {
            ordinal: self.ctx.ordinal(),
        }
    }

    fn kv_geometry(&self) -> KvGeometry {
        self.kv
    }

    fn samples_on_device(&self) -> bool {
        true
    }

    fn can_launch(&self, batch: &StepBatch) -> bool {
        self.launchable(batch)
    }

    fn launch(&mut self, batch: &StepBatch) -> Result<(), RunnerError> {
        self.launch_step(batch)
    }

    fn collect(&mut self) -> Result<StepOutput, RunnerError> {
        self.collect_step()
    }

    fn report(&self) -> Option<String> {
        Some(self.report.clone())
    }

    fn memory_in_use(&self) -> Option<usize> {
        CudaRunner::memory_in_use(self)
    }

    fn timing(&self) -> Option<String> {
        let parts: Vec<String> = self
            .timing
            .as_ref()
            .map(StepTiming::summary)
            .into_iter()
            .chain(self.phases.as_ref().map(phases::Phases::summary))
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    fn execute(&mut self, batch: &StepBatch) -> Result<StepOutput, RunnerError> {
        batch.validate(self.kv, self.config.vocab_size)?;
        self.copy_blocks(&batch.block_copies)?;
        let graph = self.graph_for(batch);
        self.run(batch, graph)
    }
}

/// The decode graphs' batch sizes above skinny_gemm's: cuBLAS timed against the Hopper
/// product `sm90_gemm` (tokens as the small tile, `vllm_kernels::cuda::Blas::tune_sm90`),
/// the faster kept per (batch size, weight shape). Opt-in (`VLLM_SM90_GEMM=1`) where the
/// device and build have it: on an H200 it won 15 of 128 (size, shape) pairs by a few %
/// and the decode steps took the same GPU time (9.68 vs 9.67 ms, Llama-3-8B). Returns the
/// report's part.
fn tune_sm90<T: RunnerFloat>(
    blas: &mut Blas,
    bufs: &mut Buffers<T>,
    max_rows: usize,
    shapes: &[(&str, usize, usize, Vec<&CudaSlice<T>>)],
) -> Result<String, RunnerError> {
    if std::env::var("VLLM_SM90_GEMM").map_or(true, |v| v != "1") {
        return Ok(String::new());
    }
    if !vllm_kernels::cuda::sm90_gemm_available() {
        return Ok("; VLLM_SM90_GEMM=1 ignored: no sm_90 device or no sm_90a build".into());
    }
    let sizes: Vec<usize> = graph_sizes(max_rows)
        .into_iter()
        .filter(|&m| m > SKINNY_GEMM_MAX_M)
        .collect();
    let mut parts = Vec::new();
    for (name, n, k, ws) in shapes.iter().filter(|s| s.0 != "lm_head") {
        // Enough layers' matrices (>= 256 MiB) that the timed passes stream from memory.
        let bytes = n * k * std::mem::size_of::<T>();
        let ws = &ws[..ws.len().min((256usize << 20).div_ceil(bytes.max(1)))];
        let mut tally = Tally::default();
        for &m in &sizes {
            let t = blas
                .tune_sm90::<T>(ws, (m, *n, *k), &bufs.act, &mut bufs.gate_up)
                .map_err(backend)?;
            if let Some((cur, best, _)) = t {
                tally.add(cur, best);
            }
        }
        parts.extend(tally.part(name, sizes.len()));
    }
    Ok(if parts.is_empty() {
        String::new()
    } else {
        format!(
            "; Hopper products (sm90_gemm) faster than cuBLAS at batch sizes {}..={}: {}",
            sizes[0],
            sizes[sizes.len() - 1],
            parts.join(", ")
        )
    })
}

/// A start-up tuning's outcome for one weight shape over the batch sizes: how many sizes moved
/// to the alternative (faster by more than 2%, the tunings' rule) and the summed times.
#[derive(Default)]
struct Tally {
    won: usize,
    before: f64,
    after: f64,
}

impl Tally {
    fn add(&mut self, current_us: f64, best_us: f64) {
        let kept = best_us < current_us * 0.98;
        self.won += usize::from(kept);
        self.before += current_us;
        self.after += if kept { best_us } else { current_us };
    }

    /// "name won/sizes (before -> after us summed)", or nothing when no size was timed.
    fn part(&self, name: &str, sizes: usize) -> Option<String> {
        (self.before > 0.0).then(|| {
            format!(
                "{name} {}/{sizes} ({:.0} -> {:.0} us summed)",
                self.won, self.before, self.after
            )
        })
    }
}

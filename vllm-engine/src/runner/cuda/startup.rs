//! Start-up of the CUDA runner: open the device, build the runner around uploaded weights
//! (activations for the largest step, the input arena, the RoPE table), run one profiling
//! forward at `max_num_batched_tokens` over a scratch cache and size the KV cache as
//! `total * gpu_memory_utilization - (in use after profiling - scratch)` as vLLM does, tune the
//! products, then capture one decode graph per batch size of [`graph_sizes`] (unless eager).
//! Cost: one profiling forward, the tunings' timed products, one warm-up forward and one
//! capture per graph.

use super::forward::{Buffers, Dims, KvCaches};
use super::inputs::{InputCaps, layout, pack};
use super::options::{CudaOptions, EnvKnobs};
use super::timing::StepTiming;
use super::{
    CudaRunner, GpuWeights, RunnerCache, RunnerFloat, backend, gib, launched, phases, weight_bytes,
};
use crate::config::ModelConfig;
use crate::device::Device;
use crate::model::Rope;
use crate::runner::{KvGeometry, RowSampling, RunnerError, SeqSlice, StepBatch};
use crate::sampling::DeviceSampling;
use std::collections::BTreeMap;
use std::sync::Arc;
use vllm_kernels::CacheDType;
use vllm_kernels::args::{ATTENTION_BLOCK_SIZES, MIN_PARTITION_SIZE};
use vllm_kernels::cuda::{self as k, Blas, CudaContext, CudaStream, InputArena};

/// The decode batch sizes graphs are captured for, up to `max`: 1, 2, 4, 8, then every 8.
pub fn graph_sizes(max: usize) -> Vec<usize> {
    let mut v: Vec<usize> = [1, 2, 4].into_iter().filter(|&b| b <= max).collect();
    v.extend((8..=max).step_by(8));
    if v.last().is_some_and(|&l| l < max) {
        v.push(max);
    }
    v
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
        let knobs = EnvKnobs::from_env()?;
        let mut dims = Dims::from_config(&config, o.block_size, o.max_model_len);
        dims.max_rows = o.max_num_seqs;
        (dims.decode_version, dims.decode_partition) =
            (knobs.decode_version, knobs.decode_partition);
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
            .clone_htod(&Rope::new(&config).cos_sin_table::<T>(o.max_model_len))
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
        let tuned = r.tune_gemms(&knobs)?;
        r.report += &tuned;
        if knobs.step_timing {
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
        if knobs.phase_timing {
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
            batch.seqs.push(SeqSlice {
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
}

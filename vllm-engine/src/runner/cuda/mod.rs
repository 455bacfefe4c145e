//! The CUDA backend: bf16/f16 weights on one GPU, the model's decoder over the CUDA layer ops
//! ([`forward`]: cuBLAS products, and `skinny_gemm` for one-to-four-token products where it
//! measured faster; the crate's kernels for everything else), a paged KV cache (16-bit or FP8
//! E4M3) sized from `gpu_memory_utilization` after a profiling step, on-device sampling for
//! greedy, temperature, min-p, top-k and top-p rows (penalties, bias and logprobs go to the host
//! sampler with the row's logits), and CUDA graphs for decode.
//!
//! By concern: [`startup`] (profiling, KV sizing, graph capture), [`execute`] (a step),
//! [`launched`] (async scheduling: a launched step copies its token ids into page-locked memory
//! and returns at once), [`tuning`] (start-up product tuning), [`timing`] and [`phases`]
//! (`VLLM_STEP_TIMING=1`, `VLLM_PHASE_TIMING=1`), [`options`] (sizes and the `VLLM_*` knobs,
//! read once), [`inputs`] (the packed input arena), [`weights`] (upload).

mod execute;
mod forward;
mod inputs;
mod launched;
mod options;
mod phases;
mod startup;
mod timing;
mod tuning;
mod weights;

pub use options::{CudaOptions, EnvKnobs};
pub use startup::graph_sizes;
pub use weights::{GpuWeights, uploader, weight_bytes};

use self::forward::{Buffers, Dims, KvCaches};
use self::inputs::{InputCaps, Sections};
use super::{KvGeometry, ModelRunner, RunnerError, StepBatch, StepOutput};
use crate::config::ModelConfig;
use crate::device::Device;
use std::collections::BTreeMap;
use std::sync::Arc;
use vllm_kernels::cuda::{
    Blas, CudaContext, CudaSlice, GpuFloat, GpuKvCacheElem, InputArena, SendGraph, ValidAsZeroBits,
};

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
    timing: Option<timing::StepTiming>,
    /// Per-phase GPU timing of eager steps (`VLLM_PHASE_TIMING=1`).
    phases: Option<phases::Phases>,
    /// Steps launched and not yet collected, and where their tokens land.
    inflight: launched::InFlight,
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
            .map(timing::StepTiming::summary)
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

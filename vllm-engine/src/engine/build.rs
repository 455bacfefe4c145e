//! Building an engine: arguments checked once ([`EngineArgs::validate`]), then the model's
//! config opened and `max_model_len` resolved, then the weights read (to the host for the CPU
//! runner, uploaded for CUDA), then the runner, whose KV geometry sizes the block manager and
//! scheduler. Nothing is read from the weight files before every argument has passed. Cost:
//! one pass over the weights plus the runner's start-up.

use super::output_processor::OutputProcessor;
use super::{
    Engine, EngineArgs, EngineError, GenerationDefaults, LoadedModel, ValidEngineArgs, open_model,
};
#[cfg(feature = "cuda")]
use super::{KvCacheDType, ModelDType};
use crate::config::ModelConfig;
use crate::device::Device;
use crate::kv_cache::BlockManager;
use crate::runner::cpu::CpuRunner;
use crate::runner::{KvGeometry, ModelRunner};
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::tokenizer::Tokenizer;
use std::sync::Arc;

impl Engine {
    /// Loads the model named by `args` and builds the engine on the chosen device
    /// (`args.device`, the CPU when unset). Every argument is checked before any weight is
    /// read.
    pub fn new(args: &EngineArgs) -> Result<Self, EngineError> {
        let args = args.validate(args.device.unwrap_or(Device::Cpu))?;
        match args.device() {
            Device::Cpu => {
                let files = open_model(&args)?;
                let max_model_len = args.max_model_len(files.config())?;
                let loaded = files.load_weights(&mut |_, v| Ok(v))?;
                Self::build_cpu(loaded, &args, max_model_len)
            }
            Device::Cuda { ordinal } => Self::new_cuda(&args, ordinal),
        }
    }

    #[cfg(not(feature = "cuda"))]
    fn new_cuda(_args: &ValidEngineArgs, ordinal: usize) -> Result<Self, EngineError> {
        Err(EngineError::Device(format!(
            "cuda:{ordinal} (this build has no CUDA backend: build with --features cuda)"
        )))
    }

    /// The CUDA runner for the model and cache element types: the engine's dtypes become the
    /// kernels' types here.
    #[cfg(feature = "cuda")]
    fn new_cuda(args: &ValidEngineArgs, ordinal: usize) -> Result<Self, EngineError> {
        use half::{bf16, f16};
        use vllm_kernels::Fp8E4m3;
        match (args.dtype, args.kv_cache_dtype) {
            (ModelDType::Auto | ModelDType::BF16, KvCacheDType::Auto) => {
                Self::build_cuda::<bf16, bf16>(args, ordinal)
            }
            (ModelDType::Auto | ModelDType::BF16, KvCacheDType::Fp8E4m3) => {
                Self::build_cuda::<bf16, Fp8E4m3>(args, ordinal)
            }
            (ModelDType::F16, KvCacheDType::Auto) => Self::build_cuda::<f16, f16>(args, ordinal),
            (ModelDType::F16, KvCacheDType::Fp8E4m3) => {
                Self::build_cuda::<f16, Fp8E4m3>(args, ordinal)
            }
        }
    }

    #[cfg(feature = "cuda")]
    fn build_cuda<T: crate::runner::cuda::RunnerFloat, C: crate::runner::cuda::RunnerCache<T>>(
        args: &ValidEngineArgs,
        ordinal: usize,
    ) -> Result<Self, EngineError> {
        use crate::runner::cuda::{CudaOptions, CudaRunner, uploader};
        let (ctx, stream) = CudaRunner::<T>::open(ordinal)?;
        let files = open_model(args)?;
        let max_model_len = args.max_model_len(files.config())?;
        let loaded = files.load_weights(&mut uploader::<T>(stream.clone()))?;
        let opts = CudaOptions {
            ordinal,
            block_size: args.block_size,
            max_model_len,
            max_num_seqs: args.max_num_seqs,
            max_num_batched_tokens: args.max_num_batched_tokens,
            gpu_memory_utilization: args.gpu_memory_utilization,
            num_kv_blocks: args.num_kv_blocks,
            enforce_eager: args.enforce_eager,
        };
        let runner =
            CudaRunner::<T, C>::new(loaded.config.clone(), loaded.weights, ctx, stream, &opts)?;
        Self::from_parts(
            loaded.config,
            loaded.tokenizer,
            loaded.generation_defaults,
            Box::new(runner),
            args,
            max_model_len,
        )
    }

    /// Builds an engine around an already-loaded model (CPU backend).
    pub fn from_loaded(loaded: LoadedModel, args: &EngineArgs) -> Result<Self, EngineError> {
        let args = args.validate(Device::Cpu)?;
        let max_model_len = args.max_model_len(&loaded.config)?;
        Self::build_cpu(loaded, &args, max_model_len)
    }

    /// The CPU runner over `loaded`, its KV cache `num_kv_blocks` blocks, else enough for
    /// `max_num_seqs` full-length sequences within `kv_cache_memory_bytes`.
    fn build_cpu(
        loaded: LoadedModel,
        args: &ValidEngineArgs,
        max_model_len: usize,
    ) -> Result<Self, EngineError> {
        let LoadedModel {
            config,
            weights,
            tokenizer,
            generation_defaults,
        } = loaded;
        let block_bytes = CpuRunner::block_bytes(&config, args.block_size);
        let num_blocks = match args.num_kv_blocks {
            Some(n) => n,
            None => {
                let want = args.max_num_seqs * max_model_len.div_ceil(args.block_size);
                want.min(args.kv_cache_memory_bytes / block_bytes).max(1)
            }
        };
        let kv = KvGeometry {
            num_blocks,
            block_size: args.block_size,
        };
        let runner = Box::new(CpuRunner::new(config.clone(), weights, kv));
        Self::from_parts(
            config,
            tokenizer,
            generation_defaults,
            runner,
            args,
            max_model_len,
        )
    }

    /// An engine around a runner built elsewhere (another backend, or a stand-in that
    /// measures the engine's own cost): the runner's KV geometry sizes the block manager;
    /// no tokenizer, so requests are token ids.
    pub fn with_runner(
        config: ModelConfig,
        runner: Box<dyn ModelRunner>,
        args: &EngineArgs,
    ) -> Result<Self, EngineError> {
        let args = args.validate(runner.device())?;
        let max_model_len = args.max_model_len(&config)?;
        Self::from_parts(
            config,
            None,
            GenerationDefaults::default(),
            runner,
            &args,
            max_model_len,
        )
    }

    /// The engine around a built runner (its KV geometry sizes the block manager).
    fn from_parts(
        config: ModelConfig,
        tokenizer: Option<Tokenizer>,
        generation_defaults: GenerationDefaults,
        runner: Box<dyn ModelRunner>,
        args: &ValidEngineArgs,
        max_model_len: usize,
    ) -> Result<Self, EngineError> {
        let kv = runner.kv_geometry();
        // A request longer than the whole cache could never be scheduled again once preempted
        // (it would wait forever): max_model_len is lowered to what the cache holds, as vLLM
        // did, and the report says so.
        let capacity = kv.num_blocks.saturating_mul(kv.block_size);
        let cache_note = (capacity < max_model_len).then(|| {
            format!(
                "max_model_len lowered from {max_model_len} to {capacity}: the KV cache holds \
                 {} blocks x {} tokens (raise num_kv_blocks / the cache memory, or lower \
                 max_model_len)",
                kv.num_blocks, kv.block_size
            )
        });
        let max_model_len = max_model_len.min(capacity);
        let blocks = BlockManager::new(kv.num_blocks, kv.block_size, args.enable_prefix_caching)?;
        let scheduler = Scheduler::new(
            SchedulerConfig {
                max_num_batched_tokens: args.max_num_batched_tokens,
                max_num_seqs: args.max_num_seqs,
                max_model_len,
                chunked_prefill: args.enable_chunked_prefill,
            },
            blocks,
        )?;
        let mut eos = config.eos_token_ids.clone();
        if let Some(t) = &tokenizer {
            for &e in &t.eos_token_ids {
                if !eos.contains(&e) {
                    eos.push(e);
                }
            }
        }
        let tokenizer = tokenizer.map(Arc::new);
        Ok(Self {
            config,
            output: OutputProcessor::new(tokenizer.clone(), eos),
            tokenizer,
            scheduler,
            runner,
            generation_defaults,
            async_scheduling: args.async_scheduling,
            cache_note,
            inflight: None,
        })
    }
}

//! How the CUDA runner is configured: [`CudaOptions`] (sizes, from the engine's arguments) and
//! [`EnvKnobs`], the `VLLM_*` environment knobs for measuring and tuning, read once at start-up
//! (a malformed value is an error there, not a surprise mid-run).

use super::super::RunnerError;
use vllm_kernels::args::{AttentionVersion, MAX_PARTITION_SIZE, MIN_PARTITION_SIZE};

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

/// The runner's `VLLM_*` environment knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvKnobs {
    /// `VLLM_STEP_TIMING` set: GPU time of each step by CUDA events.
    pub step_timing: bool,
    /// `VLLM_PHASE_TIMING` set: GPU time of each op of eager steps.
    pub phase_timing: bool,
    /// `VLLM_GEMM_TUNE=1`: time cuBLASLt's candidates per decode batch size at start-up.
    pub gemm_tune: bool,
    /// `VLLM_SM90_GEMM=1`: time the Hopper product against cuBLAS per decode batch size.
    pub sm90_gemm: bool,
    /// `VLLM_DECODE_ATTENTION=v1|v2|v2:TOKENS`: the decode kernel (and v2's partition) forced.
    pub decode_version: AttentionVersion,
    pub decode_partition: Option<usize>,
}

impl EnvKnobs {
    /// Reads the knobs from the process environment.
    pub fn from_env() -> Result<Self, RunnerError> {
        let on = |name: &str| std::env::var(name).is_ok_and(|v| v == "1");
        let set = |name: &str| std::env::var_os(name).is_some();
        let (decode_version, decode_partition) =
            decode_attention(std::env::var("VLLM_DECODE_ATTENTION").ok().as_deref())?;
        Ok(Self {
            step_timing: set("VLLM_STEP_TIMING"),
            phase_timing: set("VLLM_PHASE_TIMING"),
            gemm_tune: on("VLLM_GEMM_TUNE"),
            sm90_gemm: on("VLLM_SM90_GEMM"),
            decode_version,
            decode_partition,
        })
    }
}

/// `VLLM_DECODE_ATTENTION=v1|v2|v2:TOKENS`: forces the decode attention kernel (and v2's
/// partition) instead of [`vllm_kernels::args::PagedAttentionArgs::pick_version`]'s rule; for
/// measuring the rule.
fn decode_attention(v: Option<&str>) -> Result<(AttentionVersion, Option<usize>), RunnerError> {
    let Some(v) = v else {
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

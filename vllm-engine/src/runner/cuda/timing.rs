//! Per-step GPU timing (`VLLM_STEP_TIMING=1`): CUDA events around each forward and the runner's
//! wall time, summed per kind of step (graph decode, eager decode, prefill or mixed; and the
//! same three for launched steps). Costs two event records per step and one event wait.

use vllm_kernels::cuda::CudaEvent;

/// GPU time (CUDA events around the forward) and runner wall time per kind of step.
pub struct StepTiming {
    pub start: CudaEvent,
    pub end: CudaEvent,
    /// (steps, GPU ms, wall ms) for graph decode, eager decode, prefill / mixed; then the same
    /// three for launched steps, whose wall time is the host's time in `launch`.
    pub sums: [(u64, f64, f64); 6],
}

/// Index into [`StepTiming::sums`].
pub fn timing_kind(replayed: bool, decode_only: bool, launched: bool) -> usize {
    let k = match (replayed, decode_only) {
        (true, _) => 0,
        (false, true) => 1,
        (false, false) => 2,
    };
    k + 3 * usize::from(launched)
}

impl StepTiming {
    pub fn summary(&self) -> String {
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

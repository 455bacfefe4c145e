//! What the GPU benchmarks share: CUDA-event timing, the copy ceiling, argument lookup.

use std::error::Error;
use std::sync::Arc;
use vllm_kernels::cuda::CudaStream;

pub type Res<T> = Result<T, Box<dyn Error>>;

/// Median milliseconds of `op` over `repeats` CUDA-event-timed runs, after 3 untimed ones.
pub fn median_ms(s: &Arc<CudaStream>, repeats: usize, mut op: impl FnMut() -> Res<()>) -> Res<f64> {
    let flags = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
    let mut t = Vec::with_capacity(repeats);
    for i in 0..repeats + 3 {
        let a = s.record_event(flags)?;
        op()?;
        let b = s.record_event(flags)?;
        if i >= 3 {
            t.push(a.elapsed_ms(&b)? as f64);
        }
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

/// Device-to-device copy of a 1 GiB buffer in GB/s, counting bytes read + written.
pub fn copy_bandwidth(s: &Arc<CudaStream>, repeats: usize) -> Res<f64> {
    let n = 1usize << 30;
    let src = s.alloc_zeros::<u8>(n)?;
    let mut dst = s.alloc_zeros::<u8>(n)?;
    let ms = median_ms(s, repeats, || Ok(s.memcpy_dtod(&src, &mut dst)?))?;
    Ok(2.0 * n as f64 / (ms * 1e-3) / 1e9)
}

/// The argument after `flag` (`--json PATH`), if given.
pub fn flag_value(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

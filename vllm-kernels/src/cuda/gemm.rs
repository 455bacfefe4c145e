//! `skinny_gemm` on the GPU (`csrc/gemm/skinny_gemm.cu`): decode-time products of 1-4 rows.

use super::{DevicePtr, DevicePtrMut, GpuFloat, check, dtype, ptr, stream_handle};
use crate::args::SkinnyGemmArgs;
use crate::error::{KernelError, Result};
use crate::sys;
use cudarc::driver::CudaStream;

/// `y[r, c] = sum_k x[r, k] w[c, k]`, `x` and `w` of `T` (f16 / bf16), `y` of `O` (`T` or
/// f32). `x` and `w` must start 16-byte aligned (whole allocations and views at multiples of
/// 8 elements are).
pub fn skinny_gemm<T: GpuFloat, O: GpuFloat>(
    stream: &CudaStream,
    y: &mut impl DevicePtrMut<O>,
    x: &impl DevicePtr<T>,
    w: &impl DevicePtr<T>,
    a: &SkinnyGemmArgs,
) -> Result<()> {
    a.validate(T::DTYPE, O::DTYPE, y.len(), x.len(), w.len())?;
    stream.context().bind_to_thread()?;
    let (yp, _y) = y.device_ptr_mut(stream);
    let (xp, _x) = x.device_ptr(stream);
    let (wp, _w) = w.device_ptr(stream);
    if xp % 16 != 0 || wp % 16 != 0 {
        return Err(KernelError::invalid(
            "skinny_gemm",
            "x and w must start 16-byte aligned",
        ));
    }
    let p = sys::vllm_skinny_gemm_params {
        y: ptr(yp),
        x: ptr(xp),
        w: ptr(wp),
        m: a.m as i64,
        n: a.n as i64,
        k: a.k as i64,
        ldy: a.ldy as i64,
        dtype: dtype::<T>(),
        out_dtype: dtype::<O>(),
        preload: i32::from(a.preload),
    };
    // SAFETY: live device buffers of the validated lengths and alignment, guarded until the
    // launch is enqueued.
    check("skinny_gemm", unsafe {
        sys::vllm_skinny_gemm(&p, stream_handle(stream))
    })
}

//! The hand-written products on the GPU: `skinny_gemm` (`csrc/gemm/skinny_gemm.cu`, decode-time
//! products of 1-4 rows) and `sm90_gemm` (`csrc/gemm/sm90_gemm*.cu`, Hopper wgmma + TMA through
//! CUTLASS with the tokens as the small tile: decode batches of 5-256 rows).

use super::{DevicePtr, DevicePtrMut, GpuFloat, check, dtype, ptr, stream_handle};
use crate::args::{SkinnyGemmArgs, Sm90GemmArgs};
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

/// True when this build has the Hopper products and the current device is sm_90.
pub fn sm90_gemm_available() -> bool {
    // SAFETY: reads the current device's attributes only.
    unsafe { sys::vllm_sm90_gemm_available() == 1 }
}

fn sm90_params(
    a: &Sm90GemmArgs,
    dtype: sys::vllm_dtype,
    (y, x, w): (
        cudarc::driver::sys::CUdeviceptr,
        cudarc::driver::sys::CUdeviceptr,
        cudarc::driver::sys::CUdeviceptr,
    ),
    (workspace, workspace_bytes): (cudarc::driver::sys::CUdeviceptr, usize),
) -> sys::vllm_sm90_gemm_params {
    sys::vllm_sm90_gemm_params {
        y: ptr(y),
        x: ptr(x),
        w: ptr(w),
        m: a.m as i64,
        n: a.n as i64,
        k: a.k as i64,
        ldy: a.ldy as i64,
        dtype,
        tile_n: a.tile_n as i32,
        workspace: ptr(workspace),
        workspace_bytes: workspace_bytes as i64,
    }
}

/// Bytes of device workspace `sm90_gemm` needs for `a` with element type `T` (stream-K's
/// partial tiles; 0 when the product needs none).
pub fn sm90_gemm_workspace<T: GpuFloat>(a: &Sm90GemmArgs) -> Result<usize> {
    a.validate(T::DTYPE, usize::MAX, usize::MAX, usize::MAX)?;
    // Any aligned non-null pointers: only the shape is read.
    let p = sm90_params(a, dtype::<T>(), (256, 256, 256), (0, 0));
    let mut bytes = 0i64;
    // SAFETY: p and bytes are live for the call; the launcher reads neither pointer's memory.
    check("sm90_gemm", unsafe {
        sys::vllm_sm90_gemm_workspace(&p, &mut bytes)
    })?;
    Ok(bytes as usize)
}

/// `y[r, c] = sum_k x[r, k] w[c, k]` for `r < a.m`, `x`, `w` and `y` of `T` (f16 / bf16), all
/// 16-byte aligned, on Hopper tensor cores; `workspace` at least
/// [`sm90_gemm_workspace`] bytes (it is zeroed by the launch). Unsupported device or build:
/// [`KernelError::Launcher`] with status `VLLM_K_UNSUPPORTED_SHAPE`.
pub fn sm90_gemm<T: GpuFloat>(
    stream: &CudaStream,
    y: &mut impl DevicePtrMut<T>,
    x: &impl DevicePtr<T>,
    w: &impl DevicePtr<T>,
    workspace: &mut impl DevicePtrMut<u8>,
    a: &Sm90GemmArgs,
) -> Result<()> {
    a.validate(T::DTYPE, y.len(), x.len(), w.len())?;
    stream.context().bind_to_thread()?;
    let ws_len = workspace.len();
    let (yp, _y) = y.device_ptr_mut(stream);
    let (xp, _x) = x.device_ptr(stream);
    let (wp, _w) = w.device_ptr(stream);
    let (sp, _s) = workspace.device_ptr_mut(stream);
    if (xp | wp | yp | sp) % 16 != 0 {
        return Err(KernelError::invalid(
            "sm90_gemm",
            "x, w, y and the workspace must start 16-byte aligned",
        ));
    }
    // SAFETY: live device buffers of the validated lengths and alignment and a workspace of
    // ws_len bytes, all guarded until the launch is enqueued on `stream`.
    unsafe { sm90_gemm_raw::<T>(stream, (yp, xp, wp), (sp, ws_len), a) }
}

/// [`sm90_gemm`] on raw device pointers (for [`Blas`](super::Blas), whose workspace is shared
/// with cuBLAS).
///
/// # Safety
/// `a` validated for these buffers; `y`, `x`, `w` live device allocations of `T` at least as
/// long as `a` needs, 16-byte aligned, and `workspace` a live allocation of `workspace_bytes`;
/// all ordered on `stream` and not freed before the launch completes.
pub(crate) unsafe fn sm90_gemm_raw<T: GpuFloat>(
    stream: &CudaStream,
    (y, x, w): (
        cudarc::driver::sys::CUdeviceptr,
        cudarc::driver::sys::CUdeviceptr,
        cudarc::driver::sys::CUdeviceptr,
    ),
    (workspace, workspace_bytes): (cudarc::driver::sys::CUdeviceptr, usize),
    a: &Sm90GemmArgs,
) -> Result<()> {
    let p = sm90_params(a, dtype::<T>(), (y, x, w), (workspace, workspace_bytes));
    // SAFETY: the caller's contract; the launcher checks the workspace size against the shape.
    check("sm90_gemm", unsafe {
        sys::vllm_sm90_gemm(&p, stream_handle(stream))
    })
}

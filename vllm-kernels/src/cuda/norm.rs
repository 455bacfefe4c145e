//! `rms_norm` and `fused_add_rms_norm` on the GPU (`csrc/layernorm/rms_norm.cu`), and
//! `head_rms_norm` (`csrc/layernorm/head_rms_norm.cu`).

use super::{DevicePtr, DevicePtrMut, GpuFloat, check, dtype, ptr, stream_handle};
use crate::args::{FusedAddRmsNormArgs, HeadRmsNormArgs, RmsNormArgs};
use crate::error::Result;
use crate::sys;
use cudarc::driver::CudaStream;

pub fn rms_norm<T: GpuFloat>(
    stream: &CudaStream,
    out: &mut impl DevicePtrMut<T>,
    input: &impl DevicePtr<T>,
    weight: &impl DevicePtr<T>,
    a: &RmsNormArgs,
) -> Result<()> {
    a.validate(T::DTYPE, out.len(), input.len(), weight.len())?;
    stream.context().bind_to_thread()?;
    let (o, _o) = out.device_ptr_mut(stream);
    let (i, _i) = input.device_ptr(stream);
    let (w, _w) = weight.device_ptr(stream);
    let p = sys::vllm_rms_norm_params {
        out: ptr(o),
        input: ptr(i),
        weight: ptr(w),
        num_tokens: a.num_tokens as i64,
        hidden_size: a.hidden_size as i64,
        input_stride: a.input_stride as i64,
        out_stride: a.out_stride as i64,
        epsilon: a.epsilon,
        dtype: dtype::<T>(),
    };
    // SAFETY: the pointers are live device allocations of the validated sizes, kept alive
    // (and stream-ordered) by the guards until the launch is enqueued; `p` outlives the call.
    check("rms_norm", unsafe {
        sys::vllm_rms_norm(&p, stream_handle(stream))
    })
}

pub fn fused_add_rms_norm<T: GpuFloat>(
    stream: &CudaStream,
    input: &mut impl DevicePtrMut<T>,
    residual: &mut impl DevicePtrMut<T>,
    weight: &impl DevicePtr<T>,
    a: &FusedAddRmsNormArgs,
) -> Result<()> {
    a.validate(T::DTYPE, input.len(), residual.len(), weight.len())?;
    stream.context().bind_to_thread()?;
    let (i, _i) = input.device_ptr_mut(stream);
    let (r, _r) = residual.device_ptr_mut(stream);
    let (w, _w) = weight.device_ptr(stream);
    let p = sys::vllm_fused_add_rms_norm_params {
        input: ptr(i),
        residual: ptr(r),
        weight: ptr(w),
        num_tokens: a.num_tokens as i64,
        hidden_size: a.hidden_size as i64,
        input_stride: a.input_stride as i64,
        epsilon: a.epsilon,
        dtype: dtype::<T>(),
    };
    // SAFETY: as in rms_norm; input and residual are distinct buffers (two &mut borrows).
    check("fused_add_rms_norm", unsafe {
        sys::vllm_fused_add_rms_norm(&p, stream_handle(stream))
    })
}

/// In place RMSNorm of every head of every token of `x` (a view that may start at the q or k
/// offset of a fused qkv buffer and end after the last token's last head).
pub fn head_rms_norm<T: GpuFloat>(
    stream: &CudaStream,
    x: &mut impl DevicePtrMut<T>,
    weight: &impl DevicePtr<T>,
    a: &HeadRmsNormArgs,
) -> Result<()> {
    a.validate(T::DTYPE, x.len(), weight.len())?;
    stream.context().bind_to_thread()?;
    let (xp, _x) = x.device_ptr_mut(stream);
    let (w, _w) = weight.device_ptr(stream);
    let p = sys::vllm_head_rms_norm_params {
        x: ptr(xp),
        weight: ptr(w),
        num_tokens: a.num_tokens as i64,
        num_heads: a.num_heads as i64,
        head_size: a.head_size as i64,
        token_stride: a.token_stride as i64,
        epsilon: a.epsilon,
        dtype: dtype::<T>(),
    };
    // SAFETY: as in rms_norm; x is the only buffer written and cannot alias weight.
    check("head_rms_norm", unsafe {
        sys::vllm_head_rms_norm(&p, stream_handle(stream))
    })
}

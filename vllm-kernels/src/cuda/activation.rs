//! Gated activations on the GPU (`csrc/activation/act_and_mul.cu`).

use super::{DevicePtr, DevicePtrMut, GpuFloat, check, dtype, ptr, stream_handle};
use crate::args::{ActAndMulArgs, Activation};
use crate::error::Result;
use crate::sys;
use cudarc::driver::CudaStream;

pub fn act_and_mul<T: GpuFloat>(
    stream: &CudaStream,
    out: &mut impl DevicePtrMut<T>,
    input: &impl DevicePtr<T>,
    a: &ActAndMulArgs,
) -> Result<()> {
    a.validate(T::DTYPE, out.len(), input.len())?;
    stream.context().bind_to_thread()?;
    let (o, _o) = out.device_ptr_mut(stream);
    let (i, _i) = input.device_ptr(stream);
    let p = sys::vllm_act_and_mul_params {
        out: ptr(o),
        input: ptr(i),
        num_tokens: a.num_tokens as i64,
        d: a.d as i64,
        input_stride: a.input_stride as i64,
        act: match a.act {
            Activation::Silu => sys::vllm_activation::VLLM_ACT_SILU,
            Activation::GeluErf => sys::vllm_activation::VLLM_ACT_GELU_ERF,
            Activation::GeluTanh => sys::vllm_activation::VLLM_ACT_GELU_TANH,
        },
        dtype: dtype::<T>(),
    };
    // SAFETY: live device buffers of the validated sizes, guarded until the launch is enqueued.
    check(a.act.name(), unsafe {
        sys::vllm_act_and_mul(&p, stream_handle(stream))
    })
}

/// `out = silu(x[:, :d]) * x[:, d:]` for contiguous rows of `2 d`.
pub fn silu_and_mul<T: GpuFloat>(
    stream: &CudaStream,
    out: &mut impl DevicePtrMut<T>,
    input: &impl DevicePtr<T>,
    num_tokens: usize,
    d: usize,
) -> Result<()> {
    act_and_mul(
        stream,
        out,
        input,
        &ActAndMulArgs::new(num_tokens, d, Activation::Silu),
    )
}

/// `out = gelu(x[:, :d]) * x[:, d:]`, exact (erf) or with the tanh approximation.
pub fn gelu_and_mul<T: GpuFloat>(
    stream: &CudaStream,
    out: &mut impl DevicePtrMut<T>,
    input: &impl DevicePtr<T>,
    num_tokens: usize,
    d: usize,
    tanh_approximation: bool,
) -> Result<()> {
    let act = if tanh_approximation {
        Activation::GeluTanh
    } else {
        Activation::GeluErf
    };
    act_and_mul(stream, out, input, &ActAndMulArgs::new(num_tokens, d, act))
}

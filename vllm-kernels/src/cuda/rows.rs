//! `gather_rows` and `add_bias` on the GPU (`csrc/rows/`).

use super::{DevicePtr, DevicePtrMut, GpuFloat, check, dtype, ptr, stream_handle};
use crate::args::{AddBiasArgs, GatherRowsArgs};
use crate::error::Result;
use crate::sys;
use cudarc::driver::CudaStream;

/// `out[r, :] = table[ids[r], :]`. The ids stay on the device and are not checked: an id
/// outside `0..table_rows` writes a row of zeros (the CPU reference returns an error instead).
pub fn gather_rows<T: GpuFloat>(
    stream: &CudaStream,
    out: &mut impl DevicePtrMut<T>,
    table: &impl DevicePtr<T>,
    ids: &impl DevicePtr<i32>,
    a: &GatherRowsArgs,
) -> Result<()> {
    a.validate(T::DTYPE, out.len(), table.len(), ids.len())?;
    stream.context().bind_to_thread()?;
    let (o, _o) = out.device_ptr_mut(stream);
    let (t, _t) = table.device_ptr(stream);
    let (i, _i) = ids.device_ptr(stream);
    let p = sys::vllm_gather_rows_params {
        out: ptr(o),
        table: ptr(t),
        ids: ptr(i) as *const i32,
        num_rows: a.num_rows as i64,
        row_len: a.row_len as i64,
        table_rows: a.table_rows as i64,
        table_stride: a.table_stride as i64,
        out_stride: a.out_stride as i64,
        dtype: dtype::<T>(),
    };
    // SAFETY: the pointers are live device allocations of the validated sizes (ids holds
    // num_rows entries; the kernel reads a table row only for an id in range), kept alive and
    // stream-ordered by the guards until the launch is enqueued; `p` outlives the call.
    check("gather_rows", unsafe {
        sys::vllm_gather_rows(&p, stream_handle(stream))
    })
}

/// In place `x[r, c] += bias[c]`, the sum in f32 rounded once to `T`.
pub fn add_bias<T: GpuFloat>(
    stream: &CudaStream,
    x: &mut impl DevicePtrMut<T>,
    bias: &impl DevicePtr<T>,
    a: &AddBiasArgs,
) -> Result<()> {
    a.validate(T::DTYPE, x.len(), bias.len())?;
    stream.context().bind_to_thread()?;
    let (xp, _x) = x.device_ptr_mut(stream);
    let (b, _b) = bias.device_ptr(stream);
    let p = sys::vllm_add_bias_params {
        x: ptr(xp),
        bias: ptr(b),
        num_rows: a.num_rows as i64,
        row_len: a.row_len as i64,
        stride: a.stride as i64,
        dtype: dtype::<T>(),
    };
    // SAFETY: as in gather_rows; x is the only buffer written and cannot alias bias (a &mut
    // and a & borrow).
    check("add_bias", unsafe {
        sys::vllm_add_bias(&p, stream_handle(stream))
    })
}

//! Rotary embedding on the GPU (`csrc/pos_encoding/rotary_embedding.cu`).

use super::{DevicePtr, DevicePtrMut, GpuFloat, check, dtype, ptr, stream_handle};
use crate::args::RotaryArgs;
use crate::error::Result;
use crate::sys;
use cudarc::driver::CudaStream;

/// In place on `query` and `key` (pass `None::<&mut CudaSlice<T>>` to rotate the query only).
/// Positions live on the device and cannot be checked here without a sync: tokens whose position
/// is outside `[0, max_position)` are left untouched (check on the host with
/// [`RotaryArgs::validate_positions`] when the positions come from outside).
pub fn rotary_embedding<T: GpuFloat, K: DevicePtrMut<T>>(
    stream: &CudaStream,
    positions: &impl DevicePtr<i64>,
    query: &mut impl DevicePtrMut<T>,
    key: Option<&mut K>,
    cos_sin_cache: &impl DevicePtr<T>,
    a: &RotaryArgs,
) -> Result<()> {
    let key_len = key.as_ref().map(|k| k.len());
    a.validate(
        T::DTYPE,
        positions.len(),
        query.len(),
        key_len,
        cos_sin_cache.len(),
    )?;
    stream.context().bind_to_thread()?;
    let (pos, _pos) = positions.device_ptr(stream);
    let (q, _q) = query.device_ptr_mut(stream);
    let (cs, _cs) = cos_sin_cache.device_ptr(stream);
    let mut key_guard = None;
    let k = match key {
        Some(k) => {
            let (k, g) = k.device_ptr_mut(stream);
            key_guard = Some(g);
            ptr(k)
        }
        None => std::ptr::null_mut(),
    };
    let p = sys::vllm_rotary_embedding_params {
        positions: ptr(pos) as *const i64,
        query: ptr(q),
        key: k,
        cos_sin_cache: ptr(cs),
        num_tokens: a.num_tokens as i64,
        num_heads: a.num_heads as i64,
        num_kv_heads: a.num_kv_heads as i64,
        head_size: a.head_size as i64,
        rot_dim: a.rot_dim as i64,
        query_stride: a.query_stride as i64,
        key_stride: a.key_stride as i64,
        max_position: a.max_position as i64,
        is_neox: i32::from(a.is_neox),
        dtype: dtype::<T>(),
    };
    // SAFETY: live device buffers of the validated sizes, guarded until the launch is enqueued;
    // query and key are distinct (&mut borrows); key may be NULL, which the launcher accepts.
    let status = unsafe { sys::vllm_rotary_embedding(&p, stream_handle(stream)) };
    drop(key_guard);
    check("rotary_embedding", status)
}

/// Rotary embedding of the query and key heads of one fused `[tokens, q | k | v]` buffer in a
/// single launch: query rows start at element 0, key rows at `key_offset`, strides from `a`.
/// (Two `&mut` views of one buffer cannot coexist, so this takes the buffer once.)
pub fn rotary_embedding_qkv<T: GpuFloat>(
    stream: &CudaStream,
    positions: &impl DevicePtr<i64>,
    qkv: &mut impl DevicePtrMut<T>,
    key_offset: usize,
    cos_sin_cache: &impl DevicePtr<T>,
    a: &RotaryArgs,
) -> Result<()> {
    a.validate_fused(
        T::DTYPE,
        positions.len(),
        qkv.len(),
        key_offset,
        cos_sin_cache.len(),
    )?;
    stream.context().bind_to_thread()?;
    let (pos, _pos) = positions.device_ptr(stream);
    let (q, _q) = qkv.device_ptr_mut(stream);
    let (cs, _cs) = cos_sin_cache.device_ptr(stream);
    let k = q + (key_offset * std::mem::size_of::<T>()) as u64;
    let p = sys::vllm_rotary_embedding_params {
        positions: ptr(pos) as *const i64,
        query: ptr(q),
        key: ptr(k),
        cos_sin_cache: ptr(cs),
        num_tokens: a.num_tokens as i64,
        num_heads: a.num_heads as i64,
        num_kv_heads: a.num_kv_heads as i64,
        head_size: a.head_size as i64,
        rot_dim: a.rot_dim as i64,
        query_stride: a.query_stride as i64,
        key_stride: a.key_stride as i64,
        max_position: a.max_position as i64,
        is_neox: i32::from(a.is_neox),
        dtype: dtype::<T>(),
    };
    // SAFETY: one live device buffer, guarded until the launch is enqueued; the query rows
    // (0..) and key rows (key_offset..) were validated inside it, and the validation requires
    // key_offset past the query heads of a row. With query_stride = key_stride the kernel's
    // query and key heads of one token are disjoint element ranges.
    let status = unsafe { sys::vllm_rotary_embedding(&p, stream_handle(stream)) };
    check("rotary_embedding", status)
}

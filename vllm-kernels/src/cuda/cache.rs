//! Paged KV cache ops on the GPU (`csrc/cache/*.cu`; layout in `args::cache`).

use super::{
    DevicePtr, DevicePtrMut, GpuFloat, GpuKvCacheElem, cache_dtype, check, dtype, ptr,
    stream_handle,
};
use crate::args::{
    BlockPair, PagedKvLayout, ReshapeAndCacheArgs, check_cache, check_cache_dtype, check_eq,
    validate_copy_pairs, validate_swap_pairs,
};
use crate::error::Result;
use crate::sys;
use cudarc::driver::{CudaSlice, CudaStream, HostSlice, PinnedHostSlice};
use std::sync::Arc;

/// Scatters `key`/`value` rows into the caches at `slot_mapping` (device, one slot per token).
/// Negative slots are padding and skipped; slots past the cache are skipped too (the device
/// data cannot be checked here without a sync: see [`ReshapeAndCacheArgs::validate_slots`]).
/// Caches of `T` take the rows as they are; [`Fp8E4m3`](crate::Fp8E4m3) caches (with
/// `a.cache_dtype` FP8) get `e4m3(key / k_scale)`, `e4m3(value / v_scale)`.
pub fn reshape_and_cache<T: GpuFloat, C: GpuKvCacheElem<T>>(
    stream: &CudaStream,
    key: &impl DevicePtr<T>,
    value: &impl DevicePtr<T>,
    key_cache: &mut impl DevicePtrMut<C>,
    value_cache: &mut impl DevicePtrMut<C>,
    slot_mapping: &impl DevicePtr<i64>,
    a: &ReshapeAndCacheArgs,
) -> Result<()> {
    check_cache_dtype("reshape_and_cache", a.cache_dtype, C::CACHE_DTYPE)?;
    a.validate(
        T::DTYPE,
        key.len(),
        value.len(),
        key_cache.len(),
        value_cache.len(),
        slot_mapping.len(),
    )?;
    stream.context().bind_to_thread()?;
    let (k, _k) = key.device_ptr(stream);
    let (v, _v) = value.device_ptr(stream);
    let (kc, _kc) = key_cache.device_ptr_mut(stream);
    let (vc, _vc) = value_cache.device_ptr_mut(stream);
    let (s, _s) = slot_mapping.device_ptr(stream);
    let l = &a.layout;
    let p = sys::vllm_reshape_and_cache_params {
        key: ptr(k),
        value: ptr(v),
        key_cache: ptr(kc),
        value_cache: ptr(vc),
        slot_mapping: ptr(s) as *const i64,
        num_tokens: a.num_tokens as i64,
        num_kv_heads: l.num_kv_heads as i64,
        head_size: l.head_size as i64,
        block_size: l.block_size as i64,
        num_blocks: l.num_blocks as i64,
        key_stride: a.key_stride as i64,
        value_stride: a.value_stride as i64,
        dtype: dtype::<T>(),
        cache_dtype: cache_dtype(a.cache_dtype),
        k_scale: a.k_scale,
        v_scale: a.v_scale,
    };
    // SAFETY: live device buffers of the validated sizes, guarded until the launch is enqueued.
    check("reshape_and_cache", unsafe {
        sys::vllm_reshape_and_cache(&p, stream_handle(stream))
    })
}

fn flat_pairs(pairs: &[BlockPair]) -> Vec<i64> {
    pairs
        .iter()
        .flat_map(|&(s, d)| [s as i64, d as i64])
        .collect()
}

/// `cache[dst] = cache[src]` for every pair in every cache (e.g. the K and V caches of all
/// layers). The caches are whole allocations (256-byte aligned) of the same layout.
pub fn copy_blocks<T: GpuFloat>(
    stream: &Arc<CudaStream>,
    caches: &mut [&mut CudaSlice<T>],
    layout: &PagedKvLayout,
    pairs: &[BlockPair],
) -> Result<()> {
    for c in caches.iter() {
        check_cache("copy_blocks", T::DTYPE, layout, c.len())?;
    }
    validate_copy_pairs(pairs, layout.num_blocks)?;
    if caches.is_empty() || pairs.is_empty() {
        return Ok(());
    }
    if caches.len() > 65535 {
        return Err(crate::KernelError::invalid(
            "copy_blocks",
            format!("{} caches, at most 65535", caches.len()),
        ));
    }
    stream.context().bind_to_thread()?;
    let mut guards = Vec::with_capacity(caches.len());
    let mut ptrs = Vec::with_capacity(caches.len());
    for c in caches.iter_mut() {
        let (p, g) = c.device_ptr_mut(stream);
        ptrs.push(p);
        guards.push(g);
    }
    let ptrs_dev = stream.clone_htod(&ptrs)?;
    let map_dev = stream.clone_htod(&flat_pairs(pairs))?;
    let (pp, _pp) = ptrs_dev.device_ptr(stream);
    let (mp, _mp) = map_dev.device_ptr(stream);
    let p = sys::vllm_copy_blocks_params {
        caches: ptr(pp) as *const *mut std::ffi::c_void,
        block_mapping: ptr(mp) as *const i64,
        num_caches: ptrs.len() as i64,
        num_pairs: pairs.len() as i64,
        block_bytes: (layout.block_numel() * T::DTYPE.size()) as i64,
    };
    // SAFETY: the pointer table and mapping were uploaded on this stream before the launch; the
    // caches stay borrowed (guards alive) until it is enqueued; the uploads are freed
    // stream-ordered after it.
    let status = unsafe { sys::vllm_copy_blocks(&p, stream_handle(stream)) };
    drop(guards);
    check("copy_blocks", status)
}

/// Device -> pinned host: `dst[d] = src[s]` for every pair.
pub fn swap_blocks_to_host<T: GpuFloat>(
    stream: &CudaStream,
    src: &CudaSlice<T>,
    src_layout: &PagedKvLayout,
    dst: &mut PinnedHostSlice<T>,
    dst_layout: &PagedKvLayout,
    pairs: &[BlockPair],
) -> Result<()> {
    validate_swap::<T>(src.len(), src_layout, dst.len(), dst_layout, pairs)?;
    stream.context().bind_to_thread()?;
    let (s, _s) = src.device_ptr(stream);
    // SAFETY: the host slice is used on `stream` only (the copies below); its guard records the
    // stream's event on drop, so host reads wait for the copies.
    let (d, _d) = unsafe { dst.stream_synced_mut_slice(stream) };
    swap_raw::<T>(
        stream,
        ptr(s),
        d.as_mut_ptr().cast(),
        src_layout,
        dst_layout,
        pairs,
    )
}

/// Pinned host -> device: `dst[d] = src[s]` for every pair.
pub fn swap_blocks_to_device<T: GpuFloat>(
    stream: &CudaStream,
    src: &PinnedHostSlice<T>,
    src_layout: &PagedKvLayout,
    dst: &mut CudaSlice<T>,
    dst_layout: &PagedKvLayout,
    pairs: &[BlockPair],
) -> Result<()> {
    validate_swap::<T>(src.len(), src_layout, dst.len(), dst_layout, pairs)?;
    stream.context().bind_to_thread()?;
    // SAFETY: as in swap_blocks_to_host; the host buffer is only read by the copies on `stream`.
    let (s, _s) = unsafe { src.stream_synced_slice(stream) };
    let (d, _d) = dst.device_ptr_mut(stream);
    swap_raw::<T>(
        stream,
        s.as_ptr().cast_mut().cast(),
        ptr(d),
        src_layout,
        dst_layout,
        pairs,
    )
}

fn validate_swap<T: GpuFloat>(
    src_len: usize,
    src_layout: &PagedKvLayout,
    dst_len: usize,
    dst_layout: &PagedKvLayout,
    pairs: &[BlockPair],
) -> Result<()> {
    check_cache("swap_blocks", T::DTYPE, src_layout, src_len)?;
    check_cache("swap_blocks", T::DTYPE, dst_layout, dst_len)?;
    check_eq(
        "swap_blocks",
        "block numel",
        src_layout.block_numel(),
        dst_layout.block_numel(),
    )?;
    validate_swap_pairs(pairs, src_layout.num_blocks, dst_layout.num_blocks)
}

fn swap_raw<T: GpuFloat>(
    stream: &CudaStream,
    src: *mut std::ffi::c_void,
    dst: *mut std::ffi::c_void,
    src_layout: &PagedKvLayout,
    dst_layout: &PagedKvLayout,
    pairs: &[BlockPair],
) -> Result<()> {
    let map = flat_pairs(pairs);
    let p = sys::vllm_swap_blocks_params {
        src,
        dst,
        block_mapping: map.as_ptr(),
        num_pairs: pairs.len() as i64,
        block_bytes: (src_layout.block_numel() * T::DTYPE.size()) as i64,
        src_num_blocks: src_layout.num_blocks as i64,
        dst_num_blocks: dst_layout.num_blocks as i64,
    };
    // SAFETY: src/dst are live device or pinned-host allocations of the validated sizes whose
    // guards the callers hold; the mapping is a host array read during the call only.
    check("swap_blocks", unsafe {
        sys::vllm_swap_blocks(&p, stream_handle(stream))
    })
}

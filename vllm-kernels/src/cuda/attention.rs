//! Paged decode attention on the GPU (`csrc/attention/paged_attention*.cu`).

use super::{
    DevicePtr, DevicePtrMut, GpuFloat, GpuKvCacheElem, cache_dtype, check, dtype, ptr,
    stream_handle,
};
use crate::args::{AttentionVersion, PagedAttentionArgs, check_cache_dtype, check_len};
use crate::error::Result;
use crate::sys;
use cudarc::driver::{CudaSlice, CudaStream};
use std::sync::Arc;

/// `out[s, h] = softmax(scale * q[s, h] . K[s]) V[s]` over each sequence's paged context.
/// `block_tables` (`[num_seqs, max_blocks_per_seq]`) and `seq_lens` live on the device and are
/// trusted (check them on the host with [`PagedAttentionArgs::validate_tables`] when they come
/// from outside). v2 needs [`PagedAttentionArgs::workspace_floats`] floats of workspace: pass
/// one to reuse it across calls, or `None` to have one allocated on `stream` for this call.
/// The caches hold `T` or, with `a.cache_dtype` FP8 (head sizes
/// [`ATTENTION_FP8_HEAD_SIZES`](crate::args::ATTENTION_FP8_HEAD_SIZES)),
/// [`Fp8E4m3`](crate::Fp8E4m3) bytes dequantized on load with `a.k_scale` / `a.v_scale`.
#[allow(clippy::too_many_arguments)]
pub fn paged_attention<T: GpuFloat, C: GpuKvCacheElem<T>>(
    stream: &Arc<CudaStream>,
    out: &mut impl DevicePtrMut<T>,
    query: &impl DevicePtr<T>,
    key_cache: &impl DevicePtr<C>,
    value_cache: &impl DevicePtr<C>,
    block_tables: &impl DevicePtr<i32>,
    seq_lens: &impl DevicePtr<i32>,
    alibi_slopes: Option<&CudaSlice<f32>>,
    workspace: Option<&mut CudaSlice<f32>>,
    a: &PagedAttentionArgs,
) -> Result<()> {
    check_cache_dtype("paged_attention", a.cache_dtype, C::CACHE_DTYPE)?;
    a.validate(
        T::DTYPE,
        out.len(),
        query.len(),
        key_cache.len(),
        value_cache.len(),
        block_tables.len(),
        seq_lens.len(),
        alibi_slopes.map(|x| x.len()),
    )?;
    if a.num_seqs == 0 {
        return Ok(());
    }
    stream.context().bind_to_thread()?;
    let v2 = a.pick_version() == AttentionVersion::V2;
    let mut owned = None;
    let workspace = match (v2, workspace) {
        (false, _) => None,
        (true, Some(w)) => {
            check_len(
                "paged_attention",
                "workspace",
                w.len(),
                a.workspace_floats(),
            )?;
            Some(w)
        }
        (true, None) => {
            // SAFETY: the attention kernel writes every workspace entry the reduce kernel reads
            // (each partition CTA writes its slot even when its token range is empty).
            owned = Some(unsafe { stream.alloc::<f32>(a.workspace_floats()) }?);
            owned.as_mut()
        }
    };
    let (o, _o) = out.device_ptr_mut(stream);
    let (q, _q) = query.device_ptr(stream);
    let (kc, _kc) = key_cache.device_ptr(stream);
    let (vc, _vc) = value_cache.device_ptr(stream);
    let (bt, _bt) = block_tables.device_ptr(stream);
    let (sl, _sl) = seq_lens.device_ptr(stream);
    let alibi = alibi_slopes.map(|x| x.device_ptr(stream));
    let ws = workspace.map(|w| w.device_ptr_mut(stream));
    let p = sys::vllm_paged_attention_params {
        out: ptr(o),
        query: ptr(q),
        key_cache: ptr(kc),
        value_cache: ptr(vc),
        block_tables: ptr(bt) as *const i32,
        seq_lens: ptr(sl) as *const i32,
        alibi_slopes: alibi
            .as_ref()
            .map_or(std::ptr::null(), |(x, _)| ptr(*x) as *const f32),
        workspace: ws
            .as_ref()
            .map_or(std::ptr::null_mut(), |(x, _)| ptr(*x) as *mut f32),
        num_seqs: a.num_seqs as i64,
        num_heads: a.num_heads as i64,
        num_kv_heads: a.num_kv_heads as i64,
        head_size: a.head_size as i64,
        block_size: a.block_size as i64,
        max_blocks_per_seq: a.max_blocks_per_seq as i64,
        q_stride: a.q_stride as i64,
        max_partitions: a.num_partitions() as i64,
        partition_size: a.partition_size() as i64,
        sliding_window: a
            .sliding_window
            .map_or(0, |w| w.min(i32::MAX as usize) as i32),
        scale: a.scale,
        dtype: dtype::<T>(),
        cache_dtype: cache_dtype(a.cache_dtype),
        k_scale: a.k_scale,
        v_scale: a.v_scale,
    };
    // SAFETY: every pointer is a live device allocation of the validated size (the workspace
    // sized by workspace_floats), guarded until the launches are enqueued; the block tables and
    // lengths are the caller's responsibility, as documented above.
    let status = unsafe { sys::vllm_paged_attention(&p, stream_handle(stream)) };
    drop(ws);
    drop(owned); // freed stream-ordered, after the kernels
    check("paged_attention", status)
}

//! Paged decode attention on the GPU (`csrc/attention/paged_attention*.cu`): one launch of v1,
//! or v2's partition kernel and its reduce (see [`PagedAttentionArgs::pick_version`]).

use super::{
    DevicePtr, DevicePtrMut, GpuFloat, GpuKvCacheElem, cache_dtype, check, dtype, ptr,
    stream_handle,
};
use crate::args::{
    AttentionVersion, PagedAttentionArgs, PagedAttentionLens, attention_lens, check_cache_dtype,
    check_len,
};
use crate::error::Result;
use crate::sys;
use cudarc::driver::{CudaSlice, CudaStream};
use std::sync::Arc;

/// The operands of decode attention on the device (any cudarc buffer or view; shapes as
/// [`crate::cpu::PagedAttentionIo`]).
pub struct PagedAttentionIo<'a, T, C> {
    pub out: &'a mut dyn DevicePtrMut<T>,
    pub query: &'a dyn DevicePtr<T>,
    pub key_cache: &'a dyn DevicePtr<C>,
    pub value_cache: &'a dyn DevicePtr<C>,
    pub block_tables: &'a dyn DevicePtr<i32>,
    pub seq_lens: &'a dyn DevicePtr<i32>,
    pub alibi_slopes: Option<&'a dyn DevicePtr<f32>>,
}

/// Device pointers are not printed: the element counts are.
impl<T, C> std::fmt::Debug for PagedAttentionIo<'_, T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagedAttentionIo")
            .field("lens", &self.lens())
            .finish()
    }
}

impl<T, C> PagedAttentionIo<'_, T, C> {
    /// The element counts the arguments are validated against.
    pub fn lens(&self) -> PagedAttentionLens {
        PagedAttentionLens {
            common: attention_lens!(self),
            alibi_slopes: self.alibi_slopes.map(|x| x.len()),
        }
    }
}

/// `out[s, h] = softmax(scale * q[s, h] . K[s]) V[s]` over each sequence's paged context.
/// `block_tables` (`[num_seqs, max_blocks_per_seq]`) and `seq_lens` live on the device and are
/// trusted (check them on the host with [`PagedAttentionArgs::validate_tables`] when they come
/// from outside). v2 needs [`PagedAttentionArgs::workspace_floats`] floats of workspace: pass
/// one to reuse it across calls, or `None` to have one allocated on `stream` for this call.
/// The caches hold `T` or, with `a.geometry.cache_dtype` FP8 (head sizes
/// [`ATTENTION_FP8_HEAD_SIZES`](crate::args::ATTENTION_FP8_HEAD_SIZES)),
/// [`Fp8E4m3`](crate::Fp8E4m3) bytes dequantized on load with `k_scale` / `v_scale`.
pub fn paged_attention<T: GpuFloat, C: GpuKvCacheElem<T>>(
    stream: &Arc<CudaStream>,
    io: PagedAttentionIo<'_, T, C>,
    workspace: Option<&mut CudaSlice<f32>>,
    a: &PagedAttentionArgs,
) -> Result<()> {
    let g = &a.geometry;
    check_cache_dtype("paged_attention", g.cache_dtype, C::CACHE_DTYPE)?;
    a.validate(T::DTYPE, &io.lens())?;
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
    let (o, _o) = io.out.device_ptr_mut(stream);
    let (q, _q) = io.query.device_ptr(stream);
    let (kc, _kc) = io.key_cache.device_ptr(stream);
    let (vc, _vc) = io.value_cache.device_ptr(stream);
    let (bt, _bt) = io.block_tables.device_ptr(stream);
    let (sl, _sl) = io.seq_lens.device_ptr(stream);
    let alibi = io.alibi_slopes.map(|x| x.device_ptr(stream));
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
        num_heads: g.num_heads as i64,
        num_kv_heads: g.num_kv_heads as i64,
        head_size: g.head_size as i64,
        block_size: g.block_size as i64,
        max_blocks_per_seq: g.max_blocks_per_seq as i64,
        q_stride: g.q_stride as i64,
        max_partitions: a.num_partitions() as i64,
        partition_size: a.partition_size() as i64,
        sliding_window: g.window_i32(),
        scale: g.scale,
        dtype: dtype::<T>(),
        cache_dtype: cache_dtype(g.cache_dtype),
        k_scale: g.k_scale,
        v_scale: g.v_scale,
    };
    // SAFETY: every pointer is a live device allocation of the validated size (the workspace
    // sized by workspace_floats), guarded until the launches are enqueued; the block tables and
    // lengths are the caller's responsibility, as documented above.
    let status = unsafe { sys::vllm_paged_attention(&p, stream_handle(stream)) };
    drop(ws);
    drop(owned); // freed stream-ordered, after the kernels
    check("paged_attention", status)
}

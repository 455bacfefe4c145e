//! Prefill attention over the paged KV cache on the GPU (`csrc/attention/prefill_attention*.cu`).

use super::{
    DevicePtr, DevicePtrMut, GpuFloat, GpuKvCacheElem, cache_dtype, check, dtype, ptr,
    stream_handle,
};
use crate::args::{PrefillAttentionArgs, check_cache_dtype};
use crate::error::Result;
use crate::sys;
use cudarc::driver::CudaStream;

/// `out[t, h] = softmax(scale * q[t, h] . K) V` over the keys of token `t`'s sequence at positions
/// up to its own (see [`PrefillAttentionArgs`]). The new tokens' K/V must already be in the cache.
/// `block_tables`, `cu_query_lens` and `seq_lens` live on the device and are trusted (check them
/// on the host with [`PrefillAttentionArgs::validate_tables`] when they come from outside).
/// The caches hold `T` or, with `a.cache_dtype` FP8 (head sizes
/// [`ATTENTION_FP8_HEAD_SIZES`](crate::args::ATTENTION_FP8_HEAD_SIZES)),
/// [`Fp8E4m3`](crate::Fp8E4m3) bytes dequantized on load with `a.k_scale` / `a.v_scale`.
#[allow(clippy::too_many_arguments)]
pub fn prefill_attention<T: GpuFloat, C: GpuKvCacheElem<T>>(
    stream: &CudaStream,
    out: &mut impl DevicePtrMut<T>,
    query: &impl DevicePtr<T>,
    key_cache: &impl DevicePtr<C>,
    value_cache: &impl DevicePtr<C>,
    block_tables: &impl DevicePtr<i32>,
    cu_query_lens: &impl DevicePtr<i32>,
    seq_lens: &impl DevicePtr<i32>,
    a: &PrefillAttentionArgs,
) -> Result<()> {
    check_cache_dtype("prefill_attention", a.cache_dtype, C::CACHE_DTYPE)?;
    a.validate(
        T::DTYPE,
        out.len(),
        query.len(),
        key_cache.len(),
        value_cache.len(),
        block_tables.len(),
        cu_query_lens.len(),
        seq_lens.len(),
    )?;
    if a.num_seqs == 0 || a.num_tokens == 0 {
        return Ok(());
    }
    stream.context().bind_to_thread()?;
    let (o, _o) = out.device_ptr_mut(stream);
    let (q, _q) = query.device_ptr(stream);
    let (kc, _kc) = key_cache.device_ptr(stream);
    let (vc, _vc) = value_cache.device_ptr(stream);
    let (bt, _bt) = block_tables.device_ptr(stream);
    let (cu, _cu) = cu_query_lens.device_ptr(stream);
    let (sl, _sl) = seq_lens.device_ptr(stream);
    let p = sys::vllm_prefill_attention_params {
        out: ptr(o),
        query: ptr(q),
        key_cache: ptr(kc),
        value_cache: ptr(vc),
        block_tables: ptr(bt) as *const i32,
        cu_query_lens: ptr(cu) as *const i32,
        seq_lens: ptr(sl) as *const i32,
        num_seqs: a.num_seqs as i64,
        num_tokens: a.num_tokens as i64,
        num_heads: a.num_heads as i64,
        num_kv_heads: a.num_kv_heads as i64,
        head_size: a.head_size as i64,
        block_size: a.block_size as i64,
        max_blocks_per_seq: a.max_blocks_per_seq as i64,
        q_stride: a.q_stride as i64,
        max_query_len: a.max_query_len as i64,
        sliding_window: a
            .sliding_window
            .map_or(0, |w| w.min(i32::MAX as usize) as i32),
        scale: a.scale,
        dtype: dtype::<T>(),
        split_p: i32::from(a.split_p),
        cache_dtype: cache_dtype(a.cache_dtype),
        k_scale: a.k_scale,
        v_scale: a.v_scale,
    };
    // SAFETY: every pointer is a live device allocation of the validated size, guarded until the
    // launch is enqueued; the offsets, lengths and block tables are the caller's responsibility,
    // as documented above.
    let status = unsafe { sys::vllm_prefill_attention(&p, stream_handle(stream)) };
    check("prefill_attention", status)
}

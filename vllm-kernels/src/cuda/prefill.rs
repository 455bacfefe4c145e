//! Prefill attention over the paged KV cache on the GPU (`csrc/attention/prefill_attention*.cu`):
//! one launch, a CTA per (tile of query rows, KV head).

use super::{
    DevicePtr, DevicePtrMut, GpuFloat, GpuKvCacheElem, cache_dtype, check, dtype, ptr,
    stream_handle,
};
use crate::args::{PrefillAttentionArgs, PrefillAttentionLens, attention_lens, check_cache_dtype};
use crate::error::Result;
use crate::sys;
use cudarc::driver::CudaStream;

/// The operands of prefill attention on the device (any cudarc buffer or view; shapes as
/// [`crate::cpu::PrefillAttentionIo`]).
pub struct PrefillAttentionIo<'a, T, C> {
    pub out: &'a mut dyn DevicePtrMut<T>,
    pub query: &'a dyn DevicePtr<T>,
    pub key_cache: &'a dyn DevicePtr<C>,
    pub value_cache: &'a dyn DevicePtr<C>,
    pub block_tables: &'a dyn DevicePtr<i32>,
    pub cu_query_lens: &'a dyn DevicePtr<i32>,
    pub seq_lens: &'a dyn DevicePtr<i32>,
}

/// Device pointers are not printed: the element counts are.
impl<T, C> std::fmt::Debug for PrefillAttentionIo<'_, T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefillAttentionIo")
            .field("lens", &self.lens())
            .finish()
    }
}

impl<T, C> PrefillAttentionIo<'_, T, C> {
    /// The element counts the arguments are validated against.
    pub fn lens(&self) -> PrefillAttentionLens {
        PrefillAttentionLens {
            common: attention_lens!(self),
            cu_query_lens: self.cu_query_lens.len(),
        }
    }
}

/// `out[t, h] = softmax(scale * q[t, h] . K) V` over the keys of token `t`'s sequence at positions
/// up to its own (see [`PrefillAttentionArgs`]). The new tokens' K/V must already be in the cache.
/// `block_tables`, `cu_query_lens` and `seq_lens` live on the device and are trusted (check them
/// on the host with [`PrefillAttentionArgs::validate_tables`] when they come from outside).
/// The caches hold `T` or, with `a.geometry.cache_dtype` FP8 (head sizes
/// [`ATTENTION_FP8_HEAD_SIZES`](crate::args::ATTENTION_FP8_HEAD_SIZES)),
/// [`Fp8E4m3`](crate::Fp8E4m3) bytes dequantized on load with `k_scale` / `v_scale`.
pub fn prefill_attention<T: GpuFloat, C: GpuKvCacheElem<T>>(
    stream: &CudaStream,
    io: PrefillAttentionIo<'_, T, C>,
    a: &PrefillAttentionArgs,
) -> Result<()> {
    let g = &a.geometry;
    check_cache_dtype("prefill_attention", g.cache_dtype, C::CACHE_DTYPE)?;
    a.validate(T::DTYPE, &io.lens())?;
    if a.num_seqs == 0 || a.num_tokens == 0 {
        return Ok(());
    }
    stream.context().bind_to_thread()?;
    let (o, _o) = io.out.device_ptr_mut(stream);
    let (q, _q) = io.query.device_ptr(stream);
    let (kc, _kc) = io.key_cache.device_ptr(stream);
    let (vc, _vc) = io.value_cache.device_ptr(stream);
    let (bt, _bt) = io.block_tables.device_ptr(stream);
    let (cu, _cu) = io.cu_query_lens.device_ptr(stream);
    let (sl, _sl) = io.seq_lens.device_ptr(stream);
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
        num_heads: g.num_heads as i64,
        num_kv_heads: g.num_kv_heads as i64,
        head_size: g.head_size as i64,
        block_size: g.block_size as i64,
        max_blocks_per_seq: g.max_blocks_per_seq as i64,
        q_stride: g.q_stride as i64,
        max_query_len: a.max_query_len as i64,
        sliding_window: g.window_i32(),
        scale: g.scale,
        dtype: dtype::<T>(),
        split_p: i32::from(a.split_p),
        cache_dtype: cache_dtype(g.cache_dtype),
        k_scale: g.k_scale,
        v_scale: g.v_scale,
    };
    // SAFETY: every pointer is a live device allocation of the validated size, guarded until the
    // launch is enqueued; the offsets, lengths and block tables are the caller's responsibility,
    // as documented above.
    let status = unsafe { sys::vllm_prefill_attention(&p, stream_handle(stream)) };
    check("prefill_attention", status)
}

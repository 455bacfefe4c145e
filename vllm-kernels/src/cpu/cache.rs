//! Paged KV cache ops on the CPU (layout: `args::cache`).

use crate::args::check_cache_dtype;
use crate::args::{
    BlockPair, PagedKvLayout, ReshapeAndCacheArgs, check_cache, validate_copy_pairs,
    validate_swap_pairs,
};
use crate::dtype::{Float, KvCacheElem};
use crate::error::Result;

/// Copies each token's K/V row to its slot; negative slots are skipped, slots past the cache
/// are an error. Caches of `T` take the rows as they are; [`Fp8E4m3`](crate::Fp8E4m3) caches
/// (with `a.cache_dtype` FP8) get `e4m3(key / k_scale)`, `e4m3(value / v_scale)`, rounded to
/// nearest even and saturated as on the GPU.
pub fn reshape_and_cache<T: Float, C: KvCacheElem<T>>(
    key: &[T],
    value: &[T],
    key_cache: &mut [C],
    value_cache: &mut [C],
    slot_mapping: &[i64],
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
    a.validate_slots(slot_mapping)?;
    let l = &a.layout;
    let hs = l.head_size;
    for (t, &slot) in slot_mapping.iter().enumerate() {
        if slot < 0 {
            continue;
        }
        for h in 0..l.num_kv_heads {
            let dst = l.index(slot as usize, h, 0);
            let (k0, v0) = (t * a.key_stride + h * hs, t * a.value_stride + h * hs);
            for e in 0..hs {
                key_cache[dst + e] = C::store(key[k0 + e], a.k_scale);
                value_cache[dst + e] = C::store(value[v0 + e], a.v_scale);
            }
        }
    }
    Ok(())
}

/// `cache[dst] = cache[src]` for every pair, in every cache of the list.
pub fn copy_blocks<T: Float>(
    caches: &mut [&mut [T]],
    layout: &PagedKvLayout,
    pairs: &[BlockPair],
) -> Result<()> {
    for c in caches.iter() {
        check_cache("copy_blocks", T::DTYPE, layout, c.len())?;
    }
    validate_copy_pairs(pairs, layout.num_blocks)?;
    let n = layout.block_numel();
    for c in caches.iter_mut() {
        for &(s, d) in pairs {
            c.copy_within(s * n..(s + 1) * n, d * n);
        }
    }
    Ok(())
}

/// `dst[d] = src[s]` for every pair; the two caches may have different block counts.
pub fn swap_blocks<T: Float>(
    src: &[T],
    src_layout: &PagedKvLayout,
    dst: &mut [T],
    dst_layout: &PagedKvLayout,
    pairs: &[BlockPair],
) -> Result<()> {
    check_cache("swap_blocks", T::DTYPE, src_layout, src.len())?;
    check_cache("swap_blocks", T::DTYPE, dst_layout, dst.len())?;
    crate::args::check_eq(
        "swap_blocks",
        "block numel",
        src_layout.block_numel(),
        dst_layout.block_numel(),
    )?;
    validate_swap_pairs(pairs, src_layout.num_blocks, dst_layout.num_blocks)?;
    let n = src_layout.block_numel();
    for &(s, d) in pairs {
        dst[d * n..(d + 1) * n].copy_from_slice(&src[s * n..(s + 1) * n]);
    }
    Ok(())
}

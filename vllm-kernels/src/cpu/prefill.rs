//! Prefill attention over the paged KV cache on the CPU: for every new query row, the decode
//! reference's softmax over the keys at positions up to its own (within the sliding window).
//! Cost: O(heads * sum over rows of visible keys * head_size), rayon-parallel over query rows.

use super::attention::attend_row;
use crate::args::{PagedKvLayout, PrefillAttentionArgs, check_cache_dtype};
use crate::dtype::{Float, KvCacheElem};
use crate::error::Result;
use rayon::prelude::*;

/// The operands of attention over the paged cache on the CPU: `query` rows (stride
/// `a.q_stride`), the caches, and per sequence its block-table row, query offsets and length.
#[derive(Debug, Clone, Copy)]
pub struct PagedQuery<'a, T, C> {
    pub query: &'a [T],
    pub key_cache: &'a [C],
    pub value_cache: &'a [C],
    /// `[num_seqs, max_blocks_per_seq]`
    pub block_tables: &'a [i32],
    /// `[num_seqs + 1]`: where each sequence's query rows start.
    pub cu_query_lens: &'a [i32],
    /// `[num_seqs]`: tokens in each sequence's context once this step has written.
    pub seq_lens: &'a [i32],
}

/// The caches hold `T` or, with `a.cache_dtype` FP8, [`Fp8E4m3`](crate::Fp8E4m3) bytes
/// (key = byte value * `a.k_scale`, value = byte value * `a.v_scale`).
#[allow(clippy::too_many_arguments)]
pub fn prefill_attention<T: Float, C: KvCacheElem<T>>(
    out: &mut [T],
    query: &[T],
    key_cache: &[C],
    value_cache: &[C],
    block_tables: &[i32],
    cu_query_lens: &[i32],
    seq_lens: &[i32],
    a: &PrefillAttentionArgs,
) -> Result<()> {
    check_cache_dtype("prefill_attention", a.cache_dtype, C::CACHE_DTYPE)?;
    a.validate_shapes(
        out.len(),
        query.len(),
        key_cache.len(),
        value_cache.len(),
        block_tables.len(),
        cu_query_lens.len(),
        seq_lens.len(),
    )?;
    let x = PagedQuery {
        query,
        key_cache,
        value_cache,
        block_tables,
        cu_query_lens,
        seq_lens,
    };
    attend(out, &x, a)
}

/// Causal attention of any mix of prefill chunks and decodes over the paged cache, for any
/// head size and block size (the CPU model runner's attention): the same arithmetic as
/// [`prefill_attention`], without the sets the GPU kernel is compiled for.
pub fn causal_attention<T: Float, C: KvCacheElem<T>>(
    out: &mut [T],
    x: &PagedQuery<'_, T, C>,
    a: &PrefillAttentionArgs,
) -> Result<()> {
    check_cache_dtype("prefill_attention", a.cache_dtype, C::CACHE_DTYPE)?;
    a.validate_layout(
        out.len(),
        x.query.len(),
        x.key_cache.len(),
        x.value_cache.len(),
        x.block_tables.len(),
        x.cu_query_lens.len(),
        x.seq_lens.len(),
    )?;
    attend(out, x, a)
}

/// The reference itself, after the shape checks: table bounds, then every query row.
fn attend<T: Float, C: KvCacheElem<T>>(
    out: &mut [T],
    x: &PagedQuery<'_, T, C>,
    a: &PrefillAttentionArgs,
) -> Result<()> {
    let PagedQuery {
        query,
        key_cache,
        value_cache,
        block_tables,
        cu_query_lens,
        seq_lens,
    } = *x;
    let hs = a.head_size;
    let l = PagedKvLayout {
        num_blocks: key_cache.len() / (a.num_kv_heads * a.block_size * hs),
        num_kv_heads: a.num_kv_heads,
        block_size: a.block_size,
        head_size: hs,
    };
    a.validate_tables(block_tables, cu_query_lens, seq_lens, l.num_blocks)?;
    let group = a.num_heads / a.num_kv_heads;
    let (k_at, v_at) = (
        |i: usize| key_cache[i].load(a.k_scale),
        |i: usize| value_cache[i].load(a.v_scale),
    );
    // (sequence, position) of every query row, then the rows in parallel; rows no sequence
    // owns are left as they are.
    let num_rows = cu_query_lens[a.num_seqs] as usize;
    let mut owner: Vec<Option<(usize, usize)>> = vec![None; num_rows];
    for s in 0..a.num_seqs {
        let (q0, q1) = (cu_query_lens[s] as usize, cu_query_lens[s + 1] as usize);
        let ctx0 = seq_lens[s] as usize - (q1 - q0);
        for (i, o) in owner[q0..q1].iter_mut().enumerate() {
            *o = Some((s, ctx0 + i));
        }
    }
    let row_w = a.num_heads * hs;
    out.par_chunks_mut(row_w)
        .zip(owner.par_iter())
        .enumerate()
        .for_each(|(row, (o, who))| {
            let Some((s, pos)) = *who else {
                return;
            };
            let table = &block_tables[s * a.max_blocks_per_seq..];
            let slot =
                |t: usize| table[t / a.block_size] as usize * a.block_size + t % a.block_size;
            let start = a.sliding_window.map_or(0, |w| (pos + 1).saturating_sub(w));
            for h in 0..a.num_heads {
                let rows: Vec<(f32, usize)> = (start..=pos)
                    .map(|t| (0.0, l.index(slot(t), h / group, 0)))
                    .collect();
                let q = &query[row * a.q_stride + h * hs..][..hs];
                attend_row(&mut o[h * hs..][..hs], q, &rows, a.scale, &k_at, &v_at);
            }
        });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::Fp8E4m3;

    /// Over an FP8 cache the reference equals the reference over the dequantized f32 cache
    /// (byte value * scale), bit for bit; a head size FP8 does not support is a typed error.
    #[test]
    fn fp8_cache_is_the_dequantized_cache() {
        let (hs, bs, heads, kv) = (128usize, 16usize, 4usize, 2usize);
        let numel = 3 * kv * bs * hs;
        let bytes = |seed: usize| -> Vec<Fp8E4m3> {
            (0..numel)
                .map(|i| {
                    Fp8E4m3((((i * 37 + seed * 11) % 251) as u8 & 0x7e) | ((i as u8 & 1) << 7))
                })
                .collect()
        };
        let (k8, v8) = (bytes(1), bytes(2));
        let (ks, vs) = (0.03f32, 0.5f32);
        let k32: Vec<f32> = k8.iter().map(|b| b.to_f32() * ks).collect();
        let v32: Vec<f32> = v8.iter().map(|b| b.to_f32() * vs).collect();
        let q: Vec<f32> = (0..5 * heads * hs)
            .map(|i| ((i % 13) as f32 - 6.0) / 7.0)
            .collect();
        let (tables, cu, lens) = ([2i32, 0, 1], [0i32, 5], [40i32]);
        let a = PrefillAttentionArgs::new(1, 5, heads, kv, hs, bs, 3, 5);
        let (mut o8, mut o32) = (vec![0f32; q.len()], vec![1f32; q.len()]);
        let a8 = a.with_fp8_cache(ks, vs);
        prefill_attention(&mut o8, &q, &k8, &v8, &tables, &cu, &lens, &a8).unwrap();
        prefill_attention(&mut o32, &q, &k32, &v32, &tables, &cu, &lens, &a).unwrap();
        assert_eq!(o8, o32);
        let a64 = PrefillAttentionArgs::new(1, 5, heads, kv, 64, bs, 3, 5).with_fp8_cache(ks, vs);
        let e = prefill_attention(&mut o8, &q, &k8, &v8, &tables, &cu, &lens, &a64).unwrap_err();
        assert!(e.to_string().contains("128, 256"), "{e}");
    }
}

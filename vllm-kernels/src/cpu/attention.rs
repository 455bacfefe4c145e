//! Paged decode attention on the CPU: per (sequence, head), gather the K/V rows through the
//! block table, softmax in f32 (max-subtracted), weighted sum of V, rounded to the output type.
//! Takes f32 as well as the GPU's f16 / bf16, and FP8 E4M3 caches (dequantized: byte value times
//! the tensor's scale). Cost: O(seqs * heads * context * head_size), rayon-parallel over
//! sequences.

use super::linalg::dot_product;
use crate::args::{PagedAttentionArgs, PagedKvLayout, check_cache_dtype};
use crate::dtype::{Float, KvCacheElem};
use crate::error::Result;
use rayon::prelude::*;

/// The caches hold `T` or, with `a.cache_dtype` FP8, [`Fp8E4m3`](crate::Fp8E4m3) bytes
/// (key = byte value * `a.k_scale`, value = byte value * `a.v_scale`).
#[allow(clippy::too_many_arguments)]
pub fn paged_attention<T: Float, C: KvCacheElem<T>>(
    out: &mut [T],
    query: &[T],
    key_cache: &[C],
    value_cache: &[C],
    block_tables: &[i32],
    seq_lens: &[i32],
    alibi_slopes: Option<&[f32]>,
    a: &PagedAttentionArgs,
) -> Result<()> {
    check_cache_dtype("paged_attention", a.cache_dtype, C::CACHE_DTYPE)?;
    attend(
        out,
        query,
        (key_cache.len(), |i| key_cache[i].load(a.k_scale)),
        (value_cache.len(), |i| value_cache[i].load(a.v_scale)),
        block_tables,
        seq_lens,
        alibi_slopes,
        a,
    )
}

/// The reference itself; `k` and `v` are (cache length, element `i` as f32).
#[allow(clippy::too_many_arguments)]
fn attend<T: Float>(
    out: &mut [T],
    query: &[T],
    k: (usize, impl Fn(usize) -> f32 + Sync),
    v: (usize, impl Fn(usize) -> f32 + Sync),
    block_tables: &[i32],
    seq_lens: &[i32],
    alibi_slopes: Option<&[f32]>,
    a: &PagedAttentionArgs,
) -> Result<()> {
    let ((k_len, k_at), (v_len, v_at)) = (k, v);
    a.validate_shapes(
        out.len(),
        query.len(),
        k_len,
        v_len,
        block_tables.len(),
        seq_lens.len(),
        alibi_slopes.map(<[f32]>::len),
    )?;
    let num_blocks = a.cache_blocks(k_len).unwrap_or(0);
    a.validate_tables(block_tables, seq_lens, num_blocks)?;
    let l = PagedKvLayout {
        num_blocks,
        num_kv_heads: a.num_kv_heads,
        block_size: a.block_size,
        head_size: a.head_size,
    };
    let hs = a.head_size;
    let group = a.num_heads / a.num_kv_heads;
    let row_w = a.num_heads * hs;
    out.par_chunks_mut(row_w)
        .take(a.num_seqs)
        .enumerate()
        .for_each(|(s, out)| {
            let len = seq_lens[s] as usize;
            let start = a.sliding_window.map_or(0, |w| len.saturating_sub(w));
            let table = &block_tables[s * a.max_blocks_per_seq..];
            let slot =
                |t: usize| table[t / a.block_size] as usize * a.block_size + t % a.block_size;
            for h in 0..a.num_heads {
                let kvh = h / group;
                let q = &query[s * a.q_stride + h * hs..][..hs];
                let slope = alibi_slopes.map_or(0.0, |x| x[h]);
                let rows: Vec<(f32, usize)> = (start..len)
                    .map(|t| {
                        (
                            slope * (t as f32 - (len - 1) as f32),
                            l.index(slot(t), kvh, 0),
                        )
                    })
                    .collect();
                attend_row(&mut out[h * hs..][..hs], q, &rows, a.scale, &k_at, &v_at);
            }
        });
    Ok(())
}

/// One query row: `o = softmax(scale q.k_t + bias_t) V` over `rows` = (bias, offset of the key /
/// value row in the cache), softmax in f32 (max-subtracted), rounded to `T`. Each key row is
/// read into f32 once and dotted with the scaled query (vectorized); V is summed row by row.
pub(crate) fn attend_row<T: Float>(
    o: &mut [T],
    q: &[T],
    rows: &[(f32, usize)],
    scale: f32,
    k_at: &impl Fn(usize) -> f32,
    v_at: &impl Fn(usize) -> f32,
) {
    let hs = q.len();
    let qs: Vec<f32> = q.iter().map(|x| x.to_f32() * scale).collect();
    let mut key = vec![0f32; hs];
    let logits: Vec<f32> = rows
        .iter()
        .map(|&(bias, k0)| {
            for (d, k) in key.iter_mut().enumerate() {
                *k = k_at(k0 + d);
            }
            dot_product(&qs, &key) + bias
        })
        .collect();
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let w: Vec<f32> = logits.iter().map(|&x| (x - m).exp()).collect();
    let total: f32 = w.iter().sum();
    let mut acc = vec![0f32; hs];
    for (&(_, v0), &wt) in rows.iter().zip(&w) {
        for (d, a) in acc.iter_mut().enumerate() {
            *a += wt * v_at(v0 + d);
        }
    }
    for (od, a) in o.iter_mut().zip(&acc) {
        *od = T::from_f32(a / total);
    }
}

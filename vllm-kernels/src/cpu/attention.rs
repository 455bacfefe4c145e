//! Paged decode attention on the CPU: per (sequence, head), gather the K/V rows through the
//! block table, softmax in f32 (max-subtracted), weighted sum of V, rounded to the output type.
//! Takes f32 as well as the GPU's f16 / bf16, and FP8 E4M3 caches (dequantized: byte value times
//! the tensor's scale). Cost: O(seqs * heads * context * head_size), rayon-parallel over
//! sequences.

use super::linalg::dot_product;
use crate::args::{AttentionGeometry, attention_lens, check_cache_dtype};
use crate::args::{PagedAttentionArgs, PagedAttentionLens, PagedKvLayout};
use crate::dtype::{Float, KvCacheElem};
use crate::error::Result;
use rayon::prelude::*;

/// The operands of decode attention on the host. Shapes: `out` `[num_seqs, num_heads,
/// head_size]`; `query` `num_seqs` rows `q_stride` apart; the caches `[num_blocks, num_kv_heads,
/// block_size, head_size]` of `C`; `block_tables` `[num_seqs, max_blocks_per_seq]`; `seq_lens`
/// `[num_seqs]`; `alibi_slopes` `[num_heads]` or none.
#[derive(Debug)]
pub struct PagedAttentionIo<'a, T, C> {
    pub out: &'a mut [T],
    pub query: &'a [T],
    pub key_cache: &'a [C],
    pub value_cache: &'a [C],
    pub block_tables: &'a [i32],
    pub seq_lens: &'a [i32],
    pub alibi_slopes: Option<&'a [f32]>,
}

impl<T, C> PagedAttentionIo<'_, T, C> {
    /// The element counts the arguments are validated against.
    pub fn lens(&self) -> PagedAttentionLens {
        PagedAttentionLens {
            common: attention_lens!(self),
            alibi_slopes: self.alibi_slopes.map(<[f32]>::len),
        }
    }
}

/// The caches hold `T` or, with `a.geometry.cache_dtype` FP8, [`Fp8E4m3`](crate::Fp8E4m3) bytes
/// (key = byte value * `k_scale`, value = byte value * `v_scale`).
pub fn paged_attention<T: Float, C: KvCacheElem<T>>(
    io: PagedAttentionIo<'_, T, C>,
    a: &PagedAttentionArgs,
) -> Result<()> {
    let g = &a.geometry;
    check_cache_dtype("paged_attention", g.cache_dtype, C::CACHE_DTYPE)?;
    a.validate_shapes(&io.lens())?;
    let PagedAttentionIo {
        out,
        query,
        key_cache,
        value_cache,
        block_tables,
        seq_lens,
        alibi_slopes,
    } = io;
    let l = cache_layout(g, key_cache.len());
    a.validate_tables(block_tables, seq_lens, l.num_blocks)?;
    let k_at = |i: usize| key_cache[i].load(g.k_scale);
    let v_at = |i: usize| value_cache[i].load(g.v_scale);
    let hs = g.head_size;
    let group = g.num_heads / g.num_kv_heads;
    out.par_chunks_mut(g.num_heads * hs)
        .take(a.num_seqs)
        .enumerate()
        .for_each(|(s, out)| {
            let len = seq_lens[s] as usize;
            let start = g.sliding_window.map_or(0, |w| len.saturating_sub(w));
            let table = &block_tables[s * g.max_blocks_per_seq..];
            let slot =
                |t: usize| table[t / g.block_size] as usize * g.block_size + t % g.block_size;
            for h in 0..g.num_heads {
                let kvh = h / group;
                let q = &query[s * g.q_stride + h * hs..][..hs];
                let slope = alibi_slopes.map_or(0.0, |x| x[h]);
                let rows: Vec<(f32, usize)> = (start..len)
                    .map(|t| {
                        (
                            slope * (t as f32 - (len - 1) as f32),
                            l.index(slot(t), kvh, 0),
                        )
                    })
                    .collect();
                attend_row(&mut out[h * hs..][..hs], q, &rows, g.scale, &k_at, &v_at);
            }
        });
    Ok(())
}

/// The layout of a (validated) cache of `len` elements with this geometry.
pub(crate) fn cache_layout(g: &AttentionGeometry, len: usize) -> PagedKvLayout {
    PagedKvLayout {
        num_blocks: g.cache_blocks(len).unwrap_or(0),
        num_kv_heads: g.num_kv_heads,
        block_size: g.block_size,
        head_size: g.head_size,
    }
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

//! Paged decode attention on the CPU: per (sequence, head), gather the K/V rows through the
//! block table, softmax in f32 (max-subtracted), weighted sum of V, rounded to the output type.
//! Takes f32 as well as the GPU's f16 / bf16, and FP8 E4M3 caches (dequantized: byte value times
//! the tensor's scale). Cost: O(seqs * heads * context * head_size), rayon-parallel over
//! (sequence, head) pairs.

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
    let (k_at, v_at) = (
        KvRows::new(key_cache, g.k_scale),
        KvRows::new(value_cache, g.v_scale),
    );
    let hs = g.head_size;
    let group = g.num_heads / g.num_kv_heads;
    let nh = g.num_heads;
    out[..a.num_seqs * nh * hs]
        .par_chunks_mut(hs)
        .enumerate()
        .for_each_init(Scratch::default, |sc, (i, o)| {
            let (s, h) = (i / nh, i % nh);
            let len = seq_lens[s] as usize;
            let start = g.sliding_window.map_or(0, |w| len.saturating_sub(w));
            let table = &block_tables[s * g.max_blocks_per_seq..];
            let slot =
                |t: usize| table[t / g.block_size] as usize * g.block_size + t % g.block_size;
            let slope = alibi_slopes.map_or(0.0, |x| x[h]);
            sc.rows.clear();
            sc.rows.extend((start..len).map(|t| {
                (
                    slope * (t as f32 - (len - 1) as f32),
                    l.index(slot(t), h / group, 0),
                )
            }));
            let q = &query[s * g.q_stride + h * hs..][..hs];
            attend_row(o, q, g.scale, (&k_at, &v_at), sc);
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

/// One cache (K or V) read row by row as f32: `C`'s value times the tensor's scale.
pub(crate) struct KvRows<'a, C> {
    cache: &'a [C],
    scale: f32,
}

impl<'a, C> KvRows<'a, C> {
    pub(crate) fn new(cache: &'a [C], scale: f32) -> Self {
        Self { cache, scale }
    }

    /// `dst` = the `dst.len()` values from element `at` on, as f32.
    fn load<T: Float>(&self, dst: &mut [f32], at: usize)
    where
        C: KvCacheElem<T>,
    {
        let n = dst.len();
        for (d, c) in dst.iter_mut().zip(&self.cache[at..at + n]) {
            *d = c.load(self.scale);
        }
    }
}

/// Per-thread buffers of [`attend_row`], reused across rows.
#[derive(Default)]
pub(crate) struct Scratch {
    /// (bias, offset of the key / value row in the cache) of every key the row sees.
    pub rows: Vec<(f32, usize)>,
    q: Vec<f32>,
    row: Vec<f32>,
    w: Vec<f32>,
    acc: Vec<f32>,
}

/// One query row: `o = softmax(scale q.k_t + bias_t) V` over `sc.rows`, softmax in f32
/// (max-subtracted), rounded to `T`. Each key and value row is read into f32 once, dotted with
/// the scaled query or added to the sum (vectorized); the sum over V runs in row order.
pub(crate) fn attend_row<T: Float, C: KvCacheElem<T>>(
    o: &mut [T],
    q: &[T],
    scale: f32,
    (k, v): (&KvRows<'_, C>, &KvRows<'_, C>),
    sc: &mut Scratch,
) {
    let hs = q.len();
    sc.q.clear();
    sc.q.extend(q.iter().map(|x| x.to_f32() * scale));
    sc.row.resize(hs, 0.0);
    sc.w.clear();
    for &(bias, k0) in &sc.rows {
        k.load::<T>(&mut sc.row, k0);
        sc.w.push(dot_product(&sc.q, &sc.row) + bias);
    }
    let m = sc.w.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    sc.w.iter_mut().for_each(|x| *x = (*x - m).exp());
    let total: f32 = sc.w.iter().sum();
    sc.acc.clear();
    sc.acc.resize(hs, 0.0);
    for (&(_, v0), &wt) in sc.rows.iter().zip(&sc.w) {
        v.load::<T>(&mut sc.row, v0);
        for (a, x) in sc.acc.iter_mut().zip(&sc.row) {
            *a += wt * x;
        }
    }
    for (od, a) in o.iter_mut().zip(&sc.acc) {
        *od = T::from_f32(a / total);
    }
}

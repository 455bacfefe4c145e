//! Causal attention over the paged KV cache on the CPU, for any mix of prefill chunks and
//! decodes: a query token at position `p` of a sequence attends to that sequence's cached
//! positions `lo..=p` (`lo = p + 1 - window` with a sliding window, else 0), read through its
//! block table; K/V of this step were written first, so new tokens see each other causally.
//! GQA: query head `h` reads KV head `h / (heads / kv_heads)`. Softmax in f32 with the max
//! subtracted. Cost: O(context x D) per (token, head), parallel over (token, head).

use super::LayerCache;
use crate::linalg::dot_product;
use crate::runner::SeqSlice;
use rayon::prelude::*;

#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub block_size: usize,
    pub scale: f32,
    pub sliding_window: Option<usize>,
}

impl Geometry {
    /// Offset of (slot, kv head) in a layer's K or V.
    fn at(&self, slot: usize, kv_head: usize) -> usize {
        let (block, off) = (slot / self.block_size, slot % self.block_size);
        ((block * self.kv_heads + kv_head) * self.block_size + off) * self.head_dim
    }
}

/// Writes each token's K and V (from its fused q|k|v row) to its slot; slot -1 is skipped.
pub fn write_cache(cache: &mut LayerCache, qkv: &[f32], slots: &[i64], g: &Geometry) {
    let (q_w, kv_w) = (g.heads * g.head_dim, g.kv_heads * g.head_dim);
    let d = g.head_dim;
    for (row, &slot) in qkv.chunks_exact(q_w + 2 * kv_w).zip(slots) {
        let Ok(slot) = usize::try_from(slot) else {
            continue;
        };
        for kh in 0..g.kv_heads {
            let dst = g.at(slot, kh);
            let k = &row[q_w + kh * d..q_w + (kh + 1) * d];
            let v = &row[q_w + kv_w + kh * d..q_w + kv_w + (kh + 1) * d];
            cache.k[dst..dst + d].copy_from_slice(k);
            cache.v[dst..dst + d].copy_from_slice(v);
        }
    }
}

/// `out[t, h, :]` = attention of token t's query head h over its sequence's cached K/V.
pub fn paged_causal(
    out: &mut [f32],
    qkv: &[f32],
    cache: &LayerCache,
    seqs: &[SeqSlice],
    g: &Geometry,
) {
    let d = g.head_dim;
    let (q_w, kv_w) = (g.heads * d, g.kv_heads * d);
    let row_w = q_w + 2 * kv_w;
    let group = g.heads / g.kv_heads;
    // (sequence, position) of every row.
    let mut owner = Vec::with_capacity(out.len() / q_w);
    for (si, s) in seqs.iter().enumerate() {
        let start = s.context_len - s.num_tokens;
        owner.extend((0..s.num_tokens).map(|i| (si, start + i)));
    }
    out.par_chunks_exact_mut(d)
        .enumerate()
        .for_each_init(Vec::new, |scores, (i, o)| {
            let (row, h) = (i / g.heads, i % g.heads);
            let (si, pos) = owner[row];
            let table = &seqs[si].block_table;
            let q = &qkv[row * row_w + h * d..row * row_w + (h + 1) * d];
            let kh = h / group;
            let lo = g.sliding_window.map_or(0, |w| (pos + 1).saturating_sub(w));
            let slot =
                |j: usize| table[j / g.block_size] as usize * g.block_size + j % g.block_size;
            scores.clear();
            let mut max = f32::NEG_INFINITY;
            for j in lo..=pos {
                let k = &cache.k[g.at(slot(j), kh)..][..d];
                let s = dot_product(q, k) * g.scale;
                max = max.max(s);
                scores.push(s);
            }
            let mut sum = 0.0f32;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            o.fill(0.0);
            for (j, &p) in (lo..=pos).zip(scores.iter()) {
                let v = &cache.v[g.at(slot(j), kh)..][..d];
                let p = p / sum;
                o.iter_mut().zip(v).for_each(|(o, v)| *o += p * v);
            }
        });
}

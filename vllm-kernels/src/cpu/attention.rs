//! Paged decode attention on the CPU: per (sequence, head), gather the K/V rows through the
//! block table, softmax in f32 (max-subtracted), weighted sum of V, rounded to the output type.
//! Takes f32 as well as the GPU's f16 / bf16. Cost: O(seqs * heads * context * head_size).

use crate::args::{PagedAttentionArgs, PagedKvLayout};
use crate::dtype::Float;
use crate::error::Result;

#[allow(clippy::too_many_arguments)]
pub fn paged_attention<T: Float>(
    out: &mut [T],
    query: &[T],
    key_cache: &[T],
    value_cache: &[T],
    block_tables: &[i32],
    seq_lens: &[i32],
    alibi_slopes: Option<&[f32]>,
    a: &PagedAttentionArgs,
) -> Result<()> {
    a.validate_shapes(
        out.len(),
        query.len(),
        key_cache.len(),
        value_cache.len(),
        block_tables.len(),
        seq_lens.len(),
        alibi_slopes.map(<[f32]>::len),
    )?;
    let num_blocks = a.cache_blocks(key_cache.len()).unwrap_or(0);
    a.validate_tables(block_tables, seq_lens, num_blocks)?;
    let l = PagedKvLayout {
        num_blocks,
        num_kv_heads: a.num_kv_heads,
        block_size: a.block_size,
        head_size: a.head_size,
    };
    let hs = a.head_size;
    let group = a.num_heads / a.num_kv_heads;
    for s in 0..a.num_seqs {
        let len = seq_lens[s] as usize;
        let start = a.sliding_window.map_or(0, |w| len.saturating_sub(w));
        let table = &block_tables[s * a.max_blocks_per_seq..];
        let slot = |t: usize| table[t / a.block_size] as usize * a.block_size + t % a.block_size;
        for h in 0..a.num_heads {
            let kvh = h / group;
            let q = &query[s * a.q_stride + h * hs..][..hs];
            let slope = alibi_slopes.map_or(0.0, |x| x[h]);
            let logits: Vec<f32> = (start..len)
                .map(|t| {
                    let k = &key_cache[l.index(slot(t), kvh, 0)..][..hs];
                    let dot: f32 = q
                        .iter()
                        .zip(k)
                        .map(|(x, y)| x.to_f32() * a.scale * y.to_f32())
                        .sum();
                    dot + slope * (t as f32 - (len - 1) as f32)
                })
                .collect();
            let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let w: Vec<f32> = logits.iter().map(|&x| (x - m).exp()).collect();
            let total: f32 = w.iter().sum();
            let o = &mut out[(s * a.num_heads + h) * hs..][..hs];
            for (d, od) in o.iter_mut().enumerate() {
                let acc: f32 = (start..len)
                    .zip(&w)
                    .map(|(t, &wt)| wt * value_cache[l.index(slot(t), kvh, d)].to_f32())
                    .sum();
                *od = T::from_f32(acc / total);
            }
        }
    }
    Ok(())
}

//! Prefill attention over the paged KV cache on the CPU: for every new query row, the decode
//! reference's softmax over the keys at positions up to its own (within the sliding window).
//! Cost: O(heads * sum over rows of visible keys * head_size).

use super::attention::attend_row;
use crate::args::{PagedKvLayout, PrefillAttentionArgs};
use crate::dtype::Float;
use crate::error::Result;

#[allow(clippy::too_many_arguments)]
pub fn prefill_attention<T: Float>(
    out: &mut [T],
    query: &[T],
    key_cache: &[T],
    value_cache: &[T],
    block_tables: &[i32],
    cu_query_lens: &[i32],
    seq_lens: &[i32],
    a: &PrefillAttentionArgs,
) -> Result<()> {
    a.validate_shapes(
        out.len(),
        query.len(),
        key_cache.len(),
        value_cache.len(),
        block_tables.len(),
        cu_query_lens.len(),
        seq_lens.len(),
    )?;
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
        |i: usize| key_cache[i].to_f32(),
        |i: usize| value_cache[i].to_f32(),
    );
    for s in 0..a.num_seqs {
        let (q0, q1) = (cu_query_lens[s] as usize, cu_query_lens[s + 1] as usize);
        let ctx0 = seq_lens[s] as usize - (q1 - q0);
        let table = &block_tables[s * a.max_blocks_per_seq..];
        let slot = |t: usize| table[t / a.block_size] as usize * a.block_size + t % a.block_size;
        for (i, row) in (q0..q1).enumerate() {
            let pos = ctx0 + i;
            let start = a.sliding_window.map_or(0, |w| (pos + 1).saturating_sub(w));
            for h in 0..a.num_heads {
                let rows: Vec<(f32, usize)> = (start..=pos)
                    .map(|t| (0.0, l.index(slot(t), h / group, 0)))
                    .collect();
                let q = &query[row * a.q_stride + h * hs..][..hs];
                let o = &mut out[(row * a.num_heads + h) * hs..][..hs];
                attend_row(o, q, &rows, a.scale, &k_at, &v_at);
            }
        }
    }
    Ok(())
}

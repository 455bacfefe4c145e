//! Prefill attention over the paged KV cache on the CPU: for every new query row, the decode
//! reference's softmax over the keys at positions up to its own (within the sliding window).
//! Cost: O(heads * sum over rows of visible keys * head_size), rayon-parallel over (query row, head)
//! pairs.

use super::attention::{KvRows, Scratch, attend_row, cache_layout};
use crate::args::{PrefillAttentionArgs, PrefillAttentionLens, attention_lens, check_cache_dtype};
use crate::dtype::{Float, KvCacheElem};
use crate::error::Result;
use rayon::prelude::*;

/// The operands of prefill attention on the host. Shapes: `out` `[num_tokens, num_heads,
/// head_size]`; `query` `num_tokens` rows `q_stride` apart; the caches `[num_blocks,
/// num_kv_heads, block_size, head_size]` of `C`; `block_tables` `[num_seqs,
/// max_blocks_per_seq]`; `cu_query_lens` `[num_seqs + 1]`; `seq_lens` `[num_seqs]`.
#[derive(Debug)]
pub struct PrefillAttentionIo<'a, T, C> {
    pub out: &'a mut [T],
    pub query: &'a [T],
    pub key_cache: &'a [C],
    pub value_cache: &'a [C],
    pub block_tables: &'a [i32],
    pub cu_query_lens: &'a [i32],
    pub seq_lens: &'a [i32],
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

/// The caches hold `T` or, with `a.geometry.cache_dtype` FP8, [`Fp8E4m3`](crate::Fp8E4m3) bytes
/// (key = byte value * `k_scale`, value = byte value * `v_scale`).
pub fn prefill_attention<T: Float, C: KvCacheElem<T>>(
    io: PrefillAttentionIo<'_, T, C>,
    a: &PrefillAttentionArgs,
) -> Result<()> {
    check_cache_dtype("prefill_attention", a.geometry.cache_dtype, C::CACHE_DTYPE)?;
    a.validate_shapes(&io.lens())?;
    attend(io, a)
}

/// Causal attention of any mix of prefill chunks and decodes over the paged cache, for any
/// head size and block size (the CPU model runner's attention): the arithmetic of
/// [`prefill_attention`], without the sets the GPU kernel is compiled for.
pub fn causal_attention<T: Float, C: KvCacheElem<T>>(
    io: PrefillAttentionIo<'_, T, C>,
    a: &PrefillAttentionArgs,
) -> Result<()> {
    check_cache_dtype("prefill_attention", a.geometry.cache_dtype, C::CACHE_DTYPE)?;
    a.validate_layout(&io.lens())?;
    attend(io, a)
}

/// The reference itself, after the shape checks: table bounds, then every query row in
/// parallel (rows no sequence owns are left as they are).
fn attend<T: Float, C: KvCacheElem<T>>(
    io: PrefillAttentionIo<'_, T, C>,
    a: &PrefillAttentionArgs,
) -> Result<()> {
    let g = &a.geometry;
    let PrefillAttentionIo {
        out,
        query,
        key_cache,
        value_cache,
        block_tables,
        cu_query_lens,
        seq_lens,
    } = io;
    let hs = g.head_size;
    let l = cache_layout(g, key_cache.len());
    a.validate_tables(block_tables, cu_query_lens, seq_lens, l.num_blocks)?;
    let group = g.num_heads / g.num_kv_heads;
    let (k_at, v_at) = (
        KvRows::new(key_cache, g.k_scale),
        KvRows::new(value_cache, g.v_scale),
    );
    // (sequence, position) of every query row.
    let mut owner: Vec<Option<(usize, usize)>> = vec![None; a.num_tokens];
    for s in 0..a.num_seqs {
        let (q0, q1) = (cu_query_lens[s] as usize, cu_query_lens[s + 1] as usize);
        let ctx0 = seq_lens[s] as usize - (q1 - q0);
        for (i, o) in owner[q0..q1].iter_mut().enumerate() {
            *o = Some((s, ctx0 + i));
        }
    }
    let nh = g.num_heads;
    out[..a.num_tokens * nh * hs]
        .par_chunks_mut(hs)
        .enumerate()
        .for_each_init(Scratch::default, |sc, (i, o)| {
            let (row, h) = (i / nh, i % nh);
            let Some((s, pos)) = owner[row] else {
                return;
            };
            let table = &block_tables[s * g.max_blocks_per_seq..];
            let slot =
                |t: usize| table[t / g.block_size] as usize * g.block_size + t % g.block_size;
            let start = g.sliding_window.map_or(0, |w| (pos + 1).saturating_sub(w));
            sc.rows.clear();
            sc.rows
                .extend((start..=pos).map(|t| (0.0, l.index(slot(t), h / group, 0))));
            let q = &query[row * g.q_stride + h * hs..][..hs];
            attend_row(o, q, g.scale, (&k_at, &v_at), sc);
        });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::AttentionGeometry;
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
        let geometry = |hs| AttentionGeometry::new(heads, kv, hs, bs, 3);
        let a = PrefillAttentionArgs::new(geometry(hs), 1, 5, 5);
        let (mut o8, mut o32) = (vec![0f32; q.len()], vec![1f32; q.len()]);
        let fp8 = |out: &mut [f32], a: &PrefillAttentionArgs| {
            let io = PrefillAttentionIo {
                out,
                query: &q,
                key_cache: &k8,
                value_cache: &v8,
                block_tables: &tables,
                cu_query_lens: &cu,
                seq_lens: &lens,
            };
            prefill_attention(io, a)
        };
        let a8 = a.with_fp8_cache(ks, vs);
        fp8(&mut o8, &a8).unwrap();
        let io32 = PrefillAttentionIo {
            out: &mut o32,
            query: &q,
            key_cache: &k32,
            value_cache: &v32,
            block_tables: &tables,
            cu_query_lens: &cu,
            seq_lens: &lens,
        };
        prefill_attention(io32, &a).unwrap();
        assert_eq!(o8, o32);
        let a64 = PrefillAttentionArgs::new(geometry(64), 1, 5, 5).with_fp8_cache(ks, vs);
        let e = fp8(&mut o8, &a64).unwrap_err();
        assert!(e.to_string().contains("128, 256"), "{e}");
    }
}

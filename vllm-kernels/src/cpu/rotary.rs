//! Rotary embedding on the CPU, in place, one pass over the rotated part of each head,
//! rayon-parallel over tokens.

use crate::args::RotaryArgs;
use crate::dtype::Float;
use crate::error::Result;
use rayon::prelude::*;

fn rotate_head<T: Float>(head: &mut [T], cos: &[T], sin: &[T], is_neox: bool) {
    let half = cos.len();
    for i in 0..half {
        let (i1, i2) = if is_neox {
            (i, i + half)
        } else {
            (2 * i, 2 * i + 1)
        };
        let (x1, x2) = (head[i1].to_f32(), head[i2].to_f32());
        let (c, s) = (cos[i].to_f32(), sin[i].to_f32());
        head[i1] = T::from_f32(x1 * c - x2 * s);
        head[i2] = T::from_f32(x2 * c + x1 * s);
    }
}

/// Rotates, in each of the `positions.len()` rows of `x` (`stride` apart), the heads of each
/// `(count, offset)` group: `count` heads from element `offset` on. Parallel over rows.
fn rotate_rows<T: Float>(
    x: &mut [T],
    positions: &[i64],
    cache: &[T],
    (groups, stride): (&[(usize, usize)], usize),
    a: &RotaryArgs,
) {
    let half = a.rot_dim / 2;
    let n = (positions.len() * stride).min(x.len());
    x[..n]
        .par_chunks_mut(stride)
        .zip(positions)
        .for_each(|(row, &pos)| {
            let c = &cache[pos as usize * a.rot_dim..][..a.rot_dim];
            let (cos, sin) = c.split_at(half);
            for &(heads, offset) in groups {
                for h in 0..heads {
                    let head = &mut row[offset + h * a.head_size..][..a.rot_dim];
                    rotate_head(head, cos, sin, a.is_neox);
                }
            }
        });
}

/// `key` is `None` to rotate the query only. Positions out of range are an error here.
pub fn rotary_embedding<T: Float>(
    positions: &[i64],
    query: &mut [T],
    key: Option<&mut [T]>,
    cos_sin_cache: &[T],
    a: &RotaryArgs,
) -> Result<()> {
    let key_len = key.as_ref().map(|k| k.len());
    a.validate(
        T::DTYPE,
        positions.len(),
        query.len(),
        key_len,
        cos_sin_cache.len(),
    )?;
    a.validate_positions(positions)?;
    rotate_rows(
        query,
        positions,
        cos_sin_cache,
        (&[(a.num_heads, 0)], a.query_stride),
        a,
    );
    if let Some(key) = key {
        rotate_rows(
            key,
            positions,
            cos_sin_cache,
            (&[(a.num_kv_heads, 0)], a.key_stride),
            a,
        );
    }
    Ok(())
}

/// The query and key heads of one fused buffer (`qkv`, the key heads at `key_offset` of each
/// row, as the GPU's `rotary_embedding_qkv` takes them), in place.
pub fn rotary_embedding_qkv<T: Float>(
    positions: &[i64],
    qkv: &mut [T],
    key_offset: usize,
    cos_sin_cache: &[T],
    a: &RotaryArgs,
) -> Result<()> {
    a.validate_fused(
        T::DTYPE,
        positions.len(),
        qkv.len(),
        key_offset,
        cos_sin_cache.len(),
    )?;
    a.validate_positions(positions)?;
    let groups = [(a.num_heads, 0), (a.num_kv_heads, key_offset)];
    rotate_rows(qkv, positions, cos_sin_cache, (&groups, a.query_stride), a);
    Ok(())
}

//! RMSNorm on the CPU: per row (or per head for `head_rms_norm`), sum of squares in f64, then
//! `round(x * inv) * w`. Cost: 2 passes over each row, rayon-parallel over rows.

use crate::args::{FusedAddRmsNormArgs, HeadRmsNormArgs, RmsNormArgs};
use crate::dtype::Float;
use crate::error::Result;
use rayon::prelude::*;

fn inv_rms(row: impl Iterator<Item = f32>, hidden: usize, eps: f32) -> f32 {
    let ss: f64 = row.map(|x| (x as f64) * (x as f64)).sum();
    1.0 / ((ss / hidden as f64) as f32 + eps).sqrt()
}

fn normalize<T: Float>(x: f32, inv: f32, w: T) -> T {
    T::from_f32(T::round(x * inv) * w.to_f32())
}

pub fn rms_norm<T: Float>(out: &mut [T], input: &[T], weight: &[T], a: &RmsNormArgs) -> Result<()> {
    a.validate(T::DTYPE, out.len(), input.len(), weight.len())?;
    let h = a.hidden_size;
    out.par_chunks_mut(a.out_stride)
        .zip(input.par_chunks(a.input_stride))
        .take(a.num_tokens)
        .for_each(|(y, x)| {
            let inv = inv_rms(x[..h].iter().map(|v| v.to_f32()), h, a.epsilon);
            for i in 0..h {
                y[i] = normalize(x[i].to_f32(), inv, weight[i]);
            }
        });
    Ok(())
}

pub fn fused_add_rms_norm<T: Float>(
    input: &mut [T],
    residual: &mut [T],
    weight: &[T],
    a: &FusedAddRmsNormArgs,
) -> Result<()> {
    a.validate(T::DTYPE, input.len(), residual.len(), weight.len())?;
    let h = a.hidden_size;
    input
        .par_chunks_mut(a.input_stride)
        .zip(residual.par_chunks_mut(h))
        .take(a.num_tokens)
        .for_each(|(x, r)| {
            for i in 0..h {
                r[i] = T::from_f32(x[i].to_f32() + r[i].to_f32());
            }
            let inv = inv_rms(r.iter().map(|v| v.to_f32()), h, a.epsilon);
            for i in 0..h {
                x[i] = normalize(r[i].to_f32(), inv, weight[i]);
            }
        });
    Ok(())
}

/// In place RMSNorm of every head of every token, one weight of `head_size` for all heads.
pub fn head_rms_norm<T: Float>(x: &mut [T], weight: &[T], a: &HeadRmsNormArgs) -> Result<()> {
    a.validate(T::DTYPE, x.len(), weight.len())?;
    let hs = a.head_size;
    x.par_chunks_mut(a.token_stride)
        .take(a.num_tokens)
        .for_each(|row| {
            for v in row[..a.num_heads * hs].chunks_exact_mut(hs) {
                let inv = inv_rms(v.iter().map(|e| e.to_f32()), hs, a.epsilon);
                for (e, &w) in v.iter_mut().zip(weight) {
                    *e = normalize(e.to_f32(), inv, w);
                }
            }
        });
    Ok(())
}

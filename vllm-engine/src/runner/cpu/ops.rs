//! Row-wise CPU ops of the decoder, rayon-parallel over rows: RMSNorm (whole rows and per
//! head) and SiLU-and-multiply. Each is one pass over its input, O(elements).

use rayon::prelude::*;

/// `out[r] = x[r] / rms(x[r]) * w` for every row of width `w.len()`.
pub fn rms_norm(out: &mut [f32], x: &[f32], w: &[f32], width: usize, eps: f32) {
    out.par_chunks_exact_mut(width)
        .zip(x.par_chunks_exact(width))
        .for_each(|(o, x)| {
            let ms = x.iter().map(|v| v * v).sum::<f32>() / width as f32;
            let inv = 1.0 / (ms + eps).sqrt();
            for ((o, x), w) in o.iter_mut().zip(x).zip(w) {
                *o = w * (x * inv);
            }
        });
}

/// RMSNorm of each `width`-wide piece of `x` in place (per-head q/k norm).
pub fn rms_norm_in_place(x: &mut [f32], w: &[f32], width: usize, eps: f32) {
    for x in x.chunks_exact_mut(width) {
        let ms = x.iter().map(|v| v * v).sum::<f32>() / width as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for (x, w) in x.iter_mut().zip(w) {
            *x = w * (*x * inv);
        }
    }
}

/// `out = silu(gate) * up` where each row of `gate_up` is `[gate (inter), up (inter)]`.
pub fn silu_and_mul(out: &mut [f32], gate_up: &[f32], inter: usize) {
    out.par_chunks_exact_mut(inter)
        .zip(gate_up.par_chunks_exact(2 * inter))
        .for_each(|(o, gu)| {
            let (g, u) = gu.split_at(inter);
            for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                *o = g / (1.0 + (-g).exp()) * u;
            }
        });
}

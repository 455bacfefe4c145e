//! Dense f32 matrix products on the CPU (the CPU model runner's linear layers and the
//! attention's dot products). Large products go through the `gemm` crate (packed SIMD
//! micro-kernels, rayon-parallel). Products with a few rows (decode steps) are memory-bound on
//! the weights, and gemm's packing costs more than the product there, so they take a direct
//! path: each weight row is read once and dotted with every input row while it is in L1,
//! rayon-parallel over weight rows. The threshold is measured (`SMALL_M`). Cost: 2 m n k flops,
//! the weight read once. `gemm::gemm` takes raw pointers and strides: [`matmul_bt`] checks every
//! slice length first (a typed error, never a panic).

use crate::error::{KernelError, Result};
use rayon::prelude::*;

/// At most this many rows take the direct path. Measured on a 2-core x86-64 (AVX2 + FMA),
/// k = 576: n = 1536, m = 4: direct 0.19 ms vs gemm 0.53 ms; m = 8: direct 0.40 ms vs gemm
/// 0.31 ms at m = 9. n = 49152 (an LM head), m = 1: direct 3.7 ms vs gemm 7.3 ms.
pub const SMALL_M: usize = 4;

/// Dot product with 8 independent accumulators, so it vectorizes; `FMA` fuses the multiply-add
/// (only where the CPU has FMA: elsewhere `mul_add` would be a slow library call).
#[inline(always)]
fn dot<const FMA: bool>(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
    let tail: f32 = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in xc.zip(yc) {
        for l in 0..8 {
            acc[l] = if FMA {
                a[l].mul_add(b[l], acc[l])
            } else {
                acc[l] + a[l] * b[l]
            };
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// One tile of weight rows `w` against every input row: `tile[j][i] = a_i . w_j`.
#[inline(always)]
fn tile<const FMA: bool>(tile: &mut [f32], w: &[f32], a: &[f32], m: usize, k: usize) {
    for (o, w) in tile.chunks_exact_mut(m).zip(w.chunks_exact(k)) {
        for (o, x) in o.iter_mut().zip(a.chunks_exact(k)) {
            *o = dot::<FMA>(x, w);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn tile_avx2(t: &mut [f32], w: &[f32], a: &[f32], m: usize, k: usize) {
    tile::<true>(t, w, a, m, k)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2(x: &[f32], y: &[f32]) -> f32 {
    dot::<true>(x, y)
}

fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `x . y` over the shorter length, vectorized (8 accumulators; FMA where the CPU has it).
/// The CPU attention's q.k products go through here.
pub fn dot_product(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: dot_avx2 only needs the avx2 and fma CPU features, detected just above;
        // it is otherwise safe code on slices.
        return unsafe { dot_avx2(x, y) };
    }
    dot::<false>(x, y)
}

fn tile_dispatch(t: &mut [f32], w: &[f32], a: &[f32], m: usize, k: usize) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: tile_avx2 only needs the avx2 and fma CPU features, detected just above;
        // it is otherwise safe code on slices.
        return unsafe { tile_avx2(t, w, a, m, k) };
    }
    tile::<false>(t, w, a, m, k)
}

/// The direct path: `t[j][i] = a_i . b_j` computed in tiles of weight rows, then transposed.
fn matmul_bt_small(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
) {
    const TILE: usize = 32;
    let mut t = vec![0f32; n * m];
    t.par_chunks_mut(TILE * m)
        .zip(b.par_chunks(TILE * k))
        .for_each(|(t, w)| tile_dispatch(t, w, a, m, k));
    for (i, row) in out.chunks_exact_mut(n).enumerate() {
        for (j, o) in row.iter_mut().enumerate() {
            let v = t[j * m + i];
            *o = if accumulate { *o + v } else { v };
        }
    }
}

/// `out[m x n] (+)= a[m x k] . b[n x k]^T`, all row-major: `b` is laid out like a PyTorch
/// `Linear` weight (`[out_features, in_features]`). With `accumulate` the product is added to
/// `out`, else it replaces it. Slices of any other length are a typed error.
pub fn matmul_bt(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
) -> Result<()> {
    for (what, got, expected) in [
        ("a (m x k)", a.len(), m * k),
        ("b (n x k)", b.len(), n * k),
        ("out (m x n)", out.len(), m * n),
    ] {
        if got != expected {
            return Err(KernelError::ShapeMismatch {
                op: "matmul_bt",
                what,
                expected,
                got,
            });
        }
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            out.fill(0.0);
        }
        return Ok(());
    }
    if m <= SMALL_M {
        matmul_bt_small(out, a, b, (m, n, k), accumulate);
        return Ok(());
    }
    let threads = rayon::current_num_threads();
    let par = if threads > 1 && m * n * k >= 1 << 16 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the three slices hold exactly m*k, n*k and m*n elements (checked above), and
    // the strides below address only those elements: out is row-major m x n (row stride n,
    // column stride 1); a is row-major m x k; b^T is k x n read from row-major b[n x k]
    // (row stride 1, column stride k). `out` is a unique borrow, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut o = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                o[i * n + j] = (0..k).map(|t| a[i * k + t] * b[j * k + t]).sum();
            }
        }
        o
    }

    #[test]
    fn matches_naive_product_and_accumulates() {
        for &(m, n, k) in &[
            (1, 7, 5),
            (3, 64, 33),
            (8, 100, 17),
            (17, 129, 70),
            (40, 40, 64),
        ] {
            let a: Vec<f32> = (0..m * k).map(|x| ((x * 7919) % 13) as f32 - 6.0).collect();
            let b: Vec<f32> = (0..n * k)
                .map(|x| ((x * 104_729) % 11) as f32 - 5.0)
                .collect();
            let want = naive(&a, &b, m, n, k);
            let mut out = vec![f32::NAN; m * n];
            matmul_bt(&mut out, &a, &b, (m, n, k), false).unwrap();
            assert_eq!(out, want, "{m}x{n}x{k}");
            matmul_bt(&mut out, &a, &b, (m, n, k), true).unwrap();
            let twice: Vec<f32> = want.iter().map(|x| 2.0 * x).collect();
            assert_eq!(out, twice, "{m}x{n}x{k} accumulate");
        }
        let e = matmul_bt(&mut [0.0; 4], &[0.0; 3], &[0.0; 4], (2, 2, 2), false).unwrap_err();
        assert!(e.to_string().contains("expected 4, got 3"), "{e}");
    }
}

//! Dense f32 matrix products on the CPU through the `gemm` crate (packed SIMD micro-kernels,
//! rayon-parallel). This is the engine's only `unsafe`: `gemm::gemm` takes raw pointers and
//! strides; the wrapper checks every slice length first.
#![allow(unsafe_code)]

/// `out[m x n] (+)= a[m x k] . b[n x k]^T`, all row-major: `b` is laid out like a PyTorch
/// `Linear` weight (`[out_features, in_features]`). With `accumulate` the product is added to
/// `out`, else it replaces it.
pub fn matmul_bt(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
) {
    assert_eq!(a.len(), m * k, "matmul_bt: a is not m x k");
    assert_eq!(b.len(), n * k, "matmul_bt: b is not n x k");
    assert_eq!(out.len(), m * n, "matmul_bt: out is not m x n");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out.fill(0.0);
        }
        return;
    }
    let threads = rayon::current_num_threads();
    let par = if threads > 1 && m * n * k >= 1 << 16 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the three slices hold exactly m*k, n*k and m*n elements (asserted above), and
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
        for &(m, n, k) in &[(1, 7, 5), (3, 64, 33), (17, 129, 70), (40, 40, 64)] {
            let a: Vec<f32> = (0..m * k).map(|x| ((x * 7919) % 13) as f32 - 6.0).collect();
            let b: Vec<f32> = (0..n * k)
                .map(|x| ((x * 104_729) % 11) as f32 - 5.0)
                .collect();
            let want = naive(&a, &b, m, n, k);
            let mut out = vec![f32::NAN; m * n];
            matmul_bt(&mut out, &a, &b, (m, n, k), false);
            assert_eq!(out, want, "{m}x{n}x{k}");
            matmul_bt(&mut out, &a, &b, (m, n, k), true);
            let twice: Vec<f32> = want.iter().map(|x| 2.0 * x).collect();
            assert_eq!(out, twice, "{m}x{n}x{k} accumulate");
        }
    }
}

//! CPU reference of the hand-written products `skinny_gemm` and `sm90_gemm`: exact products
//! summed in f64, rounded once to `O`. Cost: 2 m n k flops.

use crate::args::{SkinnyGemmArgs, Sm90GemmArgs};
use crate::dtype::Float;
use crate::error::Result;

pub fn skinny_gemm<T: Float, O: Float>(
    y: &mut [O],
    x: &[T],
    w: &[T],
    a: &SkinnyGemmArgs,
) -> Result<()> {
    a.validate(T::DTYPE, O::DTYPE, y.len(), x.len(), w.len())?;
    matmul_bt(y, x, w, (a.m, a.n, a.k, a.ldy));
    Ok(())
}

/// The token tile does not change the result (every tile computes the same sums).
pub fn sm90_gemm<T: Float>(y: &mut [T], x: &[T], w: &[T], a: &Sm90GemmArgs) -> Result<()> {
    a.validate(T::DTYPE, y.len(), x.len(), w.len())?;
    matmul_bt(y, x, w, (a.m, a.n, a.k, a.ldy));
    Ok(())
}

fn matmul_bt<T: Float, O: Float>(
    y: &mut [O],
    x: &[T],
    w: &[T],
    (m, n, k, ldy): (usize, usize, usize, usize),
) {
    for r in 0..m {
        let xr = &x[r * k..(r + 1) * k];
        for c in 0..n {
            let wr = &w[c * k..(c + 1) * k];
            let s: f64 = xr
                .iter()
                .zip(wr)
                .map(|(p, q)| f64::from(p.to_f32()) * f64::from(q.to_f32()))
                .sum();
            y[r * ldy + c] = O::from_f32(s as f32);
        }
    }
}

//! CPU reference of `skinny_gemm`: f32 accumulation of exact products, rounded once to `O`.
//! Cost: 2 m n k flops.

use crate::args::SkinnyGemmArgs;
use crate::dtype::Float;
use crate::error::Result;

pub fn skinny_gemm<T: Float, O: Float>(
    y: &mut [O],
    x: &[T],
    w: &[T],
    a: &SkinnyGemmArgs,
) -> Result<()> {
    a.validate(T::DTYPE, O::DTYPE, y.len(), x.len(), w.len())?;
    for r in 0..a.m {
        let xr = &x[r * a.k..(r + 1) * a.k];
        for c in 0..a.n {
            let wr = &w[c * a.k..(c + 1) * a.k];
            let s: f64 = xr
                .iter()
                .zip(wr)
                .map(|(p, q)| f64::from(p.to_f32()) * f64::from(q.to_f32()))
                .sum();
            y[r * a.ldy + c] = O::from_f32(s as f32);
        }
    }
    Ok(())
}

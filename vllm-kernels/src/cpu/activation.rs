//! Gated activations on the CPU: `round(act(gate)) * up`, one pass, rayon-parallel over rows.

use crate::args::{ActAndMulArgs, Activation};
use crate::dtype::Float;
use crate::error::Result;
use rayon::prelude::*;

/// The activation in f32, as the kernels compute it.
#[inline(always)]
pub fn activate(act: Activation, x: f32) -> f32 {
    match act {
        Activation::Silu => x / (1.0 + (-x).exp()),
        Activation::GeluErf => 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
        Activation::GeluTanh => {
            let k = (2.0f32 / std::f32::consts::PI).sqrt();
            0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
        }
    }
}

pub fn act_and_mul<T: Float>(out: &mut [T], input: &[T], a: &ActAndMulArgs) -> Result<()> {
    a.validate(T::DTYPE, out.len(), input.len())?;
    match a.act {
        Activation::Silu => gated(out, input, a, |x| activate(Activation::Silu, x)),
        Activation::GeluErf => gated(out, input, a, |x| activate(Activation::GeluErf, x)),
        Activation::GeluTanh => gated(out, input, a, |x| activate(Activation::GeluTanh, x)),
    }
    Ok(())
}

/// `out = round(f(gate)) * up` row by row, `f` one activation (so the loop is monomorphic and
/// the activation inlined).
fn gated<T: Float>(out: &mut [T], input: &[T], a: &ActAndMulArgs, f: impl Fn(f32) -> f32 + Sync) {
    out.par_chunks_mut(a.d)
        .zip(input.par_chunks(a.input_stride))
        .take(a.num_tokens)
        .for_each(|(y, row)| {
            let (gate, up) = row[..2 * a.d].split_at(a.d);
            for ((y, g), u) in y.iter_mut().zip(gate).zip(up) {
                *y = T::from_f32(T::round(f(g.to_f32())) * u.to_f32());
            }
        });
}

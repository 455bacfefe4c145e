//! Rotary position embedding tables: inverse frequencies `theta^(-2i/D)` (with Llama 3.1's
//! piecewise scaling when configured), and per-position angles in f32 (as transformers and vLLM
//! form them) with their cos / sin: the rows the rotary kernels read (NeoX style: element `i` of
//! a head pairs with element `i + D/2`). Cost: D transcendental pairs per position.

use crate::config::{ModelConfig, RopeScaling};
use vllm_kernels::Float;

#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f64>,
}

impl Rope {
    pub fn new(c: &ModelConfig) -> Self {
        let d = c.head_dim;
        let theta = f64::from(c.rope_theta);
        let mut inv_freq: Vec<f64> = (0..d / 2)
            .map(|i| {
                // As transformers computes it: float32 inverse frequencies.
                (1.0 / theta.powf((2 * i) as f64 / d as f64)) as f32 as f64
            })
            .collect();
        if let Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        }) = c.rope_scaling
        {
            let (factor, lo, hi) = (
                f64::from(factor),
                f64::from(low_freq_factor),
                f64::from(high_freq_factor),
            );
            let old = original_max_position_embeddings as f64;
            let (lo_wavelen, hi_wavelen) = (old / lo, old / hi);
            for f in &mut inv_freq {
                let wavelen = 2.0 * std::f64::consts::PI / *f;
                *f = if wavelen < hi_wavelen {
                    *f
                } else if wavelen > lo_wavelen {
                    *f / factor
                } else {
                    let smooth = (old / wavelen - lo) / (hi - lo);
                    (1.0 - smooth) * *f / factor + smooth * *f
                };
            }
        }
        Self { inv_freq }
    }

    /// The inverse frequencies, `D / 2` of them.
    pub fn inv_freq(&self) -> &[f64] {
        &self.inv_freq
    }

    /// Appends the cos | sin row of `pos` (`D` values: the `D / 2` cosines, then the sines), as
    /// the rotary kernels read it: the angle in f32, as transformers and vLLM form it, and its
    /// cos / sin exactly, rounded to `T`.
    pub fn extend_cos_sin<T: Float>(&self, pos: usize, out: &mut Vec<T>) {
        let angle = |f: f64| f64::from(pos as f32 * f as f32);
        out.extend(
            self.inv_freq
                .iter()
                .map(|&f| T::from_f32(angle(f).cos() as f32)),
        );
        out.extend(
            self.inv_freq
                .iter()
                .map(|&f| T::from_f32(angle(f).sin() as f32)),
        );
    }

    /// `[positions, D]` cos | sin rows for positions `0..positions`.
    pub fn cos_sin_table<T: Float>(&self, positions: usize) -> Vec<T> {
        let mut out = Vec::with_capacity(positions * 2 * self.inv_freq.len());
        for pos in 0..positions {
            self.extend_cos_sin(pos, &mut out);
        }
        out
    }
}

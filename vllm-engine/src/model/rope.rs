//! Rotary position embedding tables: inverse frequencies `theta^(-2i/D)` (with Llama 3.1's
//! piecewise scaling when configured), and per-position angles in f32 (as transformers and vLLM form them) and
//! their cos/sin computed on demand.
//! Applied NeoX-style: element `i` of a head pairs with element `i + D/2`.

use crate::config::{ModelConfig, RopeScaling};

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

    /// Rotates each head of `x` (`heads * D` values of one token) in place for `pos`.
    pub fn apply(&self, x: &mut [f32], heads: usize, pos: usize) {
        let half = self.inv_freq.len();
        let d = half * 2;
        for (i, &f) in self.inv_freq.iter().enumerate() {
            // The angle in f32, as transformers and vLLM compute it; cos/sin of it exactly.
            let a = f64::from(pos as f32 * f as f32);
            let (s, c) = (a.sin() as f32, a.cos() as f32);
            for h in 0..heads {
                let (x0, x1) = (x[h * d + i], x[h * d + i + half]);
                x[h * d + i] = x0 * c - x1 * s;
                x[h * d + i + half] = x1 * c + x0 * s;
            }
        }
    }
}

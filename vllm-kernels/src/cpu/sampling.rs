//! `sample_tokens` on the CPU: the same hash, the same f32 scores and the same tie rules as the
//! kernel (`csrc/sampling/sample_tokens.cu`), so both pick the same token except where two
//! scores are equal up to the last bits of a logarithm.
//!
//! Per row: `T = temperature[r]`. `T > 0`: Gumbel-max, token = the allowed `i` maximising
//! `s_i + g_i` with `s_i = logits[i] * (1 / T)` and `g_i = -ln(-ln(u_i))` ([`gumbel`]); allowed
//! are all `i` when `min_p <= 0`, else the `i` with `s_i >= max_j s_j + ln(min(min_p, 1))`
//! (`p_i >= min_p * p_max`). Otherwise (`T <= 0` or NaN) greedy argmax of the logits. Ties go
//! to the lowest index, NaN never wins, a row of NaN gives token 0. Cost per row: one pass (two
//! with min-p) and a hash and two logs per allowed element.

use crate::args::SampleArgs;
use crate::error::Result;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The uniform `u_i` in (0, 1) of element `i` for `seed`: `k / 2^24`, `k` the top 24 bits of
/// `mix(mix(seed + G) + (i + 1) G)` (splitmix64: output `i + 1` of the stream started at
/// `mix(seed)`), `k = 0` taken as `2^-25`. Never 0 or 1.
pub fn uniform(seed: u64, i: usize) -> f32 {
    let key = mix64(seed.wrapping_add(GOLDEN));
    let z = mix64(key.wrapping_add((i as u64).wrapping_add(1).wrapping_mul(GOLDEN)));
    let k = (z >> 40) as u32;
    if k == 0 {
        2f32.powi(-25)
    } else {
        k as f32 * 2f32.powi(-24)
    }
}

/// The Gumbel noise `g_i = -ln(-ln(u_i))` of element `i` for `seed`, in f32.
pub fn gumbel(seed: u64, i: usize) -> f32 {
    -(-uniform(seed, i).ln()).ln()
}

/// The score `sample_tokens` maximises for element `i` of a row sampled at `temperature > 0`.
pub fn sample_score(logit: f32, temperature: f32, seed: u64, i: usize) -> f32 {
    logit * (1.0 / temperature) + gumbel(seed, i)
}

/// `b` beats `a`: a higher score, or the same score at a lower index.
fn beats(b: (f32, usize), a: (f32, usize)) -> bool {
    b.0 > a.0 || (b.0 == a.0 && b.1 < a.1)
}

fn sample_row(row: &[f32], t: f32, min_p: f32, seed: u64) -> i32 {
    let mut best: Option<(f32, usize)> = None;
    let mut offer = |c: (f32, usize)| {
        if best.is_none_or(|b| beats(c, b)) {
            best = Some(c);
        }
    };
    if t.is_nan() || t <= 0.0 {
        for (i, &x) in row.iter().enumerate() {
            if !x.is_nan() {
                offer((x, i));
            }
        }
    } else {
        let inv_t = 1.0 / t;
        let thr = if min_p > 0.0 {
            let m = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            m * inv_t + min_p.ln().min(0.0)
        } else {
            f32::NEG_INFINITY
        };
        for (i, &x) in row.iter().enumerate() {
            let s = x * inv_t;
            if s >= thr {
                offer((s + gumbel(seed, i), i));
            }
        }
    }
    best.map_or(0, |(_, i)| i as i32)
}

/// One token per row into `out[..num_rows]`.
pub fn sample_tokens(
    out: &mut [i32],
    logits: &[f32],
    temperature: &[f32],
    min_p: &[f32],
    seeds: &[u64],
    a: &SampleArgs,
) -> Result<()> {
    a.validate(
        out.len(),
        logits.len(),
        temperature.len(),
        min_p.len(),
        seeds.len(),
    )?;
    for r in 0..a.num_rows {
        let row = &logits[r * a.logits_stride..][..a.vocab];
        out[r] = sample_row(row, temperature[r], min_p[r], seeds[r]);
    }
    Ok(())
}

//! `sample_tokens` on the CPU: the same hash, the same f32 scores and the same tie rules as the
//! kernel (`csrc/sampling/sample_tokens.cu`), so both pick the same token except where two
//! scores are equal up to the last bits of a logarithm.
//!
//! Per row ([`SampleRow`]): `T = temperature`. `T > 0`: Gumbel-max, token = the allowed `i`
//! maximising `s_i + g_i` with `s_i = logits[i] * (1 / T)` and `g_i = -ln(-ln(u_i))` ([`gumbel`]);
//! allowed are all `i` when `min_p <= 0`, else the `i` with `s_i >= max_j s_j + ln(min(min_p, 1))`
//! (`p_i >= min_p * p_max`). Then, as the engine's CPU sampler does, top-k (`0 < k < vocab`) keeps
//! the `k` best of those and top-p (`0 < p < 1`) the shortest prefix of what is left whose weight
//! `exp(s_i - max s)` (f32, summed in f64) reaches `p` times the total, both in the order (score
//! descending, index ascending); with either, tokens with `s_i < max s - 103` (weight underflowing
//! f32) are not candidates. Otherwise (`T <= 0` or NaN) greedy argmax of the logits. Ties go to the
//! lowest index, NaN never wins, a row of NaN gives token 0. Cost per row: one pass (two with
//! min-p) and a hash and two logs per allowed element; with top-k / top-p a sort of the
//! candidates.

use crate::args::{FillTokensArgs, SampleArgs, SampleRow};
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

/// Candidates with top-k / top-p: relative weight at least `exp(MIN_REL)`.
const MIN_REL: f32 = -103.0;

/// The allowed indices under top-k then top-p among `cand` (index, score), `ms` the row's
/// largest score.
fn filter(mut cand: Vec<(usize, f32)>, ms: f32, k: Option<usize>, p: Option<f32>) -> Vec<usize> {
    cand.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if let Some(k) = k {
        cand.truncate(k);
    }
    if let Some(p) = p {
        let w = |s: f32| f64::from((s - ms).exp());
        let total: f64 = cand.iter().map(|c| w(c.1)).sum();
        let target = f64::from(p) * total;
        let mut acc = 0.0;
        if let Some(n) = cand.iter().position(|c| {
            acc += w(c.1);
            acc >= target
        }) {
            cand.truncate(n + 1);
        }
    }
    cand.into_iter().map(|c| c.0).collect()
}

fn sample_row(row: &[f32], r: SampleRow) -> i32 {
    let SampleRow {
        temperature: t,
        min_p,
        top_k,
        top_p,
        seed,
    } = r;
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
        // The row's largest score (NaN ignored), for min-p and the filters.
        let ms = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) * inv_t;
        let thr = if min_p > 0.0 {
            ms + min_p.ln().min(0.0)
        } else {
            f32::NEG_INFINITY
        };
        let k = (top_k > 0 && (top_k as usize) < row.len()).then_some(top_k as usize);
        let p = (top_p > 0.0 && top_p < 1.0).then_some(top_p);
        // A +inf score takes all the probability: draw among the +inf tokens, unfiltered.
        if (k.is_none() && p.is_none()) || ms == f32::INFINITY {
            for (i, &x) in row.iter().enumerate() {
                let s = x * inv_t;
                if s >= thr {
                    offer((s + gumbel(seed, i), i));
                }
            }
        } else {
            let cand: Vec<(usize, f32)> = row
                .iter()
                .enumerate()
                .map(|(i, &x)| (i, x * inv_t))
                .filter(|&(_, s)| s >= thr && s - ms >= MIN_REL)
                .collect();
            for i in filter(cand, ms, k, p) {
                offer((row[i] * inv_t + gumbel(seed, i), i));
            }
        }
    }
    best.map_or(0, |(_, i)| i as i32)
}

/// One token per row into `out[..num_rows]`, row `r` sampled with `rows[r]`.
pub fn sample_tokens(
    out: &mut [i32],
    logits: &[f32],
    rows: &[SampleRow],
    a: &SampleArgs,
) -> Result<()> {
    a.validate(out.len(), logits.len(), &[("rows", rows.len())])?;
    for (r, (o, &params)) in out.iter_mut().zip(rows).take(a.num_rows).enumerate() {
        *o = sample_row(&logits[r * a.logits_stride..][..a.vocab], params);
    }
    Ok(())
}

/// `out[i] = sampled[from[i]]` where `from[i] >= 0`, else `tokens[i]`; a source out of range
/// is an error.
pub fn fill_tokens(
    out: &mut [i32],
    tokens: &[i32],
    sampled: &[i32],
    from: &[i32],
    a: &FillTokensArgs,
) -> Result<()> {
    a.validate(out.len(), tokens.len(), sampled.len(), from.len())?;
    a.validate_from(from)?;
    for i in 0..a.n {
        out[i] = match usize::try_from(from[i]) {
            Ok(f) => sampled[f],
            Err(_) => tokens[i],
        };
    }
    Ok(())
}

//! The CPU sampler: one row of logits and a request's parameters to the next token.
//!
//! Order (as vLLM's V1 sampler): logit bias; EOS / stop tokens masked below `min_tokens`;
//! repetition, frequency and presence penalties; then greedy argmax when temperature is 0, else
//! temperature, min-p, top-k, top-p, and a draw from the request's own generator. Log-probs are
//! those of the raw logits (before any processing), as vLLM returns by default.
//!
//! Cost per call: O(V) for the processing and the draw, plus O(V log V) sorting only when
//! top-p is below 1 (O(V + k log k) with top-k alone), V the vocabulary size.

use super::params::ValidSamplingParams;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

/// A request's random generator. Seeded requests draw the same numbers whatever else is in the
/// batch, so their outputs are reproducible.
#[derive(Debug)]
pub struct SamplerState {
    rng: StdRng,
}

impl SamplerState {
    pub fn new(seed: Option<u64>) -> Self {
        let rng = match seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        Self { rng }
    }

    /// A fresh 64-bit key from this request's generator (a device sampler's seed for one
    /// draw), so seeded requests stay reproducible whatever else is in the batch.
    pub fn next_seed(&mut self) -> u64 {
        self.rng.random()
    }
}

/// A token and its log-probability under the raw logits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f32,
}

/// The sampled token, its raw log-probability, and the top `logprobs` alternatives (most
/// likely first) when the request asked for them (without `logprobs`, `logprob` is NaN).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub token: u32,
    pub logprob: f32,
    pub top_logprobs: Vec<TokenLogprob>,
}

fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

/// `log(sum(exp(x)))`, stable.
fn log_sum_exp(x: &[f32]) -> f32 {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if m == f32::NEG_INFINITY {
        return m;
    }
    m + x.iter().map(|&v| ((v - m) as f64).exp()).sum::<f64>().ln() as f32
}

/// The `k` largest entries of `x` as (index, value), largest first.
fn top_k_of(x: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    let desc = |a: &usize, b: &usize| x[*b].total_cmp(&x[*a]).then(a.cmp(b));
    if k < idx.len() {
        idx.select_nth_unstable_by(k, desc);
        idx.truncate(k);
    }
    idx.sort_unstable_by(desc);
    idx.into_iter().map(|i| (i, x[i])).collect()
}

/// Applies bias, the `min_tokens` mask and penalties in place.
fn process(
    x: &mut [f32],
    p: &ValidSamplingParams,
    prompt: &[u32],
    output: &[u32],
    eos_token_ids: &[u32],
) {
    for (&t, &b) in &p.logit_bias {
        if let Some(v) = x.get_mut(t as usize) {
            *v += b;
        }
    }
    if output.len() < p.min_tokens {
        let eos = eos_token_ids.iter().filter(|_| !p.ignore_eos);
        for &t in eos.chain(&p.stop_token_ids) {
            if let Some(v) = x.get_mut(t as usize) {
                *v = f32::NEG_INFINITY;
            }
        }
    }
    if p.repetition_penalty != 1.0 {
        let mut seen = vec![false; x.len()];
        for &t in prompt.iter().chain(output) {
            if let Some(s) = seen.get_mut(t as usize)
                && !*s
            {
                *s = true;
                let v = &mut x[t as usize];
                *v = if *v > 0.0 {
                    *v / p.repetition_penalty
                } else {
                    *v * p.repetition_penalty
                };
            }
        }
    }
    if p.frequency_penalty != 0.0 || p.presence_penalty != 0.0 {
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for &t in output {
            *counts.entry(t).or_default() += 1;
        }
        for (t, c) in counts {
            if let Some(v) = x.get_mut(t as usize) {
                *v -= p.frequency_penalty * c as f32 + p.presence_penalty;
            }
        }
    }
}

/// Draws from softmax(x) restricted by min-p, top-k and top-p.
fn draw(x: &[f32], p: &ValidSamplingParams, rng: &mut StdRng) -> usize {
    let inv_t = 1.0 / p.temperature;
    let scaled: Vec<f32> = x.iter().map(|&v| v * inv_t).collect();
    let m = scaled.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if m == f32::NEG_INFINITY {
        return argmax(x);
    }
    // Unnormalised probabilities relative to the most likely token (which has 1.0).
    let mut cand: Vec<(usize, f64)> = scaled
        .iter()
        .enumerate()
        .map(|(i, &v)| (i, f64::from((v - m).exp())))
        .filter(|&(_, w)| w > 0.0 && w >= p.min_p as f64)
        .collect();
    let k = if p.top_k > 0 {
        p.top_k as usize
    } else {
        usize::MAX
    };
    if k < cand.len() || p.top_p < 1.0 {
        cand.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        cand.truncate(k);
        if p.top_p < 1.0 {
            let total: f64 = cand.iter().map(|c| c.1).sum();
            let mut acc = 0.0;
            let mut keep = cand.len();
            for (n, c) in cand.iter().enumerate() {
                acc += c.1;
                if acc >= p.top_p as f64 * total {
                    keep = n + 1;
                    break;
                }
            }
            cand.truncate(keep);
        }
    }
    let total: f64 = cand.iter().map(|c| c.1).sum();
    let mut u = rng.random::<f64>() * total;
    for &(i, w) in &cand {
        if u < w {
            return i;
        }
        u -= w;
    }
    cand.last().map_or_else(|| argmax(x), |c| c.0)
}

/// Samples the next token of a sequence from its `logits` (one row, the vocabulary).
/// `prompt` and `output` are the sequence's tokens so far (for penalties and `min_tokens`).
pub fn sample(
    logits: &[f32],
    p: &ValidSamplingParams,
    prompt: &[u32],
    output: &[u32],
    eos_token_ids: &[u32],
    state: &mut SamplerState,
) -> Sample {
    let mut x = logits.to_vec();
    process(&mut x, p, prompt, output, eos_token_ids);
    let token = if p.is_greedy() {
        argmax(&x)
    } else {
        draw(&x, p, &mut state.rng)
    };
    // Log-probabilities cost a pass of exp over the vocabulary: only when asked for.
    let (logprob, top_logprobs) = match p.logprobs {
        Some(k) => token_logprobs(logits, token as u32, k),
        None => (f32::NAN, Vec::new()),
    };
    Sample {
        token: token as u32,
        logprob,
        top_logprobs,
    }
}

/// The raw log-probability of `token` under `logits` and the `k` most likely tokens with
/// theirs (most likely first). O(V) plus O(k log k).
pub fn token_logprobs(logits: &[f32], token: u32, k: usize) -> (f32, Vec<TokenLogprob>) {
    let lse = log_sum_exp(logits);
    let top = if k > 0 {
        top_k_of(logits, k)
            .into_iter()
            .map(|(i, v)| TokenLogprob {
                token: i as u32,
                logprob: v - lse,
            })
            .collect()
    } else {
        Vec::new()
    };
    let lp = logits
        .get(token as usize)
        .map_or(f32::NEG_INFINITY, |&v| v - lse);
    (lp, top)
}

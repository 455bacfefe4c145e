//! sample_tokens and fill_tokens. The CPU reference: its distribution (a chi-square test over
//! 20,000 seeds against softmax and its min-p / top-k / top-p truncations), its tie and NaN
//! rules, its typed errors (`cpu` tests). Both devices: hand-made rows with known tokens, top-k /
//! top-p cuts through runs of equal logits, bad arguments (`test_device!`). The CUDA kernels
//! against the CPU reference on fresh random logits with outputs poisoned (-7), and inside a
//! CUDA graph (`gpu` tests, SKIP without a GPU).

#[macro_use]
mod common;

use common::device::Device;
use common::*;
use vllm_kernels::KernelError;
use vllm_kernels::args::*;
use vllm_kernels::cpu;

/// `n` copies of one row's parameters.
fn same_rows(n: usize, temperature: f32, min_p: f32, top_k: i32, top_p: f32) -> Vec<SampleRow> {
    (0..n as u64)
        .map(|seed| SampleRow {
            temperature,
            min_p,
            top_k,
            top_p,
            seed,
        })
        .collect()
}

/// softmax(logits / t) restricted to p_i >= min_p * p_max and renormalised, in f64.
/// softmax(logits / t) truncated by min-p, then to the `top_k` most likely (0: all), then to
/// the smallest most-likely-first prefix holding `top_p` of what is left, renormalised: the
/// engine sampler's definition, written out independently (f64, distinct logits).
fn filtered_softmax(logits: &[f32], t: f64, min_p: f64, top_k: usize, top_p: f64) -> Vec<f64> {
    let m = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let mut p: Vec<f64> = logits.iter().map(|&x| ((x as f64 - m) / t).exp()).collect();
    // p_max is exp(0) = 1 before normalisation.
    for v in p.iter_mut() {
        if *v < min_p {
            *v = 0.0;
        }
    }
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| p[i] > 0.0).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    if top_k > 0 {
        for &i in order.iter().skip(top_k) {
            p[i] = 0.0;
        }
        order.truncate(top_k);
    }
    let total: f64 = p.iter().sum();
    let mut acc = 0.0;
    let mut cut = false;
    for &i in &order {
        if cut {
            p[i] = 0.0;
        }
        acc += p[i];
        cut = cut || acc >= top_p * total;
    }
    let sum: f64 = p.iter().sum();
    p.iter().map(|v| v / sum).collect()
}

/// P(X >= x) for X chi-square with `k` degrees of freedom (integer k), by the closed forms:
/// even k: e^(-x/2) sum_{j < k/2} (x/2)^j / j!; odd k: erfc(sqrt(x/2)) + e^(-x/2)
/// sum_{j=1}^{(k-1)/2} (x/2)^(j-1/2) / Gamma(j+1/2).
fn chi2_sf(x: f64, k: usize) -> f64 {
    let h = x / 2.0;
    if k.is_multiple_of(2) {
        let (mut term, mut sum) = (1.0, 0.0);
        for j in 0..k / 2 {
            if j > 0 {
                term *= h / j as f64;
            }
            sum += term;
        }
        (-h).exp() * sum
    } else {
        // term_j = h^(j-1/2) / Gamma(j+1/2); term_1 = sqrt(h) / Gamma(3/2).
        let mut term = h.sqrt() / (std::f64::consts::PI.sqrt() / 2.0);
        let mut sum = 0.0;
        for j in 1..=(k - 1) / 2 {
            if j > 1 {
                term *= h / (j as f64 - 0.5);
            }
            sum += term;
        }
        libm::erfc(h.sqrt()) + (-h).exp() * sum
    }
}

/// The x with chi2_sf(x, k) = p, by bisection.
fn chi2_critical(k: usize, p: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, 1000.0);
    for _ in 0..200 {
        let m = (lo + hi) / 2.0;
        if chi2_sf(m, k) > p {
            lo = m;
        } else {
            hi = m;
        }
    }
    lo
}

/// Sampling one fixed row of 16 logits with 20,000 seeds follows softmax(logits / 0.7) and its
/// min-p / top-k / top-p truncations, renormalised (the engine sampler's distribution):
/// Pearson's chi-square over the allowed tokens stays under the p = 1e-6 critical value
/// (exact, from the closed-form survival function; the test flakes once in a million seed sets
/// at most), and no token outside the allowed set is ever sampled.
#[test]
fn sample_tokens_follows_softmax_chi_square() {
    let logits: [f32; 16] = [
        1.2, -0.4, 0.3, 2.1, -1.5, 0.9, 1.7, -0.8, 0.0, 1.4, -2.0, 0.6, 2.4, -0.1, 1.0, 0.2,
    ];
    let (t, n) = (0.7f32, 20_000usize);
    for (min_p, top_k, top_p) in [
        (0.0f32, 0i32, 1.0f32),
        (0.2, 0, 1.0),
        (0.0, 5, 1.0),
        (0.0, 0, 0.8),
        (0.05, 7, 0.75),
        (0.0, 16, 0.999),
    ] {
        let a = SampleArgs::new(n, 16);
        let rows: Vec<f32> = (0..n).flat_map(|_| logits).collect();
        let params = same_rows(n, t, min_p, top_k, top_p);
        let mut out = vec![-1i32; n];
        cpu::sample_tokens(&mut out, &rows, &params, &a).unwrap();
        let mut counts = [0usize; 16];
        for &tok in &out {
            counts[tok as usize] += 1;
        }
        let k = top_k.max(0) as usize;
        let p = filtered_softmax(&logits, t as f64, min_p as f64, k, top_p as f64);
        let mut chi2 = 0.0;
        let mut cells = 0;
        for i in 0..16 {
            if p[i] == 0.0 {
                assert_eq!(counts[i], 0, "token {i} is outside the allowed set");
                continue;
            }
            let e = p[i] * n as f64;
            assert!(e >= 5.0, "expected count {e} too small for chi-square");
            chi2 += (counts[i] as f64 - e).powi(2) / e;
            cells += 1;
        }
        let df = cells - 1;
        let crit = chi2_critical(df, 1e-6);
        println!(
            "sample_tokens chi-square: T {t}, min_p {min_p}, top_k {top_k}, top_p {top_p}: {cells} allowed tokens, chi2 = {chi2:.2} \
             (df {df}, p-value {:.3}, p = 1e-6 critical value {crit:.2}); counts {counts:?}",
            chi2_sf(chi2, df)
        );
        assert!(chi2 < crit, "chi2 {chi2:.2} >= {crit:.2} (df {df})");
    }
}

#[test]
fn sample_tokens_greedy_ties_nan_and_min_p() {
    let nan = f32::NAN;
    let one = |row: &[f32], t: f32, min_p: f32, seed: u64| {
        let mut out = [-1i32];
        let params = SampleRow {
            temperature: t,
            min_p,
            top_k: 0,
            top_p: 1.0,
            seed,
        };
        cpu::sample_tokens(&mut out, row, &[params], &SampleArgs::new(1, row.len())).unwrap();
        out[0]
    };
    // Greedy: the lowest index of the maximum; T <= 0 and NaN temperature are greedy.
    for t in [0.0, -1.0, nan] {
        assert_eq!(one(&[1.0, 3.0, 3.0, 2.0, 3.0], t, 0.0, 1), 1);
        assert_eq!(one(&[nan, 1.0, nan, 5.0, 5.0], t, 0.5, 1), 3);
        assert_eq!(one(&[nan, nan], t, 0.0, 1), 0, "a row of NaN gives token 0");
        assert_eq!(one(&[f32::NEG_INFINITY; 3], t, 0.0, 1), 0);
    }
    for seed in 0..2000 {
        // NaN and -inf never win while a finite logit is there.
        let tok = one(&[nan, f32::NEG_INFINITY, -30.0, nan, -31.0], 1.0, 0.0, seed);
        assert!(tok == 2 || tok == 4, "seed {seed}: token {tok}");
        // min_p >= 1: only the maximum is allowed.
        assert_eq!(one(&[0.0, 5.0, 4.9, 1.0], 2.0, 1.0, seed), 1);
        assert_eq!(one(&[0.0, 5.0, 4.9, 1.0], 2.0, 3.0, seed), 1);
        // min_p 0.5 at T = 1: p_i >= p_max / 2 means logit >= 5 - ln 2 = 4.307.
        let tok = one(&[0.0, 5.0, 4.9, 4.3, 4.4], 1.0, 0.5, seed);
        assert!(matches!(tok, 1 | 2 | 4), "seed {seed}: token {tok}");
        // The same seed, the same token.
        assert_eq!(
            one(&[0.1, 0.2, 0.3, 0.4], 1.0, 0.0, seed),
            one(&[0.1, 0.2, 0.3, 0.4], 1.0, 0.0, seed)
        );
    }
    // The uniforms lie strictly inside (0, 1) and carry 24 bits.
    for i in 0..100_000 {
        let u = cpu::uniform(12345, i);
        assert!(u > 0.0 && u < 1.0, "u_{i} = {u}");
        assert!(cpu::gumbel(12345, i).is_finite());
    }
}

#[test]
fn fill_tokens_takes_sampled_tokens_and_refuses_bad_sources() {
    let tokens = [10, 11, 12, 13, 14];
    let sampled = [70, 71, 72];
    let mut out = [-7; 5];
    let a = FillTokensArgs::new(5, 3);
    cpu::fill_tokens(&mut out, &tokens, &sampled, &[2, -1, 0, -1, 2], &a).unwrap();
    assert_eq!(out, [72, 11, 70, 13, 72]);
    let e = cpu::fill_tokens(&mut out, &tokens, &sampled, &[0, 3, -1, -1, -1], &a).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::OutOfRange {
                what: "source",
                value: 3,
                limit: 3,
                ..
            }
        ),
        "{e}"
    );
    let e = cpu::fill_tokens(&mut out, &tokens, &sampled, &[-2, 0, 0, 0, 0], &a).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::OutOfRange {
                what: "source",
                value: -2,
                ..
            }
        ),
        "{e}"
    );
    let e = cpu::fill_tokens(&mut out, &tokens, &sampled, &[0; 4], &a).unwrap_err();
    assert!(
        matches!(e, KernelError::BufferTooSmall { name: "from", .. }),
        "{e}"
    );
}

#[test]
fn sample_tokens_validation_errors() {
    // sample_tokens: zero vocab, short buffers, bad stride.
    let logits = vec![0.0f32; 1000];
    let rows = [SampleRow {
        temperature: 1.0,
        min_p: 1.0,
        top_k: 0,
        top_p: 1.0,
        seed: 1,
    }; 4];
    let mut out = [0i32; 4];
    let sample = |out: &mut [i32], a: &SampleArgs| cpu::sample_tokens(out, &logits, &rows, a);
    let e = sample(&mut out, &SampleArgs::new(4, 0)).unwrap_err();
    assert!(e.to_string().contains("vocab must be > 0"), "{e}");
    let e = sample(&mut out, &SampleArgs::new(4, 251)).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BufferTooSmall {
                name: "logits",
                len: 1000,
                need: 1004,
                ..
            }
        ),
        "{e}"
    );
    let mut a = SampleArgs::new(3, 100);
    a.logits_stride = 50;
    let e = sample(&mut out, &a).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BadStride {
                name: "logits",
                stride: 50,
                row_len: 100,
                ..
            }
        ),
        "{e}"
    );
    // Each buffer too short by one row: the host API's two slices, and the device API's five
    // parameter arrays (validated by the same code before any launch).
    for (name, out_len, rows_len) in [("out", 3, 4), ("rows", 4, 3)] {
        let e = cpu::sample_tokens(
            &mut out[..out_len],
            &logits,
            &rows[..rows_len],
            &SampleArgs::new(4, 10),
        )
        .unwrap_err();
        assert!(
            matches!(e, KernelError::BufferTooSmall { name: n, len: 3, need: 4, .. } if n == name),
            "{name}: {e}"
        );
    }
    let names = ["temperature", "min_p", "top_k", "top_p", "seeds"];
    for short in names {
        let lens: Vec<(&'static str, usize)> = names
            .iter()
            .map(|&n| (n, if n == short { 3 } else { 4 }))
            .collect();
        let e = SampleArgs::new(4, 10)
            .validate(4, logits.len(), &lens)
            .unwrap_err();
        assert!(
            matches!(e, KernelError::BufferTooSmall { name: n, len: 3, need: 4, .. } if n == short),
            "{short}: {e}"
        );
    }
    let e = SampleArgs::new(1, MAX_VOCAB + 1)
        .validate(1, usize::MAX, &[("rows", 1)])
        .unwrap_err();
    assert!(
        matches!(e, KernelError::Unsupported { what: "vocab", .. }),
        "{e}"
    );
    // No rows: nothing to do, nothing to check but the shape.
    cpu::sample_tokens(&mut [], &[], &[], &SampleArgs::new(0, 10)).unwrap();
}

/// Greedy ties, NaN and -inf handled as the CPU reference does, on hand-made rows.
fn sample_tokens_ties_and_nan(d: &impl Device) {
    let nan = f32::NAN;
    let ninf = f32::NEG_INFINITY;
    let rows: &[([f32; 8], f32, f32, i32)] = &[
        ([1.0, 3.0, 3.0, 2.0, 0.0, 3.0, -1.0, 0.5], 0.0, 0.0, 1),
        ([nan, 1.0, nan, 5.0, 5.0, nan, 4.0, 2.0], 0.0, 0.0, 3),
        ([nan; 8], 0.0, 0.0, 0),
        ([nan; 8], 1.0, 0.0, 0),
        (
            [ninf, ninf, ninf, ninf, ninf, ninf, ninf, ninf],
            0.0,
            0.0,
            0,
        ),
        ([ninf, nan, ninf, 2.0, ninf, nan, ninf, ninf], 0.8, 0.1, 3),
        ([0.0, 0.0, 9.0, 0.0, 0.0, 0.0, 0.0, 0.0], 1.0, 1.0, 2),
        ([0.0, 0.0, 9.0, 0.0, 0.0, 0.0, 0.0, 0.0], 1.0, 5.0, 2),
        ([0.0, 0.0, 9.0, 0.0, 9.0, 0.0, 0.0, 0.0], -1.0, 0.0, 2),
    ];
    let n = rows.len();
    let logits: Vec<f32> = rows.iter().flat_map(|x| x.0).collect();
    let rows_p: Vec<SampleRow> = rows
        .iter()
        .zip(0..n as u64)
        .map(|(x, i)| SampleRow {
            temperature: x.1,
            min_p: x.2,
            top_k: 0,
            top_p: 1.0,
            seed: i * 7919 + 1,
        })
        .collect();
    let a = SampleArgs::new(n, 8);
    let mut cpu_out = vec![-7; n];
    cpu::sample_tokens(&mut cpu_out, &logits, &rows_p, &a).unwrap();
    let mut got = vec![-7i32; n];
    d.sample_tokens(&mut got, &logits, &rows_p, &a).unwrap();
    let want: Vec<i32> = rows.iter().map(|x| x.3).collect();
    assert_eq!(cpu_out, want, "CPU reference");
    assert_eq!(got, want, "device");
}

/// Top-k / top-p thresholds inside runs of equal logits (the tie-cut passes of the kernel's radix
/// selection; the reference's sort order): the device draws exactly the CPU reference's tokens,
/// and over 400 seeds exactly the allowed set turns up (the best tokens in the order (score
/// descending, index ascending)).
fn sample_tokens_top_k_top_p_cut_ties_by_index(d: &impl Device) {
    for (row, k, p, allowed) in top_k_top_p_cases() {
        let n = 400;
        let logits: Vec<f32> = (0..n).flat_map(|_| row.iter().copied()).collect();
        let rows = same_rows(n, 1.0, 0.0, k, p);
        let a = SampleArgs::new(n, row.len());
        let mut want = vec![-7i32; n];
        cpu::sample_tokens(&mut want, &logits, &rows, &a).unwrap();
        let mut got = vec![-7i32; n];
        d.sample_tokens(&mut got, &logits, &rows, &a).unwrap();
        assert_eq!(got, want, "row {row:?}, top_k {k}, top_p {p}");
        let seen: std::collections::BTreeSet<i32> = got.iter().copied().collect();
        let want: std::collections::BTreeSet<i32> = allowed.iter().copied().collect();
        assert_eq!(seen, want, "row {row:?}, top_k {k}, top_p {p}");
    }
}

/// Zero vocab, short logits, a short stride, a short output: typed errors naming the value,
/// nothing written.
fn sample_tokens_rejects_bad_input(d: &impl Device) {
    let logits = vec![1.0f32; 1000];
    let rows = [SampleRow {
        temperature: 1.0,
        min_p: 1.0,
        top_k: 0,
        top_p: 1.0,
        seed: 1,
    }; 4];
    let mut tok = [-7i32; 4];
    let mut sample = |a: &SampleArgs| d.sample_tokens(&mut tok, &logits, &rows, a);
    let e = sample(&SampleArgs::new(4, 0)).unwrap_err();
    assert!(e.to_string().contains("vocab"), "{e}");
    let e = sample(&SampleArgs::new(4, 251)).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BufferTooSmall {
                name: "logits",
                len: 1000,
                need: 1004,
                ..
            }
        ),
        "{e}"
    );
    let mut a = SampleArgs::new(2, 100);
    a.logits_stride = 99;
    let e = sample(&a).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BadStride {
                name: "logits",
                stride: 99,
                row_len: 100,
                ..
            }
        ),
        "{e}"
    );
    let e = sample(&SampleArgs::new(5, 100)).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BufferTooSmall {
                name: "out",
                need: 5,
                ..
            }
        ),
        "{e}"
    );
    assert!(tok.iter().all(|&t| t == -7));
}

/// Lengths are checked on the host before anything is launched.
fn fill_tokens_rejects_short_out(d: &impl Device) {
    let mut out = [0i32; 4];
    let e = d
        .fill_tokens(
            &mut out,
            &[0; 5],
            (&[1], &[0; 5]),
            &FillTokensArgs::new(5, 1),
        )
        .unwrap_err();
    assert!(
        matches!(e, KernelError::BufferTooSmall { name: "out", .. }),
        "{e}"
    );
}

test_device!(
    sample_tokens_ties_and_nan,
    sample_tokens_top_k_top_p_cut_ties_by_index,
    sample_tokens_rejects_bad_input,
    fill_tokens_rejects_short_out,
);

#[cfg(feature = "cuda")]
mod gpu {
    use super::*;
    use common::device::SampleColumns;
    use rand::{Rng, rngs::StdRng};
    use std::sync::Arc;
    use vllm_kernels::cuda::{self, CudaStream};

    const TEMPERATURES: &[f32] = &[0.0, 0.6, 1.0, 1.5];
    const MIN_PS: &[f32] = &[0.0, 0.05, 0.3];
    const TOP_KS: &[i32] = &[0, 0, 1, 5, 50, 1000];
    const TOP_PS: &[f32] = &[1.0, 1.0, 0.5, 0.9, 0.99];

    /// Random per-row parameters from the lists above (top-k / top-p only when `filters`), fresh
    /// seeds; drawn column by column.
    fn random_rows(n: usize, filters: bool, r: &mut StdRng) -> Vec<SampleRow> {
        let pick = |r: &mut StdRng, l: &[f32]| l[r.random_range(0..l.len())];
        let t: Vec<f32> = (0..n).map(|_| pick(r, TEMPERATURES)).collect();
        let m: Vec<f32> = (0..n).map(|_| pick(r, MIN_PS)).collect();
        let k: Vec<i32> = (0..n)
            .map(|_| {
                if filters {
                    TOP_KS[r.random_range(0..TOP_KS.len())]
                } else {
                    0
                }
            })
            .collect();
        let p: Vec<f32> = (0..n)
            .map(|_| if filters { pick(r, TOP_PS) } else { 1.0 })
            .collect();
        let seeds: Vec<u64> = (0..n).map(|_| r.random()).collect();
        (0..n)
            .map(|i| SampleRow {
                temperature: t[i],
                min_p: m[i],
                top_k: k[i],
                top_p: p[i],
                seed: seeds[i],
            })
            .collect()
    }

    /// The score of token `i` of a row as sample_tokens ranks it.
    fn score(row: &[f32], t: f32, seed: u64, i: usize) -> f32 {
        if t > 0.0 {
            cpu::sample_score(row[i], t, seed, i)
        } else {
            row[i]
        }
    }

    /// Samples on both sides; returns (rows, rows whose tokens differ). Rows that differ must be
    /// near-ties: both tokens' CPU scores within 1e-5 relative.
    fn sample_and_compare(
        s: &Arc<CudaStream>,
        logits: &[f32],
        rows: &[SampleRow],
        a: &SampleArgs,
        what: &str,
    ) -> usize {
        let n = a.num_rows;
        let mut want = vec![-7i32; n];
        cpu::sample_tokens(&mut want, logits, rows, a).unwrap();
        let mut out = up(s, &vec![-7i32; n]);
        let cols = SampleColumns::up(s, rows);
        cuda::sample_tokens(s, &mut out, &up(s, logits), &cols.dev(), a).unwrap();
        let got = down(s, &out);
        let mut differ = 0;
        for row in 0..n {
            let (g, w) = (got[row], want[row]);
            assert!(
                (0..a.vocab as i32).contains(&g),
                "{what}: row {row}: token {g} out of range"
            );
            if g == w {
                continue;
            }
            differ += 1;
            let x = &logits[row * a.logits_stride..][..a.vocab];
            let (sg, sw) = (
                score(x, rows[row].temperature, rows[row].seed, g as usize),
                score(x, rows[row].temperature, rows[row].seed, w as usize),
            );
            let rel = (sg - sw).abs() / sg.abs().max(sw.abs()).max(f32::MIN_POSITIVE);
            assert!(
                rel <= 1e-5,
                "{what}: row {row} (T {}, min_p {}, top_k {}, top_p {}): GPU token {g} (score {sg}) \
                 vs CPU token {w} (score {sw}): not a near-tie",
                rows[row].temperature,
                rows[row].min_p,
                rows[row].top_k,
                rows[row].top_p
            );
            eprintln!("{what}: row {row}: near-tie {g} vs {w} (rel {rel:.2e})");
        }
        differ
    }

    /// Random token ids, about half of them taken from random draws of a "previous step", plus
    /// sources out of range that the kernel must treat as "keep the host's id".
    #[test]
    fn fill_tokens_matches_cpu() {
        let Some(s) = stream("fill_tokens_matches_cpu") else {
            return;
        };
        let mut r = rng("fill_tokens_matches_cpu");
        for &(n, num_sampled) in &[
            (1usize, 1usize),
            (256, 256),
            (300, 40),
            (8192, 600),
            (513, 0),
        ] {
            let tokens: Vec<i32> = (0..n).map(|_| r.random_range(0..150_000)).collect();
            let sampled: Vec<i32> = (0..num_sampled.max(1))
                .map(|_| r.random_range(0..150_000))
                .collect();
            let from: Vec<i32> = (0..n)
                .map(|_| match (num_sampled, r.random_bool(0.5)) {
                    (0, _) | (_, false) => -1,
                    (m, true) => r.random_range(0..m as i32),
                })
                .collect();
            let a = FillTokensArgs::new(n, num_sampled);
            let mut want = vec![-7; n];
            cpu::fill_tokens(&mut want, &tokens, &sampled, &from, &a).unwrap();
            let mut out = up(&s, &vec![-7i32; n]);
            let (t, sm, f) = (up(&s, &tokens), up(&s, &sampled), up(&s, &from));
            cuda::fill_tokens(&s, &mut out, &t, &sm, &f, &a).unwrap();
            assert_eq!(
                down(&s, &out),
                want,
                "fill_tokens n {n} sampled {num_sampled}"
            );
            // Sources out of range keep the host's id on the device.
            let bad: Vec<i32> = (0..n)
                .map(|i| [num_sampled as i32, -5, i32::MAX, -1][i % 4])
                .collect();
            let mut out = up(&s, &vec![-7i32; n]);
            cuda::fill_tokens(&s, &mut out, &t, &sm, &up(&s, &bad), &a).unwrap();
            assert_eq!(
                down(&s, &out),
                tokens,
                "fill_tokens keeps host ids for bad sources"
            );
        }
    }

    #[test]
    fn sample_tokens_matches_cpu() {
        let Some(s) = stream("sample_tokens_matches_cpu") else {
            return;
        };
        let mut r = rng("sample_tokens_matches_cpu");
        let (mut rows_total, mut differ_total) = (0, 0);
        // (vocab, extra stride): aligned rows (16-byte loads) and an odd, strided vocab (scalar).
        for &(vocab, pad) in &[(1000usize, 0usize), (32000, 0), (151936, 0), (1001, 2)] {
            for &n in &[1usize, 64, 300] {
                let mut a = SampleArgs::new(n, vocab);
                a.logits_stride += pad;
                // Logits of a real model's spread: most tokens far below a few likely ones.
                let mut logits: Vec<f32> = random(n * a.logits_stride, -12.0, 4.0, &mut r);
                for row in 0..n {
                    for _ in 0..8 {
                        let i = r.random_range(0..vocab);
                        logits[row * a.logits_stride + i] = r.random_range(4.0..14.0);
                    }
                }
                // Flat logits: every token competes, the Gumbel noise decides. Rounded to 1/64 so
                // many logits tie and top-k / top-p thresholds fall inside runs of equal scores.
                let flat: Vec<f32> = random::<f32>(n * a.logits_stride, -1.0, 1.0, &mut r)
                    .into_iter()
                    .map(|x| (x * 64.0).round() / 64.0)
                    .collect();
                for filters in [false, true] {
                    let rows = random_rows(n, filters, &mut r);
                    let what = format!("sample_tokens {n}x{vocab}+{pad} filters {filters}");
                    differ_total += sample_and_compare(&s, &logits, &rows, &a, &what);
                    let what = format!("sample_tokens flat {n}x{vocab}+{pad} filters {filters}");
                    differ_total += sample_and_compare(&s, &flat, &rows, &a, &what);
                    rows_total += 2 * n;
                }
            }
        }
        eprintln!("sample_tokens: {differ_total} of {rows_total} rows differ (near-ties)");
        assert!(
            differ_total * 1000 < rows_total,
            "{differ_total} of {rows_total} rows differ: more than 0.1%"
        );
    }

    /// sample_tokens enqueues nothing but its kernel: it captures into a CUDA graph, and replaying
    /// the graph after new logits are copied into the same buffer samples the new logits.
    #[test]
    fn sample_tokens_captures_in_a_graph() {
        let Some(s0) = stream("sample_tokens_captures_in_a_graph") else {
            return;
        };
        let ctx = s0.context().clone();
        // SAFETY: every buffer below is used on the one stream `s` only, in stream order.
        unsafe { ctx.disable_event_tracking() };
        let s = ctx.new_stream().unwrap();
        let mut r = rng("sample_tokens_captures_in_a_graph");
        let (n, vocab) = (8, 32000);
        let a = SampleArgs::new(n, vocab);
        let first: Vec<f32> = random(n * vocab, -5.0, 5.0, &mut r);
        let second: Vec<f32> = random(n * vocab, -5.0, 5.0, &mut r);
        let rows = random_rows(n, true, &mut r);
        let mut logits = up(&s, &first);
        let cols = SampleColumns::up(&s, &rows);
        let mut out = up(&s, &vec![-7i32; n]);
        // One launch outside the capture first, as a runner warms up (the launcher's one-time
        // device query then happens here, not inside the capture).
        cuda::sample_tokens(&s, &mut out, &logits, &cols.dev(), &a).unwrap();
        s.synchronize().unwrap();
        s.memcpy_htod(&[-7i32; 8], &mut out).unwrap();
        s.begin_capture(
            cudarc::driver::sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
        )
        .unwrap();
        cuda::sample_tokens(&s, &mut out, &logits, &cols.dev(), &a).unwrap();
        let graph = s
            .end_capture(cudarc::driver::sys::CUgraphInstantiate_flags(0))
            .unwrap()
            .expect("a captured graph");
        for host in [&first, &second] {
            s.memcpy_htod(host, &mut logits).unwrap();
            graph.launch().unwrap();
            let got = down(&s, &out);
            let mut want = vec![-7; n];
            cpu::sample_tokens(&mut want, host, &rows, &a).unwrap();
            assert_eq!(got, want, "graph replay");
        }
    }
}

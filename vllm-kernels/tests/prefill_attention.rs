//! Prefill attention over the paged KV cache (varlen, causal, GQA, sliding window). The CPU
//! reference row by row against decode attention, and its table checks (`cpu` tests);
//! unsupported shapes and FP8 misuse on both devices (`test_device!`); the GPU against the CPU
//! reference: every head size, both block sizes, GQA ratios 1, 4 and 8, sequences with and
//! without a cached prefix (prefix lengths at block boundaries +- 1, query runs across the 64-row
//! tiles), shuffled non-contiguous block tables, a sliding window and a long prefix; outputs
//! poisoned (`gpu` tests, SKIP without a GPU). Every GPU case runs with both precisions of the
//! softmax weights P: split (hi + lo) against the dtype's element-wise tolerance, and the
//! default single rounding against a bound scaled to the largest |V| the row sees (see
//! `assert_close_v`). FP8 E4M3 caches: the same kernel over e4m3 bytes against the CPU
//! reference over the same bytes and against the 16-bit cache (`run_fp8_case`).

#[macro_use]
mod common;

use common::device::Device;
use common::*;
use half::bf16;
use vllm_kernels::args::*;
use vllm_kernels::{Fp8E4m3, KernelError, cpu};

/// Prefill arguments: `num_seqs` sequences, `num_tokens` query rows in runs of at most
/// `max_query_len`, geometry (heads, kv heads, head size, block size, max blocks per sequence).
fn prefill_args(
    (num_seqs, num_tokens): (usize, usize),
    (heads, kv, hs, bs, max_blocks): (usize, usize, usize, usize, usize),
    max_query_len: usize,
) -> PrefillAttentionArgs {
    PrefillAttentionArgs::new(
        AttentionGeometry::new(heads, kv, hs, bs, max_blocks),
        num_seqs,
        num_tokens,
        max_query_len,
    )
}

#[test]
fn prefill_reference_row_by_row_equals_decode_and_checks_its_tables() {
    // Prefill row i of a sequence with prefix p is decode attention at length p + i + 1.
    let mut r = rng("prefill_reference_row_by_row_equals_decode");
    let (hs, bs, heads, kv) = (64, 16, 8, 2);
    let (prefix, q_len) = (21usize, 12usize);
    let len = prefix + q_len;
    let blocks = len.div_ceil(bs);
    let numel = (blocks + 1) * kv * bs * hs;
    let kc: Vec<f32> = random(numel, -1.0, 1.0, &mut r);
    let vc: Vec<f32> = random(numel, -1.0, 1.0, &mut r);
    let table: Vec<i32> = (0..blocks as i32).rev().collect();
    let q: Vec<f32> = random(q_len * heads * hs, -1.0, 1.0, &mut r);
    for window in [None, Some(5)] {
        let mut a = prefill_args((1, q_len), (heads, kv, hs, bs, blocks), q_len);
        a.geometry.sliding_window = window;
        let mut out = vec![f32::NAN; q.len()];
        let (cu, lens) = ([0, q_len as i32], [len as i32]);
        let io = prefill_io(&mut out, &q, (&kc, &vc), (&table, &cu, &lens));
        cpu::prefill_attention(io, &a).unwrap();
        for i in 0..q_len {
            let row = &q[i * heads * hs..][..heads * hs];
            let g = AttentionGeometry::new(heads, kv, hs, bs, blocks);
            let mut d = PagedAttentionArgs::new(g, 1, prefix + i + 1);
            d.geometry.sliding_window = window;
            let mut want = vec![f32::NAN; heads * hs];
            let l = [(prefix + i + 1) as i32];
            let io = decode_io(&mut want, row, (&kc, &vc), (&table, &l), None);
            cpu::paged_attention(io, &d).unwrap();
            assert_eq!(
                &out[i * heads * hs..][..heads * hs],
                &want[..],
                "row {i} window {window:?}"
            );
        }
        assert_eq!(a.visible_pairs(&[0, q_len as i32], &[len as i32]), {
            let w = window.unwrap_or(usize::MAX);
            (0..q_len)
                .map(|i| (prefix + i + 1).min(w) as u64)
                .sum::<u64>()
        });
    }
    // Offsets not from 0 to num_tokens, a query run longer than its sequence: typed errors.
    let a = prefill_args((1, q_len), (heads, kv, hs, bs, blocks), q_len);
    let mut out = vec![0f32; q.len()];
    let lens = [len as i32];
    let io = prefill_io(&mut out, &q, (&kc, &vc), (&table, &[1, 12], &lens));
    let e = cpu::prefill_attention(io, &a).unwrap_err();
    assert!(e.to_string().contains("cu_query_lens"), "{e}");
    let io = prefill_io(&mut out, &q, (&kc, &vc), (&table, &[0, 12], &[5]));
    let e = cpu::prefill_attention(io, &a).unwrap_err();
    assert!(e.to_string().contains("seq_len 5"), "{e}");
}

/// The CPU runner's attention: the prefill reference's arithmetic bit for bit where the GPU's
/// sets allow it, and any head size / block size (the tiny test models' 16 and 8) where the GPU
/// reference refuses them; bad layouts are still typed errors.
#[test]
fn causal_attention_is_the_prefill_reference_for_any_head_and_block_size() {
    let mut r = rng("causal_attention_is_the_prefill_reference");
    for (hs, bs, gpu_sets) in [(64, 16, true), (16, 8, false)] {
        let (heads, kv, prefix, q_len) = (4, 2, 9usize, 7usize);
        let len = prefix + q_len;
        let blocks = len.div_ceil(bs);
        let numel = (blocks + 1) * kv * bs * hs;
        let kc: Vec<f32> = random(numel, -1.0, 1.0, &mut r);
        let vc: Vec<f32> = random(numel, -1.0, 1.0, &mut r);
        let table: Vec<i32> = (1..=blocks as i32).rev().collect();
        let q: Vec<f32> = random(q_len * heads * hs, -1.0, 1.0, &mut r);
        let (cu, lens) = ([0, q_len as i32], [len as i32]);
        let a = prefill_args((1, q_len), (heads, kv, hs, bs, blocks), q_len);
        let mut got = vec![f32::NAN; q.len()];
        let io = prefill_io(&mut got, &q, (&kc, &vc), (&table, &cu, &lens));
        cpu::causal_attention(io, &a).unwrap();
        assert!(got.iter().all(|x| x.is_finite()), "head size {hs}");
        let mut want = vec![f32::NAN; q.len()];
        let io = prefill_io(&mut want, &q, (&kc, &vc), (&table, &cu, &lens));
        match cpu::prefill_attention(io, &a) {
            Ok(()) => {
                assert!(gpu_sets);
                assert_eq!(got, want, "head size {hs}");
            }
            Err(e) => {
                assert!(!gpu_sets, "{e}");
                assert!(matches!(e, KernelError::Unsupported { .. }), "{e}");
            }
        }
        let bad = prefill_args((1, q_len), (heads, 3, hs, bs, blocks), q_len);
        let io = prefill_io(&mut got, &q, (&kc, &vc), (&table, &cu, &lens));
        let e = cpu::causal_attention(io, &bad).unwrap_err();
        assert!(e.to_string().contains("not a multiple"), "{e}");
    }
}

/// Unsupported head size and block size: typed errors naming the value, nothing written.
fn prefill_attention_rejects_unsupported_shapes(d: &impl Device) {
    let q = vec![bf16::ONE; 4 * 8 * 72];
    let cache = vec![bf16::ONE; 2 * 16 * 72];
    let (tables, cu, lens) = ([0i32, 1], [0i32, 4], [20i32]);
    let mut out = vec![bf16::NAN; 4 * 8 * 72];
    let mut run = |a: &PrefillAttentionArgs| {
        d.prefill_attention(
            prefill_io(&mut out, &q, (&cache, &cache), (&tables, &cu, &lens)),
            a,
        )
    };
    let e = run(&prefill_args((1, 4), (8, 1, 72, 16, 2), 4)).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::Unsupported {
                what: "head_size",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("64, 80, 96, 112, 128, 256"), "{e}");
    let e = run(&prefill_args((1, 4), (8, 1, 64, 8, 2), 4)).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::Unsupported {
                what: "block_size",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("16, 32"), "{e}");
    assert!(out.iter().all(|v| v.is_nan()));
}

/// FP8 caches: an unsupported head size, bytes with arguments that name a 16-bit cache and the
/// reverse, a zero scale: typed errors, nothing written.
fn prefill_attention_fp8_rejects_unsupported_head_size(d: &impl Device) {
    let q = vec![bf16::ONE; 4 * 8 * 64];
    let cache = vec![Fp8E4m3(0x38); 2 * 16 * 64];
    let cache16 = vec![bf16::ONE; 2 * 16 * 64];
    let (tables, cu, lens) = ([0i32, 1], [0i32, 4], [20i32]);
    let mut out = vec![bf16::NAN; 4 * 8 * 64];
    let a = prefill_args((1, 4), (8, 1, 64, 16, 2), 4).with_fp8_cache(0.5, 0.5);
    let run8 = |out: &mut [bf16], a: &PrefillAttentionArgs| {
        d.prefill_attention(
            prefill_io(out, &q, (&cache, &cache), (&tables, &cu, &lens)),
            a,
        )
    };
    let e = run8(&mut out, &a).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::Unsupported {
                what: "head_size (fp8_e4m3 cache)",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("128, 256"), "{e}");
    // FP8 bytes with arguments that name a 16-bit cache, and the reverse; a zero scale.
    let a = prefill_args((1, 4), (8, 1, 64, 16, 2), 4);
    let e = run8(&mut out, &a).unwrap_err();
    assert!(e.to_string().contains("fp8_e4m3"), "{e}");
    let a = a.with_fp8_cache(1.0, 1.0);
    let io16 = prefill_io(&mut out, &q, (&cache16, &cache16), (&tables, &cu, &lens));
    let e = d.prefill_attention(io16, &a).unwrap_err();
    assert!(e.to_string().contains("fp8_e4m3"), "{e}");
    let q128 = vec![bf16::ONE; 4 * 8 * 128];
    let c128 = vec![Fp8E4m3(0x38); 2 * 16 * 128];
    let mut o128 = vec![bf16::NAN; 4 * 8 * 128];
    let a = prefill_args((1, 4), (8, 1, 128, 16, 2), 4).with_fp8_cache(0.0, 1.0);
    let io = prefill_io(&mut o128, &q128, (&c128, &c128), (&tables, &cu, &lens));
    let e = d.prefill_attention(io, &a).unwrap_err();
    assert!(e.to_string().contains("k_scale"), "{e}");
    assert!(out.iter().chain(&o128).all(|v| v.is_nan()));
}

test_device!(
    prefill_attention_rejects_unsupported_shapes,
    prefill_attention_fp8_rejects_unsupported_head_size,
);

#[cfg(feature = "cuda")]
mod gpu {
    use super::*;
    use half::f16;
    use rand::rngs::StdRng;
    use std::sync::Arc;
    use vllm_kernels::cuda::{self, CudaStream, GpuFloat};
    use vllm_kernels::{DType, Float, KvCacheElem};

    struct Case {
        hs: usize,
        bs: usize,
        heads: usize,
        kv_heads: usize,
        /// (cached prefix, new query tokens) per sequence.
        seqs: Vec<(usize, usize)>,
        window: Option<usize>,
    }

    fn run_case<T: GpuFloat>(s: &Arc<CudaStream>, r: &mut StdRng, c: &Case) {
        let lens: Vec<i32> = c.seqs.iter().map(|&(p, q)| (p + q) as i32).collect();
        let mut cu = vec![0i32];
        for &(_, q) in &c.seqs {
            cu.push(cu.last().unwrap() + q as i32);
        }
        let tokens = *cu.last().unwrap() as usize;
        let max_q = c.seqs.iter().map(|x| x.1).max().unwrap();
        let (tables, max_blocks, num_blocks) = shuffled_tables(&lens, c.bs, 3, r);
        let numel = num_blocks * c.kv_heads * c.bs * c.hs;
        let kc: Vec<T> = random(numel, -1.0, 1.0, r);
        let vc: Vec<T> = random(numel, -1.0, 1.0, r);
        let q: Vec<T> = random(tokens * c.heads * c.hs, -1.0, 1.0, r);
        let n = lens.len();
        let mut a = prefill_args(
            (n, tokens),
            (c.heads, c.kv_heads, c.hs, c.bs, max_blocks),
            max_q,
        );
        a.geometry.sliding_window = c.window;
        let mut want = vec![T::nan(); tokens * c.heads * c.hs];
        let io = prefill_io(&mut want, &q, (&kc, &vc), (&tables, &cu, &lens));
        cpu::prefill_attention(io, &a).unwrap();
        let (dq, dk, dv) = (
            s.clone_htod(&q).unwrap(),
            s.clone_htod(&kc).unwrap(),
            s.clone_htod(&vc).unwrap(),
        );
        let (dt, dcu, dl) = (
            s.clone_htod(&tables).unwrap(),
            s.clone_htod(&cu).unwrap(),
            s.clone_htod(&lens).unwrap(),
        );
        // The largest |v| among the keys each (row, kv head) sees.
        let mut vmax = vec![0f32; tokens * c.kv_heads];
        for (si, &(prefix, q_len)) in c.seqs.iter().enumerate() {
            let table = &tables[si * max_blocks..];
            for kh in 0..c.kv_heads {
                let tok_max: Vec<f32> = (0..prefix + q_len)
                    .map(|t| {
                        let blk = table[t / c.bs] as usize;
                        let at = ((blk * c.kv_heads + kh) * c.bs + t % c.bs) * c.hs;
                        vc[at..at + c.hs]
                            .iter()
                            .fold(0f32, |m, v| m.max(v.to_f32().abs()))
                    })
                    .collect();
                for i in 0..q_len {
                    let pos = prefix + i;
                    let start = c.window.map_or(0, |w| (pos + 1).saturating_sub(w));
                    let m = tok_max[start..=pos].iter().fold(0f32, |m, &v| m.max(v));
                    vmax[(cu[si] as usize + i) * c.kv_heads + kh] = m;
                }
            }
        }
        for split_p in [false, true] {
            a.split_p = split_p;
            let mut out = s.clone_htod(&vec![T::nan(); want.len()]).unwrap();
            let io = gpu_prefill_io(&mut out, &dq, (&dk, &dv), (&dt, &dcu, &dl));
            cuda::prefill_attention(s, io, &a).unwrap();
            let got = s.clone_dtoh(&out).unwrap();
            let what = format!(
                "prefill {} split_p={split_p} hs={} bs={} heads={}/{} seqs={:?} window={:?}",
                T::DTYPE,
                c.hs,
                c.bs,
                c.heads,
                c.kv_heads,
                c.seqs,
                c.window
            );
            if split_p {
                assert_close(&what, &got, &want, T::DTYPE.tolerance());
            } else {
                let group = c.heads / c.kv_heads;
                let row_vmax = |i: usize| {
                    let (row, h) = (i / (c.heads * c.hs), i / c.hs % c.heads);
                    vmax[row * c.kv_heads + h / group]
                };
                assert_close_v(&what, &got, &want, row_vmax);
            }
        }
    }

    /// The check of the single-rounding P. Rounding the weights p_j (sum l) to the dtype changes
    /// the output by |sum_j p_j d_j v_j| / l <= u max|v_j| (|d_j| <= u, the unit roundoff: 2^-8 for
    /// bf16, 2^-11 for f16), whatever the output's own size: a row whose output cancels to near
    /// zero can be off by that much relative to |V| but not to itself, which is how
    /// FlashAttention-style kernels are judged. Element-wise: |got - want| <= tol |want| + 2 u
    /// max|v| over the keys the row sees (tol the dtype's tolerance, which covers the output's own
    /// rounding; 2x the bound for the fp32 accumulation and ex2.approx); norm-wise relative error
    /// <= tol as for every kernel.
    fn assert_close_v<T: Float>(
        what: &str,
        got: &[T],
        want: &[T],
        row_vmax: impl Fn(usize) -> f32,
    ) {
        let tol = T::DTYPE.tolerance();
        let u = match T::DTYPE {
            DType::BF16 => 2f32.powi(-8),
            _ => 2f32.powi(-11),
        };
        let (mut num, mut den, mut worst) = (0f64, 0f64, 0f32);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let (g, w) = (g.to_f32(), w.to_f32());
            assert!(g.is_finite(), "{what}: element {i} is {g} (want {w})");
            let d = (g - w).abs();
            let vm = row_vmax(i);
            let bound = tol * w.abs() + 2.0 * u * vm;
            assert!(
                d <= bound,
                "{what}: element {i}: got {g}, want {w}, |diff| {d} > {tol} * {} + 2 * {u} * {vm}",
                w.abs()
            );
            worst = worst.max(d / (u * vm).max(f32::MIN_POSITIVE));
            num += (d as f64).powi(2);
            den += (w as f64).powi(2);
        }
        let rel = (num / den.max(f64::MIN_POSITIVE)).sqrt();
        assert!(
            rel <= tol as f64,
            "{what}: norm-wise relative error {rel:.3e} > {tol}"
        );
        println!("{what}: single P: worst |diff| = {worst:.3} u max|v|, norm-wise {rel:.2e}");
    }

    #[test]
    fn prefill_attention_matches_cpu_all_shapes() {
        let Some(s) = stream("prefill_attention_matches_cpu_all_shapes") else {
            return;
        };
        let mut r = rng("prefill_attention_matches_cpu_all_shapes");
        for &hs in ATTENTION_HEAD_SIZES {
            for &bs in ATTENTION_BLOCK_SIZES {
                for ratio in [1usize, 4, 8] {
                    let case = Case {
                        hs,
                        bs,
                        heads: 2 * ratio,
                        kv_heads: 2,
                        seqs: vec![
                            (0, 1),
                            (0, 65),
                            (bs - 1, 17),
                            (bs + 1, 64),
                            (3 * bs, 130),
                            (5, 1),
                        ],
                        window: None,
                    };
                    run_case::<bf16>(&s, &mut r, &case);
                }
            }
        }
        for hs in [64, 128, 256] {
            let case = Case {
                hs,
                bs: 16,
                heads: 8,
                kv_heads: 2,
                seqs: vec![(0, 100), (31, 33), (200, 7)],
                window: None,
            };
            run_case::<f16>(&s, &mut r, &case);
        }
    }

    #[test]
    fn prefill_attention_long_prefix_and_sliding_window() {
        let Some(s) = stream("prefill_attention_long_prefix_and_sliding_window") else {
            return;
        };
        let mut r = rng("prefill_attention_long_prefix_and_sliding_window");
        for (hs, bs, heads, kv, window) in [
            (128, 16, 32, 8, None),
            (128, 16, 8, 2, Some(100)),
            (64, 32, 4, 1, Some(33)),
            (256, 16, 4, 4, Some(300)),
            (96, 32, 14, 2, Some(64)),
        ] {
            let case = Case {
                hs,
                bs,
                heads,
                kv_heads: kv,
                seqs: vec![(2000, 300), (0, 257), (17, 1)],
                window,
            };
            run_case::<bf16>(&s, &mut r, &case);
        }
        // A context past 8k tokens (prefix 8300), a few new tokens.
        let case = Case {
            hs: 128,
            bs: 16,
            heads: 8,
            kv_heads: 2,
            seqs: vec![(8300, 40), (8191, 2)],
            window: None,
        };
        run_case::<bf16>(&s, &mut r, &case);
    }

    /// Prefill over a dtype the kernel does not take (f32): a typed error before any launch.
    #[test]
    fn prefill_attention_rejects_f32() {
        let Some(s) = stream("prefill_attention_rejects_f32") else {
            return;
        };
        let tables = s.clone_htod(&[0i32, 1]).unwrap();
        let cu = s.clone_htod(&[0i32, 4]).unwrap();
        let lens = s.clone_htod(&[20i32]).unwrap();
        let qf = s.clone_htod(&vec![1.0f32; 4 * 8 * 64]).unwrap();
        let cf = s.clone_htod(&vec![1.0f32; 2 * 16 * 64]).unwrap();
        let mut of = s.clone_htod(&vec![f32::NAN; 4 * 8 * 64]).unwrap();
        let a = prefill_args((1, 4), (8, 1, 64, 16, 2), 4);
        let io = gpu_prefill_io(&mut of, &qf, (&cf, &cf), (&tables, &cu, &lens));
        let e = cuda::prefill_attention(&s, io, &a).unwrap_err();
        assert!(
            matches!(e, KernelError::Unsupported { what: "dtype", .. }),
            "{e}"
        );
        assert!(s.clone_dtoh(&of).unwrap().iter().all(|v| v.is_nan()));
    }

    /// One FP8 case: geometry, (cached prefix, new query tokens) per sequence, window.
    struct Fp8Case<'a> {
        hs: usize,
        bs: usize,
        heads: usize,
        kv_heads: usize,
        seqs: &'a [(usize, usize)],
        window: Option<usize>,
    }

    /// Prefill over an FP8 E4M3 cache, as the decode FP8 test does it: the K/V rows of every
    /// context token written by reshape_and_cache into a 16-bit and an FP8 cache on the GPU
    /// (poisoned with NaN first; the FP8 bytes equal the CPU's bit for bit), then prefill over the
    /// FP8 cache against the CPU reference over the same bytes (split P: the dtype's element-wise
    /// tolerance; single P: the bound of `assert_close_v` with the largest dequantized |v| of the
    /// cache, which is >= the row's), and against the kernel over the 16-bit cache. Tolerance of
    /// that last comparison: the quantization changes the exact answer by q = |ref_fp8 - ref_16| /
    /// |ref_16| (both CPU references on these inputs) and each kernel's norm-wise error against its
    /// reference is <= tol (asserted), so |gpu_fp8 - gpu_16| / |gpu_16| <= q + 2 tol up to
    /// second-order terms; q itself is bounded by e4m3's 3 mantissa bits (<= 2^-4 per element),
    /// checked.
    fn run_fp8_case<T: GpuFloat + Float>(s: &Arc<CudaStream>, r: &mut StdRng, c: &Fp8Case<'_>) {
        let Fp8Case {
            hs,
            bs,
            heads,
            kv_heads,
            seqs,
            window,
        } = *c;
        let lens: Vec<i32> = seqs.iter().map(|&(p, q)| (p + q) as i32).collect();
        let mut cu = vec![0i32];
        for &(_, q) in seqs {
            cu.push(cu.last().unwrap() + q as i32);
        }
        let tokens = *cu.last().unwrap() as usize;
        let max_q = seqs.iter().map(|x| x.1).max().unwrap();
        let (tables, max_blocks, num_blocks) = shuffled_tables(&lens, bs, 3, r);
        let mut slots = Vec::new();
        for (i, &l) in lens.iter().enumerate() {
            for t in 0..l as usize {
                slots.push((tables[i * max_blocks + t / bs] as usize * bs + t % bs) as i64);
            }
        }
        let ctx_tokens = slots.len();
        let row = kv_heads * hs;
        let keys: Vec<T> = random(ctx_tokens * row, -2.0, 2.0, r);
        let values: Vec<T> = random(ctx_tokens * row, -2.0, 2.0, r);
        let amax = |x: &[T]| x.iter().fold(0f32, |m, v| m.max(v.to_f32().abs()));
        let (k_scale, v_scale) = (amax(&keys) / Fp8E4m3::MAX, amax(&values) / Fp8E4m3::MAX);
        let layout = PagedKvLayout {
            num_blocks,
            num_kv_heads: kv_heads,
            block_size: bs,
            head_size: hs,
        };
        let q: Vec<T> = random(tokens * heads * hs, -2.0, 2.0, r);
        let n = lens.len();

        let nan8 = Fp8E4m3(0x7f);
        let (mut kc8, mut vc8) = (vec![nan8; layout.numel()], vec![nan8; layout.numel()]);
        let (mut kc16, mut vc16) = (
            vec![T::nan(); layout.numel()],
            vec![T::nan(); layout.numel()],
        );
        let w8 = ReshapeAndCacheArgs::fp8(ctx_tokens, layout, k_scale, v_scale);
        let w16 = ReshapeAndCacheArgs::new(ctx_tokens, layout);
        cpu::reshape_and_cache(&keys, &values, &mut kc8, &mut vc8, &slots, &w8).unwrap();
        cpu::reshape_and_cache(&keys, &values, &mut kc16, &mut vc16, &slots, &w16).unwrap();
        let mut a16 = prefill_args((n, tokens), (heads, kv_heads, hs, bs, max_blocks), max_q);
        a16.geometry.sliding_window = window;
        let a8 = a16.with_fp8_cache(k_scale, v_scale);
        let mut ref8 = vec![T::nan(); tokens * heads * hs];
        let mut ref16 = ref8.clone();
        let io8 = prefill_io(&mut ref8, &q, (&kc8, &vc8), (&tables, &cu, &lens));
        cpu::prefill_attention(io8, &a8).unwrap();
        let io16 = prefill_io(&mut ref16, &q, (&kc16, &vc16), (&tables, &cu, &lens));
        cpu::prefill_attention(io16, &a16).unwrap();
        let quant = rel_diff(&ref8, &ref16);

        let what = format!(
            "prefill fp8 {} hs={hs} bs={bs} heads={heads}/{kv_heads} seqs={seqs:?} window={window:?}",
            T::DTYPE
        );
        let writes = CacheWrites {
            keys: &keys,
            values: &values,
            slots: &slots,
            numel: layout.numel(),
            w8: &w8,
            w16: &w16,
            cpu8: (&kc8, &vc8),
        };
        let (gk8, gv8, gk16, gv16) = gpu_fp8_and_16bit_caches(s, &writes, &what);
        let (dq, dt, dcu, dl) = (
            s.clone_htod(&q).unwrap(),
            s.clone_htod(&tables).unwrap(),
            s.clone_htod(&cu).unwrap(),
            s.clone_htod(&lens).unwrap(),
        );
        let tol = T::DTYPE.tolerance();
        assert!(
            quant < 0.0625,
            "{what}: quantization error {quant:.3e} >= 2^-4"
        );
        // The largest dequantized |v| of the cache (>= what any row sees).
        let vmax = vc8
            .iter()
            .map(|&v| <Fp8E4m3 as KvCacheElem<T>>::load(v, v_scale).abs())
            .filter(|v| v.is_finite())
            .fold(0f32, f32::max);
        for split_p in [false, true] {
            let (mut b8, mut b16) = (a8, a16);
            b8.split_p = split_p;
            b16.split_p = split_p;
            let mut o8 = s.clone_htod(&vec![T::nan(); ref8.len()]).unwrap();
            let mut o16 = s.clone_htod(&vec![T::nan(); ref8.len()]).unwrap();
            let io8 = gpu_prefill_io(&mut o8, &dq, (&gk8, &gv8), (&dt, &dcu, &dl));
            cuda::prefill_attention(s, io8, &b8).unwrap();
            let io16 = gpu_prefill_io(&mut o16, &dq, (&gk16, &gv16), (&dt, &dcu, &dl));
            cuda::prefill_attention(s, io16, &b16).unwrap();
            let (got8, got16) = (s.clone_dtoh(&o8).unwrap(), s.clone_dtoh(&o16).unwrap());
            let w = format!("{what} split_p={split_p}");
            if split_p {
                assert_close(&format!("{w} vs CPU"), &got8, &ref8, tol);
                assert_close(&format!("{w} 16-bit"), &got16, &ref16, tol);
            } else {
                assert_close_v(&format!("{w} vs CPU"), &got8, &ref8, |_| vmax);
                assert_close_v(&format!("{w} 16-bit"), &got16, &ref16, |_| vmax);
            }
            let diff = rel_diff(&got8, &got16);
            eprintln!(
                "{w}: |fp8 - 16-bit| / |16-bit| = {diff:.3e} (quantization alone {quant:.3e})"
            );
            assert!(
                diff <= quant + 2.0 * tol as f64,
                "{w}: fp8 vs 16-bit {diff:.3e} > {quant:.3e} + 2 * {tol}"
            );
        }
    }

    #[test]
    fn prefill_attention_fp8_cache() {
        let Some(s) = stream("prefill_attention_fp8_cache") else {
            return;
        };
        let mut r = rng("prefill_attention_fp8_cache");
        for &hs in ATTENTION_FP8_HEAD_SIZES {
            for &bs in ATTENTION_BLOCK_SIZES {
                for ratio in [1usize, 4, 8] {
                    let seqs = [
                        (0, 1),
                        (0, 65),
                        (bs - 1, 17),
                        (bs + 1, 64),
                        (3 * bs, 130),
                        (5, 1),
                    ];
                    run_fp8_case::<bf16>(
                        &s,
                        &mut r,
                        &Fp8Case {
                            hs,
                            bs,
                            heads: 2 * ratio,
                            kv_heads: 2,
                            seqs: &seqs,
                            window: None,
                        },
                    );
                }
            }
        }
        run_fp8_case::<f16>(
            &s,
            &mut r,
            &Fp8Case {
                hs: 128,
                bs: 16,
                heads: 8,
                kv_heads: 2,
                seqs: &[(0, 100), (31, 33), (200, 7)],
                window: None,
            },
        );
        run_fp8_case::<bf16>(
            &s,
            &mut r,
            &Fp8Case {
                hs: 128,
                bs: 16,
                heads: 8,
                kv_heads: 2,
                seqs: &[(8300, 40), (8191, 2)],
                window: None,
            },
        );
        run_fp8_case::<bf16>(
            &s,
            &mut r,
            &Fp8Case {
                hs: 128,
                bs: 32,
                heads: 8,
                kv_heads: 2,
                seqs: &[(2000, 300), (0, 257)],
                window: Some(100),
            },
        );
        run_fp8_case::<bf16>(
            &s,
            &mut r,
            &Fp8Case {
                hs: 256,
                bs: 16,
                heads: 4,
                kv_heads: 4,
                seqs: &[(2000, 300), (17, 1)],
                window: Some(300),
            },
        );
    }
}

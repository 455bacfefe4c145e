//! Paged decode attention (v1 and v2). The CPU reference on cases with known answers and the
//! typed errors of its arguments, the v1 / v2 rule and partition sizes (`cpu` tests);
//! unsupported shapes and FP8 misuse on both devices (`test_device!`); the GPU against the CPU
//! reference: every head size, both block sizes, GQA ratios 1, 4 and 8, ragged lengths (1, block
//! boundaries +- 1, long ones past 8k), shuffled non-contiguous block tables, sliding window and
//! ALiBi, FP8 caches; outputs poisoned (`gpu` tests, SKIP without a GPU).

#[macro_use]
mod common;

use common::device::Device;
use common::*;
use half::bf16;
use vllm_kernels::args::*;
use vllm_kernels::{Fp8E4m3, KernelError, cpu};

/// Decode arguments: `num_seqs` sequences of up to `max_seq_len` tokens, geometry
/// (heads, kv heads, head size, block size, max blocks per sequence).
fn decode_args(
    num_seqs: usize,
    (heads, kv, hs, bs, max_blocks): (usize, usize, usize, usize, usize),
    max_seq_len: usize,
) -> PagedAttentionArgs {
    PagedAttentionArgs::new(
        AttentionGeometry::new(heads, kv, hs, bs, max_blocks),
        num_seqs,
        max_seq_len,
    )
}

#[test]
fn attention_reference_on_cases_with_known_answers() {
    let mut r = rng("attention_reference_on_cases_with_known_answers");
    let (hs, bs, heads, kv) = (64, 16, 4, 2);
    let num_blocks = 3;
    let numel = num_blocks * kv * bs * hs;
    let l = PagedKvLayout {
        num_blocks,
        num_kv_heads: kv,
        block_size: bs,
        head_size: hs,
    };
    let q: Vec<f32> = random(2 * heads * hs, -1.0, 1.0, &mut r);
    let v: Vec<f32> = random(numel, -1.0, 1.0, &mut r);
    // Equal keys everywhere: every token gets the same weight.
    let k = vec![0.25f32; numel];
    // Sequence 0 uses block 2 (1 token); sequence 1 uses blocks 1 then 0 (20 tokens).
    let lens = vec![1, 20];
    let mut a = decode_args(2, (heads, kv, hs, bs, 2), 20);
    a.version = AttentionVersion::V1;
    let mut out = vec![f32::NAN; 2 * heads * hs];
    cpu::paged_attention(
        decode_io(&mut out, &q, (&k, &v), (&[2, 0, 1, 0], &lens), None),
        &a,
    )
    .unwrap();
    let slot1 = |t: usize| [1usize, 0][t / bs] * bs + t % bs;
    for h in 0..heads {
        let kvh = h / (heads / kv);
        for d in 0..hs {
            // One token: the output is that token's value row.
            assert!((out[h * hs + d] - v[l.index(2 * bs, kvh, d)]).abs() < 1e-6);
            let mean = (0..20).map(|t| v[l.index(slot1(t), kvh, d)]).sum::<f32>() / 20.0;
            assert!((out[(heads + h) * hs + d] - mean).abs() < 1e-5);
        }
    }
    // A sliding window of 5 averages the last 5 tokens only.
    a.geometry.sliding_window = Some(5);
    cpu::paged_attention(
        decode_io(&mut out, &q, (&k, &v), (&[2, 0, 1, 0], &lens), None),
        &a,
    )
    .unwrap();
    let mean5 = (15..20).map(|t| v[l.index(slot1(t), 0, 3)]).sum::<f32>() / 5.0;
    assert!((out[heads * hs + 3] - mean5).abs() < 1e-5);
}

#[test]
fn attention_validation_errors() {
    use vllm_kernels::DType;
    let a = decode_args(2, (8, 2, 128, 16, 4), 64);
    let cache = 10 * 2 * 16 * 128;
    // Buffer lengths (out, query, key cache, value cache, block tables, seq lens, ALiBi).
    let lens = |out, query, key_cache, value_cache, (block_tables, seq_lens), alibi_slopes| {
        PagedAttentionLens {
            common: AttentionLens {
                out,
                query,
                key_cache,
                value_cache,
                block_tables,
                seq_lens,
            },
            alibi_slopes,
        }
    };
    let ok = lens(2048, 2048, cache, cache, (8, 2), None);
    assert!(a.validate(DType::BF16, &ok).is_ok());
    let mut b = a;
    b.geometry.head_size = 72;
    let e = b.validate(DType::BF16, &ok).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::Unsupported {
                what: "head_size",
                ..
            }
        ) && e.to_string().contains("72"),
        "{e}"
    );
    let mut b = a;
    b.geometry.block_size = 8;
    let e = b.validate(DType::BF16, &ok).unwrap_err();
    assert!(e.to_string().contains("supported: 16, 32"), "{e}");
    let e = a.validate(DType::F32, &ok).unwrap_err();
    assert!(e.to_string().contains("supported: f16, bf16"), "{e}");
    let e = a
        .validate(
            DType::BF16,
            &lens(2048, 2048, cache + 1, cache, (8, 2), None),
        )
        .unwrap_err();
    assert!(e.to_string().contains("whole number of blocks"), "{e}");
    let e = a
        .validate(DType::BF16, &lens(2048, 2048, cache, cache, (7, 2), None))
        .unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::ShapeMismatch {
                expected: 8,
                got: 7,
                ..
            }
        ),
        "{e}"
    );
    let e = a
        .validate(
            DType::BF16,
            &lens(2048, 2048, cache, cache, (8, 2), Some(7)),
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::ShapeMismatch {
                expected: 8,
                got: 7,
                ..
            }
        ),
        "{e}"
    );
    let e = PagedAttentionArgs {
        max_seq_len: 65,
        ..a
    }
    .validate(DType::BF16, &ok)
    .unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::OutOfRange {
                what: "max_seq_len",
                ..
            }
        ),
        "{e}"
    );
    let e = a
        .validate_tables(&[0, 1, 2, 3, 4, 5, 6, 10], &[64, 64], 10)
        .unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::OutOfRange {
                what: "block id",
                value: 10,
                limit: 10,
                ..
            }
        ),
        "{e}"
    );
    let e = a.validate_tables(&[0; 8], &[0, 64], 10).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::OutOfRange {
                what: "seq_len",
                value: 0,
                ..
            }
        ),
        "{e}"
    );
    // The v1 / v2 rule and the partition size (measured choices, see NOTES.md).
    let long = decode_args(1, (32, 8, 128, 16, 2048), 32768);
    assert_eq!(long.pick_version(), AttentionVersion::V2);
    assert_eq!((long.partition_size(), long.num_partitions()), (2048, 16));
    let eight = decode_args(8, (32, 8, 128, 16, 256), 4096);
    assert_eq!(eight.pick_version(), AttentionVersion::V2);
    assert_eq!(eight.partition_size(), 2048);
    let one = decode_args(1, (32, 8, 128, 16, 256), 4096);
    assert_eq!(
        (one.pick_version(), one.partition_size()),
        (AttentionVersion::V2, 256)
    );
    assert_eq!(
        decode_args(64, (32, 8, 128, 16, 256), 4096).pick_version(),
        AttentionVersion::V1
    );
    assert_eq!(
        decode_args(1, (32, 8, 128, 16, 32), 256).pick_version(),
        AttentionVersion::V1
    );
    // Forced v2 with plenty of CTAs still splits in two, and partitions fit every block size.
    let mut big = decode_args(64, (32, 8, 128, 32, 128), 4096);
    big.version = AttentionVersion::V2;
    assert_eq!((big.partition_size(), big.num_partitions()), (2048, 2));
    for len in [1usize, 255, 256, 257, 5000, 1 << 20] {
        let a = decode_args(3, (28, 4, 128, 32, len.div_ceil(32)), len);
        assert!(a.partition_size().is_multiple_of(32) && a.partition_size() >= MIN_PARTITION_SIZE);
        assert!(a.num_partitions() * a.partition_size() >= len);
    }
    // A forced partition size: a power of two in MIN..=MAX_PARTITION_SIZE, else a typed error.
    let mut a = decode_args(1, (32, 8, 128, 16, 32), 512);
    let check =
        |a: &PagedAttentionArgs| a.validate_shapes(&lens(4096, 4096, 32768, 32768, (32, 1), None));
    check(&a).unwrap();
    a.partition_tokens = Some(256);
    check(&a).unwrap();
    assert_eq!(
        (a.pick_version(), a.partition_size(), a.num_partitions()),
        (AttentionVersion::V2, 256, 2)
    );
    for bad in [0usize, 128, 384, MAX_PARTITION_SIZE * 2] {
        a.partition_tokens = Some(bad);
        let e = check(&a).unwrap_err();
        assert!(
            e.to_string().contains(&format!("partition_tokens {bad}")),
            "{e}"
        );
    }
}

/// Unsupported head size, block size and GQA ratio: typed errors naming the value, nothing
/// written.
fn paged_attention_rejects_unsupported_shapes(d: &impl Device) {
    let q = vec![bf16::ONE; 8 * 72];
    let cache = vec![bf16::ONE; 2 * 16 * 72];
    let (tables, lens) = ([0i32, 1], [20i32]);
    let mut out = vec![bf16::NAN; 8 * 72];
    let mut run = |a: &PagedAttentionArgs| {
        d.paged_attention(
            decode_io(&mut out, &q, (&cache, &cache), (&tables, &lens), None),
            a,
        )
    };
    let e = run(&decode_args(1, (8, 1, 72, 16, 2), 20)).unwrap_err();
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
    let e = run(&decode_args(1, (8, 1, 64, 8, 2), 16)).unwrap_err();
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
    let e = run(&decode_args(1, (8, 3, 64, 16, 2), 20)).unwrap_err();
    assert!(e.to_string().contains("not a multiple"), "{e}");
    assert!(out.iter().all(|v| v.is_nan()));
}

/// FP8 caches: an unsupported head size, bytes with arguments that name a 16-bit cache and the
/// reverse, a zero scale: typed errors, nothing written.
fn fp8_rejects_unsupported_head_size_and_mismatched_caches(d: &impl Device) {
    let q = vec![bf16::ONE; 8 * 64];
    let cache = vec![Fp8E4m3(0x38); 2 * 16 * 64];
    let cache16 = vec![bf16::ONE; 2 * 16 * 64];
    let (tables, lens) = ([0i32, 1], [20i32]);
    let mut out = vec![bf16::NAN; 8 * 64];
    let a = decode_args(1, (8, 1, 64, 16, 2), 20).with_fp8_cache(0.5, 0.5);
    let run8 = |out: &mut [bf16], a: &PagedAttentionArgs| {
        d.paged_attention(
            decode_io(out, &q, (&cache, &cache), (&tables, &lens), None),
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
    // FP8 bytes with arguments that name a 16-bit cache, and the reverse.
    let a = decode_args(1, (8, 1, 64, 16, 2), 20);
    let e = run8(&mut out, &a).unwrap_err();
    assert!(e.to_string().contains("fp8_e4m3"), "{e}");
    let a = a.with_fp8_cache(1.0, 1.0);
    let io16 = decode_io(&mut out, &q, (&cache16, &cache16), (&tables, &lens), None);
    let e = d.paged_attention(io16, &a).unwrap_err();
    assert!(e.to_string().contains("fp8_e4m3"), "{e}");
    // A scale that is not finite and positive.
    let a = decode_args(1, (8, 1, 128, 16, 1), 16).with_fp8_cache(0.0, 1.0);
    let c128 = vec![Fp8E4m3(0x38); 16 * 128];
    let q128 = vec![bf16::ONE; 8 * 128];
    let mut o128 = vec![bf16::NAN; 8 * 128];
    let io = decode_io(&mut o128, &q128, (&c128, &c128), (&tables, &lens), None);
    let e = d.paged_attention(io, &a).unwrap_err();
    assert!(e.to_string().contains("k_scale"), "{e}");
    assert!(out.iter().chain(&o128).all(|v| v.is_nan()));
}

test_device!(
    paged_attention_rejects_unsupported_shapes,
    fp8_rejects_unsupported_head_size_and_mismatched_caches,
);

#[cfg(feature = "cuda")]
mod gpu {
    use super::*;
    use half::f16;
    use rand::{Rng, rngs::StdRng};
    use std::sync::Arc;
    use vllm_kernels::Float;
    use vllm_kernels::cuda::{self, CudaStream, GpuFloat};

    struct Case {
        hs: usize,
        bs: usize,
        heads: usize,
        kv_heads: usize,
        lens: Vec<i32>,
        window: Option<usize>,
        alibi: bool,
    }

    fn run_case<T: GpuFloat>(s: &Arc<CudaStream>, r: &mut StdRng, c: &Case) {
        let max_len = *c.lens.iter().max().unwrap() as usize;
        let (tables, max_blocks, num_blocks) = shuffled_tables(&c.lens, c.bs, 7, r);
        let numel = num_blocks * c.kv_heads * c.bs * c.hs;
        let kc: Vec<T> = random(numel, -1.0, 1.0, r);
        let vc: Vec<T> = random(numel, -1.0, 1.0, r);
        let n = c.lens.len();
        let q: Vec<T> = random(n * c.heads * c.hs, -1.0, 1.0, r);
        let alibi: Option<Vec<f32>> = c
            .alibi
            .then(|| (0..c.heads).map(|h| -0.5f32.powi(h as i32 + 1)).collect());
        let mut a = decode_args(n, (c.heads, c.kv_heads, c.hs, c.bs, max_blocks), max_len);
        a.geometry.sliding_window = c.window;
        let mut want = vec![T::nan(); n * c.heads * c.hs];
        let io = decode_io(
            &mut want,
            &q,
            (&kc, &vc),
            (&tables, &c.lens),
            alibi.as_deref(),
        );
        cpu::paged_attention(io, &a).unwrap();
        let (dq, dk, dv) = (
            s.clone_htod(&q).unwrap(),
            s.clone_htod(&kc).unwrap(),
            s.clone_htod(&vc).unwrap(),
        );
        let (dt, dl) = (
            s.clone_htod(&tables).unwrap(),
            s.clone_htod(&c.lens).unwrap(),
        );
        let dal = alibi.as_ref().map(|x| s.clone_htod(x).unwrap());
        for version in [AttentionVersion::V1, AttentionVersion::V2] {
            a.version = version;
            let mut out = s.clone_htod(&vec![T::nan(); want.len()]).unwrap();
            let io = gpu_decode_io(&mut out, &dq, (&dk, &dv), (&dt, &dl), dal.as_ref());
            cuda::paged_attention(s, io, None, &a).unwrap();
            let got = s.clone_dtoh(&out).unwrap();
            let what = format!(
                "paged_attention {version:?} {} hs={} bs={} heads={}/{} lens={:?} window={:?} alibi={}",
                T::DTYPE,
                c.hs,
                c.bs,
                c.heads,
                c.kv_heads,
                c.lens,
                c.window,
                c.alibi
            );
            assert_close(&what, &got, &want, T::DTYPE.tolerance());
        }
    }

    fn sweep<T: GpuFloat>(s: &Arc<CudaStream>, r: &mut StdRng) {
        for &hs in ATTENTION_HEAD_SIZES {
            for &bs in ATTENTION_BLOCK_SIZES {
                for ratio in [1usize, 4, 8] {
                    let b = bs as i32;
                    let case = Case {
                        hs,
                        bs,
                        heads: 2 * ratio,
                        kv_heads: 2,
                        lens: vec![1, b - 1, b, b + 1, 3 * b + 5, 1000],
                        window: None,
                        alibi: false,
                    };
                    run_case::<T>(s, r, &case);
                }
            }
        }
    }

    #[test]
    fn paged_attention_matches_cpu_all_shapes() {
        let Some(s) = stream("paged_attention_matches_cpu_all_shapes") else {
            return;
        };
        let mut r = rng("paged_attention_matches_cpu_all_shapes");
        sweep::<f16>(&s, &mut r);
        sweep::<bf16>(&s, &mut r);
    }

    #[test]
    fn paged_attention_long_contexts_window_and_alibi() {
        let Some(s) = stream("paged_attention_long_contexts_window_and_alibi") else {
            return;
        };
        let mut r = rng("paged_attention_long_contexts_window_and_alibi");
        let long = |r: &mut StdRng| vec![8193, r.random_range(1..600), 8300];
        for (hs, bs, heads, kv) in [
            (128, 16, 32, 8),
            (64, 32, 8, 1),
            (256, 16, 4, 4),
            (80, 16, 14, 2),
        ] {
            let lens = long(&mut r);
            run_case::<bf16>(
                &s,
                &mut r,
                &Case {
                    hs,
                    bs,
                    heads,
                    kv_heads: kv,
                    lens: lens.clone(),
                    window: None,
                    alibi: false,
                },
            );
            run_case::<f16>(
                &s,
                &mut r,
                &Case {
                    hs,
                    bs,
                    heads,
                    kv_heads: kv,
                    lens: lens.clone(),
                    window: Some(4096),
                    alibi: false,
                },
            );
            run_case::<bf16>(
                &s,
                &mut r,
                &Case {
                    hs,
                    bs,
                    heads,
                    kv_heads: kv,
                    lens,
                    window: None,
                    alibi: true,
                },
            );
        }
        run_case::<bf16>(
            &s,
            &mut r,
            &Case {
                hs: 128,
                bs: 16,
                heads: 8,
                kv_heads: 8,
                lens: vec![5, 40, 17],
                window: Some(16),
                alibi: true,
            },
        );
    }

    /// Decode over a dtype the kernels do not take (f32): a typed error before any launch.
    #[test]
    fn paged_attention_rejects_f32() {
        let Some(s) = stream("paged_attention_rejects_f32") else {
            return;
        };
        let tables = s.clone_htod(&[0i32, 1]).unwrap();
        let lens = s.clone_htod(&[20i32]).unwrap();
        let qf = s.clone_htod(&vec![1.0f32; 8 * 64]).unwrap();
        let cf = s.clone_htod(&vec![1.0f32; 2 * 16 * 64]).unwrap();
        let mut of = s.clone_htod(&vec![f32::NAN; 8 * 64]).unwrap();
        let a = decode_args(1, (8, 1, 64, 16, 2), 20);
        let io = gpu_decode_io(&mut of, &qf, (&cf, &cf), (&tables, &lens), None);
        let e = cuda::paged_attention(&s, io, None, &a).unwrap_err();
        assert!(
            matches!(e, KernelError::Unsupported { what: "dtype", .. }),
            "{e}"
        );
        assert!(s.clone_dtoh(&of).unwrap().iter().all(|v| v.is_nan()));
    }

    /// One FP8 case: geometry, context lengths, window.
    struct Fp8Case<'a> {
        hs: usize,
        bs: usize,
        heads: usize,
        kv_heads: usize,
        lens: &'a [i32],
        window: Option<usize>,
    }

    /// The FP8 path end to end: K/V rows written by reshape_and_cache into a 16-bit cache and an
    /// FP8 cache (both poisoned with NaN first, so the unwritten tail of each last block is NaN),
    /// the FP8 bytes compared bit for bit with the CPU's, then decode attention over the FP8 cache
    /// compared with the CPU reference over the same bytes (the dtype's tolerance), and with the
    /// kernel's result over the 16-bit cache. Tolerance of that last comparison: the quantization
    /// changes the exact answer by q = |ref_fp8 - ref_16| / |ref_16| (both CPU references, computed
    /// here on these inputs), and each kernel is within `tol` of its reference, so |gpu_fp8 -
    /// gpu_16| / |gpu_16| <= q + 2 tol up to second-order terms. q itself is bounded by e4m3's
    /// precision: 3 mantissa bits, a relative rounding error of at most 2^-4 per element; we check
    /// q < 2^-4.
    fn run_fp8_case<T: GpuFloat + Float>(s: &Arc<CudaStream>, r: &mut StdRng, c: &Fp8Case<'_>) {
        let Fp8Case {
            hs,
            bs,
            heads,
            kv_heads,
            lens,
            window,
        } = *c;
        let max_len = *lens.iter().max().unwrap() as usize;
        let (tables, max_blocks, num_blocks) = shuffled_tables(lens, bs, 5, r);
        let mut slots = Vec::new();
        for (i, &l) in lens.iter().enumerate() {
            for t in 0..l as usize {
                slots.push((tables[i * max_blocks + t / bs] as usize * bs + t % bs) as i64);
            }
        }
        let tokens = slots.len();
        let row = kv_heads * hs;
        let keys: Vec<T> = random(tokens * row, -2.0, 2.0, r);
        let values: Vec<T> = random(tokens * row, -2.0, 2.0, r);
        let amax = |x: &[T]| x.iter().fold(0f32, |m, v| m.max(v.to_f32().abs()));
        let (k_scale, v_scale) = (amax(&keys) / Fp8E4m3::MAX, amax(&values) / Fp8E4m3::MAX);
        let layout = PagedKvLayout {
            num_blocks,
            num_kv_heads: kv_heads,
            block_size: bs,
            head_size: hs,
        };
        let n = lens.len();
        let q: Vec<T> = random(n * heads * hs, -2.0, 2.0, r);

        // CPU: both caches and both references.
        let nan8 = Fp8E4m3(0x7f);
        let (mut kc8, mut vc8) = (vec![nan8; layout.numel()], vec![nan8; layout.numel()]);
        let (mut kc16, mut vc16) = (
            vec![T::nan(); layout.numel()],
            vec![T::nan(); layout.numel()],
        );
        let w8 = ReshapeAndCacheArgs::fp8(tokens, layout, k_scale, v_scale);
        let w16 = ReshapeAndCacheArgs::new(tokens, layout);
        cpu::reshape_and_cache(&keys, &values, &mut kc8, &mut vc8, &slots, &w8).unwrap();
        cpu::reshape_and_cache(&keys, &values, &mut kc16, &mut vc16, &slots, &w16).unwrap();
        let mut a16 = decode_args(n, (heads, kv_heads, hs, bs, max_blocks), max_len);
        a16.geometry.sliding_window = window;
        let a8 = a16.with_fp8_cache(k_scale, v_scale);
        let mut ref8 = vec![T::nan(); n * heads * hs];
        let mut ref16 = ref8.clone();
        let io8 = decode_io(&mut ref8, &q, (&kc8, &vc8), (&tables, lens), None);
        cpu::paged_attention(io8, &a8).unwrap();
        let io16 = decode_io(&mut ref16, &q, (&kc16, &vc16), (&tables, lens), None);
        cpu::paged_attention(io16, &a16).unwrap();
        let quant = rel_diff(&ref8, &ref16);

        // GPU: the same writes.
        let what = format!(
            "fp8 {} hs={hs} bs={bs} heads={heads}/{kv_heads} lens={lens:?} window={window:?}",
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

        let (dq, dt, dl) = (
            s.clone_htod(&q).unwrap(),
            s.clone_htod(&tables).unwrap(),
            s.clone_htod(lens).unwrap(),
        );
        for version in [AttentionVersion::V1, AttentionVersion::V2] {
            let (mut b8, mut b16) = (a8, a16);
            b8.version = version;
            b16.version = version;
            let mut o8 = s.clone_htod(&vec![T::nan(); ref8.len()]).unwrap();
            let mut o16 = s.clone_htod(&vec![T::nan(); ref8.len()]).unwrap();
            let io8 = gpu_decode_io(&mut o8, &dq, (&gk8, &gv8), (&dt, &dl), None);
            cuda::paged_attention(s, io8, None, &b8).unwrap();
            let io16 = gpu_decode_io(&mut o16, &dq, (&gk16, &gv16), (&dt, &dl), None);
            cuda::paged_attention(s, io16, None, &b16).unwrap();
            let (got8, got16) = (s.clone_dtoh(&o8).unwrap(), s.clone_dtoh(&o16).unwrap());
            let tol = T::DTYPE.tolerance();
            assert_close(&format!("{what} {version:?} vs CPU"), &got8, &ref8, tol);
            assert_close(&format!("{what} {version:?} 16-bit"), &got16, &ref16, tol);
            let diff = rel_diff(&got8, &got16);
            eprintln!(
                "{what} {version:?}: |fp8 - 16-bit| / |16-bit| = {diff:.3e} (quantization alone {quant:.3e})"
            );
            assert!(
                quant < 0.0625,
                "{what}: quantization error {quant:.3e} >= 2^-4"
            );
            assert!(
                diff <= quant + 2.0 * tol as f64,
                "{what} {version:?}: fp8 vs 16-bit {diff:.3e} > {quant:.3e} + 2 * {tol}"
            );
        }
    }

    #[test]
    fn fp8_kv_cache_write_and_decode_attention() {
        let Some(s) = stream("fp8_kv_cache_write_and_decode_attention") else {
            return;
        };
        let mut r = rng("fp8_kv_cache_write_and_decode_attention");
        for &hs in ATTENTION_FP8_HEAD_SIZES {
            for &bs in ATTENTION_BLOCK_SIZES {
                for ratio in [1usize, 4, 8] {
                    let b = bs as i32;
                    let lens = [1, b - 1, b, b + 1, 3 * b + 5, 1000];
                    run_fp8_case::<bf16>(
                        &s,
                        &mut r,
                        &Fp8Case {
                            hs,
                            bs,
                            heads: 2 * ratio,
                            kv_heads: 2,
                            lens: &lens,
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
                heads: 32,
                kv_heads: 8,
                lens: &[8193, 17, 4000],
                window: None,
            },
        );
        run_fp8_case::<bf16>(
            &s,
            &mut r,
            &Fp8Case {
                hs: 128,
                bs: 32,
                heads: 28,
                kv_heads: 4,
                lens: &[8300, 600],
                window: Some(4096),
            },
        );
        run_fp8_case::<bf16>(
            &s,
            &mut r,
            &Fp8Case {
                hs: 256,
                bs: 16,
                heads: 8,
                kv_heads: 1,
                lens: &[9000, 31],
                window: None,
            },
        );
    }
}

//! The CPU reference against independent f64 formulas on random inputs, its exact semantics
//! (copies, skipped slots), and the typed errors of argument validation. These run everywhere.

mod common;

use common::*;
use half::{bf16, f16};
use vllm_kernels::KernelError;
use vllm_kernels::args::*;
use vllm_kernels::cpu;

#[test]
fn rms_norm_matches_f64_formula() {
    let mut r = rng("rms_norm_matches_f64_formula");
    for &(t, h, pad) in &[(1usize, 4096usize, 0usize), (7, 64, 3), (3, 100, 0)] {
        let stride = h + pad;
        let x: Vec<f32> = random(t * stride, -2.0, 2.0, &mut r);
        let w: Vec<f32> = random(h, 0.5, 1.5, &mut r);
        let mut a = RmsNormArgs::new(t, h, 1e-6);
        a.input_stride = stride;
        let mut out = vec![f32::NAN; t * h];
        cpu::rms_norm(&mut out, &x, &w, &a).unwrap();
        let mut want = vec![0f32; t * h];
        for i in 0..t {
            let row = &x[i * stride..][..h];
            let ms = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / h as f64;
            let inv = 1.0 / (ms + 1e-6).sqrt();
            for j in 0..h {
                want[i * h + j] = (row[j] as f64 * inv * w[j] as f64) as f32;
            }
        }
        assert_close("rms_norm f32", &out, &want, 1e-5);
    }
}

#[test]
fn fused_add_rms_norm_is_add_then_norm() {
    let mut r = rng("fused_add_rms_norm_is_add_then_norm");
    let (t, h) = (5, 256);
    let x: Vec<bf16> = random(t * h, -2.0, 2.0, &mut r);
    let res: Vec<bf16> = random(t * h, -2.0, 2.0, &mut r);
    let w: Vec<bf16> = random(h, 0.5, 1.5, &mut r);
    let (mut xi, mut ri) = (x.clone(), res.clone());
    cpu::fused_add_rms_norm(&mut xi, &mut ri, &w, &FusedAddRmsNormArgs::new(t, h, 1e-5)).unwrap();
    let sum: Vec<bf16> = x
        .iter()
        .zip(&res)
        .map(|(a, b)| bf16::from_f32(a.to_f32() + b.to_f32()))
        .collect();
    assert_bits_eq("residual = x + r", &ri, &sum);
    let mut normed = vec![bf16::NAN; t * h];
    cpu::rms_norm(&mut normed, &sum, &w, &RmsNormArgs::new(t, h, 1e-5)).unwrap();
    assert_bits_eq("input = rms_norm(x + r)", &xi, &normed);
}

#[test]
fn rotary_matches_complex_rotation() {
    let mut r = rng("rotary_matches_complex_rotation");
    for is_neox in [true, false] {
        let (t, nh, nkv, hs, rot, maxp) = (6, 4, 2, 64, 32, 100);
        let cache: Vec<f32> = cos_sin_cache(maxp, rot);
        let q0: Vec<f32> = random(t * nh * hs, -1.0, 1.0, &mut r);
        let k0: Vec<f32> = random(t * nkv * hs, -1.0, 1.0, &mut r);
        let pos: Vec<i64> = (0..t)
            .map(|_| rand::Rng::random_range(&mut r, 0..maxp as i64))
            .collect();
        let a = RotaryArgs::new(t, nh, nkv, hs, rot, maxp, is_neox);
        let (mut q, mut k) = (q0.clone(), k0.clone());
        cpu::rotary_embedding(&pos, &mut q, Some(&mut k), &cache, &a).unwrap();
        for (x0, x, heads) in [(&q0, &q, nh), (&k0, &k, nkv)] {
            let mut want = x0.clone();
            for (ti, &p) in pos.iter().enumerate() {
                for h in 0..heads {
                    let base = (ti * heads + h) * hs;
                    for i in 0..rot / 2 {
                        let theta = p as f64 / 10000f64.powf(2.0 * i as f64 / rot as f64);
                        let (i1, i2) = if is_neox {
                            (i, i + rot / 2)
                        } else {
                            (2 * i, 2 * i + 1)
                        };
                        let (a1, a2) = (x0[base + i1] as f64, x0[base + i2] as f64);
                        want[base + i1] = (a1 * theta.cos() - a2 * theta.sin()) as f32;
                        want[base + i2] = (a2 * theta.cos() + a1 * theta.sin()) as f32;
                    }
                }
            }
            assert_close("rotary f32", x, &want, 1e-5);
        }
    }
}

#[test]
fn activations_match_f64_formulas() {
    let mut r = rng("activations_match_f64_formulas");
    let (t, d) = (3, 77);
    let x: Vec<f32> = random(t * 2 * d, -6.0, 6.0, &mut r);
    for act in [Activation::Silu, Activation::GeluErf, Activation::GeluTanh] {
        let mut out = vec![f32::NAN; t * d];
        cpu::act_and_mul(&mut out, &x, &ActAndMulArgs::new(t, d, act)).unwrap();
        let want: Vec<f32> = (0..t * d)
            .map(|i| {
                let (g, u) = (
                    x[(i / d) * 2 * d + i % d] as f64,
                    x[(i / d) * 2 * d + d + i % d] as f64,
                );
                let a = match act {
                    Activation::Silu => g / (1.0 + (-g).exp()),
                    Activation::GeluErf => 0.5 * g * (1.0 + libm::erf(g / 2f64.sqrt())),
                    Activation::GeluTanh => {
                        0.5 * g
                            * (1.0
                                + ((2.0 / std::f64::consts::PI).sqrt()
                                    * (g + 0.044715 * g.powi(3)))
                                .tanh())
                    }
                };
                (a * u) as f32
            })
            .collect();
        assert_close(act.name(), &out, &want, 1e-5);
    }
}

fn layout() -> PagedKvLayout {
    PagedKvLayout {
        num_blocks: 5,
        num_kv_heads: 2,
        block_size: 4,
        head_size: 8,
    }
}

#[test]
fn reshape_and_cache_places_rows_and_skips_padding() {
    let mut r = rng("reshape_and_cache_places_rows_and_skips_padding");
    let l = layout();
    let slots = vec![17i64, -1, 0, 3, 12];
    let a = ReshapeAndCacheArgs::new(slots.len(), l);
    let row = l.num_kv_heads * l.head_size;
    let k: Vec<f16> = random(slots.len() * row, -1.0, 1.0, &mut r);
    let v: Vec<f16> = random(slots.len() * row, -1.0, 1.0, &mut r);
    let (mut kc, mut vc) = (vec![f16::NAN; l.numel()], vec![f16::NAN; l.numel()]);
    cpu::reshape_and_cache(&k, &v, &mut kc, &mut vc, &slots, &a).unwrap();
    let mut written = 0;
    for (t, &s) in slots.iter().enumerate() {
        if s < 0 {
            continue;
        }
        for h in 0..l.num_kv_heads {
            for e in 0..l.head_size {
                assert_eq!(
                    kc[l.index(s as usize, h, e)],
                    k[t * row + h * l.head_size + e]
                );
                assert_eq!(
                    vc[l.index(s as usize, h, e)],
                    v[t * row + h * l.head_size + e]
                );
                written += 1;
            }
        }
    }
    assert_eq!(
        kc.iter().filter(|x| !x.is_nan()).count(),
        written,
        "only the slots given are written"
    );
    let bad = vec![17i64, -1, 0, 3, 20];
    let err = cpu::reshape_and_cache(&k, &v, &mut kc, &mut vc, &bad, &a).unwrap_err();
    assert!(
        matches!(
            err,
            KernelError::OutOfRange {
                value: 20,
                limit: 20,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn copy_and_swap_blocks_move_whole_blocks() {
    let mut r = rng("copy_and_swap_blocks_move_whole_blocks");
    let l = layout();
    let n = l.block_numel();
    let mut k: Vec<f32> = random(l.numel(), -1.0, 1.0, &mut r);
    let mut v: Vec<f32> = random(l.numel(), -1.0, 1.0, &mut r);
    let (k0, v0) = (k.clone(), v.clone());
    cpu::copy_blocks(&mut [&mut k[..], &mut v[..]], &l, &[(0, 3), (1, 4)]).unwrap();
    assert_eq!(&k[3 * n..4 * n], &k0[0..n]);
    assert_eq!(&v[4 * n..5 * n], &v0[n..2 * n]);
    assert_eq!(&k[..3 * n], &k0[..3 * n]);

    let host = PagedKvLayout { num_blocks: 2, ..l };
    let mut dst = vec![f32::NAN; host.numel()];
    cpu::swap_blocks(&k, &l, &mut dst, &host, &[(4, 0), (2, 1)]).unwrap();
    assert_eq!(&dst[..n], &k[4 * n..5 * n]);
    assert_eq!(&dst[n..], &k[2 * n..3 * n]);
}

#[test]
fn block_pair_errors() {
    let l = layout();
    let mut k = vec![0.5f32; l.numel()];
    let e = cpu::copy_blocks(&mut [&mut k[..]], &l, &[(0, 1), (2, 1)]).unwrap_err();
    assert!(
        e.to_string().contains("destination block 1 appears twice"),
        "{e}"
    );
    let e = cpu::copy_blocks(&mut [&mut k[..]], &l, &[(0, 1), (1, 2)]).unwrap_err();
    assert!(
        e.to_string().contains("both a source and a destination"),
        "{e}"
    );
    let e = cpu::copy_blocks(&mut [&mut k[..]], &l, &[(0, 5)]).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::OutOfRange {
                value: 5,
                limit: 5,
                ..
            }
        ),
        "{e}"
    );
    let e = cpu::copy_blocks(&mut [&mut k[..10]], &l, &[(0, 1)]).unwrap_err();
    assert!(matches!(e, KernelError::ShapeMismatch { .. }), "{e}");
    let host = PagedKvLayout { num_blocks: 2, ..l };
    let mut dst = vec![0f32; host.numel()];
    let e = cpu::swap_blocks(&k, &l, &mut dst, &host, &[(0, 2)]).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::OutOfRange {
                value: 2,
                limit: 2,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn validation_errors_name_the_limit_and_value() {
    // rms_norm: short buffers, short strides, weight mismatch, zero hidden, bad epsilon.
    let a = RmsNormArgs::new(4, 64, 1e-5);
    let e = a
        .validate(vllm_kernels::DType::BF16, 4 * 64, 4 * 64 - 1, 64)
        .unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BufferTooSmall {
                name: "input",
                len: 255,
                need: 256,
                ..
            }
        ),
        "{e}"
    );
    let e = RmsNormArgs {
        input_stride: 63,
        ..a
    }
    .validate(vllm_kernels::DType::F16, 256, 1000, 64)
    .unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BadStride {
                stride: 63,
                row_len: 64,
                ..
            }
        ),
        "{e}"
    );
    let e = a
        .validate(vllm_kernels::DType::F32, 256, 256, 65)
        .unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::ShapeMismatch {
                expected: 64,
                got: 65,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        RmsNormArgs::new(1, 0, 1e-5)
            .validate(vllm_kernels::DType::F32, 0, 0, 0)
            .is_err()
    );
    let e = RmsNormArgs::new(1, 8, f32::NAN)
        .validate(vllm_kernels::DType::F32, 8, 8, 8)
        .unwrap_err();
    assert!(e.to_string().contains("epsilon"), "{e}");
    let e = RmsNormArgs::new(1, (1 << 20) + 1, 1e-5)
        .validate(vllm_kernels::DType::F32, 1 << 21, 1 << 21, (1 << 20) + 1)
        .unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::Unsupported {
                what: "hidden_size",
                ..
            }
        ),
        "{e}"
    );

    // rotary: odd / oversized rot_dim, cache length, positions length and range.
    let ra = RotaryArgs::new(2, 4, 2, 64, 63, 10, true);
    let e = ra
        .validate(vllm_kernels::DType::BF16, 2, 512, Some(256), 630)
        .unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::Unsupported {
                what: "rot_dim",
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("63") && e.to_string().contains("2..=64"),
        "{e}"
    );
    let e = RotaryArgs { rot_dim: 128, ..ra }
        .validate(vllm_kernels::DType::BF16, 2, 512, Some(256), 1280)
        .unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::Unsupported {
                what: "rot_dim",
                ..
            }
        ),
        "{e}"
    );
    let ra = RotaryArgs { rot_dim: 64, ..ra };
    let e = ra
        .validate(vllm_kernels::DType::BF16, 2, 512, Some(256), 639)
        .unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::ShapeMismatch {
                expected: 640,
                got: 639,
                ..
            }
        ),
        "{e}"
    );
    let e = ra
        .validate(vllm_kernels::DType::BF16, 3, 512, Some(256), 640)
        .unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::ShapeMismatch {
                expected: 2,
                got: 3,
                ..
            }
        ),
        "{e}"
    );
    let e = ra
        .validate(vllm_kernels::DType::BF16, 2, 512, Some(255), 640)
        .unwrap_err();
    assert!(
        matches!(e, KernelError::BufferTooSmall { name: "key", .. }),
        "{e}"
    );
    let e = ra.validate_positions(&[3, 10]).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::OutOfRange {
                value: 10,
                limit: 10,
                ..
            }
        ),
        "{e}"
    );
    let mut q = vec![0.25f32; 512];
    let e = cpu::rotary_embedding(&[0, -1], &mut q, None, &vec![0.0; 640], &ra).unwrap_err();
    assert!(
        matches!(e, KernelError::OutOfRange { value: -1, .. }),
        "{e}"
    );

    // act_and_mul: output too small, input stride below 2d.
    let aa = ActAndMulArgs::new(3, 16, Activation::Silu);
    let e = aa.validate(vllm_kernels::DType::F16, 47, 96).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BufferTooSmall {
                name: "out",
                len: 47,
                need: 48,
                ..
            }
        ),
        "{e}"
    );
    let e = ActAndMulArgs {
        input_stride: 31,
        ..aa
    }
    .validate(vllm_kernels::DType::F16, 48, 96)
    .unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BadStride {
                stride: 31,
                row_len: 32,
                ..
            }
        ),
        "{e}"
    );

    // reshape_and_cache: cache length, slot_mapping length, zero block size.
    let l = layout();
    let ca = ReshapeAndCacheArgs::new(3, l);
    let e = ca
        .validate(
            vllm_kernels::DType::F32,
            48,
            48,
            l.numel() - 1,
            l.numel(),
            3,
        )
        .unwrap_err();
    assert!(matches!(e, KernelError::ShapeMismatch { .. }), "{e}");
    let e = ca
        .validate(vllm_kernels::DType::F32, 48, 48, l.numel(), l.numel(), 2)
        .unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::ShapeMismatch {
                expected: 3,
                got: 2,
                ..
            }
        ),
        "{e}"
    );
    let zero = PagedKvLayout { block_size: 0, ..l };
    assert!(
        ReshapeAndCacheArgs::new(3, zero)
            .validate(vllm_kernels::DType::F32, 48, 48, 0, 0, 3)
            .is_err()
    );
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
    let mut a = PagedAttentionArgs::new(2, heads, kv, hs, bs, 2, 20);
    a.version = AttentionVersion::V1;
    let mut out = vec![f32::NAN; 2 * heads * hs];
    cpu::paged_attention(&mut out, &q, &k, &v, &[2, 0, 1, 0], &lens, None, &a).unwrap();
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
    a.sliding_window = Some(5);
    cpu::paged_attention(&mut out, &q, &k, &v, &[2, 0, 1, 0], &lens, None, &a).unwrap();
    let mean5 = (15..20).map(|t| v[l.index(slot1(t), 0, 3)]).sum::<f32>() / 5.0;
    assert!((out[heads * hs + 3] - mean5).abs() < 1e-5);
}

#[test]
fn attention_validation_errors() {
    use vllm_kernels::DType;
    let a = PagedAttentionArgs::new(2, 8, 2, 128, 16, 4, 64);
    let cache = 10 * 2 * 16 * 128;
    assert!(
        a.validate(DType::BF16, 2048, 2048, cache, cache, 8, 2, None)
            .is_ok()
    );
    let e = PagedAttentionArgs { head_size: 72, ..a }
        .validate(DType::BF16, 2048, 2048, cache, cache, 8, 2, None)
        .unwrap_err();
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
    let e = PagedAttentionArgs { block_size: 8, ..a }
        .validate(DType::BF16, 2048, 2048, cache, cache, 8, 2, None)
        .unwrap_err();
    assert!(e.to_string().contains("supported: 16, 32"), "{e}");
    let e = a
        .validate(DType::F32, 2048, 2048, cache, cache, 8, 2, None)
        .unwrap_err();
    assert!(e.to_string().contains("supported: f16, bf16"), "{e}");
    let e = a
        .validate(DType::BF16, 2048, 2048, cache + 1, cache, 8, 2, None)
        .unwrap_err();
    assert!(e.to_string().contains("whole number of blocks"), "{e}");
    let e = a
        .validate(DType::BF16, 2048, 2048, cache, cache, 7, 2, None)
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
        .validate(DType::BF16, 2048, 2048, cache, cache, 8, 2, Some(7))
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
    .validate(DType::BF16, 2048, 2048, cache, cache, 8, 2, None)
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
    let long = PagedAttentionArgs::new(1, 32, 8, 128, 16, 2048, 32768);
    assert_eq!(long.pick_version(), AttentionVersion::V2);
    assert_eq!((long.partition_size(), long.num_partitions()), (2048, 16));
    let eight = PagedAttentionArgs::new(8, 32, 8, 128, 16, 256, 4096);
    assert_eq!(eight.pick_version(), AttentionVersion::V2);
    assert_eq!(eight.partition_size(), 2048);
    let one = PagedAttentionArgs::new(1, 32, 8, 128, 16, 256, 4096);
    assert_eq!(
        (one.pick_version(), one.partition_size()),
        (AttentionVersion::V2, 256)
    );
    assert_eq!(
        PagedAttentionArgs::new(64, 32, 8, 128, 16, 256, 4096).pick_version(),
        AttentionVersion::V1
    );
    assert_eq!(
        PagedAttentionArgs::new(1, 32, 8, 128, 16, 32, 256).pick_version(),
        AttentionVersion::V1
    );
    // Forced v2 with plenty of CTAs still splits in two, and partitions fit every block size.
    let mut big = PagedAttentionArgs::new(64, 32, 8, 128, 32, 128, 4096);
    big.version = AttentionVersion::V2;
    assert_eq!((big.partition_size(), big.num_partitions()), (2048, 2));
    for len in [1usize, 255, 256, 257, 5000, 1 << 20] {
        let a = PagedAttentionArgs::new(3, 28, 4, 128, 32, len.div_ceil(32), len);
        assert!(a.partition_size().is_multiple_of(32) && a.partition_size() >= MIN_PARTITION_SIZE);
        assert!(a.num_partitions() * a.partition_size() >= len);
    }
    // A forced partition size: a power of two in MIN..=MAX_PARTITION_SIZE, else a typed error.
    let mut a = PagedAttentionArgs::new(1, 32, 8, 128, 16, 32, 512);
    let check = |a: &PagedAttentionArgs| a.validate_shapes(4096, 4096, 32768, 32768, 32, 1, None);
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

#[test]
fn fp8_e4m3_rounds_to_nearest_even_and_saturates() {
    use vllm_kernels::Fp8E4m3;
    let enc = |x: f32| Fp8E4m3::from_f32(x).0;
    // Exact values, the largest finite, saturation (infinities too), signs, NaN.
    assert_eq!(enc(0.0), 0x00);
    assert_eq!(enc(-0.0), 0x80);
    assert_eq!(enc(1.0), 0x38);
    assert_eq!(enc(240.0), 0x77);
    assert_eq!(enc(448.0), 0x7e);
    assert_eq!(enc(-448.0), 0xfe);
    assert_eq!(enc(1e6), 0x7e);
    assert_eq!(enc(f32::INFINITY), 0x7e);
    assert_eq!(enc(f32::NEG_INFINITY), 0xfe);
    assert!(Fp8E4m3::from_f32(f32::NAN).to_f32().is_nan());
    // Subnormals (steps of 2^-9) and ties to even there and among normals.
    assert_eq!(enc(2f32.powi(-9)), 0x01);
    assert_eq!(enc(2f32.powi(-10)), 0x00);
    assert_eq!(enc(3.0 * 2f32.powi(-10)), 0x02);
    assert_eq!(enc(7.5 * 2f32.powi(-9)), 0x08); // rounds up into the smallest normal, 2^-6
    assert_eq!(enc(1.0625), 0x38); // halfway between 1 and 1.125: even mantissa 0
    assert_eq!(enc(1.1875), 0x3a); // halfway between 1.125 and 1.25: even mantissa 2
    assert_eq!(enc(432.0), 0x7e); // halfway between 416 and 448
    assert_eq!(enc(1.05), 0x38);
    assert_eq!(enc(1.07), 0x39);
    // Every finite code decodes and encodes back to itself; decoding is monotonic.
    let mut prev = f32::NEG_INFINITY;
    for b in 0u8..=0x7e {
        let x = Fp8E4m3(b).to_f32();
        assert_eq!(enc(x), b, "code {b:#04x} = {x}");
        assert_eq!(enc(-x), b | 0x80, "code {:#04x}", b | 0x80);
        assert!(x > prev || b == 0, "code {b:#04x}");
        prev = x;
    }
    assert_eq!(Fp8E4m3(0x7e).to_f32(), Fp8E4m3::MAX);
    assert!(Fp8E4m3(0x7f).to_f32().is_nan() && Fp8E4m3(0xff).to_f32().is_nan());
}

#[test]
fn reshape_and_cache_fp8_stores_scaled_e4m3_and_checks_its_arguments() {
    use vllm_kernels::{CacheDType, Fp8E4m3};
    let layout = PagedKvLayout {
        num_blocks: 2,
        num_kv_heads: 1,
        block_size: 4,
        head_size: 2,
    };
    let key = [1.0f32, -3.0, 0.5, 1000.0];
    let value = [2.0f32, 4.0, -8.0, 0.25];
    let a = ReshapeAndCacheArgs::fp8(2, layout, 2.0, 4.0);
    assert_eq!(a.cache_dtype, CacheDType::Fp8E4m3);
    let nan = Fp8E4m3(0x7f);
    let (mut kc, mut vc) = (vec![nan; 16], vec![nan; 16]);
    cpu::reshape_and_cache(&key, &value, &mut kc, &mut vc, &[5, -1], &a).unwrap();
    let got: Vec<f32> = kc[10..12]
        .iter()
        .chain(&vc[10..12])
        .map(|x| x.to_f32())
        .collect();
    assert_eq!(got, [0.5, -1.5, 0.5, 1.0]);
    assert!(kc[..10].iter().chain(&kc[12..]).all(|x| x.0 == 0x7f));
    // The second token into slot 0: key 1000 / 2 = 500 saturates to 448.
    cpu::reshape_and_cache(&key, &value, &mut kc, &mut vc, &[-1, 0], &a).unwrap();
    assert_eq!((kc[0].to_f32(), kc[1].to_f32()), (0.25, Fp8E4m3::MAX));
    // A 16-bit entry point with FP8 arguments, a zero scale: typed errors.
    let mut k16 = vec![0f32; 16];
    let mut v16 = vec![0f32; 16];
    let e = cpu::reshape_and_cache(&key, &value, &mut k16, &mut v16, &[0, 1], &a).unwrap_err();
    assert!(e.to_string().contains("fp8_e4m3"), "{e}");
    let bad = ReshapeAndCacheArgs::fp8(2, layout, 0.0, 1.0);
    let e = cpu::reshape_and_cache(&key, &value, &mut kc, &mut vc, &[0, 1], &bad).unwrap_err();
    assert!(e.to_string().contains("k_scale"), "{e}");
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
        let mut a = PrefillAttentionArgs::new(1, q_len, heads, kv, hs, bs, blocks, q_len);
        a.sliding_window = window;
        let mut out = vec![f32::NAN; q.len()];
        cpu::prefill_attention(
            &mut out,
            &q,
            &kc,
            &vc,
            &table,
            &[0, q_len as i32],
            &[len as i32],
            &a,
        )
        .unwrap();
        for i in 0..q_len {
            let row = &q[i * heads * hs..][..heads * hs];
            let mut d = PagedAttentionArgs::new(1, heads, kv, hs, bs, blocks, prefix + i + 1);
            d.sliding_window = window;
            let mut want = vec![f32::NAN; heads * hs];
            let l = [(prefix + i + 1) as i32];
            cpu::paged_attention(&mut want, row, &kc, &vc, &table, &l, None, &d).unwrap();
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
    let a = PrefillAttentionArgs::new(1, q_len, heads, kv, hs, bs, blocks, q_len);
    let mut out = vec![0f32; q.len()];
    let e = cpu::prefill_attention(&mut out, &q, &kc, &vc, &table, &[1, 12], &[len as i32], &a)
        .unwrap_err();
    assert!(e.to_string().contains("cu_query_lens"), "{e}");
    let e = cpu::prefill_attention(&mut out, &q, &kc, &vc, &table, &[0, 12], &[5], &a).unwrap_err();
    assert!(e.to_string().contains("seq_len 5"), "{e}");
}

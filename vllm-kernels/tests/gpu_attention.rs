//! Paged decode attention (v1 and v2) on the GPU against the CPU reference: every head size,
//! both block sizes, GQA ratios 1, 4 and 8, ragged lengths (1, block boundaries +- 1, long ones
//! past 8k), shuffled non-contiguous block tables, sliding window and ALiBi; outputs poisoned.
#![cfg(feature = "cuda")]

mod common;

use common::*;
use half::{bf16, f16};
use rand::{Rng, rngs::StdRng};
use std::sync::Arc;
use vllm_kernels::args::*;
use vllm_kernels::cuda::{self, CudaSlice, CudaStream, GpuFloat};
use vllm_kernels::{Float, Fp8E4m3, KernelError, cpu};

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
    let mut a = PagedAttentionArgs::new(n, c.heads, c.kv_heads, c.hs, c.bs, max_blocks, max_len);
    a.sliding_window = c.window;
    let mut want = vec![T::nan(); n * c.heads * c.hs];
    cpu::paged_attention(
        &mut want,
        &q,
        &kc,
        &vc,
        &tables,
        &c.lens,
        alibi.as_deref(),
        &a,
    )
    .unwrap();
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
        cuda::paged_attention(s, &mut out, &dq, &dk, &dv, &dt, &dl, dal.as_ref(), None, &a)
            .unwrap();
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

#[test]
fn paged_attention_rejects_unsupported_shapes_before_launch() {
    let Some(s) = stream("paged_attention_rejects_unsupported_shapes_before_launch") else {
        return;
    };
    let q = s.clone_htod(&vec![bf16::ONE; 8 * 72]).unwrap();
    let cache = s.clone_htod(&vec![bf16::ONE; 2 * 16 * 72]).unwrap();
    let tables = s.clone_htod(&[0i32, 1]).unwrap();
    let lens = s.clone_htod(&[20i32]).unwrap();
    let mut out: CudaSlice<bf16> = s.clone_htod(&vec![bf16::NAN; 8 * 72]).unwrap();
    let a = PagedAttentionArgs::new(1, 8, 1, 72, 16, 2, 20);
    let e = cuda::paged_attention(
        &s, &mut out, &q, &cache, &cache, &tables, &lens, None, None, &a,
    )
    .unwrap_err();
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
    let a = PagedAttentionArgs::new(1, 8, 1, 64, 8, 2, 16);
    let e = cuda::paged_attention(
        &s, &mut out, &q, &cache, &cache, &tables, &lens, None, None, &a,
    )
    .unwrap_err();
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
    let a = PagedAttentionArgs::new(1, 8, 3, 64, 16, 2, 20);
    let e = cuda::paged_attention(
        &s, &mut out, &q, &cache, &cache, &tables, &lens, None, None, &a,
    )
    .unwrap_err();
    assert!(e.to_string().contains("not a multiple"), "{e}");
    let qf = s.clone_htod(&vec![1.0f32; 8 * 64]).unwrap();
    let cf = s.clone_htod(&vec![1.0f32; 2 * 16 * 64]).unwrap();
    let mut of = s.clone_htod(&vec![f32::NAN; 8 * 64]).unwrap();
    let a = PagedAttentionArgs::new(1, 8, 1, 64, 16, 2, 20);
    let e = cuda::paged_attention(&s, &mut of, &qf, &cf, &cf, &tables, &lens, None, None, &a)
        .unwrap_err();
    assert!(
        matches!(e, KernelError::Unsupported { what: "dtype", .. }),
        "{e}"
    );
    assert!(s.clone_dtoh(&out).unwrap().iter().all(|v| v.is_nan()));
    assert!(s.clone_dtoh(&of).unwrap().iter().all(|v| v.is_nan()));
}

/// The FP8 path end to end: K/V rows written by reshape_and_cache into a 16-bit cache and an FP8
/// cache (both poisoned with NaN first, so the unwritten tail of each last block is NaN), the FP8
/// bytes compared bit for bit with the CPU's, then decode attention over the FP8 cache compared
/// with the CPU reference over the same bytes (the dtype's tolerance), and with the kernel's
/// result over the 16-bit cache. Tolerance of that last comparison: the quantization changes the
/// exact answer by q = |ref_fp8 - ref_16| / |ref_16| (both CPU references, computed here on these
/// inputs), and each kernel is within `tol` of its reference, so |gpu_fp8 - gpu_16| / |gpu_16| <=
/// q + 2 tol up to second-order terms. q itself is bounded by e4m3's precision: 3 mantissa bits,
/// a relative rounding error of at most 2^-4 per element; we check q < 2^-4.
#[allow(clippy::too_many_arguments)]
fn run_fp8_case<T: GpuFloat + Float>(
    s: &Arc<CudaStream>,
    r: &mut StdRng,
    hs: usize,
    bs: usize,
    heads: usize,
    kv_heads: usize,
    lens: &[i32],
    window: Option<usize>,
) {
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
    let mut a16 = PagedAttentionArgs::new(n, heads, kv_heads, hs, bs, max_blocks, max_len);
    a16.sliding_window = window;
    let a8 = a16.with_fp8_cache(k_scale, v_scale);
    let mut ref8 = vec![T::nan(); n * heads * hs];
    let mut ref16 = ref8.clone();
    cpu::paged_attention(&mut ref8, &q, &kc8, &vc8, &tables, lens, None, &a8).unwrap();
    cpu::paged_attention(&mut ref16, &q, &kc16, &vc16, &tables, lens, None, &a16).unwrap();
    let quant = rel_diff(&ref8, &ref16);

    // GPU: the same writes.
    let what = format!(
        "fp8 {} hs={hs} bs={bs} heads={heads}/{kv_heads} lens={lens:?} window={window:?}",
        T::DTYPE
    );
    let (gk8, gv8, gk16, gv16) = gpu_fp8_and_16bit_caches(
        s,
        &keys,
        &values,
        &slots,
        layout.numel(),
        &w8,
        &w16,
        (&kc8, &vc8),
        &what,
    );

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
        cuda::paged_attention(s, &mut o8, &dq, &gk8, &gv8, &dt, &dl, None, None, &b8).unwrap();
        cuda::paged_attention(s, &mut o16, &dq, &gk16, &gv16, &dt, &dl, None, None, &b16).unwrap();
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
                run_fp8_case::<bf16>(&s, &mut r, hs, bs, 2 * ratio, 2, &lens, None);
            }
        }
    }
    run_fp8_case::<f16>(&s, &mut r, 128, 16, 32, 8, &[8193, 17, 4000], None);
    run_fp8_case::<bf16>(&s, &mut r, 128, 32, 28, 4, &[8300, 600], Some(4096));
    run_fp8_case::<bf16>(&s, &mut r, 256, 16, 8, 1, &[9000, 31], None);
}

#[test]
fn fp8_rejects_unsupported_head_size_and_mismatched_caches() {
    let Some(s) = stream("fp8_rejects_unsupported_head_size_and_mismatched_caches") else {
        return;
    };
    let q = s.clone_htod(&vec![bf16::ONE; 8 * 64]).unwrap();
    let cache = s.clone_htod(&vec![Fp8E4m3(0x38); 2 * 16 * 64]).unwrap();
    let cache16 = s.clone_htod(&vec![bf16::ONE; 2 * 16 * 64]).unwrap();
    let tables = s.clone_htod(&[0i32, 1]).unwrap();
    let lens = s.clone_htod(&[20i32]).unwrap();
    let mut out: CudaSlice<bf16> = s.clone_htod(&vec![bf16::NAN; 8 * 64]).unwrap();
    let a = PagedAttentionArgs::new(1, 8, 1, 64, 16, 2, 20).with_fp8_cache(0.5, 0.5);
    let e = cuda::paged_attention(
        &s, &mut out, &q, &cache, &cache, &tables, &lens, None, None, &a,
    )
    .unwrap_err();
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
    let a = PagedAttentionArgs::new(1, 8, 1, 64, 16, 2, 20);
    let e = cuda::paged_attention(
        &s, &mut out, &q, &cache, &cache, &tables, &lens, None, None, &a,
    )
    .unwrap_err();
    assert!(e.to_string().contains("fp8_e4m3"), "{e}");
    let a = a.with_fp8_cache(1.0, 1.0);
    let e = cuda::paged_attention(
        &s, &mut out, &q, &cache16, &cache16, &tables, &lens, None, None, &a,
    )
    .unwrap_err();
    assert!(e.to_string().contains("fp8_e4m3"), "{e}");
    // A scale that is not finite and positive.
    let a = PagedAttentionArgs::new(1, 8, 1, 128, 16, 1, 16).with_fp8_cache(0.0, 1.0);
    let c128 = s.clone_htod(&vec![Fp8E4m3(0x38); 16 * 128]).unwrap();
    let q128 = s.clone_htod(&vec![bf16::ONE; 8 * 128]).unwrap();
    let mut o128: CudaSlice<bf16> = s.clone_htod(&vec![bf16::NAN; 8 * 128]).unwrap();
    let e = cuda::paged_attention(
        &s, &mut o128, &q128, &c128, &c128, &tables, &lens, None, None, &a,
    )
    .unwrap_err();
    assert!(e.to_string().contains("k_scale"), "{e}");
    assert!(s.clone_dtoh(&out).unwrap().iter().all(|v| v.is_nan()));
    assert!(s.clone_dtoh(&o128).unwrap().iter().all(|v| v.is_nan()));
}

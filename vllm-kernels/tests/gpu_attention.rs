//! Paged decode attention (v1 and v2) on the GPU against the CPU reference: every head size,
//! both block sizes, GQA ratios 1, 4 and 8, ragged lengths (1, block boundaries +- 1, long ones
//! past 8k), shuffled non-contiguous block tables, sliding window and ALiBi; outputs poisoned.
#![cfg(feature = "cuda")]

mod common;

use common::*;
use half::{bf16, f16};
use rand::{Rng, rngs::StdRng, seq::SliceRandom};
use std::sync::Arc;
use vllm_kernels::args::*;
use vllm_kernels::cuda::{self, CudaSlice, CudaStream, GpuFloat};
use vllm_kernels::{KernelError, cpu};

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
    let max_blocks = max_len.div_ceil(c.bs) + 1; // a spare column, never read
    let used: usize = c.lens.iter().map(|&l| (l as usize).div_ceil(c.bs)).sum();
    let num_blocks = used + 7;
    // Every sequence gets distinct blocks, in shuffled order.
    let mut ids: Vec<i32> = (0..num_blocks as i32).collect();
    ids.shuffle(r);
    let mut tables = vec![-1i32; c.lens.len() * max_blocks];
    let mut next = 0;
    for (i, &l) in c.lens.iter().enumerate() {
        for b in 0..(l as usize).div_ceil(c.bs) {
            tables[i * max_blocks + b] = ids[next];
            next += 1;
        }
    }
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

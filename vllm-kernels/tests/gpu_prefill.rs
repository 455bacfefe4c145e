//! Prefill attention over the paged KV cache on the GPU against the CPU reference: every head
//! size, both block sizes, GQA ratios 1, 4 and 8, sequences with and without a cached prefix
//! (prefix lengths at block boundaries +- 1, query runs across the 64-row tiles), shuffled
//! non-contiguous block tables, a sliding window and a long prefix; outputs poisoned.
#![cfg(feature = "cuda")]

mod common;

use common::*;
use half::{bf16, f16};
use rand::rngs::StdRng;
use std::sync::Arc;
use vllm_kernels::args::*;
use vllm_kernels::cuda::{self, CudaSlice, CudaStream, GpuFloat};
use vllm_kernels::{KernelError, cpu};

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
    let mut a = PrefillAttentionArgs::new(
        n, tokens, c.heads, c.kv_heads, c.hs, c.bs, max_blocks, max_q,
    );
    a.sliding_window = c.window;
    let mut want = vec![T::nan(); tokens * c.heads * c.hs];
    cpu::prefill_attention(&mut want, &q, &kc, &vc, &tables, &cu, &lens, &a).unwrap();
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
    let mut out = s.clone_htod(&vec![T::nan(); want.len()]).unwrap();
    cuda::prefill_attention(s, &mut out, &dq, &dk, &dv, &dt, &dcu, &dl, &a).unwrap();
    let got = s.clone_dtoh(&out).unwrap();
    let what = format!(
        "prefill {} hs={} bs={} heads={}/{} seqs={:?} window={:?}",
        T::DTYPE,
        c.hs,
        c.bs,
        c.heads,
        c.kv_heads,
        c.seqs,
        c.window
    );
    assert_close(&what, &got, &want, T::DTYPE.tolerance());
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

#[test]
fn prefill_attention_rejects_unsupported_shapes_before_launch() {
    let Some(s) = stream("prefill_attention_rejects_unsupported_shapes_before_launch") else {
        return;
    };
    let q = s.clone_htod(&vec![bf16::ONE; 4 * 8 * 72]).unwrap();
    let cache = s.clone_htod(&vec![bf16::ONE; 2 * 16 * 72]).unwrap();
    let tables = s.clone_htod(&[0i32, 1]).unwrap();
    let cu = s.clone_htod(&[0i32, 4]).unwrap();
    let lens = s.clone_htod(&[20i32]).unwrap();
    let mut out: CudaSlice<bf16> = s.clone_htod(&vec![bf16::NAN; 4 * 8 * 72]).unwrap();
    let a = PrefillAttentionArgs::new(1, 4, 8, 1, 72, 16, 2, 4);
    let e = cuda::prefill_attention(&s, &mut out, &q, &cache, &cache, &tables, &cu, &lens, &a)
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
    let a = PrefillAttentionArgs::new(1, 4, 8, 1, 64, 8, 2, 4);
    let e = cuda::prefill_attention(&s, &mut out, &q, &cache, &cache, &tables, &cu, &lens, &a)
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
    assert!(e.to_string().contains("16, 32"), "{e}");
    let qf = s.clone_htod(&vec![1.0f32; 4 * 8 * 64]).unwrap();
    let cf = s.clone_htod(&vec![1.0f32; 2 * 16 * 64]).unwrap();
    let mut of = s.clone_htod(&vec![f32::NAN; 4 * 8 * 64]).unwrap();
    let a = PrefillAttentionArgs::new(1, 4, 8, 1, 64, 16, 2, 4);
    let e =
        cuda::prefill_attention(&s, &mut of, &qf, &cf, &cf, &tables, &cu, &lens, &a).unwrap_err();
    assert!(
        matches!(e, KernelError::Unsupported { what: "dtype", .. }),
        "{e}"
    );
    assert!(s.clone_dtoh(&out).unwrap().iter().all(|v| v.is_nan()));
    assert!(s.clone_dtoh(&of).unwrap().iter().all(|v| v.is_nan()));
}

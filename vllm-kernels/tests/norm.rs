//! RMSNorm, fused add + RMSNorm and per-head RMSNorm: the CPU reference against f64 formulas
//! (`cpu` tests), the typed errors of bad arguments on both devices (`test_device!` cases: the
//! same error, nothing written), and every CUDA kernel against the CPU reference on fresh random
//! inputs with outputs poisoned, for f32, f16 and bf16 (tolerances 1e-5 / 1e-3 / 1e-2 relative;
//! `gpu` tests, SKIP without a GPU).

#[macro_use]
mod common;

use common::device::Device;
use common::*;
use half::bf16;
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
fn head_rms_norm_is_rms_norm_of_each_head() {
    let mut r = rng("head_rms_norm_is_rms_norm_of_each_head");
    let (t, nh, hs, stride) = (3, 4, 16, 100);
    let x0: Vec<f32> = random(t * stride, -2.0, 2.0, &mut r);
    let w: Vec<f32> = random(hs, 0.5, 1.5, &mut r);
    let mut a = HeadRmsNormArgs::new(t, nh, hs, 1e-6);
    a.token_stride = stride;
    // A view exactly as long as needed.
    let mut x = x0.clone();
    let end = (t - 1) * stride + nh * hs;
    cpu::head_rms_norm(&mut x[..end], &w, &a).unwrap();
    let mut want = x0.clone();
    for ti in 0..t {
        for h in 0..nh {
            let off = ti * stride + h * hs;
            let mut head = vec![f32::NAN; hs];
            cpu::rms_norm(
                &mut head,
                &x0[off..off + hs],
                &w,
                &RmsNormArgs::new(1, hs, 1e-6),
            )
            .unwrap();
            want[off..off + hs].copy_from_slice(&head);
        }
    }
    assert_bits_eq("head_rms_norm", &x, &want);
}

#[test]
fn rms_norm_validation_errors() {
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
}

#[test]
fn head_rms_norm_validation_errors() {
    // head_rms_norm: the view may end right after the last head, not one element earlier.
    let w = [1.0f32; 8];
    let mut a = HeadRmsNormArgs::new(3, 2, 8, 1e-6);
    a.token_stride = 40;
    let mut x = vec![1.0f32; 96];
    cpu::head_rms_norm(&mut x, &w, &a).unwrap();
    let e = cpu::head_rms_norm(&mut x[..95], &w, &a).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BufferTooSmall {
                name: "x",
                len: 95,
                need: 96,
                ..
            }
        ),
        "{e}"
    );
    a.token_stride = 15;
    let e = cpu::head_rms_norm(&mut x, &w, &a).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BadStride {
                stride: 15,
                row_len: 16,
                ..
            }
        ),
        "{e}"
    );
    let e = cpu::head_rms_norm(&mut x, &w[..7], &HeadRmsNormArgs::new(3, 2, 8, 1e-6)).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::ShapeMismatch {
                what: "weight length (head_size)",
                expected: 8,
                got: 7,
                ..
            }
        ),
        "{e}"
    );
    let e = cpu::head_rms_norm(&mut x, &w, &HeadRmsNormArgs::new(3, 0, 8, 1e-6)).unwrap_err();
    assert!(e.to_string().contains("num_heads must be > 0"), "{e}");
}

/// Bad input is a typed error and nothing is written: the poisoned output stays poisoned.
fn rms_norm_rejects_bad_input(d: &impl Device) {
    let data = vec![bf16::ONE; 4096];
    let mut out = vec![bf16::NAN; 4096];
    let e = d
        .rms_norm(&mut out, &data, &data, &RmsNormArgs::new(2, 4096, 1e-5))
        .unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BufferTooSmall { .. } | KernelError::ShapeMismatch { .. }
        ),
        "{e}"
    );
    let mut a = RmsNormArgs::new(1, 64, 1e-5);
    a.input_stride = 32;
    let w = [bf16::ONE; 64];
    let e = d.rms_norm(&mut out, &data, &w, &a).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BadStride {
                stride: 32,
                row_len: 64,
                ..
            }
        ),
        "{e}"
    );
    assert!(out.iter().all(|v| v.is_nan()));
}

fn fused_add_rms_norm_rejects_bad_input(d: &impl Device) {
    let w = [bf16::ONE; 64];
    let (mut x, mut res) = (vec![bf16::NAN; 4096], vec![bf16::NAN; 4096]);
    let e = d
        .fused_add_rms_norm(
            &mut x,
            &mut res,
            &w,
            &FusedAddRmsNormArgs::new(1, 128, 1e-5),
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::ShapeMismatch {
                expected: 128,
                got: 64,
                ..
            }
        ),
        "{e}"
    );
    assert!(x.iter().chain(&res).all(|v| v.is_nan()));
}

fn head_rms_norm_rejects_bad_input(d: &impl Device) {
    let mut x = vec![bf16::NAN; 1024];
    let w = [bf16::ONE; 128];
    let mut a = HeadRmsNormArgs::new(3, 2, 128, 1e-6);
    a.token_stride = 448;
    let e = d.head_rms_norm(&mut x, &w, &a).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BufferTooSmall {
                name: "x",
                len: 1024,
                need: 1152,
                ..
            }
        ),
        "{e}"
    );
    a.token_stride = 255;
    let e = d.head_rms_norm(&mut x, &w, &a).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BadStride {
                stride: 255,
                row_len: 256,
                ..
            }
        ),
        "{e}"
    );
    assert!(x.iter().all(|v| v.is_nan()));
}

test_device!(
    rms_norm_rejects_bad_input,
    fused_add_rms_norm_rejects_bad_input,
    head_rms_norm_rejects_bad_input,
);

#[cfg(feature = "cuda")]
mod gpu {
    use super::*;
    use rand::rngs::StdRng;
    use std::sync::Arc;
    use vllm_kernels::cuda::{self, CudaStream, GpuFloat};

    fn tol<T: GpuFloat>() -> f32 {
        T::DTYPE.tolerance()
    }

    // (tokens, hidden, extra stride): vector path, 1024-thread path, unaligned hidden, strided
    // rows, misaligned stride (scalar path), the fallback for rows too long for registers.
    const NORM_SHAPES: &[(usize, usize, usize)] = &[
        (1, 4096, 0),
        (37, 4096, 0),
        (5, 8192, 0),
        (3, 100, 0),
        (9, 2048, 8),
        (4, 1024, 1),
        (2, 16384, 0),
        (2, 65536, 0),
        (1, 32, 0),
    ];

    fn rms_norm_case<T: GpuFloat>(s: &Arc<CudaStream>, r: &mut StdRng) {
        for &(t, h, pad) in NORM_SHAPES {
            let mut a = RmsNormArgs::new(t, h, 1e-6);
            a.input_stride = h + pad;
            a.out_stride = h + pad;
            let x: Vec<T> = random(t * (h + pad), -2.0, 2.0, r);
            let w: Vec<T> = random(h, 0.5, 1.5, r);
            let mut want = vec![T::nan(); t * (h + pad)];
            cpu::rms_norm(&mut want, &x, &w, &a).unwrap();
            let mut out = up(s, &vec![T::nan(); t * (h + pad)]);
            cuda::rms_norm(s, &mut out, &up(s, &x), &up(s, &w), &a).unwrap();
            let got = down(s, &out);
            let what = format!("rms_norm {} {t}x{h}+{pad}", T::DTYPE);
            for i in 0..t {
                let row = i * (h + pad);
                assert_close(&what, &got[row..row + h], &want[row..row + h], tol::<T>());
                assert!(
                    got[row + h..(row + h + pad).min(got.len())]
                        .iter()
                        .all(|v| v.to_f32().is_nan()),
                    "{what}: stride gap written"
                );
            }
        }
    }

    #[test]
    fn rms_norm_matches_cpu() {
        let Some(s) = stream("rms_norm_matches_cpu") else {
            return;
        };
        let mut r = rng("rms_norm_matches_cpu");
        for_each_dtype!(rms_norm_case, &s, &mut r);
    }

    fn fused_add_case<T: GpuFloat>(s: &Arc<CudaStream>, r: &mut StdRng) {
        for &(t, h, pad) in NORM_SHAPES {
            let mut a = FusedAddRmsNormArgs::new(t, h, 1e-6);
            a.input_stride = h + pad;
            let x: Vec<T> = random(t * (h + pad), -2.0, 2.0, r);
            let res: Vec<T> = random(t * h, -2.0, 2.0, r);
            let w: Vec<T> = random(h, 0.5, 1.5, r);
            let (mut wx, mut wr) = (x.clone(), res.clone());
            cpu::fused_add_rms_norm(&mut wx, &mut wr, &w, &a).unwrap();
            let (mut dx, mut dr) = (up(s, &x), up(s, &res));
            cuda::fused_add_rms_norm(s, &mut dx, &mut dr, &up(s, &w), &a).unwrap();
            let what = format!("fused_add_rms_norm {} {t}x{h}+{pad}", T::DTYPE);
            assert_close(&format!("{what} residual"), &down(s, &dr), &wr, tol::<T>());
            assert_close(&format!("{what} out"), &down(s, &dx), &wx, tol::<T>());
        }
    }

    #[test]
    fn fused_add_rms_norm_matches_cpu() {
        let Some(s) = stream("fused_add_rms_norm_matches_cpu") else {
            return;
        };
        let mut r = rng("fused_add_rms_norm_matches_cpu");
        for_each_dtype!(fused_add_case, &s, &mut r);
    }

    fn head_norm_case<T: GpuFloat>(s: &Arc<CudaStream>, r: &mut StdRng) {
        // (tokens, q heads, kv heads, head size): Qwen3-8B (32/8x128), Qwen3-0.6B (16/8x128), odd.
        let shapes: &[(usize, usize, usize, usize)] = &[
            (1, 32, 8, 128),
            (77, 32, 8, 128),
            (5, 16, 8, 128),
            (3, 4, 2, 256),
            (6, 3, 1, 36),
            (2, 2, 1, 1),
        ];
        for &(t, nq, nkv, hs) in shapes {
            // A fused qkv buffer: each token holds q (nq heads), k and v (nkv heads each).
            let stride = (nq + 2 * nkv) * hs;
            let qkv: Vec<T> = random(t * stride, -2.0, 2.0, r);
            let wq: Vec<T> = random(hs, 0.5, 1.5, r);
            let wk: Vec<T> = random(hs, 0.5, 1.5, r);
            let mut want = qkv.clone();
            let mut dqkv = up(s, &qkv);
            for (off, heads, w) in [(0, nq, &wq), (nq * hs, nkv, &wk)] {
                let mut a = HeadRmsNormArgs::new(t, heads, hs, 1e-6);
                a.token_stride = stride;
                // The view ends right after the last token's last head: exactly the length needed.
                let end = off + (t - 1) * stride + heads * hs;
                cpu::head_rms_norm(&mut want[off..end], w, &a).unwrap();
                let mut view = dqkv.slice_mut(off..end);
                cuda::head_rms_norm(s, &mut view, &up(s, w), &a).unwrap();
            }
            let got = down(s, &dqkv);
            let what = format!("head_rms_norm {} t={t} {nq}/{nkv}x{hs}", T::DTYPE);
            assert_close(&what, &got, &want, T::DTYPE.tolerance());
            // v untouched, bit for bit.
            for ti in 0..t {
                let v = ti * stride + (nq + nkv) * hs..(ti + 1) * stride;
                assert_bits_eq(&format!("{what} v"), &got[v.clone()], &qkv[v]);
            }
        }
    }

    #[test]
    fn head_rms_norm_matches_cpu() {
        let Some(s) = stream("head_rms_norm_matches_cpu") else {
            return;
        };
        let mut r = rng("head_rms_norm_matches_cpu");
        for_each_dtype!(head_norm_case, &s, &mut r);
    }
}

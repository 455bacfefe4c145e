//! Rotary embedding (NeoX and GPT-J styles): the CPU reference against the complex rotation in
//! f64 and its typed errors (`cpu` tests), bad arguments on both devices (`test_device!`), and
//! the CUDA kernel against the CPU reference for f32, f16 and bf16 (`gpu` tests, SKIP without a
//! GPU).

#[macro_use]
mod common;

use common::device::Device;
use common::*;
use half::bf16;
use vllm_kernels::KernelError;
use vllm_kernels::args::*;
use vllm_kernels::cpu;

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

/// The fused form the model runners use (q | k | v rows, the key heads at an offset) rotates
/// exactly what the separate form does; key heads overlapping the query heads are refused.
#[test]
fn rotary_qkv_equals_separate_query_and_key() {
    let mut r = rng("rotary_qkv_equals_separate_query_and_key");
    let (t, nh, nkv, hs, maxp) = (5, 4, 2, 32, 64);
    let (qw, kw) = (nh * hs, nkv * hs);
    let row = qw + 2 * kw;
    let cache: Vec<f32> = cos_sin_cache(maxp, hs);
    let qkv0: Vec<f32> = random(t * row, -1.0, 1.0, &mut r);
    let pos: Vec<i64> = (0..t)
        .map(|_| rand::Rng::random_range(&mut r, 0..maxp as i64))
        .collect();
    let mut a = RotaryArgs::new(t, nh, nkv, hs, hs, maxp, true);
    let (mut q, mut k): (Vec<f32>, Vec<f32>) = (Vec::new(), Vec::new());
    for x in qkv0.chunks_exact(row) {
        q.extend_from_slice(&x[..qw]);
        k.extend_from_slice(&x[qw..qw + kw]);
    }
    cpu::rotary_embedding(&pos, &mut q, Some(&mut k), &cache, &a).unwrap();
    (a.query_stride, a.key_stride) = (row, row);
    let mut qkv = qkv0.clone();
    cpu::rotary_embedding_qkv(&pos, &mut qkv, qw, &cache, &a).unwrap();
    for (i, x) in qkv.chunks_exact(row).enumerate() {
        assert_eq!(&x[..qw], &q[i * qw..][..qw], "query row {i}");
        assert_eq!(&x[qw..qw + kw], &k[i * kw..][..kw], "key row {i}");
        assert_eq!(
            &x[qw + kw..],
            &qkv0[i * row + qw + kw..][..kw],
            "value row {i}"
        );
    }
    let e = cpu::rotary_embedding_qkv(&pos, &mut qkv, qw - 1, &cache, &a).unwrap_err();
    assert!(e.to_string().contains("key_offset"), "{e}");
}

#[test]
fn rotary_validation_errors() {
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
}

/// Bad input is a typed error and nothing is written.
fn rotary_rejects_bad_input(d: &impl Device) {
    let mut q = vec![bf16::NAN; 4096];
    let pos = [0i64, 1];
    let cache = vec![bf16::ONE; 10 * 64];
    let ra = RotaryArgs::new(2, 8, 2, 64, 63, 10, true);
    let e = d
        .rotary_embedding(&pos, (&mut q, None), &cache, &ra)
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
    let ra = RotaryArgs::new(3, 8, 2, 64, 64, 10, true);
    let e = d
        .rotary_embedding(&pos, (&mut q, None), &cache, &ra)
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
    assert!(q.iter().all(|v| v.is_nan()));
}

test_device!(rotary_rejects_bad_input);

#[cfg(feature = "cuda")]
mod gpu {
    use super::*;
    use rand::{Rng, rngs::StdRng};
    use std::sync::Arc;
    use vllm_kernels::cuda::{self, CudaSlice, CudaStream, GpuFloat};

    fn tol<T: GpuFloat>() -> f32 {
        T::DTYPE.tolerance()
    }

    fn rotary_case<T: GpuFloat>(s: &Arc<CudaStream>, r: &mut StdRng) {
        // (tokens, heads, kv heads, head size, rot dim, extra q stride)
        let shapes: &[(usize, usize, usize, usize, usize, usize)] = &[
            (1, 32, 8, 128, 128, 0),
            (65, 32, 8, 128, 128, 0),
            (17, 14, 2, 64, 64, 0),
            (9, 8, 1, 256, 64, 0),
            (7, 6, 6, 80, 80, 16),
            (5, 4, 2, 96, 48, 3),
            (3, 3, 1, 10, 6, 0),
        ];
        let maxp = 8192;
        for &(t, nh, nkv, hs, rot, pad) in shapes {
            for neox in [true, false] {
                let mut a = RotaryArgs::new(t, nh, nkv, hs, rot, maxp, neox);
                a.query_stride += pad;
                let cache: Vec<T> = cos_sin_cache(maxp, rot);
                let pos: Vec<i64> = (0..t).map(|_| r.random_range(0..maxp as i64)).collect();
                let q: Vec<T> = random(t * a.query_stride, -1.0, 1.0, r);
                let k: Vec<T> = random(t * nkv * hs, -1.0, 1.0, r);
                let (mut wq, mut wk) = (q.clone(), k.clone());
                cpu::rotary_embedding(&pos, &mut wq, Some(&mut wk), &cache, &a).unwrap();
                let (mut dq, mut dk) = (up(s, &q), up(s, &k));
                cuda::rotary_embedding(s, &up(s, &pos), &mut dq, Some(&mut dk), &up(s, &cache), &a)
                    .unwrap();
                let what = format!(
                    "rotary {} neox={neox} t={t} {nh}/{nkv}x{hs} rot={rot} pad={pad}",
                    T::DTYPE
                );
                assert_close(&format!("{what} q"), &down(s, &dq), &wq, tol::<T>());
                assert_close(&format!("{what} k"), &down(s, &dk), &wk, tol::<T>());
                // Query only.
                let mut dq = up(s, &q);
                cuda::rotary_embedding(
                    s,
                    &up(s, &pos),
                    &mut dq,
                    None::<&mut CudaSlice<T>>,
                    &up(s, &cache),
                    &a,
                )
                .unwrap();
                assert_close(&format!("{what} q only"), &down(s, &dq), &wq, tol::<T>());
            }
        }
    }

    #[test]
    fn rotary_embedding_matches_cpu() {
        let Some(s) = stream("rotary_embedding_matches_cpu") else {
            return;
        };
        let mut r = rng("rotary_embedding_matches_cpu");
        for_each_dtype!(rotary_case, &s, &mut r);
    }
}

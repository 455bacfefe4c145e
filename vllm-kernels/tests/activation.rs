//! Gated activations (SiLU, GELU erf / tanh) times the up projection: the CPU reference against
//! f64 formulas and its typed errors (`cpu` tests), a short input on both devices
//! (`test_device!`), and the CUDA kernel against the CPU reference for f32, f16 and bf16 (`gpu`
//! tests, SKIP without a GPU).

#[macro_use]
mod common;

use common::device::Device;
use common::*;
use half::bf16;
use vllm_kernels::KernelError;
use vllm_kernels::args::*;
use vllm_kernels::cpu;

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

#[test]
fn act_and_mul_validation_errors() {
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
}

/// `silu_and_mul` of 2 x 2048 with an input of 4096 elements: too short, nothing written.
fn silu_and_mul_rejects_short_input(d: &impl Device) {
    let data = vec![bf16::ONE; 4096];
    let mut o = vec![bf16::NAN; 4096];
    let a = ActAndMulArgs::new(2, 2048, Activation::Silu);
    let e = d.act_and_mul(&mut o, &data, &a).unwrap_err();
    assert!(
        matches!(e, KernelError::BufferTooSmall { name: "input", .. }),
        "{e}"
    );
    assert!(o.iter().all(|v| v.is_nan()));
}

test_device!(silu_and_mul_rejects_short_input);

#[cfg(feature = "cuda")]
mod gpu {
    use super::*;
    use rand::rngs::StdRng;
    use std::sync::Arc;
    use vllm_kernels::cuda::{self, CudaStream, GpuFloat};

    fn tol<T: GpuFloat>() -> f32 {
        T::DTYPE.tolerance()
    }

    fn act_case<T: GpuFloat>(s: &Arc<CudaStream>, r: &mut StdRng) {
        let shapes: &[(usize, usize, usize)] = &[
            (1, 4096, 0),
            (33, 4096, 0),
            (7, 11008, 0),
            (5, 100, 0),
            (4, 512, 8),
            (3, 64, 1),
        ];
        for act in [Activation::Silu, Activation::GeluErf, Activation::GeluTanh] {
            for &(t, d, pad) in shapes {
                let mut a = ActAndMulArgs::new(t, d, act);
                a.input_stride += pad;
                let x: Vec<T> = random(t * a.input_stride, -6.0, 6.0, r);
                let mut want = vec![T::nan(); t * d];
                cpu::act_and_mul(&mut want, &x, &a).unwrap();
                let mut out = up(s, &vec![T::nan(); t * d]);
                cuda::act_and_mul(s, &mut out, &up(s, &x), &a).unwrap();
                let what = format!("{} {} {t}x{d}+{pad}", act.name(), T::DTYPE);
                assert_close(&what, &down(s, &out), &want, tol::<T>());
            }
        }
    }

    #[test]
    fn act_and_mul_matches_cpu() {
        let Some(s) = stream("act_and_mul_matches_cpu") else {
            return;
        };
        let mut r = rng("act_and_mul_matches_cpu");
        for_each_dtype!(act_case, &s, &mut r);
    }
}

//! Row ops of the runner: gather_rows (embedding lookup, last-token rows) and add_bias. The CPU
//! reference's exact copies and sums and its typed errors (`cpu` tests), bad arguments on both
//! devices (`test_device!`), and the CUDA kernels against the CPU reference bit for bit for f32,
//! f16 and bf16 (`gpu` tests, SKIP without a GPU).

#[macro_use]
mod common;

use common::device::Device;
use common::*;
use half::bf16;
use vllm_kernels::KernelError;
use vllm_kernels::args::*;
use vllm_kernels::cpu;

#[test]
fn gather_rows_copies_rows_and_refuses_bad_ids() {
    let mut r = rng("gather_rows_copies_rows_and_refuses_bad_ids");
    let table: Vec<bf16> = random(6 * 10, -1.0, 1.0, &mut r);
    let mut a = GatherRowsArgs::new(3, 8, 6);
    a.table_stride = 10;
    a.out_stride = 9;
    let mut out = vec![bf16::NAN; 3 * 9];
    cpu::gather_rows(&mut out, &table, &[5, 0, 5], &a).unwrap();
    for (row, id) in [(0, 5), (1, 0), (2, 5)] {
        assert_bits_eq("row", &out[row * 9..][..8], &table[id * 10..][..8]);
    }
    assert!(out[8].is_nan() && out[17].is_nan(), "stride gap written");
    for bad in [6i32, -1] {
        let mut out = vec![bf16::NAN; 3 * 9];
        let e = cpu::gather_rows(&mut out, &table, &[0, bad, 1], &a).unwrap_err();
        assert!(
            matches!(
                e,
                KernelError::OutOfRange { what: "id", value, limit: 6, .. } if value == bad as i64
            ),
            "{e}"
        );
        assert!(out.iter().all(|v| v.is_nan()), "nothing written on error");
    }
}

#[test]
fn add_bias_adds_in_f32_and_rounds_once() {
    let mut r = rng("add_bias_adds_in_f32_and_rounds_once");
    let mut a = AddBiasArgs::new(4, 5);
    a.stride = 7;
    let x0: Vec<bf16> = random(4 * 7, -3.0, 3.0, &mut r);
    let b: Vec<bf16> = random(5, -1.0, 1.0, &mut r);
    let mut x = x0.clone();
    cpu::add_bias(&mut x, &b, &a).unwrap();
    for row in 0..4 {
        for c in 0..7 {
            let i = row * 7 + c;
            let want = match b.get(c) {
                Some(bc) => bf16::from_f32(x0[i].to_f32() + bc.to_f32()),
                None => x0[i], // the stride gap
            };
            assert_eq!(x[i].to_bits(), want.to_bits(), "element {i}");
        }
    }
}

#[test]
fn gather_rows_validation_errors() {
    // gather_rows
    let table = vec![0.0f32; 64];
    let mut o = vec![0.0f32; 64];
    let e = cpu::gather_rows(&mut o, &table, &[0], &GatherRowsArgs::new(1, 0, 4)).unwrap_err();
    assert!(e.to_string().contains("row_len must be > 0"), "{e}");
    let e = cpu::gather_rows(&mut o, &table, &[0], &GatherRowsArgs::new(1, 16, 5)).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BufferTooSmall {
                name: "table",
                len: 64,
                need: 80,
                ..
            }
        ),
        "{e}"
    );
    let mut a = GatherRowsArgs::new(2, 16, 2);
    a.table_stride = 8;
    let e = cpu::gather_rows(&mut o, &table, &[0, 1], &a).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BadStride {
                name: "table",
                stride: 8,
                row_len: 16,
                ..
            }
        ),
        "{e}"
    );
    let e = cpu::gather_rows(
        &mut o[..16],
        &table,
        &[0, 1],
        &GatherRowsArgs::new(2, 16, 4),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BufferTooSmall {
                name: "out",
                len: 16,
                need: 32,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn add_bias_validation_errors() {
    // add_bias
    let mut x = vec![0.0f32; 64];
    let e = cpu::add_bias(&mut x, &[0.0; 15], &AddBiasArgs::new(4, 16)).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::ShapeMismatch {
                expected: 16,
                got: 15,
                ..
            }
        ),
        "{e}"
    );
    let mut a = AddBiasArgs::new(4, 16);
    a.stride = 17;
    let e = cpu::add_bias(&mut x, &[0.0; 16], &a).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BufferTooSmall {
                name: "x",
                len: 64,
                need: 67,
                ..
            }
        ),
        "{e}"
    );
}

/// Short ids, a short stride, a short table: typed errors naming the value, nothing written.
fn gather_rows_rejects_bad_input(d: &impl Device) {
    let data = vec![bf16::ONE; 1024];
    let ids = [0i32, 1, 2];
    let mut out = vec![bf16::NAN; 1024];
    let e = d
        .gather_rows(&mut out, &data, &ids, &GatherRowsArgs::new(4, 64, 16))
        .unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BufferTooSmall {
                name: "ids",
                len: 3,
                need: 4,
                ..
            }
        ),
        "{e}"
    );
    let mut a = GatherRowsArgs::new(2, 64, 8);
    a.out_stride = 63;
    let e = d.gather_rows(&mut out, &data, &ids, &a).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BadStride {
                name: "out",
                stride: 63,
                ..
            }
        ),
        "{e}"
    );
    let e = d
        .gather_rows(&mut out, &data, &ids, &GatherRowsArgs::new(2, 64, 17))
        .unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BufferTooSmall {
                name: "table",
                need: 1088,
                ..
            }
        ),
        "{e}"
    );
    assert!(out.iter().all(|v| v.is_nan()));
}

/// A bias of the wrong length, rows past the buffer: typed errors, nothing written.
fn add_bias_rejects_bad_input(d: &impl Device) {
    let data = vec![bf16::ONE; 1024];
    let mut x = vec![bf16::NAN; 1024];
    let e = d
        .add_bias(&mut x, &data, &AddBiasArgs::new(1, 64))
        .unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::ShapeMismatch {
                expected: 64,
                got: 1024,
                ..
            }
        ),
        "{e}"
    );
    let e = d
        .add_bias(&mut x, &data, &AddBiasArgs::new(2, 1024))
        .unwrap_err();
    assert!(
        matches!(e, KernelError::BufferTooSmall { name: "x", .. }),
        "{e}"
    );
    assert!(x.iter().all(|v| v.is_nan()));
}

test_device!(gather_rows_rejects_bad_input, add_bias_rejects_bad_input);

#[cfg(feature = "cuda")]
mod gpu {
    use super::*;
    use rand::{Rng, rngs::StdRng};
    use std::sync::Arc;
    use vllm_kernels::cuda::{self, CudaStream, GpuFloat};

    fn gather_case<T: GpuFloat>(s: &Arc<CudaStream>, r: &mut StdRng) {
        // (rows, row_len, table rows, extra table stride, extra out stride): vector path, a long
        // row (a logits row), an odd row length and odd strides (scalar path).
        let shapes: &[(usize, usize, usize, usize, usize)] = &[
            (1, 4096, 100, 0, 0),
            (256, 4096, 1000, 0, 0),
            (3, 151936, 7, 0, 0),
            (17, 100, 40, 3, 0),
            (9, 64, 12, 8, 1),
            (5, 1, 3, 0, 0),
        ];
        for &(n, len, rows, tpad, opad) in shapes {
            let mut a = GatherRowsArgs::new(n, len, rows);
            a.table_stride += tpad;
            a.out_stride += opad;
            let table: Vec<T> = random(rows * a.table_stride, -2.0, 2.0, r);
            let ids: Vec<i32> = (0..n).map(|_| r.random_range(0..rows as i32)).collect();
            let mut want = vec![T::nan(); n * a.out_stride];
            cpu::gather_rows(&mut want, &table, &ids, &a).unwrap();
            let mut out = up(s, &vec![T::nan(); n * a.out_stride]);
            cuda::gather_rows(s, &mut out, &up(s, &table), &up(s, &ids), &a).unwrap();
            let what = format!(
                "gather_rows {} {n}x{len} of {rows} +{tpad}/+{opad}",
                T::DTYPE
            );
            // NaN gaps between output rows compare equal bit for bit: they must stay unwritten.
            assert_bits_eq(&what, &down(s, &out), &want);
        }
        // Ids out of range write zero rows on the GPU (the CPU reference refuses them).
        let a = GatherRowsArgs::new(4, 72, 5);
        let table: Vec<T> = random(5 * 72, 0.5, 2.0, r);
        let ids = [3i32, -1, 5, i32::MAX];
        let mut out = up(s, &[T::nan(); 4 * 72]);
        cuda::gather_rows(s, &mut out, &up(s, &table), &up(s, &ids), &a).unwrap();
        let got = down(s, &out);
        assert_bits_eq("gather_rows id 3", &got[..72], &table[3 * 72..4 * 72]);
        assert!(
            got[72..].iter().all(|v| v.to_f32() == 0.0),
            "gather_rows {}: ids out of range must give zero rows",
            T::DTYPE
        );
    }

    #[test]
    fn gather_rows_matches_cpu() {
        let Some(s) = stream("gather_rows_matches_cpu") else {
            return;
        };
        let mut r = rng("gather_rows_matches_cpu");
        for_each_dtype!(gather_case, &s, &mut r);
    }

    fn add_bias_case<T: GpuFloat>(s: &Arc<CudaStream>, r: &mut StdRng) {
        // (rows, row_len, extra stride): Qwen2-7B's fused qkv (3584 + 2 * 512), odd lengths.
        let shapes: &[(usize, usize, usize)] = &[
            (1, 4608, 0),
            (300, 4608, 0),
            (7, 1152, 64),
            (13, 100, 0),
            (5, 33, 3),
        ];
        for &(n, len, pad) in shapes {
            let mut a = AddBiasArgs::new(n, len);
            a.stride += pad;
            let x: Vec<T> = random(n * a.stride, -3.0, 3.0, r);
            let bias: Vec<T> = random(len, -1.0, 1.0, r);
            let mut want = x.clone();
            cpu::add_bias(&mut want, &bias, &a).unwrap();
            let mut dx = up(s, &x);
            cuda::add_bias(s, &mut dx, &up(s, &bias), &a).unwrap();
            // One f32 add rounded once on both sides: the same bits; the stride gaps keep theirs.
            assert_bits_eq(
                &format!("add_bias {} {n}x{len}+{pad}", T::DTYPE),
                &down(s, &dx),
                &want,
            );
        }
    }

    #[test]
    fn add_bias_matches_cpu() {
        let Some(s) = stream("add_bias_matches_cpu") else {
            return;
        };
        let mut r = rng("add_bias_matches_cpu");
        for_each_dtype!(add_bias_case, &s, &mut r);
    }
}

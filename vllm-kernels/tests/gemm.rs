//! The products: skinny_gemm (decode, 1-4 rows), sm90_gemm (Hopper, CUTLASS) and
//! `Blas::matmul_bt` (cuBLAS / cuBLASLt, routed to the others by shape). The CPU references on
//! hand-checked sums and their argument checks (`cpu` tests); skinny_gemm's refusals on both
//! devices (`test_device!`); the GPU products against the CPU reference or an f64 product,
//! outputs poisoned, padding between rows checked unwritten (`gpu` tests, SKIP without a GPU
//! or, for sm90_gemm, without sm_90a).

#[macro_use]
mod common;

use common::device::Device;
use vllm_kernels::KernelError;
use vllm_kernels::args::*;

#[test]
fn skinny_gemm_reference_and_errors() {
    use vllm_kernels::args::SkinnyGemmArgs;
    // 2 x 3 . (4 x 3)^T by hand, output rows 5 apart (the gap left untouched).
    let x: Vec<half::bf16> = [1.0, 2.0, 3.0, -1.0, 0.5, 0.0]
        .iter()
        .map(|&v| half::bf16::from_f32(v))
        .collect();
    let w: Vec<half::bf16> = (0..12)
        .map(|i| half::bf16::from_f32(i as f32 - 5.0))
        .collect();
    let mut a = SkinnyGemmArgs::new(2, 4, 3);
    a.k = 8; // k must be a multiple of 8
    assert!(matches!(
        vllm_kernels::cpu::skinny_gemm::<half::bf16, f32>(&mut [0.0; 9], &x, &w, &a),
        Err(vllm_kernels::KernelError::BufferTooSmall { .. })
    ));
    let pad = |v: &[half::bf16], rows: usize| -> Vec<half::bf16> {
        v.chunks(3)
            .take(rows)
            .flat_map(|r| {
                r.iter()
                    .copied()
                    .chain(std::iter::repeat_n(half::bf16::ZERO, 5))
            })
            .collect()
    };
    let (x8, w8) = (pad(&x, 2), pad(&w, 4));
    let mut a = SkinnyGemmArgs::new(2, 4, 8);
    a.ldy = 5;
    let mut y = vec![f32::NAN; 9];
    vllm_kernels::cpu::skinny_gemm(&mut y, &x8, &w8, &a).unwrap();
    let want = |r: usize, c: usize| -> f32 {
        (0..3)
            .map(|j| x[r * 3 + j].to_f32() * w[c * 3 + j].to_f32())
            .sum()
    };
    for r in 0..2 {
        for c in 0..4 {
            assert_eq!(y[r * 5 + c], want(r, c));
        }
    }
    assert!(y[4].is_nan(), "the gap between rows is not written");
    let e = vllm_kernels::cpu::skinny_gemm::<half::bf16, f32>(
        &mut y,
        &x8,
        &w8,
        &SkinnyGemmArgs::new(5, 1, 8),
    )
    .unwrap_err();
    assert!(e.to_string().contains("m (rows) 5"), "{e}");
}

/// The CPU reference of sm90_gemm (the Hopper product): hand-checked sums into padded rows, and
/// its argument checks (the same checks the GPU wrapper runs before any launch).
#[test]
fn sm90_gemm_reference_and_errors() {
    use vllm_kernels::KernelError;
    use vllm_kernels::args::{SM90_GEMM_TILES, Sm90GemmArgs};
    let (m, n, k) = (3usize, 8usize, 16usize);
    let x: Vec<half::bf16> = (0..m * k)
        .map(|i| half::bf16::from_f32((i % 5) as f32 - 2.0))
        .collect();
    let w: Vec<half::bf16> = (0..n * k)
        .map(|i| half::bf16::from_f32((i % 7) as f32 - 3.0))
        .collect();
    let mut a = Sm90GemmArgs::new(m, n, k);
    assert_eq!(a.tile_n, 16, "the smallest tile covering 3 rows");
    a.ldy = 16;
    let mut y = vec![half::bf16::NAN; (m - 1) * a.ldy + n];
    vllm_kernels::cpu::sm90_gemm(&mut y, &x, &w, &a).unwrap();
    for r in 0..m {
        for c in 0..n {
            let want: f32 = (0..k)
                .map(|j| x[r * k + j].to_f32() * w[c * k + j].to_f32())
                .sum();
            assert_eq!(y[r * a.ldy + c].to_f32(), want, "[{r}, {c}]");
        }
        if r + 1 < m {
            assert!(y[r * a.ldy + n..(r + 1) * a.ldy].iter().all(|v| v.is_nan()));
        }
    }
    // Tiles: the covering one, the largest above it.
    assert_eq!(Sm90GemmArgs::covering_tile(33), 64);
    assert_eq!(
        Sm90GemmArgs::covering_tile(1000),
        SM90_GEMM_TILES[SM90_GEMM_TILES.len() - 1]
    );
    // Refusals name the field and the value.
    let bad = |edit: fn(&mut Sm90GemmArgs)| {
        let mut b = Sm90GemmArgs::new(m, n, k);
        edit(&mut b);
        let mut y = vec![half::bf16::ZERO; 4096];
        vllm_kernels::cpu::sm90_gemm(&mut y, &x, &w, &b).unwrap_err()
    };
    for (e, what) in [
        (bad(|b| b.n = 12), "n"),
        (bad(|b| b.k = 12), "k"),
        (bad(|b| b.tile_n = 48), "tile_n"),
        (bad(|b| b.ldy = 12), "ldy"),
    ] {
        assert!(
            matches!(e, KernelError::Unsupported { what: w, .. } if w == what),
            "{what}: {e}"
        );
    }
    assert!(matches!(bad(|b| b.ldy = 4), KernelError::BadStride { .. }));
    assert!(matches!(
        bad(|b| b.m = 300),
        KernelError::BufferTooSmall { .. }
    ));
    let xf = vec![0f32; 64];
    let e = vllm_kernels::cpu::sm90_gemm(&mut [0f32; 64], &xf, &xf, &Sm90GemmArgs::new(1, 8, 8));
    assert!(matches!(e, Err(KernelError::Unsupported { .. })));
}

/// Unsupported rows, reduction length and input type: typed errors, nothing launched.
fn skinny_gemm_rejects_unsupported(d: &impl Device) {
    let x = [half::bf16::ZERO; 64];
    let mut y = [0f32; 64];
    for (a, what) in [
        (SkinnyGemmArgs::new(5, 4, 8), "m (rows)"),
        (SkinnyGemmArgs::new(1, 4, 12), "k"),
    ] {
        let e = d.skinny_gemm(&mut y, &x, &x, &a).unwrap_err();
        assert!(
            matches!(e, KernelError::Unsupported { what: w, .. } if w == what),
            "{e}"
        );
    }
    let xf = [0f32; 64];
    let e = d
        .skinny_gemm(&mut y, &xf, &xf, &SkinnyGemmArgs::new(1, 4, 8))
        .unwrap_err();
    assert!(matches!(e, KernelError::Unsupported { .. }), "{e}");
}

test_device!(skinny_gemm_rejects_unsupported);

#[cfg(feature = "cuda")]
mod gpu {
    use super::*;
    use crate::common::*;
    use half::{bf16, f16};
    use rand::{Rng, rngs::StdRng};
    use std::sync::Arc;
    use vllm_kernels::cpu;
    use vllm_kernels::cuda::{self, CudaSlice, CudaStream, GpuFloat};

    /// skinny_gemm against the CPU reference (f64 sums rounded once): |gpu - cpu| <=
    /// eps_out |cpu| + 1e-5 sum_k |x w| (f32 accumulation in another order, then one rounding).
    fn skinny_case<T: GpuFloat, O: GpuFloat>(s: &Arc<CudaStream>, r: &mut StdRng) {
        let eps_out = match O::DTYPE {
            vllm_kernels::DType::F32 => 0.0,
            vllm_kernels::DType::F16 => 1.0 / 1024.0,
            vllm_kernels::DType::BF16 => 1.0 / 128.0,
        };
        for (case, &(m, n, k, pad)) in [
            (1usize, 4096usize, 4096usize, 0usize),
            (2, 6144, 4096, 3),
            (3, 31, 14336, 0),
            (4, 1000, 8, 1),
            (4, 4096, 16384, 0),
            (1, 1, 520, 0),
        ]
        .iter()
        .enumerate()
        {
            let mut a = SkinnyGemmArgs::new(m, n, k);
            a.ldy += pad;
            // Both variants on every dtype pair: plain on even cases, preload on odd ones.
            a.preload = case % 2 == 1;
            let x: Vec<T> = random(m * k, -1.0, 1.0, r);
            let w: Vec<T> = random(n * k, -1.0, 1.0, r);
            let mut want = vec![O::nan(); (m - 1) * a.ldy + n];
            cpu::skinny_gemm(&mut want, &x, &w, &a).unwrap();
            let mut y = up(s, &vec![O::nan(); want.len()]);
            cuda::skinny_gemm(s, &mut y, &up(s, &x), &up(s, &w), &a).unwrap();
            let got = down(s, &y);
            for row in 0..m {
                for c in 0..n {
                    let abs: f32 = (0..k)
                        .map(|j| (x[row * k + j].to_f32() * w[c * k + j].to_f32()).abs())
                        .sum();
                    let (g, e) = (
                        got[row * a.ldy + c].to_f32(),
                        want[row * a.ldy + c].to_f32(),
                    );
                    assert!(
                        (g - e).abs() <= eps_out * e.abs() + 1e-5 * abs,
                        "skinny_gemm {}->{} {m}x{n}x{k} preload {}: [{row}, {c}] {g} vs {e}",
                        T::DTYPE,
                        O::DTYPE,
                        a.preload
                    );
                }
                // Padding between rows stays unwritten (NaN).
                if row + 1 < m {
                    for c in n..a.ldy {
                        assert!(got[row * a.ldy + c].to_f32().is_nan(), "padding written");
                    }
                }
            }
        }
    }

    #[test]
    fn skinny_gemm_matches_cpu() {
        let Some(s) = stream("skinny_gemm_matches_cpu") else {
            return;
        };
        let mut r = rng("skinny_gemm_matches_cpu");
        skinny_case::<bf16, bf16>(&s, &mut r);
        skinny_case::<bf16, f32>(&s, &mut r);
        skinny_case::<f16, f16>(&s, &mut r);
        skinny_case::<f16, f32>(&s, &mut r);
        eprintln!("skinny_gemm: 6 shapes x (bf16, f16) x (16-bit, f32 out) within bounds");
    }

    /// `Blas::matmul_bt` (`Y = X W^T`, bf16 inputs) through cublasGemmEx and through every
    /// cuBLASLt candidate the runner's tuning may route the shape to, with bf16 and f32 outputs,
    /// against an f64 product of the same inputs (fresh random data, outputs poisoned first).
    /// Bound: 1e-2 (bf16 out) / 1e-4 (f32 out) of the row-block's largest |Y|.
    #[test]
    fn matmul_bt_gemm_ex_and_every_lt_candidate_match_f64() {
        let Some(s) = stream("matmul_bt_gemm_ex_and_every_lt_candidate_match_f64") else {
            return;
        };
        let mut r = rng("matmul_bt_gemm_ex_and_every_lt_candidate_match_f64");
        let mut blas = cuda::Blas::new(s.clone()).unwrap();
        for &(m, n, k) in &[
            (8usize, 1536usize, 512usize),
            (24, 4096, 1024),
            (136, 1000, 768),
        ] {
            let x: Vec<bf16> = random(m * k, -1.0, 1.0, &mut r);
            let w: Vec<bf16> = random(n * k, -1.0, 1.0, &mut r);
            let want: Vec<f64> = (0..m * n)
                .map(|i| {
                    let (row, col) = (i / n, i % n);
                    (0..k)
                        .map(|j| {
                            f64::from(x[row * k + j].to_f32()) * f64::from(w[col * k + j].to_f32())
                        })
                        .sum()
                })
                .collect();
            let scale = want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            let (dx, dw) = (up(&s, &x), up(&s, &w));
            let worst = |got: &[f64]| {
                got.iter()
                    .zip(&want)
                    .map(|(g, w)| {
                        if g.is_finite() {
                            (g - w).abs() / scale
                        } else {
                            f64::INFINITY
                        }
                    })
                    .fold(0.0, f64::max)
            };
            // bf16 out: cublasGemmEx, then each candidate.
            let run16 = |blas: &cuda::Blas| {
                let mut y = up(&s, &vec![bf16::NAN; m * n]);
                blas.matmul_bt::<bf16, bf16>(&mut y, &dx, &dw, &MatmulArgs::new(m, n, k))
                    .unwrap();
                worst(
                    &down(&s, &y)
                        .iter()
                        .map(|v| f64::from(v.to_f32()))
                        .collect::<Vec<_>>(),
                )
            };
            let e = run16(&blas);
            assert!(e <= 1e-2, "{m}x{n}x{k} bf16 cublasGemmEx: {e:.2e}");
            let count = blas.route_lt::<bf16, bf16>((m, n, k), Some(0)).unwrap();
            assert!(count > 0, "{m}x{n}x{k}: no cuBLASLt candidate");
            for i in 0..count {
                blas.route_lt::<bf16, bf16>((m, n, k), Some(i)).unwrap();
                let e = run16(&blas);
                assert!(e <= 1e-2, "{m}x{n}x{k} bf16 candidate {i}: {e:.2e}");
            }
            blas.route_lt::<bf16, bf16>((m, n, k), None).unwrap();
            // f32 out (the LM head's logits).
            let run32 = |blas: &cuda::Blas| {
                let mut y = up(&s, &vec![f32::NAN; m * n]);
                blas.matmul_bt::<bf16, f32>(&mut y, &dx, &dw, &MatmulArgs::new(m, n, k))
                    .unwrap();
                worst(
                    &down(&s, &y)
                        .iter()
                        .map(|&v| f64::from(v))
                        .collect::<Vec<_>>(),
                )
            };
            let e = run32(&blas);
            assert!(e <= 1e-4, "{m}x{n}x{k} f32 cublasGemmEx: {e:.2e}");
            let count32 = blas.route_lt::<bf16, f32>((m, n, k), Some(0)).unwrap();
            for i in 0..count32 {
                blas.route_lt::<bf16, f32>((m, n, k), Some(i)).unwrap();
                let e = run32(&blas);
                assert!(e <= 1e-4, "{m}x{n}x{k} f32 candidate {i}: {e:.2e}");
            }
            // Tuning keeps cublasGemmEx or a candidate; the product stays right either way.
            let mut ys = up(&s, &vec![bf16::ZERO; m * n]);
            let t = blas
                .tune_lt::<bf16, bf16>(&[&dw], (m, n, k), &dx, &mut ys)
                .unwrap();
            let (ex, best) = t.expect("scratch large enough");
            assert!(ex > 0.0 && best > 0.0);
            let e = run16(&blas);
            assert!(e <= 1e-2, "{m}x{n}x{k} after tuning: {e:.2e}");
            eprintln!(
                "{m}x{n}x{k}: {count} bf16 / {count32} f32 cuBLASLt candidates within bound; \
                 cublasGemmEx {ex:.1} us, best candidate {best:.1} us"
            );
        }
    }

    /// sm90_gemm (Hopper wgmma + TMA through CUTLASS, tokens as the small tile) against the CPU
    /// reference (f64 sums rounded once), bound as skinny_gemm's: every compiled token tile, a
    /// batch over the tile (several token tiles), n and k off the 128 / 64 tile sizes, a padded
    /// row stride, stream-K (few weight tiles, long k), f16 and bf16; outputs poisoned (NaN)
    /// first, padding between rows checked unwritten. Then the same through `Blas::matmul_bt`
    /// routed to it, and the typed refusals. SKIP where the device or build has no sm_90a.
    #[test]
    fn sm90_gemm_matches_cpu() {
        let Some(s) = stream("sm90_gemm_matches_cpu") else {
            return;
        };
        if !cuda::sm90_gemm_available() {
            eprintln!("SKIP sm90_gemm_matches_cpu: no sm_90 device or no sm_90a build");
            return;
        }
        let mut r = rng("sm90_gemm_matches_cpu");
        let mut shapes: Vec<(usize, usize, usize, usize, usize)> = SM90_GEMM_TILES
            .iter()
            .map(|&t| (t - r.random_range(0..16).min(t - 1), 384, 256, 0, t))
            .collect();
        shapes.extend([
            (5, 256, 64, 0, 16),
            (142, 1536, 1024, 0, 128),
            (142, 1024, 1024, 8, 64),
            (200, 1024, 4096, 0, 128),
            (37, 1000, 520, 0, 32),
            (300, 384, 128, 0, 128),
            (64, 512, 14336, 0, 64),
            (100, 2048, 4096, 0, 16),
        ]);
        let mut ws = s.alloc_zeros::<u8>(64 << 20).unwrap();
        let mut checked = 0;
        for (i, &(m, n, k, pad, tile)) in shapes.iter().enumerate() {
            if i % 2 == 0 {
                sm90_case::<bf16>(&s, &mut r, &mut ws, (m, n, k, pad, tile));
            } else {
                sm90_case::<f16>(&s, &mut r, &mut ws, (m, n, k, pad, tile));
            }
            checked += 1;
        }
        // Through the runner's product entry point, routed by shape.
        let mut blas = cuda::Blas::new(s.clone()).unwrap();
        let (m, n, k) = (96usize, 2048usize, 1024usize);
        let x: Vec<bf16> = random(m * k, -1.0, 1.0, &mut r);
        let w: Vec<bf16> = random(n * k, -1.0, 1.0, &mut r);
        let mut want = vec![bf16::NAN; m * n];
        cpu::sm90_gemm(&mut want, &x, &w, &Sm90GemmArgs::new(m, n, k)).unwrap();
        blas.route_sm90::<bf16>((m, n, k), Some(32)).unwrap();
        assert_eq!(blas.sm90_tile::<bf16>((m, n, k)), Some(32), "routed");
        let mut y = up(&s, &vec![bf16::NAN; m * n]);
        let a = MatmulArgs::new(m, n, k);
        blas.matmul_bt::<bf16, bf16>(&mut y, &up(&s, &x), &up(&s, &w), &a)
            .unwrap();
        check_product(
            &down(&s, &y),
            &want,
            &x,
            &w,
            (m, n, k, n),
            1.0 / 128.0,
            "routed",
        );
        // Refusals: typed, nothing launched.
        let xb = up(&s, &[bf16::ZERO; 4096]);
        let mut yb = up(&s, &[bf16::ZERO; 4096]);
        let mut a = Sm90GemmArgs::new(8, 16, 64);
        for (edit, what) in [
            (
                (|a: &mut Sm90GemmArgs| a.tile_n = 20) as fn(&mut Sm90GemmArgs),
                "tile_n",
            ),
            (|a| a.k = 60, "k"),
            (|a| a.n = 12, "n"),
            (|a| a.ldy = 20, "ldy"),
        ] {
            let mut b = a;
            edit(&mut b);
            let e = cuda::sm90_gemm(&s, &mut yb, &xb, &xb, &mut ws, &b).unwrap_err();
            assert!(
                matches!(e, KernelError::Unsupported { what: w, .. } if w == what),
                "{what}: {e}"
            );
        }
        let xf = up(&s, &[0f32; 4096]);
        let mut yf = up(&s, &[0f32; 4096]);
        let e = cuda::sm90_gemm(&s, &mut yf, &xf, &xf, &mut ws, &a).unwrap_err();
        assert!(matches!(e, KernelError::Unsupported { .. }), "{e}");
        // The launcher's own checks (bad values that the Rust types cannot carry).
        {
            use vllm_kernels::cuda::raw::*;
            let (xp, _gx) = cuda::DevicePtr::device_ptr(&xb, &s);
            let (yp, _gy) = cuda::DevicePtr::device_ptr(&yb, &s);
            let (wsp, _gw) = cuda::DevicePtr::device_ptr(&ws, &s);
            let call = |edit: fn(&mut vllm_sm90_gemm_params)| {
                let mut p = vllm_sm90_gemm_params {
                    y: yp as usize as *mut std::ffi::c_void,
                    x: xp as usize as *const std::ffi::c_void,
                    w: xp as usize as *const std::ffi::c_void,
                    m: 8,
                    n: 16,
                    k: 64,
                    ldy: 16,
                    dtype: vllm_dtype::VLLM_DTYPE_BF16,
                    tile_n: 16,
                    workspace: wsp as usize as *mut std::ffi::c_void,
                    workspace_bytes: 1 << 20,
                };
                edit(&mut p);
                // SAFETY: valid device buffers (4096 elements each, 64 MiB of workspace); every
                // case below is refused before any launch.
                unsafe { vllm_sm90_gemm(&p, s.cu_stream() as vllm_stream) }
            };
            assert_eq!(
                call(|p| p.workspace_bytes = -1),
                vllm_kstatus::VLLM_K_INVALID_ARGUMENT
            );
            assert_eq!(
                call(|p| p.workspace = (p.workspace as usize + 8) as *mut std::ffi::c_void),
                vllm_kstatus::VLLM_K_INVALID_ARGUMENT
            );
            assert_eq!(
                call(|p| p.tile_n = 48),
                vllm_kstatus::VLLM_K_UNSUPPORTED_SHAPE
            );
            assert_eq!(call(|p| p.n = 12), vllm_kstatus::VLLM_K_UNSUPPORTED_SHAPE);
            assert_eq!(call(|p| p.ldy = 8), vllm_kstatus::VLLM_K_INVALID_ARGUMENT);
            assert_eq!(
                call(|p| p.dtype = vllm_dtype::VLLM_DTYPE_F32),
                vllm_kstatus::VLLM_K_UNSUPPORTED_DTYPE
            );
            assert_eq!(
                call(|p| p.x = std::ptr::null()),
                vllm_kstatus::VLLM_K_INVALID_ARGUMENT
            );
        }
        // A workspace below what stream-K needs is refused by the launcher.
        a = Sm90GemmArgs::new(64, 512, 14336);
        let need = cuda::sm90_gemm_workspace::<bf16>(&a).unwrap();
        if need > 0 {
            let x = up(&s, &vec![bf16::ZERO; 64 * 14336]);
            let w = up(&s, &vec![bf16::ZERO; 512 * 14336]);
            let mut y = up(&s, &vec![bf16::ZERO; 64 * 512]);
            let mut small = s.alloc_zeros::<u8>(need - 1).unwrap();
            let e = cuda::sm90_gemm(&s, &mut y, &x, &w, &mut small, &a).unwrap_err();
            assert!(matches!(e, KernelError::Launcher { .. }), "{e}");
        }
        eprintln!(
            "sm90_gemm: {checked} shapes (every tile, f16 / bf16, multi-tile, stream-K, padded ldy) \
             within bounds, routed through Blas, refusals typed (stream-K workspace {need} bytes)"
        );
    }

    fn sm90_case<T: GpuFloat>(
        s: &Arc<CudaStream>,
        r: &mut StdRng,
        ws: &mut CudaSlice<u8>,
        (m, n, k, pad, tile): (usize, usize, usize, usize, usize),
    ) {
        let mut a = Sm90GemmArgs::new(m, n, k);
        a.ldy += pad;
        a.tile_n = tile;
        let x: Vec<T> = random(m * k, -1.0, 1.0, r);
        let w: Vec<T> = random(n * k, -1.0, 1.0, r);
        let mut want = vec![T::nan(); (m - 1) * a.ldy + n];
        cpu::sm90_gemm(&mut want, &x, &w, &a).unwrap();
        let mut y = up(s, &vec![T::nan(); want.len()]);
        cuda::sm90_gemm(s, &mut y, &up(s, &x), &up(s, &w), ws, &a).unwrap();
        let eps = if T::DTYPE == vllm_kernels::DType::F16 {
            1.0 / 1024.0
        } else {
            1.0 / 128.0
        };
        let what = format!("{} tile {tile}", T::DTYPE);
        check_product(&down(s, &y), &want, &x, &w, (m, n, k, a.ldy), eps, &what);
    }

    /// |got - want| <= eps |want| + 1e-5 sum_k |x w| everywhere, padding between rows NaN.
    fn check_product<T: GpuFloat>(
        got: &[T],
        want: &[T],
        x: &[T],
        w: &[T],
        (m, n, k, ldy): (usize, usize, usize, usize),
        eps: f32,
        what: &str,
    ) {
        for row in 0..m {
            for c in 0..n {
                let abs: f32 = (0..k)
                    .map(|j| (x[row * k + j].to_f32() * w[c * k + j].to_f32()).abs())
                    .sum();
                let (g, e) = (got[row * ldy + c].to_f32(), want[row * ldy + c].to_f32());
                assert!(
                    (g - e).abs() <= eps * e.abs() + 1e-5 * abs,
                    "sm90_gemm {what} {m}x{n}x{k} ldy {ldy}: [{row}, {c}] {g} vs {e}"
                );
            }
            if row + 1 < m {
                for c in n..ldy {
                    assert!(
                        got[row * ldy + c].to_f32().is_nan(),
                        "{what}: padding written"
                    );
                }
            }
        }
    }
}

//! Every CUDA kernel against the CPU reference, on fresh random inputs, with outputs poisoned
//! (NaN) before the launch, for f32, f16 and bf16 (tolerances 1e-5 / 1e-3 / 1e-2 relative).
//! On a machine without libcuda or without a GPU each test prints SKIP and passes: the GPU
//! bundle runs them where a GPU is.
#![cfg(feature = "cuda")]

mod common;

use common::*;
use half::{bf16, f16};
use rand::{Rng, rngs::StdRng, seq::SliceRandom};
use std::sync::Arc;
use vllm_kernels::args::*;
use vllm_kernels::cuda::{self, CudaSlice, CudaStream, GpuFloat};
use vllm_kernels::{KernelError, cpu};

fn up<T: cuda::DeviceRepr>(s: &Arc<CudaStream>, x: &[T]) -> CudaSlice<T> {
    s.clone_htod(x).unwrap()
}

fn down<T: cuda::DeviceRepr>(s: &Arc<CudaStream>, x: &CudaSlice<T>) -> Vec<T> {
    s.clone_dtoh(x).unwrap()
}

fn tol<T: GpuFloat>() -> f32 {
    T::DTYPE.tolerance()
}

macro_rules! for_each_dtype {
    ($f:ident, $($arg:expr),*) => {{
        $f::<f32>($($arg),*);
        $f::<f16>($($arg),*);
        $f::<bf16>($($arg),*);
    }};
}

// (tokens, hidden, extra stride): vector path, 1024-thread path, unaligned hidden, strided rows,
// misaligned stride (scalar path), the fallback for rows too long for registers.
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

fn reshape_case<T: GpuFloat>(s: &Arc<CudaStream>, r: &mut StdRng) {
    // (tokens, kv heads, head size, block size, blocks, extra row stride)
    let shapes: &[(usize, usize, usize, usize, usize, usize)] = &[
        (1, 8, 128, 16, 4, 0),
        (100, 8, 128, 16, 16, 0),
        (37, 2, 64, 32, 3, 0),
        (20, 4, 80, 16, 4, 24),
        (9, 3, 10, 8, 5, 1),
    ];
    for &(t, nkv, hs, bs, nb, pad) in shapes {
        let l = PagedKvLayout {
            num_blocks: nb,
            num_kv_heads: nkv,
            block_size: bs,
            head_size: hs,
        };
        let mut a = ReshapeAndCacheArgs::new(t, l);
        a.key_stride += pad;
        a.value_stride += pad;
        // Distinct random slots in random order, some tokens padded with -1.
        let mut slots: Vec<i64> = (0..l.num_slots() as i64).collect();
        slots.shuffle(r);
        slots.truncate(t);
        for sl in slots.iter_mut() {
            if r.random_range(0..5) == 0 {
                *sl = -1;
            }
        }
        let k: Vec<T> = random(t * a.key_stride, -1.0, 1.0, r);
        let v: Vec<T> = random(t * a.value_stride, -1.0, 1.0, r);
        let (mut wk, mut wv) = (vec![T::nan(); l.numel()], vec![T::nan(); l.numel()]);
        cpu::reshape_and_cache(&k, &v, &mut wk, &mut wv, &slots, &a).unwrap();
        let (mut dk, mut dv) = (
            up(s, &vec![T::nan(); l.numel()]),
            up(s, &vec![T::nan(); l.numel()]),
        );
        cuda::reshape_and_cache(
            s,
            &up(s, &k),
            &up(s, &v),
            &mut dk,
            &mut dv,
            &up(s, &slots),
            &a,
        )
        .unwrap();
        let what = format!("reshape_and_cache {} t={t} {nkv}x{hs} bs={bs}", T::DTYPE);
        assert_bits_eq(&format!("{what} key"), &down(s, &dk), &wk);
        assert_bits_eq(&format!("{what} value"), &down(s, &dv), &wv);
    }
}

#[test]
fn reshape_and_cache_matches_cpu() {
    let Some(s) = stream("reshape_and_cache_matches_cpu") else {
        return;
    };
    let mut r = rng("reshape_and_cache_matches_cpu");
    for_each_dtype!(reshape_case, &s, &mut r);
}

fn blocks_case<T: GpuFloat + cuda::ValidAsZeroBits>(s: &Arc<CudaStream>, r: &mut StdRng) {
    for &(nkv, bs, hs) in &[(8usize, 16usize, 128usize), (3, 5, 3)] {
        let l = PagedKvLayout {
            num_blocks: 12,
            num_kv_heads: nkv,
            block_size: bs,
            head_size: hs,
        };
        let mut ids: Vec<usize> = (0..l.num_blocks).collect();
        ids.shuffle(r);
        let pairs: Vec<BlockPair> = vec![
            (ids[0], ids[1]),
            (ids[2], ids[3]),
            (ids[4], ids[5]),
            (ids[0], ids[6]),
        ];
        let mut host: Vec<Vec<T>> = (0..4).map(|_| random(l.numel(), -1.0, 1.0, r)).collect();
        let mut dev: Vec<CudaSlice<T>> = host.iter().map(|h| up(s, h)).collect();
        let mut views: Vec<&mut [T]> = host.iter_mut().map(|h| &mut h[..]).collect();
        cpu::copy_blocks(&mut views, &l, &pairs).unwrap();
        let mut refs: Vec<&mut CudaSlice<T>> = dev.iter_mut().collect();
        cuda::copy_blocks(s, &mut refs, &l, &pairs).unwrap();
        for (i, (d, h)) in dev.iter().zip(&host).enumerate() {
            assert_bits_eq(
                &format!("copy_blocks {} cache {i}", T::DTYPE),
                &down(s, d),
                h,
            );
        }

        // Device -> pinned host -> device.
        let hl = PagedKvLayout { num_blocks: 4, ..l };
        let swap_out: Vec<BlockPair> = vec![(ids[7], 2), (ids[8], 0), (ids[9], 3)];
        // SAFETY: the pinned memory starts uninitialised; it is filled before any read.
        let mut pinned =
            unsafe { s.context().alloc_pinned_with_flags::<T>(hl.numel(), 0) }.unwrap();
        pinned.as_mut_slice().unwrap().fill(T::nan());
        cuda::swap_blocks_to_host(s, &dev[0], &l, &mut pinned, &hl, &swap_out).unwrap();
        s.synchronize().unwrap();
        let mut want = vec![T::nan(); hl.numel()];
        cpu::swap_blocks(&host[0], &l, &mut want, &hl, &swap_out).unwrap();
        assert_bits_eq(
            &format!("swap_blocks to host {}", T::DTYPE),
            pinned.as_slice().unwrap(),
            &want,
        );

        let swap_in: Vec<BlockPair> = vec![(2, 5), (0, 1), (3, 11)];
        let mut back = up(s, &vec![T::nan(); l.numel()]);
        cuda::swap_blocks_to_device(s, &pinned, &hl, &mut back, &l, &swap_in).unwrap();
        let mut want_back = vec![T::nan(); l.numel()];
        cpu::swap_blocks(&want, &hl, &mut want_back, &l, &swap_in).unwrap();
        assert_bits_eq(
            &format!("swap_blocks to device {}", T::DTYPE),
            &down(s, &back),
            &want_back,
        );
    }
}

#[test]
fn copy_and_swap_blocks_match_cpu() {
    let Some(s) = stream("copy_and_swap_blocks_match_cpu") else {
        return;
    };
    let mut r = rng("copy_and_swap_blocks_match_cpu");
    for_each_dtype!(blocks_case, &s, &mut r);
}

/// Bad input to every wrapper is a typed error, and nothing reaches the GPU: the poisoned
/// output is still poisoned afterwards.
#[test]
fn wrappers_reject_bad_input_before_launch() {
    let Some(s) = stream("wrappers_reject_bad_input_before_launch") else {
        return;
    };
    let poison = || up(&s, &vec![bf16::NAN; 4096]);
    let data = up(&s, &vec![bf16::ONE; 4096]);
    let untouched = |d: &CudaSlice<bf16>| down(&s, d).iter().all(|v| v.is_nan());

    let mut out = poison();
    let e =
        cuda::rms_norm(&s, &mut out, &data, &data, &RmsNormArgs::new(2, 4096, 1e-5)).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BufferTooSmall { .. } | KernelError::ShapeMismatch { .. }
        ),
        "{e}"
    );
    let mut a = RmsNormArgs::new(1, 64, 1e-5);
    a.input_stride = 32;
    let w = up(&s, &[bf16::ONE; 64]);
    let e = cuda::rms_norm(&s, &mut out, &data, &w, &a).unwrap_err();
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
    assert!(untouched(&out));

    let (mut x, mut res) = (poison(), poison());
    let e = cuda::fused_add_rms_norm(
        &s,
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
    assert!(untouched(&x) && untouched(&res));

    let mut q = poison();
    let pos = up(&s, &[0i64, 1]);
    let cache = up(&s, &vec![bf16::ONE; 10 * 64]);
    let ra = RotaryArgs::new(2, 8, 2, 64, 63, 10, true);
    let e = cuda::rotary_embedding(&s, &pos, &mut q, None::<&mut CudaSlice<bf16>>, &cache, &ra)
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
    let e = cuda::rotary_embedding(&s, &pos, &mut q, None::<&mut CudaSlice<bf16>>, &cache, &ra)
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
    assert!(untouched(&q));

    let mut o = poison();
    let e = cuda::silu_and_mul(&s, &mut o, &data, 2, 2048).unwrap_err();
    assert!(
        matches!(e, KernelError::BufferTooSmall { name: "input", .. }),
        "{e}"
    );
    assert!(untouched(&o));

    let l = PagedKvLayout {
        num_blocks: 2,
        num_kv_heads: 8,
        block_size: 16,
        head_size: 16,
    };
    let (mut kc, mut vc) = (poison(), poison());
    let slots = up(&s, &[0i64, 1, 2]);
    let e = cuda::reshape_and_cache(
        &s,
        &data,
        &data,
        &mut kc,
        &mut vc,
        &slots,
        &ReshapeAndCacheArgs::new(2, l),
    )
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
    assert!(untouched(&kc) && untouched(&vc));

    let e = cuda::copy_blocks(&s, &mut [&mut kc], &l, &[(0, 1), (1, 0)]).unwrap_err();
    assert!(
        e.to_string().contains("both a source and a destination"),
        "{e}"
    );
    let e = cuda::copy_blocks(&s, &mut [&mut kc], &l, &[(0, 2)]).unwrap_err();
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
    assert!(untouched(&kc));
}

/// The launchers' own checks: an unknown dtype value or an odd rot_dim is refused with a status,
/// not a launch.
#[test]
fn launchers_refuse_bad_params() {
    let Some(s) = stream("launchers_refuse_bad_params") else {
        return;
    };
    use cuda::raw::*;
    let mut out = up(&s, &vec![0.5f32; 64]);
    let input = up(&s, &vec![0.5f32; 64]);
    let (o, _g1) = cuda::DevicePtrMut::device_ptr_mut(&mut out, &s);
    let (i, _g2) = cuda::DevicePtr::device_ptr(&input, &s);
    let p = vllm_rms_norm_params {
        out: o as usize as *mut _,
        input: i as usize as *const _,
        weight: i as usize as *const _,
        num_tokens: 1,
        hidden_size: 64,
        input_stride: 64,
        out_stride: 64,
        epsilon: 1e-5,
        dtype: vllm_dtype(99),
    };
    // SAFETY: valid device pointers of 64 elements; the launcher must refuse the dtype.
    let st = unsafe { vllm_rms_norm(&p, s.cu_stream() as vllm_stream) };
    assert_eq!(st, vllm_kstatus::VLLM_K_UNSUPPORTED_DTYPE);
    let bad_stride = vllm_rms_norm_params {
        input_stride: 63,
        dtype: vllm_dtype::VLLM_DTYPE_F32,
        ..p
    };
    // SAFETY: as above; the launcher must refuse the stride.
    let st = unsafe { vllm_rms_norm(&bad_stride, s.cu_stream() as vllm_stream) };
    assert_eq!(st, vllm_kstatus::VLLM_K_INVALID_ARGUMENT);
    // SAFETY: NULL params must be refused, not dereferenced.
    let st = unsafe { vllm_rms_norm(std::ptr::null(), s.cu_stream() as vllm_stream) };
    assert_eq!(st, vllm_kstatus::VLLM_K_INVALID_ARGUMENT);
}

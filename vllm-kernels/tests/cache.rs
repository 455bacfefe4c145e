//! The paged KV cache ops (reshape_and_cache, copy_blocks, swap_blocks) and the FP8 E4M3 cache
//! element: the CPU reference's exact placement and copies, FP8 rounding, and typed errors
//! (`cpu` tests), bad arguments on both devices (`test_device!`), and the CUDA kernels against
//! the CPU reference bit for bit for f32, f16 and bf16 (`gpu` tests, SKIP without a GPU).

#[macro_use]
mod common;

use common::device::Device;
use common::*;
use half::{bf16, f16};
use vllm_kernels::KernelError;
use vllm_kernels::args::*;
use vllm_kernels::cpu;

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
fn reshape_and_cache_validation_errors() {
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

fn small_layout() -> PagedKvLayout {
    PagedKvLayout {
        num_blocks: 2,
        num_kv_heads: 8,
        block_size: 16,
        head_size: 16,
    }
}

/// Two tokens of K/V rows with three slots: a typed error, the caches untouched.
fn reshape_and_cache_rejects_bad_input(d: &impl Device) {
    let data = vec![bf16::ONE; 4096];
    let (mut kc, mut vc) = (vec![bf16::NAN; 4096], vec![bf16::NAN; 4096]);
    let e = d
        .reshape_and_cache(
            (&data, &data),
            (&mut kc, &mut vc),
            &[0i64, 1, 2],
            &ReshapeAndCacheArgs::new(2, small_layout()),
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
    assert!(kc.iter().chain(&vc).all(|v| v.is_nan()));
}

/// A block both copied from and to, a block out of range: typed errors, nothing copied.
fn copy_blocks_rejects_bad_pairs(d: &impl Device) {
    let l = small_layout();
    let mut kc = vec![bf16::NAN; 4096];
    let e = d
        .copy_blocks(&mut [&mut kc[..]], &l, &[(0, 1), (1, 0)])
        .unwrap_err();
    assert!(
        e.to_string().contains("both a source and a destination"),
        "{e}"
    );
    let e = d
        .copy_blocks(&mut [&mut kc[..]], &l, &[(0, 2)])
        .unwrap_err();
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
    assert!(kc.iter().all(|v| v.is_nan()));
}

test_device!(
    reshape_and_cache_rejects_bad_input,
    copy_blocks_rejects_bad_pairs
);

#[cfg(feature = "cuda")]
mod gpu {
    use super::*;
    use rand::{Rng, rngs::StdRng, seq::SliceRandom};
    use std::sync::Arc;
    use vllm_kernels::cuda::{self, CudaSlice, CudaStream, GpuFloat};

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
}

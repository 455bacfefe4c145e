//! Helpers shared by the kernel tests: random data (never zeros), tolerance checks, the device
//! a case runs on ([`device`], with the `test_device!` macro), and test inputs several ops use.
#![allow(dead_code, unused_imports, unused_macros)]

#[macro_use]
pub mod device;

use rand::{Rng, SeedableRng, rngs::StdRng};
use vllm_kernels::Float;

/// A fresh generator per test run (seed printed, so a failure can be replayed with VLLM_TEST_SEED).
pub fn rng(test: &str) -> StdRng {
    let seed = std::env::var("VLLM_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random::<u64>());
    eprintln!("{test}: seed {seed}");
    StdRng::seed_from_u64(seed)
}

pub fn random<T: Float>(n: usize, lo: f32, hi: f32, rng: &mut StdRng) -> Vec<T> {
    (0..n)
        .map(|_| T::from_f32(rng.random_range(lo..hi)))
        .collect()
}

/// cos/sin cache `[max_position, rot_dim]` as a model builds it (base 10000).
pub fn cos_sin_cache<T: Float>(max_position: usize, rot_dim: usize) -> Vec<T> {
    let half = rot_dim / 2;
    let mut out = Vec::with_capacity(max_position * rot_dim);
    for p in 0..max_position {
        let angles: Vec<f64> = (0..half)
            .map(|i| p as f64 / 10000f64.powf(2.0 * i as f64 / rot_dim as f64))
            .collect();
        out.extend(angles.iter().map(|a| T::from_f32(a.cos() as f32)));
        out.extend(angles.iter().map(|a| T::from_f32(a.sin() as f32)));
    }
    out
}

/// Every element finite and `|got - want| <= tol * (|want| + scale)`, where `scale` is the RMS
/// of `want` (relative error, with an absolute floor at the tensor's own scale); and the
/// norm-wise relative error `|got - want| / |want|` <= tol.
pub fn assert_close<T: Float>(what: &str, got: &[T], want: &[T], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let n = want.len().max(1) as f64;
    let scale = (want
        .iter()
        .map(|w| (w.to_f32() as f64).powi(2))
        .sum::<f64>()
        / n)
        .sqrt() as f32;
    let (mut num, mut den) = (0f64, 0f64);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g.to_f32(), w.to_f32());
        assert!(g.is_finite(), "{what}: element {i} is {g} (want {w})");
        let d = (g - w).abs();
        assert!(
            d <= tol * (w.abs() + scale),
            "{what}: element {i}: got {g}, want {w}, |diff| {d} > {tol} * ({} + {scale})",
            w.abs()
        );
        num += (d as f64).powi(2);
        den += (w as f64).powi(2);
    }
    let rel = (num / den.max(f64::MIN_POSITIVE)).sqrt();
    assert!(
        rel <= tol as f64,
        "{what}: norm-wise relative error {rel:.3e} > {tol}"
    );
}

/// Bit-exact equality (copies), NaN poison included.
pub fn assert_bits_eq<T: Float>(what: &str, got: &[T], want: &[T]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g.to_f32(), w.to_f32());
        assert!(
            g.to_bits() == w.to_bits(),
            "{what}: element {i}: got {g}, want {w}"
        );
    }
}

/// `x` on the device.
#[cfg(feature = "cuda")]
pub fn up<T: vllm_kernels::cuda::DeviceRepr>(
    s: &std::sync::Arc<vllm_kernels::cuda::CudaStream>,
    x: &[T],
) -> vllm_kernels::cuda::CudaSlice<T> {
    s.clone_htod(x).unwrap()
}

/// `x` back on the host.
#[cfg(feature = "cuda")]
pub fn down<T: vllm_kernels::cuda::DeviceRepr>(
    s: &std::sync::Arc<vllm_kernels::cuda::CudaStream>,
    x: &vllm_kernels::cuda::CudaSlice<T>,
) -> Vec<T> {
    s.clone_dtoh(x).unwrap()
}

/// f32, f16 and bf16 in turn: `for_each_dtype!(case, args...)` calls `case::<T>(args...)`.
macro_rules! for_each_dtype {
    ($f:ident, $($arg:expr),*) => {{
        $f::<f32>($($arg),*);
        $f::<half::f16>($($arg),*);
        $f::<half::bf16>($($arg),*);
    }};
}

/// The default stream of device 0, or `None` (after printing SKIP) where no GPU is usable.
#[cfg(feature = "cuda")]
pub fn stream(test: &str) -> Option<std::sync::Arc<vllm_kernels::cuda::CudaStream>> {
    match vllm_kernels::cuda::try_context(0) {
        Some(ctx) => Some(ctx.default_stream()),
        None => {
            eprintln!("SKIP {test}: no CUDA device (libcuda missing or no GPU)");
            None
        }
    }
}

/// Block tables for sequences of `lens` tokens in a cache of `used + spare` blocks of `block_size`:
/// every sequence gets distinct blocks in shuffled order (not contiguous, not sorted), one spare
/// column per row (-1, never read). Returns (tables, max_blocks_per_seq, num_blocks).
pub fn shuffled_tables(
    lens: &[i32],
    block_size: usize,
    spare: usize,
    rng: &mut StdRng,
) -> (Vec<i32>, usize, usize) {
    use rand::seq::SliceRandom;
    let max_len = lens.iter().copied().max().unwrap_or(0) as usize;
    let max_blocks = max_len.div_ceil(block_size) + 1;
    let used: usize = lens
        .iter()
        .map(|&l| (l as usize).div_ceil(block_size))
        .sum();
    let num_blocks = used + spare;
    let mut ids: Vec<i32> = (0..num_blocks as i32).collect();
    ids.shuffle(rng);
    let mut tables = vec![-1i32; lens.len() * max_blocks];
    let mut next = 0;
    for (i, &l) in lens.iter().enumerate() {
        for b in 0..(l as usize).div_ceil(block_size) {
            tables[i * max_blocks + b] = ids[next];
            next += 1;
        }
    }
    (tables, max_blocks, num_blocks)
}

/// Relative L2 difference |a - b| / |b|.
pub fn rel_diff<T: Float>(a: &[T], b: &[T]) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (x.to_f32() as f64, y.to_f32() as f64);
        num += (x - y).powi(2);
        den += y * y;
    }
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

/// The K/V rows of an FP8 cache test and what the CPU made of them: `keys` and `values` rows
/// go to `slots` of caches of `numel` elements, written with `w8` (FP8) and `w16` (16-bit);
/// `cpu8` holds the CPU's FP8 key and value caches.
#[cfg(feature = "cuda")]
pub struct CacheWrites<'a, T> {
    pub keys: &'a [T],
    pub values: &'a [T],
    pub slots: &'a [i64],
    pub numel: usize,
    pub w8: &'a vllm_kernels::args::ReshapeAndCacheArgs,
    pub w16: &'a vllm_kernels::args::ReshapeAndCacheArgs,
    pub cpu8: (&'a [vllm_kernels::Fp8E4m3], &'a [vllm_kernels::Fp8E4m3]),
}

/// The rows of `c` written on the GPU by reshape_and_cache into an FP8 cache and a 16-bit
/// cache, both poisoned with NaN first; asserts the FP8 bytes equal the CPU's bit for bit and
/// returns (k8, v8, k16, v16).
#[cfg(feature = "cuda")]
#[allow(clippy::type_complexity)]
pub fn gpu_fp8_and_16bit_caches<T: vllm_kernels::cuda::GpuFloat>(
    s: &std::sync::Arc<vllm_kernels::cuda::CudaStream>,
    c: &CacheWrites<'_, T>,
    what: &str,
) -> (
    vllm_kernels::cuda::CudaSlice<vllm_kernels::Fp8E4m3>,
    vllm_kernels::cuda::CudaSlice<vllm_kernels::Fp8E4m3>,
    vllm_kernels::cuda::CudaSlice<T>,
    vllm_kernels::cuda::CudaSlice<T>,
) {
    use vllm_kernels::{Fp8E4m3, cuda};
    let CacheWrites {
        keys,
        values,
        slots,
        numel,
        w8,
        w16,
        cpu8,
    } = *c;
    let (dk, dv, ds) = (
        s.clone_htod(keys).unwrap(),
        s.clone_htod(values).unwrap(),
        s.clone_htod(slots).unwrap(),
    );
    let nan8 = Fp8E4m3(0x7f);
    let mut gk8 = s.clone_htod(&vec![nan8; numel]).unwrap();
    let mut gv8 = s.clone_htod(&vec![nan8; numel]).unwrap();
    let mut gk16 = s.clone_htod(&vec![T::nan(); numel]).unwrap();
    let mut gv16 = s.clone_htod(&vec![T::nan(); numel]).unwrap();
    cuda::reshape_and_cache(s, &dk, &dv, &mut gk8, &mut gv8, &ds, w8).unwrap();
    cuda::reshape_and_cache(s, &dk, &dv, &mut gk16, &mut gv16, &ds, w16).unwrap();
    for (name, got, want) in [
        ("key", s.clone_dtoh(&gk8).unwrap(), cpu8.0),
        ("value", s.clone_dtoh(&gv8).unwrap(), cpu8.1),
    ] {
        let bad = got.iter().zip(want).filter(|(g, w)| g != w).count();
        assert_eq!(
            bad, 0,
            "{what}: {bad} {name} cache bytes differ from the CPU's"
        );
    }
    (gk8, gv8, gk16, gv16)
}

/// Rows of 8 logits with top-k / top-p thresholds inside runs of equal logits, and the tokens
/// sampling at T = 1 may give (every one of them turns up within a few hundred seeds):
/// (row, top_k, top_p, allowed).
pub fn top_k_top_p_cases() -> Vec<([f32; 8], i32, f32, Vec<i32>)> {
    let row = [1.0, 3.0, 3.0, 2.0, 0.0, 3.0, -1.0, 0.5];
    let flat = [0.25f32; 8];
    vec![
        (row, 1, 1.0, vec![1]),
        (row, 2, 1.0, vec![1, 2]),
        (row, 4, 1.0, vec![1, 2, 3, 5]),
        (row, 0, 0.01, vec![1]),
        // The three 3.0s hold 3e^3 / (3e^3 + e^2 + e + 1 + e^0.5 + e^-1) = 0.83 of the mass.
        (row, 0, 0.8, vec![1, 2, 5]),
        (row, 0, 0.5, vec![1, 2]),
        (row, 2, 0.9, vec![1, 2]),
        (flat, 3, 1.0, vec![0, 1, 2]),
        // Equal weights: 4 of 8 reach one half.
        (flat, 0, 0.5, vec![0, 1, 2, 3]),
        (flat, 6, 0.5, vec![0, 1, 2]),
        (flat, 8, 1.0, (0..8).collect()),
        // A +inf score takes all the probability: the first +inf token, filters or not.
        (
            [1.0, f32::INFINITY, 3.0, f32::INFINITY, 0.0, 0.0, 0.0, 0.0],
            2,
            1.0,
            vec![1],
        ),
        (
            [1.0, f32::INFINITY, 3.0, f32::INFINITY, 0.0, 0.0, 0.0, 0.0],
            0,
            0.5,
            vec![1],
        ),
    ]
}

/// Decode attention operands over host slices: `kv` the key and value caches, `tables` the
/// block tables and sequence lengths.
pub fn decode_io<'a, T, C>(
    out: &'a mut [T],
    query: &'a [T],
    (key_cache, value_cache): (&'a [C], &'a [C]),
    (block_tables, seq_lens): (&'a [i32], &'a [i32]),
    alibi_slopes: Option<&'a [f32]>,
) -> vllm_kernels::cpu::PagedAttentionIo<'a, T, C> {
    vllm_kernels::cpu::PagedAttentionIo {
        out,
        query,
        key_cache,
        value_cache,
        block_tables,
        seq_lens,
        alibi_slopes,
    }
}

/// Prefill attention operands over host slices: `tables` the block tables, query offsets and
/// sequence lengths.
pub fn prefill_io<'a, T, C>(
    out: &'a mut [T],
    query: &'a [T],
    (key_cache, value_cache): (&'a [C], &'a [C]),
    (block_tables, cu_query_lens, seq_lens): (&'a [i32], &'a [i32], &'a [i32]),
) -> vllm_kernels::cpu::PrefillAttentionIo<'a, T, C> {
    vllm_kernels::cpu::PrefillAttentionIo {
        out,
        query,
        key_cache,
        value_cache,
        block_tables,
        cu_query_lens,
        seq_lens,
    }
}

/// Decode attention operands over device buffers (as [`decode_io`]).
#[cfg(feature = "cuda")]
pub fn gpu_decode_io<'a, T, C>(
    out: &'a mut vllm_kernels::cuda::CudaSlice<T>,
    query: &'a vllm_kernels::cuda::CudaSlice<T>,
    (key_cache, value_cache): (
        &'a vllm_kernels::cuda::CudaSlice<C>,
        &'a vllm_kernels::cuda::CudaSlice<C>,
    ),
    (block_tables, seq_lens): (
        &'a vllm_kernels::cuda::CudaSlice<i32>,
        &'a vllm_kernels::cuda::CudaSlice<i32>,
    ),
    alibi_slopes: Option<&'a vllm_kernels::cuda::CudaSlice<f32>>,
) -> vllm_kernels::cuda::PagedAttentionIo<'a, T, C> {
    vllm_kernels::cuda::PagedAttentionIo {
        out,
        query,
        key_cache,
        value_cache,
        block_tables,
        seq_lens,
        alibi_slopes: alibi_slopes.map(|x| x as &dyn vllm_kernels::cuda::DevicePtr<f32>),
    }
}

/// Prefill attention operands over device buffers (as [`prefill_io`]).
#[cfg(feature = "cuda")]
pub fn gpu_prefill_io<'a, T, C>(
    out: &'a mut vllm_kernels::cuda::CudaSlice<T>,
    query: &'a vllm_kernels::cuda::CudaSlice<T>,
    (key_cache, value_cache): (
        &'a vllm_kernels::cuda::CudaSlice<C>,
        &'a vllm_kernels::cuda::CudaSlice<C>,
    ),
    (block_tables, cu_query_lens, seq_lens): (
        &'a vllm_kernels::cuda::CudaSlice<i32>,
        &'a vllm_kernels::cuda::CudaSlice<i32>,
        &'a vllm_kernels::cuda::CudaSlice<i32>,
    ),
) -> vllm_kernels::cuda::PrefillAttentionIo<'a, T, C> {
    vllm_kernels::cuda::PrefillAttentionIo {
        out,
        query,
        key_cache,
        value_cache,
        block_tables,
        cu_query_lens,
        seq_lens,
    }
}

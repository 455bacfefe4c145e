//! The ops the CUDA model runner needs (gather_rows, add_bias, head_rms_norm, sample_tokens,
//! fill_tokens, the products: skinny_gemm, sm90_gemm, cuBLAS / cuBLASLt)
//! against the CPU reference on fresh random inputs, outputs poisoned (NaN, or -7 for tokens)
//! before the launch. On a machine without libcuda or without a GPU each test prints SKIP and
//! passes: the GPU bundle runs them where a GPU is.
#![cfg(feature = "cuda")]

mod common;

use common::*;
use half::{bf16, f16};
use rand::{Rng, rngs::StdRng};
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

macro_rules! for_each_dtype {
    ($f:ident, $($arg:expr),*) => {{
        $f::<f32>($($arg),*);
        $f::<f16>($($arg),*);
        $f::<bf16>($($arg),*);
    }};
}

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

const TEMPERATURES: &[f32] = &[0.0, 0.6, 1.0, 1.5];
const MIN_PS: &[f32] = &[0.0, 0.05, 0.3];
const TOP_KS: &[i32] = &[0, 0, 1, 5, 50, 1000];
const TOP_PS: &[f32] = &[1.0, 1.0, 0.5, 0.9, 0.99];

/// Per-row sampling parameters (host side).
struct Rows {
    t: Vec<f32>,
    m: Vec<f32>,
    k: Vec<i32>,
    p: Vec<f32>,
    seeds: Vec<u64>,
}

impl Rows {
    /// Random per-row parameters from the lists above (top-k / top-p only when `filters`),
    /// fresh seeds.
    fn random(n: usize, filters: bool, r: &mut StdRng) -> Self {
        let pick = |r: &mut StdRng, l: &[f32]| l[r.random_range(0..l.len())];
        Self {
            t: (0..n).map(|_| pick(r, TEMPERATURES)).collect(),
            m: (0..n).map(|_| pick(r, MIN_PS)).collect(),
            k: (0..n)
                .map(|_| {
                    if filters {
                        TOP_KS[r.random_range(0..TOP_KS.len())]
                    } else {
                        0
                    }
                })
                .collect(),
            p: (0..n)
                .map(|_| if filters { pick(r, TOP_PS) } else { 1.0 })
                .collect(),
            seeds: (0..n).map(|_| r.random()).collect(),
        }
    }

    fn cpu(&self, out: &mut [i32], logits: &[f32], a: &SampleArgs) {
        cpu::sample_tokens(
            out,
            logits,
            &self.t,
            &self.m,
            &self.k,
            &self.p,
            &self.seeds,
            a,
        )
        .unwrap();
    }

    /// The parameters on the device.
    fn up(&self, s: &Arc<CudaStream>) -> DeviceRows {
        DeviceRows {
            t: up(s, &self.t),
            m: up(s, &self.m),
            k: up(s, &self.k),
            p: up(s, &self.p),
            seeds: up(s, &self.seeds),
        }
    }
}

struct DeviceRows {
    t: CudaSlice<f32>,
    m: CudaSlice<f32>,
    k: CudaSlice<i32>,
    p: CudaSlice<f32>,
    seeds: CudaSlice<u64>,
}

impl DeviceRows {
    fn sample(
        &self,
        s: &Arc<CudaStream>,
        out: &mut CudaSlice<i32>,
        logits: &CudaSlice<f32>,
        a: &SampleArgs,
    ) -> vllm_kernels::Result<()> {
        cuda::sample_tokens(
            s,
            out,
            logits,
            &self.t,
            &self.m,
            &self.k,
            &self.p,
            &self.seeds,
            a,
        )
    }
}

/// The score of token `i` of a row as sample_tokens ranks it.
fn score(row: &[f32], t: f32, seed: u64, i: usize) -> f32 {
    if t > 0.0 {
        cpu::sample_score(row[i], t, seed, i)
    } else {
        row[i]
    }
}

/// Samples on both sides; returns (rows, rows whose tokens differ). Rows that differ must be
/// near-ties: both tokens' CPU scores within 1e-5 relative.
fn sample_and_compare(
    s: &Arc<CudaStream>,
    logits: &[f32],
    rows: &Rows,
    a: &SampleArgs,
    what: &str,
) -> usize {
    let n = a.num_rows;
    let (t, seeds) = (&rows.t, &rows.seeds);
    let mut want = vec![-7i32; n];
    rows.cpu(&mut want, logits, a);
    let mut out = up(s, &vec![-7i32; n]);
    rows.up(s).sample(s, &mut out, &up(s, logits), a).unwrap();
    let got = down(s, &out);
    let mut differ = 0;
    for row in 0..n {
        let (g, w) = (got[row], want[row]);
        assert!(
            (0..a.vocab as i32).contains(&g),
            "{what}: row {row}: token {g} out of range"
        );
        if g == w {
            continue;
        }
        differ += 1;
        let x = &logits[row * a.logits_stride..][..a.vocab];
        let (sg, sw) = (
            score(x, t[row], seeds[row], g as usize),
            score(x, t[row], seeds[row], w as usize),
        );
        let rel = (sg - sw).abs() / sg.abs().max(sw.abs()).max(f32::MIN_POSITIVE);
        assert!(
            rel <= 1e-5,
            "{what}: row {row} (T {}, min_p {}, top_k {}, top_p {}): GPU token {g} (score {sg}) \
             vs CPU token {w} (score {sw}): not a near-tie",
            t[row],
            rows.m[row],
            rows.k[row],
            rows.p[row]
        );
        eprintln!("{what}: row {row}: near-tie {g} vs {w} (rel {rel:.2e})");
    }
    differ
}

/// Random token ids, about half of them taken from random draws of a "previous step", plus
/// sources out of range that the kernel must treat as "keep the host's id".
#[test]
fn fill_tokens_matches_cpu() {
    let Some(s) = stream("fill_tokens_matches_cpu") else {
        return;
    };
    let mut r = rng("fill_tokens_matches_cpu");
    for &(n, num_sampled) in &[
        (1usize, 1usize),
        (256, 256),
        (300, 40),
        (8192, 600),
        (513, 0),
    ] {
        let tokens: Vec<i32> = (0..n).map(|_| r.random_range(0..150_000)).collect();
        let sampled: Vec<i32> = (0..num_sampled.max(1))
            .map(|_| r.random_range(0..150_000))
            .collect();
        let from: Vec<i32> = (0..n)
            .map(|_| match (num_sampled, r.random_bool(0.5)) {
                (0, _) | (_, false) => -1,
                (m, true) => r.random_range(0..m as i32),
            })
            .collect();
        let a = FillTokensArgs::new(n, num_sampled);
        let mut want = vec![-7; n];
        cpu::fill_tokens(&mut want, &tokens, &sampled, &from, &a).unwrap();
        let mut out = up(&s, &vec![-7i32; n]);
        let (t, sm, f) = (up(&s, &tokens), up(&s, &sampled), up(&s, &from));
        cuda::fill_tokens(&s, &mut out, &t, &sm, &f, &a).unwrap();
        assert_eq!(
            down(&s, &out),
            want,
            "fill_tokens n {n} sampled {num_sampled}"
        );
        // Sources out of range keep the host's id on the device.
        let bad: Vec<i32> = (0..n)
            .map(|i| [num_sampled as i32, -5, i32::MAX, -1][i % 4])
            .collect();
        let mut out = up(&s, &vec![-7i32; n]);
        cuda::fill_tokens(&s, &mut out, &t, &sm, &up(&s, &bad), &a).unwrap();
        assert_eq!(
            down(&s, &out),
            tokens,
            "fill_tokens keeps host ids for bad sources"
        );
    }
    // Lengths are checked on the host before anything is launched.
    let mut out = up(&s, &[0i32; 4]);
    let (t, sm, f) = (up(&s, &[0i32; 5]), up(&s, &[1i32]), up(&s, &[0i32; 5]));
    let e = cuda::fill_tokens(&s, &mut out, &t, &sm, &f, &FillTokensArgs::new(5, 1)).unwrap_err();
    assert!(
        matches!(e, KernelError::BufferTooSmall { name: "out", .. }),
        "{e}"
    );
}

#[test]
fn sample_tokens_matches_cpu() {
    let Some(s) = stream("sample_tokens_matches_cpu") else {
        return;
    };
    let mut r = rng("sample_tokens_matches_cpu");
    let (mut rows_total, mut differ_total) = (0, 0);
    // (vocab, extra stride): aligned rows (16-byte loads) and an odd, strided vocab (scalar).
    for &(vocab, pad) in &[(1000usize, 0usize), (32000, 0), (151936, 0), (1001, 2)] {
        for &n in &[1usize, 64, 300] {
            let mut a = SampleArgs::new(n, vocab);
            a.logits_stride += pad;
            // Logits of a real model's spread: most tokens far below a few likely ones.
            let mut logits: Vec<f32> = random(n * a.logits_stride, -12.0, 4.0, &mut r);
            for row in 0..n {
                for _ in 0..8 {
                    let i = r.random_range(0..vocab);
                    logits[row * a.logits_stride + i] = r.random_range(4.0..14.0);
                }
            }
            // Flat logits: every token competes, the Gumbel noise decides. Rounded to 1/64 so
            // many logits tie and top-k / top-p thresholds fall inside runs of equal scores.
            let flat: Vec<f32> = random::<f32>(n * a.logits_stride, -1.0, 1.0, &mut r)
                .into_iter()
                .map(|x| (x * 64.0).round() / 64.0)
                .collect();
            for filters in [false, true] {
                let rows = Rows::random(n, filters, &mut r);
                let what = format!("sample_tokens {n}x{vocab}+{pad} filters {filters}");
                differ_total += sample_and_compare(&s, &logits, &rows, &a, &what);
                let what = format!("sample_tokens flat {n}x{vocab}+{pad} filters {filters}");
                differ_total += sample_and_compare(&s, &flat, &rows, &a, &what);
                rows_total += 2 * n;
            }
        }
    }
    eprintln!("sample_tokens: {differ_total} of {rows_total} rows differ (near-ties)");
    assert!(
        differ_total * 1000 < rows_total,
        "{differ_total} of {rows_total} rows differ: more than 0.1%"
    );
}

/// Greedy ties, NaN and -inf handled as the CPU reference does, on hand-made rows.
#[test]
fn sample_tokens_ties_and_nan() {
    let Some(s) = stream("sample_tokens_ties_and_nan") else {
        return;
    };
    let nan = f32::NAN;
    let ninf = f32::NEG_INFINITY;
    let rows: &[([f32; 8], f32, f32, i32)] = &[
        ([1.0, 3.0, 3.0, 2.0, 0.0, 3.0, -1.0, 0.5], 0.0, 0.0, 1),
        ([nan, 1.0, nan, 5.0, 5.0, nan, 4.0, 2.0], 0.0, 0.0, 3),
        ([nan; 8], 0.0, 0.0, 0),
        ([nan; 8], 1.0, 0.0, 0),
        (
            [ninf, ninf, ninf, ninf, ninf, ninf, ninf, ninf],
            0.0,
            0.0,
            0,
        ),
        ([ninf, nan, ninf, 2.0, ninf, nan, ninf, ninf], 0.8, 0.1, 3),
        ([0.0, 0.0, 9.0, 0.0, 0.0, 0.0, 0.0, 0.0], 1.0, 1.0, 2),
        ([0.0, 0.0, 9.0, 0.0, 0.0, 0.0, 0.0, 0.0], 1.0, 5.0, 2),
        ([0.0, 0.0, 9.0, 0.0, 9.0, 0.0, 0.0, 0.0], -1.0, 0.0, 2),
    ];
    let n = rows.len();
    let logits: Vec<f32> = rows.iter().flat_map(|x| x.0).collect();
    let t: Vec<f32> = rows.iter().map(|x| x.1).collect();
    let m: Vec<f32> = rows.iter().map(|x| x.2).collect();
    let seeds: Vec<u64> = (0..n as u64).map(|i| i * 7919 + 1).collect();
    let a = SampleArgs::new(n, 8);
    let rows_p = Rows {
        t,
        m,
        k: vec![0; n],
        p: vec![1.0; n],
        seeds,
    };
    let mut cpu_out = vec![-7; n];
    rows_p.cpu(&mut cpu_out, &logits, &a);
    let mut out = up(&s, &vec![-7i32; n]);
    rows_p
        .up(&s)
        .sample(&s, &mut out, &up(&s, &logits), &a)
        .unwrap();
    let got = down(&s, &out);
    let want: Vec<i32> = rows.iter().map(|x| x.3).collect();
    assert_eq!(cpu_out, want, "CPU reference");
    assert_eq!(got, want, "GPU");
}

/// sample_tokens enqueues nothing but its kernel: it captures into a CUDA graph, and replaying
/// the graph after new logits are copied into the same buffer samples the new logits.
#[test]
fn sample_tokens_captures_in_a_graph() {
    let Some(s0) = stream("sample_tokens_captures_in_a_graph") else {
        return;
    };
    let ctx = s0.context().clone();
    // SAFETY: every buffer below is used on the one stream `s` only, in stream order.
    unsafe { ctx.disable_event_tracking() };
    let s = ctx.new_stream().unwrap();
    let mut r = rng("sample_tokens_captures_in_a_graph");
    let (n, vocab) = (8, 32000);
    let a = SampleArgs::new(n, vocab);
    let first: Vec<f32> = random(n * vocab, -5.0, 5.0, &mut r);
    let second: Vec<f32> = random(n * vocab, -5.0, 5.0, &mut r);
    let rows = Rows::random(n, true, &mut r);
    let mut logits = up(&s, &first);
    let d = rows.up(&s);
    let mut out = up(&s, &vec![-7i32; n]);
    // One launch outside the capture first, as a runner warms up (the launcher's one-time
    // device query then happens here, not inside the capture).
    d.sample(&s, &mut out, &logits, &a).unwrap();
    s.synchronize().unwrap();
    s.memcpy_htod(&[-7i32; 8], &mut out).unwrap();
    s.begin_capture(cudarc::driver::sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .unwrap();
    d.sample(&s, &mut out, &logits, &a).unwrap();
    let graph = s
        .end_capture(cudarc::driver::sys::CUgraphInstantiate_flags(0))
        .unwrap()
        .expect("a captured graph");
    for host in [&first, &second] {
        s.memcpy_htod(host, &mut logits).unwrap();
        graph.launch().unwrap();
        let got = down(&s, &out);
        let mut want = vec![-7; n];
        rows.cpu(&mut want, host, &a);
        assert_eq!(got, want, "graph replay");
    }
}

/// Bad input to every wrapper is a typed error naming the value, and nothing reaches the GPU:
/// the poisoned output is still poisoned afterwards.
#[test]
fn runner_ops_reject_bad_input_before_launch() {
    let Some(s) = stream("runner_ops_reject_bad_input_before_launch") else {
        return;
    };
    let poison = || up(&s, &vec![bf16::NAN; 1024]);
    let untouched = |d: &CudaSlice<bf16>| down(&s, d).iter().all(|v| v.is_nan());
    let data = up(&s, &vec![bf16::ONE; 1024]);
    let ids = up(&s, &[0i32, 1, 2]);

    let mut out = poison();
    let e =
        cuda::gather_rows(&s, &mut out, &data, &ids, &GatherRowsArgs::new(4, 64, 16)).unwrap_err();
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
    let e = cuda::gather_rows(&s, &mut out, &data, &ids, &a).unwrap_err();
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
    let e =
        cuda::gather_rows(&s, &mut out, &data, &ids, &GatherRowsArgs::new(2, 64, 17)).unwrap_err();
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
    assert!(untouched(&out));

    let mut x = poison();
    let e = cuda::add_bias(&s, &mut x, &data, &AddBiasArgs::new(1, 64)).unwrap_err();
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
    let e = cuda::add_bias(&s, &mut x, &data, &AddBiasArgs::new(2, 1024)).unwrap_err();
    assert!(
        matches!(e, KernelError::BufferTooSmall { name: "x", .. }),
        "{e}"
    );
    assert!(untouched(&x));

    let w = up(&s, &[bf16::ONE; 128]);
    let mut a = HeadRmsNormArgs::new(3, 2, 128, 1e-6);
    a.token_stride = 448;
    let e = cuda::head_rms_norm(&s, &mut x, &w, &a).unwrap_err();
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
    let e = cuda::head_rms_norm(&s, &mut x, &w, &a).unwrap_err();
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
    assert!(untouched(&x));

    let logits = up(&s, &vec![1.0f32; 1000]);
    let f = up(&s, &[1.0f32; 4]);
    let k4 = up(&s, &[0i32; 4]);
    let seeds = up(&s, &[1u64; 4]);
    let mut tok = up(&s, &[-7i32; 4]);
    let sample = |tok: &mut CudaSlice<i32>, a: &SampleArgs| {
        cuda::sample_tokens(&s, tok, &logits, &f, &f, &k4, &f, &seeds, a)
    };
    let e = sample(&mut tok, &SampleArgs::new(4, 0)).unwrap_err();
    assert!(e.to_string().contains("vocab"), "{e}");
    let e = sample(&mut tok, &SampleArgs::new(4, 251)).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BufferTooSmall {
                name: "logits",
                len: 1000,
                need: 1004,
                ..
            }
        ),
        "{e}"
    );
    let mut a = SampleArgs::new(2, 100);
    a.logits_stride = 99;
    let e = sample(&mut tok, &a).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BadStride {
                name: "logits",
                stride: 99,
                row_len: 100,
                ..
            }
        ),
        "{e}"
    );
    let e = sample(&mut tok, &SampleArgs::new(5, 100)).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::BufferTooSmall {
                name: "out",
                need: 5,
                ..
            }
        ),
        "{e}"
    );
    assert!(down(&s, &tok).iter().all(|&t| t == -7));
}

/// The launchers' own checks: a zero vocab, a short stride, an unknown dtype or NULL params are
/// refused with a status, not a launch.
#[test]
fn runner_launchers_refuse_bad_params() {
    let Some(s) = stream("runner_launchers_refuse_bad_params") else {
        return;
    };
    use cuda::raw::*;
    let st = s.cu_stream() as vllm_stream;
    let mut out = up(&s, &[-7i32; 2]);
    let f = up(&s, &[1.0f32; 64]);
    let seeds = up(&s, &[1u64; 2]);
    let (o, _g1) = cuda::DevicePtrMut::device_ptr_mut(&mut out, &s);
    let (fp, _g2) = cuda::DevicePtr::device_ptr(&f, &s);
    let (sp, _g3) = cuda::DevicePtr::device_ptr(&seeds, &s);
    let p = vllm_sample_tokens_params {
        out: o as usize as *mut i32,
        logits: fp as usize as *const f32,
        temperature: fp as usize as *const f32,
        min_p: fp as usize as *const f32,
        top_k: std::ptr::null(),
        top_p: std::ptr::null(),
        seeds: sp as usize as *const u64,
        num_rows: 2,
        vocab: 0,
        logits_stride: 32,
    };
    // SAFETY: valid device pointers of the sizes named; the launcher must refuse vocab 0.
    let got = unsafe { vllm_sample_tokens(&p, st) };
    assert_eq!(got, vllm_kstatus::VLLM_K_INVALID_ARGUMENT);
    let short = vllm_sample_tokens_params {
        vocab: 32,
        logits_stride: 31,
        ..p
    };
    // SAFETY: as above; the launcher must refuse the stride.
    let got = unsafe { vllm_sample_tokens(&short, st) };
    assert_eq!(got, vllm_kstatus::VLLM_K_INVALID_ARGUMENT);
    // SAFETY: NULL params must be refused, not dereferenced.
    let got = unsafe { vllm_sample_tokens(std::ptr::null(), st) };
    assert_eq!(got, vllm_kstatus::VLLM_K_INVALID_ARGUMENT);
    let g = vllm_gather_rows_params {
        out: fp as usize as *mut _,
        table: fp as usize as *const _,
        ids: o as usize as *const i32,
        num_rows: 2,
        row_len: 16,
        table_rows: 4,
        table_stride: 16,
        out_stride: 16,
        dtype: vllm_dtype(99),
    };
    // SAFETY: valid device pointers; the launcher must refuse the dtype.
    let got = unsafe { vllm_gather_rows(&g, st) };
    assert_eq!(got, vllm_kstatus::VLLM_K_UNSUPPORTED_DTYPE);
    // SAFETY: NULL params must be refused, not dereferenced.
    let got = unsafe { vllm_add_bias(std::ptr::null(), st) };
    assert_eq!(got, vllm_kstatus::VLLM_K_INVALID_ARGUMENT);
    // SAFETY: as above.
    let got = unsafe { vllm_head_rms_norm(std::ptr::null(), st) };
    assert_eq!(got, vllm_kstatus::VLLM_K_INVALID_ARGUMENT);
    drop((_g1, _g2, _g3));
    assert_eq!(down(&s, &out), vec![-7, -7], "nothing launched");
}

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
    // Unsupported shapes and types are typed errors, nothing launched.
    let x = up(&s, &[bf16::ZERO; 64]);
    let mut y = up(&s, &[0f32; 64]);
    for (a, what) in [
        (SkinnyGemmArgs::new(5, 4, 8), "m (rows)"),
        (SkinnyGemmArgs::new(1, 4, 12), "k"),
    ] {
        let e = cuda::skinny_gemm(&s, &mut y, &x, &x, &a).unwrap_err();
        assert!(
            matches!(e, KernelError::Unsupported { what: w, .. } if w == what),
            "{e}"
        );
    }
    let xf = up(&s, &[0f32; 64]);
    let e = cuda::skinny_gemm(&s, &mut y, &xf, &xf, &SkinnyGemmArgs::new(1, 4, 8)).unwrap_err();
    assert!(matches!(e, KernelError::Unsupported { .. }), "{e}");
    eprintln!(
        "skinny_gemm: 6 shapes x (bf16, f16) x (16-bit, f32 out) within bounds; bad m / k / dtype refused"
    );
}

/// Top-k / top-p thresholds inside runs of equal logits (the tie-cut passes of the radix
/// selection): the GPU draws exactly the CPU reference's tokens, and over 400 seeds exactly
/// the allowed set turns up.
#[test]
fn sample_tokens_top_k_top_p_cut_ties_by_index() {
    let Some(s) = stream("sample_tokens_top_k_top_p_cut_ties_by_index") else {
        return;
    };
    for (row, k, p, allowed) in top_k_top_p_cases() {
        let n = 400;
        let logits: Vec<f32> = (0..n).flat_map(|_| row.iter().copied()).collect();
        let rows = Rows {
            t: vec![1.0; n],
            m: vec![0.0; n],
            k: vec![k; n],
            p: vec![p; n],
            seeds: (0..n as u64).collect(),
        };
        let a = SampleArgs::new(n, row.len());
        let mut want = vec![-7i32; n];
        rows.cpu(&mut want, &logits, &a);
        let mut out = up(&s, &vec![-7i32; n]);
        rows.up(&s)
            .sample(&s, &mut out, &up(&s, &logits), &a)
            .unwrap();
        let got = down(&s, &out);
        assert_eq!(got, want, "row {row:?}, top_k {k}, top_p {p}");
        let seen: std::collections::BTreeSet<i32> = got.iter().copied().collect();
        let want: std::collections::BTreeSet<i32> = allowed.iter().copied().collect();
        assert_eq!(seen, want, "row {row:?}, top_k {k}, top_p {p}");
    }
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
            blas.matmul_bt::<bf16, bf16>(&mut y, n, &dx, &dw, m, n, k)
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
            blas.matmul_bt::<bf16, f32>(&mut y, n, &dx, &dw, m, n, k)
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
    blas.matmul_bt::<bf16, bf16>(&mut y, n, &up(&s, &x), &up(&s, &w), m, n, k)
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

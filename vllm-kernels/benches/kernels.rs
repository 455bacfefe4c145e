//! Microbenchmarks of the first kernel family on the GPU.
//!
//! For each op, dtype and shape: the median time of one launch (CUDA events around batches of
//! at least 64 launches, so the host's enqueue latency before the first launch of a batch is
//! amortised, after warm-up, rotating through enough input sets to overflow L2), the bytes the op
//! must move (each input read once, each output written once), the achieved GB/s, and that as a
//! percentage of the device-to-device copy bandwidth measured here in the same run (bytes read +
//! written). swap_blocks is compared with a large pinned-host <-> device copy instead.
//!
//! The runner ops: sample_tokens (greedy, T = 1, T = 1 with min-p 0.05) at 256 x 151936 and
//! 1 x 128256 f32 logits (bytes = the logits read once, though min-p reads them twice), and
//! gather_rows, add_bias and head_rms_norm on bf16 decode/prefill shapes, fill_tokens at a
//! decode batch (256 tokens, all taken from the previous step's draws) and a prefill one (8192
//! tokens, none); these last are latency-bound (a few KB).
//!
//! Usage: kernels [--json PATH] [--quick] [--only attention|prefill|ragged|runner]. PyTorch's times come from benches/torch_kernels.py;
//! benches/report.py joins both into the table.

use half::{bf16, f16};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde_json::{Value, json};
use std::sync::Arc;
use vllm_kernels::args::*;
use vllm_kernels::cuda::{self, CudaSlice, CudaStream, GpuFloat, PinnedHostSlice};
use vllm_kernels::{DType, Float, Fp8E4m3};

mod common;

use common::{Res, copy_bandwidth, flag_value, median_ms};

const TOKENS: &[usize] = &[1, 16, 256, 4096];
const HIDDEN: usize = 4096;
/// Bytes the rotating input sets of one measurement must cover (4x the H100's 50 MB L2).
const ROTATE_BYTES: usize = 200 << 20;

struct Bench {
    s: Arc<CudaStream>,
    repeats: usize,
    records: Vec<Value>,
    copy_gbps: f64,
    pinned_gbps: f64,
    /// Device-to-device copy bandwidth at a given byte count (read + write), measured once each.
    same_size: std::collections::HashMap<usize, f64>,
}

fn sets_for(bytes_per_call: usize) -> usize {
    ROTATE_BYTES.div_ceil(bytes_per_call.max(1)).clamp(2, 64)
}

fn random<T: Float + cuda::DeviceRepr>(
    s: &Arc<CudaStream>,
    n: usize,
    lo: f32,
    hi: f32,
    r: &mut StdRng,
) -> Res<CudaSlice<T>> {
    let v: Vec<T> = (0..n)
        .map(|_| T::from_f32(r.random_range(lo..hi)))
        .collect();
    Ok(s.clone_htod(&v)?)
}

impl Bench {
    /// Median microseconds of one call of `launch(set)`, over `repeats` batches of `sets` calls.
    fn time(&self, sets: usize, mut launch: impl FnMut(usize) -> Res<()>) -> Res<f64> {
        for i in 0..sets.max(3) {
            launch(i % sets)?;
        }
        let flags = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let mut samples = Vec::with_capacity(self.repeats);
        let per_batch = sets.max(64);
        for _ in 0..self.repeats {
            let start = self.s.record_event(flags)?;
            for i in 0..per_batch {
                launch(i % sets)?;
            }
            let end = self.s.record_event(flags)?;
            samples.push(start.elapsed_ms(&end)? as f64 * 1e3 / per_batch as f64);
        }
        samples.sort_by(f64::total_cmp);
        Ok(samples[samples.len() / 2])
    }

    /// A copy of `bytes / 2` bytes (so `bytes` read + written), rotating buffers like the kernels.
    fn same_size_copy(&mut self, bytes: usize) -> Res<f64> {
        if let Some(&g) = self.same_size.get(&bytes) {
            return Ok(g);
        }
        let half = (bytes / 2).max(16);
        let sets = sets_for(bytes);
        let srcs: Vec<CudaSlice<u8>> = (0..sets)
            .map(|_| self.s.alloc_zeros(half))
            .collect::<Result<_, _>>()?;
        let mut dsts: Vec<CudaSlice<u8>> = (0..sets)
            .map(|_| self.s.alloc_zeros(half))
            .collect::<Result<_, _>>()?;
        let s = self.s.clone();
        let us = self.time(sets, |i| Ok(s.memcpy_dtod(&srcs[i], &mut dsts[i])?))?;
        let g = 2.0 * half as f64 / us / 1e3;
        self.same_size.insert(bytes, g);
        Ok(g)
    }

    /// A row against the device-to-device copy ceiling.
    fn record(
        &mut self,
        kernel: &str,
        dtype: DType,
        tokens: usize,
        hidden: usize,
        us: f64,
        bytes: usize,
    ) -> Res<()> {
        self.push(kernel, dtype, (tokens, hidden), (us, bytes), false)
    }

    /// Prints the row and keeps it for the JSON output.
    fn push(
        &mut self,
        kernel: &str,
        dtype: DType,
        (tokens, hidden): (usize, usize),
        (us, bytes): (f64, usize),
        pinned: bool,
    ) -> Res<()> {
        let gbps = bytes as f64 / us / 1e3;
        let ceiling = if pinned {
            self.pinned_gbps
        } else {
            self.copy_gbps
        };
        let pct = 100.0 * gbps / ceiling;
        let same = if pinned {
            None
        } else {
            Some(self.same_size_copy(bytes)?)
        };
        let pct_same = same.map(|g| 100.0 * gbps / g);
        println!(
            "{kernel:<20} {dtype:<5} {tokens:>5} x {hidden:<6} {us:>10.2} us {gbps:>9.1} GB/s {pct:>6.1}% of copy, {:>6.1}% of same-size copy",
            pct_same.unwrap_or(f64::NAN)
        );
        self.records.push(json!({
            "kernel": kernel, "dtype": dtype.to_string(), "tokens": tokens, "hidden": hidden,
            "us": us, "bytes": bytes, "gbps": gbps, "pct_of_ceiling": pct,
            "ceiling": if pinned { "pinned_host_copy" } else { "d2d_copy" },
            "same_size_copy_gbps": same, "pct_of_same_size_copy": pct_same,
        }));
        Ok(())
    }
}

/// Median milliseconds of `op` alone between two events, after 3 warm-up runs.
/// Pinned host -> device copy of 256 MiB (one direction).
fn pinned_bandwidth(s: &Arc<CudaStream>, repeats: usize) -> Res<f64> {
    let n = 256usize << 20;
    // SAFETY: the pinned buffer is only a copy source; its contents do not matter.
    let host: PinnedHostSlice<u8> = unsafe { s.context().alloc_pinned_with_flags(n, 0) }?;
    let mut dev = s.alloc_zeros::<u8>(n)?;
    let ms = median_ms(s, repeats, || Ok(s.memcpy_htod(&host, &mut dev)?))?;
    Ok(n as f64 / (ms * 1e-3) / 1e9)
}

fn norms<T: GpuFloat>(b: &mut Bench, r: &mut StdRng) -> Res<()> {
    let s = b.s.clone();
    let e = T::DTYPE.size();
    for &h in &[HIDDEN, 2 * HIDDEN] {
        for &t in TOKENS {
            let sets = sets_for(2 * t * h * e);
            let xs: Vec<CudaSlice<T>> = (0..sets)
                .map(|_| random(&s, t * h, -2.0, 2.0, r))
                .collect::<Res<_>>()?;
            let mut outs: Vec<CudaSlice<T>> = (0..sets)
                .map(|_| random(&s, t * h, -2.0, 2.0, r))
                .collect::<Res<_>>()?;
            let w = random::<T>(&s, h, 0.5, 1.5, r)?;
            let a = RmsNormArgs::new(t, h, 1e-6);
            let us = b.time(sets, |i| {
                Ok(cuda::rms_norm(&s, &mut outs[i], &xs[i], &w, &a)?)
            })?;
            b.record("rms_norm", T::DTYPE, t, h, us, (2 * t * h + h) * e)?;
            let mut rs = outs;
            let mut xs = xs;
            let fa = FusedAddRmsNormArgs::new(t, h, 1e-6);
            let us = b.time(sets, |i| {
                Ok(cuda::fused_add_rms_norm(
                    &s, &mut xs[i], &mut rs[i], &w, &fa,
                )?)
            })?;
            b.record(
                "fused_add_rms_norm",
                T::DTYPE,
                t,
                h,
                us,
                (4 * t * h + h) * e,
            )?;
        }
    }
    Ok(())
}

fn rotary<T: GpuFloat>(b: &mut Bench, r: &mut StdRng) -> Res<()> {
    // Llama-3-8B attention: 32 query heads, 8 KV heads, head size 128, NeoX style.
    let s = b.s.clone();
    let e = T::DTYPE.size();
    let (nh, nkv, hs, maxp) = (32, 8, 128, 8192);
    let cache_host: Vec<T> = (0..maxp * hs)
        .map(|i| T::from_f32(((i % 97) as f32 * 0.01).sin()))
        .collect();
    let cache = s.clone_htod(&cache_host)?;
    for &t in TOKENS {
        let bytes = 2 * t * (nh + nkv) * hs * e + t * hs * e + t * 8;
        let sets = sets_for(bytes);
        let pos: Vec<i64> = (0..t).map(|_| r.random_range(0..maxp as i64)).collect();
        let pos = s.clone_htod(&pos)?;
        let mut qs: Vec<CudaSlice<T>> = (0..sets)
            .map(|_| random(&s, t * nh * hs, -1.0, 1.0, r))
            .collect::<Res<_>>()?;
        let mut ks: Vec<CudaSlice<T>> = (0..sets)
            .map(|_| random(&s, t * nkv * hs, -1.0, 1.0, r))
            .collect::<Res<_>>()?;
        for (name, is_neox) in [("rotary_neox", true), ("rotary_gptj", false)] {
            let a = RotaryArgs::new(t, nh, nkv, hs, hs, maxp, is_neox);
            let us = b.time(sets, |i| {
                Ok(cuda::rotary_embedding(
                    &s,
                    &pos,
                    &mut qs[i],
                    Some(&mut ks[i]),
                    &cache,
                    &a,
                )?)
            })?;
            b.record(name, T::DTYPE, t, nh * hs, us, bytes)?;
        }
    }
    Ok(())
}

fn activations<T: GpuFloat>(b: &mut Bench, r: &mut StdRng) -> Res<()> {
    let s = b.s.clone();
    let e = T::DTYPE.size();
    let d = HIDDEN;
    for &t in TOKENS {
        let sets = sets_for(3 * t * d * e);
        let xs: Vec<CudaSlice<T>> = (0..sets)
            .map(|_| random(&s, t * 2 * d, -4.0, 4.0, r))
            .collect::<Res<_>>()?;
        let mut outs: Vec<CudaSlice<T>> = (0..sets)
            .map(|_| random(&s, t * d, -1.0, 1.0, r))
            .collect::<Res<_>>()?;
        for act in [Activation::Silu, Activation::GeluErf, Activation::GeluTanh] {
            let a = ActAndMulArgs::new(t, d, act);
            let us = b.time(sets, |i| {
                Ok(cuda::act_and_mul(&s, &mut outs[i], &xs[i], &a)?)
            })?;
            b.record(act.name(), T::DTYPE, t, d, us, 3 * t * d * e)?;
        }
    }
    Ok(())
}

fn caches<T: GpuFloat + cuda::ValidAsZeroBits>(b: &mut Bench, r: &mut StdRng) -> Res<()> {
    let s = b.s.clone();
    let e = T::DTYPE.size();
    let (nkv, hs, bs) = (32, 128, 16);
    for &t in TOKENS {
        // reshape_and_cache: t tokens into a cache of exactly t slots, in a shuffled block order.
        let l = PagedKvLayout {
            num_blocks: t.div_ceil(bs),
            num_kv_heads: nkv,
            block_size: bs,
            head_size: hs,
        };
        let bytes = 4 * t * nkv * hs * e;
        let sets = sets_for(bytes);
        let mut slots: Vec<i64> = (0..l.num_slots() as i64).collect();
        slots.shuffle(r);
        slots.truncate(t);
        let slots = s.clone_htod(&slots)?;
        let ks: Vec<CudaSlice<T>> = (0..sets)
            .map(|_| random(&s, t * nkv * hs, -1.0, 1.0, r))
            .collect::<Res<_>>()?;
        let vs: Vec<CudaSlice<T>> = (0..sets)
            .map(|_| random(&s, t * nkv * hs, -1.0, 1.0, r))
            .collect::<Res<_>>()?;
        let mut kcs: Vec<CudaSlice<T>> = (0..sets)
            .map(|_| s.alloc_zeros(l.numel()))
            .collect::<Result<_, _>>()?;
        let mut vcs: Vec<CudaSlice<T>> = (0..sets)
            .map(|_| s.alloc_zeros(l.numel()))
            .collect::<Result<_, _>>()?;
        let a = ReshapeAndCacheArgs::new(t, l);
        let us = b.time(sets, |i| {
            Ok(cuda::reshape_and_cache(
                &s,
                &ks[i],
                &vs[i],
                &mut kcs[i],
                &mut vcs[i],
                &slots,
                &a,
            )?)
        })?;
        b.record("reshape_and_cache", T::DTYPE, t, nkv * hs, us, bytes)?;

        if T::DTYPE != DType::BF16 {
            continue; // copy and swap move bytes: one dtype is enough.
        }
        // copy_blocks: the t tokens' blocks (K and V caches) copied to fresh blocks.
        let pairs_n = l.num_blocks;
        let cl = PagedKvLayout {
            num_blocks: 2 * pairs_n,
            ..l
        };
        let pairs: Vec<BlockPair> = (0..pairs_n).map(|i| (i, pairs_n + i)).collect();
        let bytes = 2 * 2 * pairs_n * cl.block_numel() * e;
        let sets = sets_for(bytes);
        let mut kv: Vec<CudaSlice<T>> = (0..2 * sets)
            .map(|_| random(&s, cl.numel(), -1.0, 1.0, r))
            .collect::<Res<_>>()?;
        let us = b.time(sets, |i| {
            let (a, rest) = kv[2 * i..].split_at_mut(1);
            Ok(cuda::copy_blocks(
                &s,
                &mut [&mut a[0], &mut rest[0]],
                &cl,
                &pairs,
            )?)
        })?;
        b.record("copy_blocks", T::DTYPE, t, nkv * hs, us, bytes)?;

        // swap_blocks: the t tokens' K blocks out to pinned host memory.
        let dev = random::<T>(&s, l.numel(), -1.0, 1.0, r)?;
        // SAFETY: the pinned buffer is only written by the copies before any read.
        let mut host: PinnedHostSlice<T> =
            unsafe { s.context().alloc_pinned_with_flags(l.numel(), 0) }?;
        let pairs: Vec<BlockPair> = (0..l.num_blocks).map(|i| (i, i)).collect();
        let bytes = l.numel() * e;
        let us = b.time(1, |_| {
            Ok(cuda::swap_blocks_to_host(
                &s, &dev, &l, &mut host, &l, &pairs,
            )?)
        })?;
        // Against the pinned host copy ceiling.
        b.push(
            "swap_blocks_d2h",
            T::DTYPE,
            (t, nkv * hs),
            (us, bytes),
            true,
        )?;
    }
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let json_path = flag_value(&args, "--json");
    let quick = args.iter().any(|a| a == "--quick");
    // `--only attention` runs the attention rows alone.
    let only = flag_value(&args, "--only");
    let Some(ctx) = cuda::try_context(0) else {
        println!("SKIP: no CUDA device");
        return Ok(());
    };
    let s = ctx.default_stream();
    let repeats = if quick { 5 } else { 25 };
    let device = ctx.name()?;
    let copy_gbps = copy_bandwidth(&s, repeats)?;
    let pinned_gbps = pinned_bandwidth(&s, repeats.min(10))?;
    println!("device: {device}");
    println!(
        "ceiling: device-to-device copy {copy_gbps:.1} GB/s (read + write); pinned host -> device {pinned_gbps:.1} GB/s"
    );
    let mut b = Bench {
        s,
        repeats,
        records: Vec::new(),
        copy_gbps,
        pinned_gbps,
        same_size: Default::default(),
    };
    let mut r = StdRng::seed_from_u64(1);
    // `--only prefill`: the prefill rows alone (PREFILL_SPLIT_P=1: P as hi + lo; the kernel
    // variant from VLLM_PREFILL_VARIANT, see prefill_attention.cuh).
    if only.as_deref() == Some("runner") {
        runner_ops(&mut b, &mut r)?;
    } else if only.as_deref() == Some("ragged") {
        attention_ragged(&mut b, &mut r)?;
    } else {
        if only.as_deref() != Some("prefill") {
            attention(&mut b, &mut r)?;
            attention_ragged(&mut b, &mut r)?;
        }
        prefill(&mut b, &mut r)?;
    }
    let others = if only.is_some() {
        &[][..]
    } else {
        &[DType::BF16, DType::F16, DType::F32][..]
    };
    if only.is_none() {
        runner_ops(&mut b, &mut r)?;
    }
    for &dtype in others {
        match dtype {
            DType::BF16 => run_all::<bf16>(&mut b, &mut r)?,
            DType::F16 => run_all::<f16>(&mut b, &mut r)?,
            DType::F32 => run_all::<f32>(&mut b, &mut r)?,
        }
    }
    if let Some(p) = json_path {
        let doc = json!({
            "device": device, "copy_gbps": copy_gbps, "pinned_h2d_gbps": pinned_gbps,
            "method": "median of CUDA-event-timed batches, rotating input sets >= 200 MB",
            "results": b.records,
        });
        std::fs::write(&p, serde_json::to_string_pretty(&doc)?)?;
        println!("wrote {p}");
    }
    Ok(())
}

/// `sets` (K, V) cache pairs of `numel` elements each, filled with `chunk` over and over.
fn kv_sets<E: cuda::DeviceRepr + cuda::ValidAsZeroBits>(
    s: &Arc<CudaStream>,
    chunk: &[E],
    numel: usize,
    sets: usize,
) -> Res<Vec<[CudaSlice<E>; 2]>> {
    let one = || -> Res<CudaSlice<E>> {
        let mut c = s.alloc_zeros::<E>(numel)?;
        let mut off = 0;
        while off < numel {
            let n = chunk.len().min(numel - off);
            s.memcpy_htod(&chunk[..n], &mut c.slice_mut(off..off + n))?;
            off += n;
        }
        Ok(c)
    };
    (0..sets).map(|_| Ok([one()?, one()?])).collect()
}

/// Decode attention, bf16, head 128, 32 query / 8 KV heads, block 16: KV bytes read per second.
/// `tokens` in the record is the batch, `hidden` the context length.
fn attention(b: &mut Bench, r: &mut StdRng) -> Res<()> {
    let s = b.s.clone();
    let (nh, nkv, hs, bs) = (32usize, 8usize, 128usize, 16usize);
    // A random chunk uploaded over and over: random data without generating gigabytes on the host.
    let chunk: Vec<bf16> = (0..(8usize << 20))
        .map(|_| bf16::from_f32(r.random_range(-1.0f32..1.0)))
        .collect();
    for &(batch, ctx) in &[
        (1usize, 4096usize),
        (1, 32768),
        (8, 4096),
        (64, 4096),
        (256, 1024),
        (256, 4096),
    ] {
        let blocks_per_seq = ctx / bs;
        let num_blocks = batch * blocks_per_seq;
        let numel = num_blocks * nkv * bs * hs;
        let kv_bytes = 2 * numel * 2;
        let sets = sets_for(kv_bytes);
        let caches = kv_sets(&s, &chunk, numel, sets)?;
        let mut ids: Vec<i32> = (0..num_blocks as i32).collect();
        ids.shuffle(r);
        let tables = s.clone_htod(&ids)?;
        let lens = s.clone_htod(&vec![ctx as i32; batch])?;
        let mut bufs = DecodeBufs {
            q: random::<bf16>(&s, batch * nh * hs, -1.0, 1.0, r)?,
            out: s.alloc_zeros::<bf16>(batch * nh * hs)?,
            tables,
            lens,
            ws: s.alloc_zeros::<f32>(0)?,
        };
        let a = PagedAttentionArgs::new(
            AttentionGeometry::new(nh, nkv, hs, bs, blocks_per_seq),
            batch,
            ctx,
        );
        bufs.ws = s.alloc_zeros::<f32>(a.workspace_floats())?;
        println!(
            "paged attention {batch} x {ctx}: auto picks {:?}; v2 partitions of {} tokens",
            a.pick_version(),
            a.partition_size()
        );
        let rows = ["paged_attention_v1", "paged_attention_v2"];
        time_decode(b, &caches, &mut bufs, a, rows, (batch, ctx), kv_bytes)?;
        drop(caches);

        // The same over an FP8 E4M3 cache (values x 64, scales 1/64): half the bytes.
        let chunk8: Vec<Fp8E4m3> = chunk
            .iter()
            .map(|x| Fp8E4m3::from_f32(x.to_f32() * 64.0))
            .collect();
        let caches8 = kv_sets(&s, &chunk8, numel, sets_for(kv_bytes / 2))?;
        let a8 = a.with_fp8_cache(1.0 / 64.0, 1.0 / 64.0);
        let rows = ["paged_attention_fp8_v1", "paged_attention_fp8_v2"];
        time_decode(b, &caches8, &mut bufs, a8, rows, (batch, ctx), kv_bytes / 2)?;
    }
    Ok(())
}

/// Decode attention over ragged contexts, as a serving batch has them: `batch` sequences of
/// lengths uniform in [100, 2048] in random order, launched for a longest context of 2048 (what
/// a decode CUDA graph captured at max_model_len 2048 launches). Rows: the automatic choice in
/// arrival order and with the sequences sorted longest first (the engine's packing order; CTAs
/// are dispatched in sequence order), then v2 at partitions of 512 tokens. `tokens` in the
/// record is the batch, `hidden` the mean context.
fn attention_ragged(b: &mut Bench, r: &mut StdRng) -> Res<()> {
    let s = b.s.clone();
    let (nh, nkv, hs, bs, max_len) = (32usize, 8usize, 128usize, 16usize, 2048usize);
    let chunk: Vec<bf16> = (0..(8usize << 20))
        .map(|_| bf16::from_f32(r.random_range(-1.0f32..1.0)))
        .collect();
    for &batch in &[8usize, 16, 32, 64, 128, 192, 256] {
        let mut lens: Vec<usize> = (0..batch).map(|_| r.random_range(100..=max_len)).collect();
        let total: usize = lens.iter().sum();
        let mean = total / batch;
        let blocks_per_seq = max_len / bs;
        let num_blocks = batch * blocks_per_seq;
        let numel = num_blocks * nkv * bs * hs;
        let kv_bytes = total * nkv * hs * 2 * 2;
        let caches = kv_sets(&s, &chunk, numel, sets_for(2 * numel * 2))?;
        let mut ids: Vec<i32> = (0..num_blocks as i32).collect();
        ids.shuffle(r);
        let a = PagedAttentionArgs::new(
            AttentionGeometry::new(nh, nkv, hs, bs, blocks_per_seq),
            batch,
            max_len,
        );
        let mut ws = a;
        ws.partition_tokens = Some(MIN_PARTITION_SIZE);
        for sorted in [false, true] {
            if sorted {
                lens.sort_unstable_by(|x, y| y.cmp(x));
            }
            let lens_d: Vec<i32> = lens.iter().map(|&l| l as i32).collect();
            let mut bufs = DecodeBufs {
                q: random::<bf16>(&s, batch * nh * hs, -1.0, 1.0, r)?,
                out: s.alloc_zeros::<bf16>(batch * nh * hs)?,
                tables: s.clone_htod(&ids)?,
                lens: s.clone_htod(&lens_d)?,
                ws: s.alloc_zeros::<f32>(ws.workspace_floats())?,
            };
            let variants: &[(&str, Option<usize>)] = if sorted {
                &[("paged_attention_ragged_sorted", None)]
            } else {
                &[
                    ("paged_attention_ragged", None),
                    ("paged_attention_v2_ragged_p512", Some(512)),
                ]
            };
            for &(name, part) in variants {
                let mut a = a;
                a.partition_tokens = part;
                let us = b.time(caches.len(), |i| {
                    let [k, v] = &caches[i];
                    let io = cuda::PagedAttentionIo {
                        out: &mut bufs.out,
                        query: &bufs.q,
                        key_cache: k,
                        value_cache: v,
                        block_tables: &bufs.tables,
                        seq_lens: &bufs.lens,
                        alibi_slopes: None,
                    };
                    Ok(cuda::paged_attention(&s, io, Some(&mut bufs.ws), &a)?)
                })?;
                b.record(name, DType::BF16, batch, mean, us, kv_bytes)?;
            }
        }
    }
    Ok(())
}

/// Prefill attention, bf16, head 128, 32 query / 8 KV heads, block 16, causal: `seqs` sequences
/// of `q_len` new tokens after a cached prefix of `prefix` tokens. Counts causal flops (4 x head
/// size x heads x the keys each query row sees); `tokens` in the record is the number of
/// sequences, `hidden` the new tokens per sequence.
fn prefill(b: &mut Bench, r: &mut StdRng) -> Res<()> {
    let s = b.s.clone();
    let (nh, nkv, hs, bs) = (32usize, 8usize, 128usize, 16usize);
    for &(seqs, q_len, prefix) in &[
        (1usize, 4096usize, 0usize),
        (16, 512, 0),
        (1, 4096, 4096),
        (16, 512, 512),
    ] {
        let len = prefix + q_len;
        let blocks_per_seq = len / bs;
        let num_blocks = seqs * blocks_per_seq;
        let numel = num_blocks * nkv * bs * hs;
        let kc = random::<bf16>(&s, numel, -1.0, 1.0, r)?;
        let vc = random::<bf16>(&s, numel, -1.0, 1.0, r)?;
        let mut ids: Vec<i32> = (0..num_blocks as i32).collect();
        ids.shuffle(r);
        let tables = s.clone_htod(&ids)?;
        let cu: Vec<i32> = (0..=seqs).map(|i| (i * q_len) as i32).collect();
        let lens_h = vec![len as i32; seqs];
        let (dcu, lens) = (s.clone_htod(&cu)?, s.clone_htod(&lens_h)?);
        let tokens = seqs * q_len;
        let q = random::<bf16>(&s, tokens * nh * hs, -1.0, 1.0, r)?;
        let mut out = s.alloc_zeros::<bf16>(tokens * nh * hs)?;
        let mut a = PrefillAttentionArgs::new(
            AttentionGeometry::new(nh, nkv, hs, bs, blocks_per_seq),
            seqs,
            tokens,
            q_len,
        );
        a.split_p = std::env::var("PREFILL_SPLIT_P").is_ok_and(|v| v == "1");
        let flops = 4.0 * (hs * nh) as f64 * a.visible_pairs(&cu, &lens_h) as f64;
        let us = b.time(2, |_| {
            let io = cuda::PrefillAttentionIo {
                out: &mut out,
                query: &q,
                key_cache: &kc,
                value_cache: &vc,
                block_tables: &tables,
                cu_query_lens: &dcu,
                seq_lens: &lens,
            };
            Ok(cuda::prefill_attention(&s, io, &a)?)
        })?;
        let tflops = flops / us / 1e6;
        let name = if prefix > 0 {
            "prefill_attention_prefix"
        } else {
            "prefill_attention"
        };
        println!(
            "{name:<26} bf16 {seqs:>3} x {q_len:<5} prefix {prefix:<5} {us:>10.2} us {tflops:>7.1} TFLOP/s"
        );
        b.records.push(json!({
            "kernel": name, "dtype": "bf16", "tokens": seqs, "hidden": q_len, "prefix": prefix,
            "us": us, "flops": flops, "tflops": tflops,
        }));
        drop((kc, vc));

        // The same over an FP8 E4M3 cache (uniform values in [-1, 1) as e4m3 of x 448, scales
        // 1/448): half the K/V bytes, converted to bf16 in shared memory once per tile.
        let bytes: Vec<Fp8E4m3> = (0..2 * numel)
            .map(|_| Fp8E4m3::from_f32(r.random_range(-1.0f32..1.0) * Fp8E4m3::MAX))
            .collect();
        let (kc8, vc8) = (
            s.clone_htod(&bytes[..numel])?,
            s.clone_htod(&bytes[numel..])?,
        );
        let a8 = a.with_fp8_cache(1.0 / Fp8E4m3::MAX, 1.0 / Fp8E4m3::MAX);
        let us = b.time(2, |_| {
            let io = cuda::PrefillAttentionIo {
                out: &mut out,
                query: &q,
                key_cache: &kc8,
                value_cache: &vc8,
                block_tables: &tables,
                cu_query_lens: &dcu,
                seq_lens: &lens,
            };
            Ok(cuda::prefill_attention(&s, io, &a8)?)
        })?;
        let tflops = flops / us / 1e6;
        let name = if prefix > 0 {
            "prefill_attention_fp8_prefix"
        } else {
            "prefill_attention_fp8"
        };
        println!(
            "{name:<26} bf16 {seqs:>3} x {q_len:<5} prefix {prefix:<5} {us:>10.2} us {tflops:>7.1} TFLOP/s"
        );
        b.records.push(json!({
            "kernel": name, "dtype": "bf16", "cache": "fp8_e4m3", "tokens": seqs, "hidden": q_len,
            "prefix": prefix, "us": us, "flops": flops, "tflops": tflops,
        }));
    }
    Ok(())
}

/// The buffers of one decode problem besides the caches.
struct DecodeBufs {
    q: CudaSlice<bf16>,
    out: CudaSlice<bf16>,
    tables: CudaSlice<i32>,
    lens: CudaSlice<i32>,
    ws: CudaSlice<f32>,
}

/// Times v1 and v2 (rows named `rows`) over the rotating cache pairs; `bytes`: K and V read.
fn time_decode<C: cuda::GpuKvCacheElem<bf16>>(
    b: &mut Bench,
    caches: &[[CudaSlice<C>; 2]],
    d: &mut DecodeBufs,
    mut a: PagedAttentionArgs,
    rows: [&str; 2],
    (batch, ctx): (usize, usize),
    bytes: usize,
) -> Res<()> {
    let s = b.s.clone();
    for (name, version) in rows
        .into_iter()
        .zip([AttentionVersion::V1, AttentionVersion::V2])
    {
        a.version = version;
        let us = b.time(caches.len(), |i| {
            let [k, v] = &caches[i];
            let io = cuda::PagedAttentionIo {
                out: &mut d.out,
                query: &d.q,
                key_cache: k,
                value_cache: v,
                block_tables: &d.tables,
                seq_lens: &d.lens,
                alibi_slopes: None,
            };
            Ok(cuda::paged_attention(&s, io, Some(&mut d.ws), &a)?)
        })?;
        b.record(name, DType::BF16, batch, ctx, us, bytes)?;
    }
    Ok(())
}

fn run_all<T: GpuFloat + cuda::ValidAsZeroBits>(b: &mut Bench, r: &mut StdRng) -> Res<()> {
    norms::<T>(b, r)?;
    rotary::<T>(b, r)?;
    activations::<T>(b, r)?;
    caches::<T>(b, r)?;
    Ok(())
}

/// The ops of the CUDA model runner: sampling, embedding gather, QKV bias, per-head norm.
fn runner_ops(b: &mut Bench, r: &mut StdRng) -> Res<()> {
    let s = b.s.clone();
    // sample_tokens: logits spread like a model's (most tokens far below a few likely ones).
    for &(rows, vocab) in &[(256usize, 151936usize), (1, 128256)] {
        let bytes = rows * vocab * 4;
        let sets = sets_for(bytes);
        let logits: Vec<CudaSlice<f32>> = (0..sets)
            .map(|_| {
                let mut v: Vec<f32> = (0..rows * vocab)
                    .map(|_| r.random_range(-12.0..4.0))
                    .collect();
                for row in 0..rows {
                    for _ in 0..8 {
                        v[row * vocab + r.random_range(0..vocab)] = r.random_range(4.0..14.0);
                    }
                }
                Ok(s.clone_htod(&v)?)
            })
            .collect::<Res<_>>()?;
        let seeds = s.clone_htod(&(0..rows as u64).collect::<Vec<_>>())?;
        let mut out = s.alloc_zeros::<i32>(rows)?;
        let a = SampleArgs::new(rows, vocab);
        for (name, t, min_p, top_k, top_p) in [
            ("sample_greedy", 0.0f32, 0.0f32, 0i32, 1.0f32),
            ("sample_t1", 1.0, 0.0, 0, 1.0),
            ("sample_t1_minp0.05", 1.0, 0.05, 0, 1.0),
            ("sample_t1_topk50", 1.0, 0.0, 50, 1.0),
            ("sample_t1_topp0.9", 1.0, 0.0, 0, 0.9),
            ("sample_t1_topk50_topp0.9", 1.0, 0.0, 50, 0.9),
        ] {
            let temp = s.clone_htod(&vec![t; rows])?;
            let mp = s.clone_htod(&vec![min_p; rows])?;
            let tk = s.clone_htod(&vec![top_k; rows])?;
            let tp = s.clone_htod(&vec![top_p; rows])?;
            let params = cuda::SampleRowsDev {
                temperature: &temp,
                min_p: &mp,
                top_k: &tk,
                top_p: &tp,
                seeds: &seeds,
            };
            let us = b.time(sets, |i| {
                Ok(cuda::sample_tokens(&s, &mut out, &logits[i], &params, &a)?)
            })?;
            b.record(name, DType::F32, rows, vocab, us, bytes)?;
        }
    }

    // gather_rows: 256 embedding rows of 4096 bf16 from a 32000-row table (larger than L2).
    let (rows, len, table_rows) = (256usize, 4096usize, 32000usize);
    let table = s.alloc_zeros::<bf16>(table_rows * len)?;
    let bytes = 2 * rows * len * 2 + rows * 4;
    let sets = sets_for(bytes);
    let ids: Vec<CudaSlice<i32>> = (0..sets)
        .map(|_| {
            let v: Vec<i32> = (0..rows)
                .map(|_| r.random_range(0..table_rows as i32))
                .collect();
            Ok(s.clone_htod(&v)?)
        })
        .collect::<Res<_>>()?;
    let mut outs: Vec<CudaSlice<bf16>> = (0..sets)
        .map(|_| s.alloc_zeros(rows * len))
        .collect::<Result<_, _>>()?;
    let a = GatherRowsArgs::new(rows, len, table_rows);
    let us = b.time(sets, |i| {
        Ok(cuda::gather_rows(&s, &mut outs[i], &table, &ids[i], &a)?)
    })?;
    b.record("gather_rows", DType::BF16, rows, len, us, bytes)?;

    // fill_tokens: a decode step's 256 ids all from the previous step's draws (async
    // scheduling), and a prefill step's 8192 host ids.
    for &(n, pending) in &[(256usize, true), (8192, false)] {
        let bytes = n * 4 * 3 + if pending { n * 4 } else { 0 };
        let sets = sets_for(bytes);
        let tokens = s.clone_htod(&(0..n as i32).collect::<Vec<_>>())?;
        let sampled = s.clone_htod(&(0..256).collect::<Vec<i32>>())?;
        let from: Vec<CudaSlice<i32>> = (0..sets)
            .map(|_| {
                let v: Vec<i32> = (0..n)
                    .map(|_| if pending { r.random_range(0..256) } else { -1 })
                    .collect();
                Ok(s.clone_htod(&v)?)
            })
            .collect::<Res<_>>()?;
        let mut outs: Vec<CudaSlice<i32>> = (0..sets)
            .map(|_| s.alloc_zeros(n))
            .collect::<Result<_, _>>()?;
        let a = FillTokensArgs::new(n, 256);
        let us = b.time(sets, |i| {
            Ok(cuda::fill_tokens(
                &s,
                &mut outs[i],
                &tokens,
                &sampled,
                &from[i],
                &a,
            )?)
        })?;
        // i32 ids: the table's dtype column says F32, the same 4-byte element.
        b.record("fill_tokens", DType::F32, n, 1, us, bytes)?;
    }

    // add_bias on Qwen2-7B's fused qkv (3584 + 2 * 512) and head_rms_norm on Qwen3-8B's q and k
    // (32 + 8 heads of 128; one call over the adjacent q and k heads, where the runner makes one
    // per weight), at decode and prefill token counts.
    for &t in &[256usize, 4096] {
        let qkv = 3584 + 2 * 512;
        let bytes = 2 * t * qkv * 2 + qkv * 2;
        let sets = sets_for(bytes);
        let mut xs: Vec<CudaSlice<bf16>> = (0..sets)
            .map(|_| random(&s, t * qkv, -2.0, 2.0, r))
            .collect::<Res<_>>()?;
        let bias = random::<bf16>(&s, qkv, -1.0, 1.0, r)?;
        let a = AddBiasArgs::new(t, qkv);
        let us = b.time(sets, |i| Ok(cuda::add_bias(&s, &mut xs[i], &bias, &a)?))?;
        b.record("add_bias", DType::BF16, t, qkv, us, bytes)?;

        let (nq, nkv, hs) = (32usize, 8usize, 128usize);
        let stride = (nq + 2 * nkv) * hs;
        let bytes = 2 * t * (nq + nkv) * hs * 2;
        let sets = sets_for(bytes);
        let mut xs: Vec<CudaSlice<bf16>> = (0..sets)
            .map(|_| random(&s, t * stride, -2.0, 2.0, r))
            .collect::<Res<_>>()?;
        let w = random::<bf16>(&s, hs, 0.5, 1.5, r)?;
        let mut a = HeadRmsNormArgs::new(t, nq + nkv, hs, 1e-6);
        a.token_stride = stride;
        let us = b.time(sets, |i| {
            let mut view = xs[i].slice_mut(..(t - 1) * stride + (nq + nkv) * hs);
            Ok(cuda::head_rms_norm(&s, &mut view, &w, &a)?)
        })?;
        b.record("head_rms_norm", DType::BF16, t, (nq + nkv) * hs, us, bytes)?;
    }
    Ok(())
}

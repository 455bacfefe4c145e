//! The decode-time products `Y[m, n] = X[m, k] W[n, k]^T` (bf16) at the batch sizes of the
//! decode graphs: cuBLAS (`cublasGemmEx`, the runner's default route) against `sm90_gemm`
//! (Hopper wgmma + TMA, tokens as the small tile) at the token tile covering m and the one
//! covering ceil(m / 2), on the Llama-3-8B and Qwen3-0.6B weight shapes.
//!
//! Each time is the median of 9 CUDA-event-timed passes over enough distinct weight matrices
//! (>= 256 MiB, as the runner's layers) that W streams from memory. Printed per row: the
//! microseconds, the bytes moved (W + X + Y once) as GB/s and as % of the device-to-device
//! copy ceiling measured in the same run (read + write), TFLOP/s (2 m n k). PyTorch's time
//! for the same shapes comes from benches/torch_products.py in the same device call.
//!
//! Usage: products [--json PATH]

use half::bf16;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::json;
use std::sync::Arc;
use vllm_kernels::args::{MatmulArgs, Sm90GemmArgs};
use vllm_kernels::cuda::{self, CudaSlice, CudaStream};

mod common;

use common::{Res, copy_bandwidth, flag_value, median_ms};

const SHAPES: &[(&str, usize, usize)] = &[
    ("llama3-8b qkv", 6144, 4096),
    ("llama3-8b o", 4096, 4096),
    ("llama3-8b gate_up", 28672, 4096),
    ("llama3-8b down", 4096, 14336),
    ("qwen3-0.6b qkv", 4096, 1024),
    ("qwen3-0.6b o", 1024, 2048),
    ("qwen3-0.6b gate_up", 6144, 1024),
    ("qwen3-0.6b down", 1024, 3072),
];
const ROWS: &[usize] = &[8, 16, 32, 64, 96, 128, 144, 160, 192, 224, 256];

/// Median microseconds per product of a pass of `per` products (9 timed passes).
fn median_us(s: &Arc<CudaStream>, per: usize, pass: impl FnMut() -> Res<()>) -> Res<f64> {
    Ok(median_ms(s, 9, pass)? * 1e3 / per as f64)
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let json_path = flag_value(&args, "--json");
    let Some(ctx) = cuda::try_context(0) else {
        println!("SKIP: no CUDA device");
        return Ok(());
    };
    if !cuda::sm90_gemm_available() {
        println!("SKIP: no sm_90 device or no sm_90a build");
        return Ok(());
    }
    let s = ctx.default_stream();
    let device = ctx.name()?;
    let copy = copy_bandwidth(&s, 9)?;
    println!(
        "device: {device}; ceiling: 1 GiB device-to-device copy {copy:.0} GB/s (read + write)"
    );
    println!(
        "{:<20} {:>4} {:>10} {:>10} {:>5} {:>7} {:>8} {:>7} {:>8}",
        "shape", "m", "cuBLAS us", "sm90 us", "tile", "speedup", "GB/s", "% copy", "TFLOP/s"
    );
    let mut r = StdRng::seed_from_u64(7);
    let mut blas = cuda::Blas::new(s.clone())?;
    let mut records = Vec::new();
    let max_m = ROWS[ROWS.len() - 1];
    for &(name, n, k) in SHAPES {
        let sets = (256usize << 20).div_ceil(n * k * 2).max(2);
        let ws: Vec<CudaSlice<bf16>> = (0..sets)
            .map(|_| {
                let v: Vec<bf16> = (0..n * k)
                    .map(|_| bf16::from_f32(r.random_range(-0.05..0.05)))
                    .collect();
                s.clone_htod(&v)
            })
            .collect::<Result<_, _>>()?;
        let xv: Vec<bf16> = (0..max_m * k)
            .map(|_| bf16::from_f32(r.random_range(-1.0..1.0)))
            .collect();
        let x = s.clone_htod(&xv)?;
        let mut y = s.alloc_zeros::<bf16>(max_m * n)?;
        for &m in ROWS {
            let mut pass = |blas: &cuda::Blas| -> Res<()> {
                for w in &ws {
                    blas.matmul_bt::<bf16, bf16>(&mut y, &x, w, &MatmulArgs::new(m, n, k))?;
                }
                Ok(())
            };
            blas.route_sm90::<bf16>((m, n, k), None)?;
            let cublas = median_us(&s, sets, || pass(&blas))?;
            let mut tiles = vec![Sm90GemmArgs::covering_tile(m)];
            let half = Sm90GemmArgs::covering_tile(m.div_ceil(2));
            if m > 16 && half < tiles[0] {
                tiles.push(half);
            }
            let mut best = (f64::INFINITY, 0);
            let mut per_tile = Vec::new();
            for &t in &tiles {
                blas.route_sm90::<bf16>((m, n, k), Some(t))?;
                let us = median_us(&s, sets, || pass(&blas))?;
                per_tile.push(json!({"tile": t, "us": us}));
                if us < best.0 {
                    best = (us, t);
                }
            }
            blas.route_sm90::<bf16>((m, n, k), None)?;
            let bytes = 2 * (n * k + m * k + m * n);
            let gbps = bytes as f64 / best.0 / 1e3;
            let tflops = 2.0 * (m * n * k) as f64 / best.0 / 1e6;
            println!(
                "{name:<20} {m:>4} {cublas:>10.1} {:>10.1} {:>5} {:>6.2}x {gbps:>8.0} {:>6.1}% {tflops:>8.0}",
                best.0,
                best.1,
                cublas / best.0,
                100.0 * gbps / copy
            );
            records.push(json!({
                "shape": name, "m": m, "n": n, "k": k, "cublas_us": cublas, "sm90_us": best.0,
                "sm90_tile": best.1, "tiles": per_tile, "bytes": bytes, "sm90_gbps": gbps,
                "pct_of_copy": 100.0 * gbps / copy, "sm90_tflops": tflops,
                "cublas_gbps": bytes as f64 / cublas / 1e3,
            }));
        }
    }
    if let Some(p) = json_path {
        let doc = json!({"device": device, "copy_gbps": copy, "results": records,
            "method": "median of 9 CUDA-event-timed passes over >= 256 MiB of distinct weights"});
        std::fs::write(&p, serde_json::to_string_pretty(&doc)?)?;
        println!("wrote {p}");
    }
    Ok(())
}

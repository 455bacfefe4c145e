//! Start-up tuning of the products: per weight shape, `skinny_gemm` timed against cuBLAS for
//! one-token products (the faster kept for decode batches of up to 4 tokens); opt-in, cuBLASLt's
//! candidate algorithms (`VLLM_GEMM_TUNE=1`) and the Hopper product `sm90_gemm`
//! (`VLLM_SM90_GEMM=1`) timed against cuBLAS per decode graph batch size. Cost: a few timed
//! products per (shape, batch size) over all layers' matrices, so they stream from memory.

use super::forward::Buffers;
use super::options::EnvKnobs;
use super::startup::graph_sizes;
use super::{CudaRunner, RunnerCache, RunnerFloat, backend};
use crate::model::{LayerWeights, Linear, Mlp};
use crate::runner::RunnerError;
use vllm_kernels::args::SKINNY_GEMM_MAX_M;
use vllm_kernels::cuda::{Blas, CudaSlice};

impl<T: RunnerFloat, C: RunnerCache<T>> CudaRunner<T, C> {
    /// Measures cuBLAS against `skinny_gemm` for one-token products of every weight shape (over
    /// all layers' matrices, so from memory) and keeps the faster for decode batches of up to
    /// 4 tokens. Returns the report.
    pub(super) fn tune_gemms(&mut self, knobs: &EnvKnobs) -> Result<String, RunnerError> {
        let w = &self.weights;
        let (h, qw, qkvw, i) = (
            self.dims.hidden,
            self.dims.q_width(),
            self.dims.qkv_width(),
            self.dims.inter,
        );
        let ls = &w.layers;
        fn dense<W>(l: &Linear<W>) -> Option<&W> {
            l.dense_weight()
        }
        fn mlp<W>(l: &LayerWeights<W>, up: bool) -> Option<&W> {
            match &l.mlp {
                Mlp::Dense { gate_up, down } => dense(if up { gate_up } else { down }),
            }
        }
        let shapes: Vec<(&str, usize, usize, Vec<&CudaSlice<T>>)> = vec![
            (
                "qkv",
                qkvw,
                h,
                ls.iter().filter_map(|l| dense(&l.qkv)).collect(),
            ),
            (
                "o",
                h,
                qw,
                ls.iter().filter_map(|l| dense(&l.o_proj)).collect(),
            ),
            (
                "gate_up",
                2 * i,
                h,
                ls.iter().filter_map(|l| mlp(l, true)).collect(),
            ),
            (
                "down",
                h,
                i,
                ls.iter().filter_map(|l| mlp(l, false)).collect(),
            ),
            (
                "lm_head",
                self.dims.vocab,
                h,
                dense(w.head()).into_iter().collect(),
            ),
        ];
        let mut parts = Vec::new();
        for (name, n, k, ws) in &shapes {
            let (n, k) = (*n, *k);
            let t = self
                .blas
                .tune_skinny(ws, n, k, &self.bufs.gate_up, &mut self.bufs.logits)
                .map_err(backend)?;
            if let Some((cublas, skinny, preload)) = t {
                let gbps = |us: f64| (n * k * std::mem::size_of::<T>()) as f64 / us / 1e3;
                parts.push(format!(
                    "{name} {n}x{k}: cuBLAS {cublas:.1} us ({:.0} GB/s), skinny{} {skinny:.1} us ({:.0} GB/s) -> {}",
                    gbps(cublas),
                    if preload { " (preload)" } else { "" },
                    gbps(skinny),
                    if skinny < cublas { "skinny" } else { "cuBLAS" }
                ));
            }
        }
        let mut report = format!("; one-token products: {}", parts.join(", "));
        // Opt-in (VLLM_GEMM_TUNE=1): the decode graphs' batch sizes, cublasGemmEx timed against
        // cuBLASLt's candidates. On an H200 the chosen candidates were 2-30% faster in
        // isolation but decode steps took the same GPU time end to end (Llama-3-8B 9.84 vs
        // 9.85 ms, Qwen3-0.6B 5.280 vs 5.280 ms; benches/results/raw/2026-11-30-h200-engine/report.md),
        // so it is off by default until that gap is understood.
        // The Hopper products last, so that they are timed against the route kept here.
        let sm90 = knobs.sm90_gemm;
        if !knobs.gemm_tune {
            report += &tune_sm90(
                sm90,
                &mut self.blas,
                &mut self.bufs,
                self.dims.max_rows,
                &shapes,
            )?;
            return Ok(report);
        }
        let sizes: Vec<usize> = graph_sizes(self.dims.max_rows)
            .into_iter()
            .filter(|&m| m > SKINNY_GEMM_MAX_M)
            .collect();
        let mut lt_parts = Vec::new();
        for (name, n, k, ws) in &shapes {
            let mut tally = Tally::default();
            for &m in &sizes {
                let t = if *name == "lm_head" {
                    self.blas.tune_lt::<T, f32>(
                        ws,
                        (m, *n, *k),
                        &self.bufs.act,
                        &mut self.bufs.logits,
                    )
                } else {
                    self.blas.tune_lt::<T, T>(
                        ws,
                        (m, *n, *k),
                        &self.bufs.act,
                        &mut self.bufs.gate_up,
                    )
                }
                .map_err(backend)?;
                if let Some((ex, best)) = t {
                    tally.add(ex, best);
                }
            }
            lt_parts.extend(tally.part(name, sizes.len()));
        }
        if !lt_parts.is_empty() {
            report += &format!(
                "; cuBLASLt algorithms faster than cublasGemmEx at batch sizes {}..={}: {}",
                sizes[0],
                sizes[sizes.len() - 1],
                lt_parts.join(", ")
            );
        }
        report += &tune_sm90(
            sm90,
            &mut self.blas,
            &mut self.bufs,
            self.dims.max_rows,
            &shapes,
        )?;
        Ok(report)
    }
}

/// The decode graphs' batch sizes above skinny_gemm's: cuBLAS timed against the Hopper
/// product `sm90_gemm` (tokens as the small tile, `vllm_kernels::cuda::Blas::tune_sm90`),
/// the faster kept per (batch size, weight shape). Opt-in (`VLLM_SM90_GEMM=1`) where the
/// device and build have it: on an H200 it won 15 of 128 (size, shape) pairs by a few %
/// and the decode steps took the same GPU time (9.68 vs 9.67 ms, Llama-3-8B). Returns the
/// report's part.
fn tune_sm90<T: RunnerFloat>(
    enabled: bool,
    blas: &mut Blas,
    bufs: &mut Buffers<T>,
    max_rows: usize,
    shapes: &[(&str, usize, usize, Vec<&CudaSlice<T>>)],
) -> Result<String, RunnerError> {
    if !enabled {
        return Ok(String::new());
    }
    if !vllm_kernels::cuda::sm90_gemm_available() {
        return Ok("; VLLM_SM90_GEMM=1 ignored: no sm_90 device or no sm_90a build".into());
    }
    let sizes: Vec<usize> = graph_sizes(max_rows)
        .into_iter()
        .filter(|&m| m > SKINNY_GEMM_MAX_M)
        .collect();
    let mut parts = Vec::new();
    for (name, n, k, ws) in shapes.iter().filter(|s| s.0 != "lm_head") {
        // Enough layers' matrices (>= 256 MiB) that the timed passes stream from memory.
        let bytes = n * k * std::mem::size_of::<T>();
        let ws = &ws[..ws.len().min((256usize << 20).div_ceil(bytes.max(1)))];
        let mut tally = Tally::default();
        for &m in &sizes {
            let t = blas
                .tune_sm90::<T>(ws, (m, *n, *k), &bufs.act, &mut bufs.gate_up)
                .map_err(backend)?;
            if let Some((cur, best, _)) = t {
                tally.add(cur, best);
            }
        }
        parts.extend(tally.part(name, sizes.len()));
    }
    Ok(if parts.is_empty() {
        String::new()
    } else {
        format!(
            "; Hopper products (sm90_gemm) faster than cuBLAS at batch sizes {}..={}: {}",
            sizes[0],
            sizes[sizes.len() - 1],
            parts.join(", ")
        )
    })
}

/// A start-up tuning's outcome for one weight shape over the batch sizes: how many sizes moved
/// to the alternative (faster by more than 2%, the tunings' rule) and the summed times.
#[derive(Default)]
struct Tally {
    won: usize,
    before: f64,
    after: f64,
}

impl Tally {
    fn add(&mut self, current_us: f64, best_us: f64) {
        let kept = best_us < current_us * 0.98;
        self.won += usize::from(kept);
        self.before += current_us;
        self.after += if kept { best_us } else { current_us };
    }

    /// "name won/sizes (before -> after us summed)", or nothing when no size was timed.
    fn part(&self, name: &str, sizes: usize) -> Option<String> {
        (self.before > 0.0).then(|| {
            format!(
                "{name} {}/{sizes} ({:.0} -> {:.0} us summed)",
                self.won, self.before, self.after
            )
        })
    }
}

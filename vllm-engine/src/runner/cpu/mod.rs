//! The CPU backend: f32 weights, rayon-parallel matrix products through `gemm`, a paged KV
//! cache per layer laid out like the GPU's (`[blocks, kv_heads, block_size, head_dim]`), and
//! one causal attention routine for prefill, chunked prefill, prefix hits and decode alike.
//!
//! Cost per step of T tokens: the matrix products, 2 T x parameters flops, plus attention,
//! O(sum over tokens of context x H x D).

mod attention;
mod ops;

use super::{KvGeometry, ModelRunner, RowSampling, RunnerError, StepBatch, StepOutput};
use crate::config::ModelConfig;
use crate::device::Device;
use crate::linalg::matmul_bt;
use crate::model::{ModelWeights, Rope};
use rayon::prelude::*;

/// K and V of one layer.
#[derive(Debug, Clone)]
pub struct LayerCache {
    pub k: Vec<f32>,
    pub v: Vec<f32>,
}

/// A model on the CPU with its KV cache.
#[derive(Debug)]
pub struct CpuRunner {
    config: ModelConfig,
    weights: ModelWeights,
    rope: Rope,
    cache: Vec<LayerCache>,
    kv: KvGeometry,
}

impl CpuRunner {
    /// Bytes of KV cache one block takes across all layers.
    pub fn block_bytes(config: &ModelConfig, block_size: usize) -> usize {
        2 * config.num_hidden_layers
            * config.num_key_value_heads
            * config.head_dim
            * block_size
            * std::mem::size_of::<f32>()
    }

    pub fn new(config: ModelConfig, weights: ModelWeights, kv: KvGeometry) -> Self {
        let per_layer =
            kv.num_blocks * kv.block_size * config.num_key_value_heads * config.head_dim;
        let cache = (0..config.num_hidden_layers)
            .map(|_| LayerCache {
                k: vec![0.0; per_layer],
                v: vec![0.0; per_layer],
            })
            .collect();
        Self {
            rope: Rope::new(&config),
            config,
            weights,
            cache,
            kv,
        }
    }

    fn copy_blocks(&mut self, copies: &[(u32, u32)]) {
        let n = self.kv.block_size * self.config.num_key_value_heads * self.config.head_dim;
        for layer in &mut self.cache {
            for &(src, dst) in copies {
                let (s, d) = (src as usize * n, dst as usize * n);
                layer.k.copy_within(s..s + n, d);
                layer.v.copy_within(s..s + n, d);
            }
        }
    }
}

impl ModelRunner for CpuRunner {
    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn device(&self) -> Device {
        Device::Cpu
    }

    fn kv_geometry(&self) -> KvGeometry {
        self.kv
    }

    fn execute(&mut self, batch: &StepBatch) -> Result<StepOutput, RunnerError> {
        batch.validate(self.kv, self.config.vocab_size)?;
        if batch.row_sampling.iter().any(|r| *r != RowSampling::Host) {
            return Err(RunnerError::BadInput(
                "the CPU runner returns logits only (no device sampling)".into(),
            ));
        }
        self.copy_blocks(&batch.block_copies);
        let c = &self.config;
        let t = batch.tokens.len();
        let (h, d, eps) = (c.hidden_size, c.head_dim, c.rms_norm_eps);
        let (nh, nkv) = (c.num_attention_heads, c.num_key_value_heads);
        let (q_w, kv_w) = (nh * d, nkv * d);
        let qkv_w = q_w + 2 * kv_w;
        let inter = c.intermediate_size;
        let w = &self.weights;

        let mut x = vec![0.0f32; t * h];
        for (row, &tok) in x.chunks_exact_mut(h).zip(&batch.tokens) {
            let s = tok as usize * h;
            row.copy_from_slice(&w.embed[s..s + h]);
        }
        let mut normed = vec![0.0f32; t * h];
        let mut qkv = vec![0.0f32; t * qkv_w];
        let mut attn = vec![0.0f32; t * q_w];
        let mut gate_up = vec![0.0f32; t * 2 * inter];
        let mut act = vec![0.0f32; t * inter];
        let geometry = attention::Geometry {
            heads: nh,
            kv_heads: nkv,
            head_dim: d,
            block_size: self.kv.block_size,
            scale: 1.0 / (d as f32).sqrt(),
            sliding_window: c.sliding_window,
        };
        for (lw, cache) in w.layers.iter().zip(self.cache.iter_mut()) {
            ops::rms_norm(&mut normed, &x, &lw.input_norm, h, eps);
            matmul_bt(&mut qkv, &normed, &lw.qkv, (t, qkv_w, h), false);
            let rope = &self.rope;
            qkv.par_chunks_exact_mut(qkv_w)
                .zip(&batch.positions)
                .for_each(|(row, &pos)| {
                    if let Some(b) = &lw.qkv_bias {
                        row.iter_mut().zip(b).for_each(|(x, b)| *x += b);
                    }
                    let (q, kv) = row.split_at_mut(q_w);
                    let k = &mut kv[..kv_w];
                    if let (Some(qn), Some(kn)) = (&lw.q_norm, &lw.k_norm) {
                        ops::rms_norm_in_place(q, qn, d, eps);
                        ops::rms_norm_in_place(k, kn, d, eps);
                    }
                    rope.apply(q, nh, pos);
                    rope.apply(k, nkv, pos);
                });
            attention::write_cache(cache, &qkv, &batch.slots, &geometry);
            attention::paged_causal(&mut attn, &qkv, cache, &batch.seqs, &geometry);
            matmul_bt(&mut x, &attn, &lw.o_proj, (t, h, q_w), true);
            ops::rms_norm(&mut normed, &x, &lw.post_norm, h, eps);
            matmul_bt(&mut gate_up, &normed, &lw.gate_up, (t, 2 * inter, h), false);
            ops::silu_and_mul(&mut act, &gate_up, inter);
            matmul_bt(&mut x, &act, &lw.down, (t, h, inter), true);
        }
        let r = batch.logits_rows.len();
        let mut last = vec![0.0f32; r * h];
        for (dst, &row) in last.chunks_exact_mut(h).zip(&batch.logits_rows) {
            dst.copy_from_slice(&x[row * h..(row + 1) * h]);
        }
        let mut normed_last = vec![0.0f32; r * h];
        ops::rms_norm(&mut normed_last, &last, &w.norm, h, eps);
        let mut logits = vec![0.0f32; r * c.vocab_size];
        matmul_bt(
            &mut logits,
            &normed_last,
            w.head(),
            (r, c.vocab_size, h),
            false,
        );
        Ok(StepOutput::all_logits(logits, r))
    }
}

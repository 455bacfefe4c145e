//! The CPU backend: f32 weights, the model's decoder ([`crate::model::llama::forward`]) over
//! `vllm-kernels`' CPU ops ([`ops::CpuOps`]), and a paged KV cache per layer laid out like the
//! GPU's (`[blocks, kv_heads, block_size, head_dim]`); one causal attention for prefill,
//! chunked prefill, prefix hits and decode alike.
//!
//! Cost per step of T tokens: the matrix products, 2 T x parameters flops (rayon-parallel, the
//! weights read once per product), plus attention, O(sum over tokens of context x H x D).

mod ops;

use super::{KvGeometry, ModelRunner, RowSampling, RunnerError, StepBatch, StepOutput};
use crate::config::ModelConfig;
use crate::device::Device;
use crate::model::{ModelWeights, Rope, llama};

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
        let rows = batch.logits_rows.len();
        if batch.tokens.is_empty() {
            return Ok(StepOutput::all_logits(Vec::new(), rows));
        }
        let mut ops = ops::CpuOps::new(&self.config, &self.rope, self.kv, &mut self.cache, batch);
        llama::forward(&self.weights, &mut ops)?;
        Ok(StepOutput::all_logits(ops.into_logits(), rows))
    }
}

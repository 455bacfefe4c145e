//! The engine's own cost per step (scheduler, block manager, batch building, bookkeeping) on
//! nano-vllm's throughput shape, with a stand-in runner that samples "on its device" instantly:
//! everything `vllm bench throughput` spends outside the model. Checks that every request ends
//! with exactly its token count and every block is returned, and that every step lists its
//! one-token sequences first (what lets the CUDA runner give them to its decode kernel in a step
//! mixed with prefills), longest context first from 64 of them; prints the host time per step
//! (a figure to read, not a timed assertion).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use vllm_engine::config::ModelConfig;
use vllm_engine::engine::EngineArgs;
use vllm_engine::runner::{
    KvGeometry, ModelRunner, RowSampling, RunnerError, StepBatch, StepOutput,
};
use vllm_engine::{Device, Engine, Prompt, SamplingParams};

/// Draws every token on its "device" (a hash of the seed): no logits, no model.
struct StandIn {
    vocab: usize,
    kv: KvGeometry,
    steps: usize,
    tokens: usize,
    /// Steps holding both one-token sequences and longer ones.
    mixed: Arc<AtomicUsize>,
}

/// The order the engine promises runners (`StepBatch::seqs`): one-token sequences first, each
/// at its own row, longest context first when there are at least 64 of them.
fn check_order(batch: &StepBatch) -> bool {
    let ones = batch.seqs.iter().take_while(|q| q.num_tokens == 1).count();
    let rest_long = batch.seqs[ones..].iter().all(|q| q.num_tokens > 1);
    let rows = batch.seqs[..ones]
        .iter()
        .enumerate()
        .all(|(i, q)| q.first_row == i);
    let lpt = ones < 64
        || batch.seqs[..ones]
            .windows(2)
            .all(|w| w[0].context_len >= w[1].context_len);
    rest_long && rows && lpt
}

impl ModelRunner for StandIn {
    fn execute(&mut self, batch: &StepBatch) -> Result<StepOutput, RunnerError> {
        batch.validate(self.kv, self.vocab)?;
        assert!(
            check_order(batch),
            "step {}: sequences out of order",
            self.steps
        );
        let ones = batch.seqs.iter().filter(|q| q.num_tokens == 1).count();
        if ones > 0 && ones < batch.seqs.len() {
            self.mixed.fetch_add(1, Ordering::Relaxed);
        }
        self.steps += 1;
        self.tokens += batch.tokens.len();
        let tokens = batch
            .row_sampling
            .iter()
            .map(|r| match r {
                RowSampling::Device { seed, .. } => Some((seed % self.vocab as u64) as u32),
                RowSampling::Host => None,
            })
            .collect::<Vec<_>>();
        let host = tokens.iter().filter(|t| t.is_none()).count();
        Ok(StepOutput {
            logits: vec![0.0; host * self.vocab],
            tokens,
        })
    }
    fn samples_on_device(&self) -> bool {
        true
    }
    fn vocab_size(&self) -> usize {
        self.vocab
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn kv_geometry(&self) -> KvGeometry {
        self.kv
    }
}

#[test]
fn engine_host_cost_on_the_throughput_shape() {
    let config = ModelConfig::from_json(
        include_str!("../../benches/configs/llama-3-8b/config.json"),
        "llama-3-8b",
    )
    .unwrap();
    let args = EngineArgs {
        max_model_len: Some(2048),
        max_num_seqs: 256,
        max_num_batched_tokens: 8192,
        ..Default::default()
    };
    // The H100 run's cache: 27,948 blocks of 16 (no preemption on this workload).
    let mixed = Arc::new(AtomicUsize::new(0));
    let runner = StandIn {
        mixed: mixed.clone(),
        vocab: config.vocab_size,
        kv: KvGeometry {
            num_blocks: 27_948,
            block_size: 16,
        },
        steps: 0,
        tokens: 0,
    };
    let mut engine = Engine::with_runner(config, Box::new(runner), &args).unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    let mut want = std::collections::HashMap::new();
    let mut total_out = 0;
    for _ in 0..256 {
        let n_in = rng.random_range(100..=1024);
        let n_out = rng.random_range(100..=1024);
        let prompt: Vec<u32> = (0..n_in).map(|_| rng.random_range(0..128_256)).collect();
        let params = SamplingParams {
            temperature: 0.6,
            ignore_eos: true,
            max_tokens: Some(n_out),
            seed: Some(rng.random()),
            ..Default::default()
        };
        let id = engine.add_request(Prompt::Tokens(prompt), params).unwrap();
        want.insert(id, n_out);
        total_out += n_out;
    }
    let t = Instant::now();
    let mut steps = 0;
    let mut done = 0;
    let mut got = std::collections::HashMap::new();
    while engine.has_unfinished() {
        for o in engine.step() {
            *got.entry(o.request_id).or_insert(0) += o.token_ids.len();
            if o.finished {
                assert_eq!(
                    got[&o.request_id], want[&o.request_id],
                    "request {}",
                    o.request_id
                );
                done += 1;
            }
        }
        steps += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(done, 256);
    let stats = engine.stats();
    assert_eq!(stats.kv_blocks_used, 0, "every block returned");
    // Prefill steps 2 onwards decode the requests prefilled before them.
    let mixed = mixed.load(Ordering::Relaxed);
    assert!(
        mixed >= 10,
        "only {mixed} steps mixed decodes with prefills"
    );
    eprintln!(
        "engine host cost: 256 requests, {total_out} output tokens, {steps} steps in {secs:.3} s: \
         {:.3} ms per step, {:.2} us per output token",
        secs * 1e3 / steps as f64,
        secs * 1e6 / total_out as f64
    );
}

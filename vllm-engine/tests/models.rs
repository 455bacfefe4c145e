//! Tiny random-weight models of every architecture against HuggingFace transformers
//! (fixtures from tests/fixtures/make_fixtures.py): 32 greedy tokens identical and every
//! step's logits within 1e-3 relative (f32), through the engine (batched, continuous batching)
//! and through the CPU runner directly (teacher-forced, non-contiguous block tables, chunked
//! prefill). Also the HF folder's tokenizer and chat template, and a GGUF with every supported
//! encoding against transformers loading that GGUF.

use std::path::{Path, PathBuf};
use vllm_engine::engine::{EngineArgs, load_model};
use vllm_engine::runner::cpu::CpuRunner;
use vllm_engine::runner::{KvGeometry, ModelRunner, SeqSlice, StepBatch};
use vllm_engine::{Engine, LLM, Prompt, SamplingParams};

struct Reference {
    prompts: Vec<Vec<u32>>,
    tokens: Vec<Vec<u32>>,
    /// [prompt][step][vocab]
    logits: Vec<f32>,
    vocab: usize,
    steps: usize,
    json: serde_json::Value,
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn reference(dir: &Path) -> Reference {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let bytes = std::fs::read(dir.join("reference_logits.f32")).unwrap();
    let logits = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Reference {
        prompts: serde_json::from_value(json["prompts"].clone()).unwrap(),
        tokens: serde_json::from_value(json["tokens"].clone()).unwrap(),
        logits,
        vocab: json["vocab"].as_u64().unwrap() as usize,
        steps: json["steps"].as_u64().unwrap() as usize,
        json,
    }
}

impl Reference {
    fn step(&self, prompt: usize, step: usize) -> &[f32] {
        let at = (prompt * self.steps + step) * self.vocab;
        &self.logits[at..at + self.vocab]
    }
}

/// max |a - b| / max |b|: 1e-3 means every logit is within 0.1% of the row's scale.
fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// log-softmax of `row` at `token`.
fn log_softmax_at(row: &[f32], token: u32) -> f32 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f32>().ln();
    row[token as usize] - lse
}

fn greedy(max_tokens: usize) -> SamplingParams {
    SamplingParams {
        temperature: 0.0,
        max_tokens: Some(max_tokens),
        ignore_eos: true,
        logprobs: Some(1),
        ..Default::default()
    }
}

/// All prompts in one engine batch: tokens identical, and each sampled token's logprob equal
/// to log-softmax of the reference logits.
fn check_engine(name: &str, dir: &Path, r: &Reference) {
    let mut args = EngineArgs::new(dir);
    args.device = Some(vllm_engine::Device::Cpu);
    let mut llm = LLM::new(args).unwrap();
    let prompts: Vec<Prompt> = r
        .prompts
        .iter()
        .map(|p| Prompt::Tokens(p.clone()))
        .collect();
    let outs = llm.generate(&prompts, &greedy(r.steps)).unwrap();
    for (i, o) in outs.iter().enumerate() {
        let s = &o.outputs[0];
        assert_eq!(s.token_ids, r.tokens[i], "{name}: prompt {i} greedy tokens");
        for (step, lp) in s.logprobs.as_ref().unwrap().iter().enumerate() {
            let want = log_softmax_at(r.step(i, step), lp.token);
            assert!(
                (lp.logprob - want).abs() < 1e-3 * want.abs().max(1.0),
                "{name}: prompt {i} step {step}: logprob {} vs {want}",
                lp.logprob
            );
        }
    }
}

/// Teacher-forced through the runner: prefill in chunks, then one token per step, block
/// table reversed (not contiguous, not in order). Returns the worst relative logit error.
fn check_runner(name: &str, dir: &Path, r: &Reference, chunk: usize) -> f32 {
    let args = EngineArgs::new(dir);
    let m = load_model(&args).unwrap();
    let bs = 4;
    let kv = KvGeometry {
        num_blocks: 64,
        block_size: bs,
    };
    let mut runner = CpuRunner::new(m.config, m.weights, kv);
    let mut worst = 0f32;
    for (i, p) in r.prompts.iter().enumerate() {
        let total = p.len() + r.steps;
        let nblocks = total.div_ceil(bs);
        let table: Vec<u32> = (0..nblocks as u32).rev().map(|b| b * 2 + 1).collect();
        let all: Vec<u32> = p.iter().chain(&r.tokens[i]).copied().collect();
        let slot = |pos: usize| (table[pos / bs] as usize * bs + pos % bs) as i64;
        let run = |runner: &mut CpuRunner, start: usize, n: usize| {
            let batch = StepBatch {
                tokens: all[start..start + n].to_vec(),
                positions: (start..start + n).collect(),
                slots: (start..start + n).map(slot).collect(),
                seqs: vec![SeqSlice {
                    first_row: 0,
                    num_tokens: n,
                    context_len: start + n,
                    block_table: table.clone(),
                }],
                logits_rows: vec![n - 1],
                ..StepBatch::default()
            };
            runner.execute(&batch).unwrap().logits
        };
        let mut start = 0;
        let mut logits = Vec::new();
        while start < p.len() {
            let n = chunk.min(p.len() - start);
            logits = run(&mut runner, start, n);
            start += n;
        }
        for step in 0..r.steps {
            if step > 0 {
                logits = run(&mut runner, p.len() + step - 1, 1);
            }
            let e = rel_err(&logits, r.step(i, step));
            assert!(
                e < 1e-3,
                "{name}: prompt {i} step {step}: relative logit error {e}"
            );
            worst = worst.max(e);
        }
    }
    worst
}

fn check_model(name: &str) {
    let dir = fixture(name);
    let r = reference(&dir);
    // A GGUF fixture folder holds model.gguf; the engine takes the file.
    let model = if dir.join("model.gguf").exists() {
        dir.join("model.gguf")
    } else {
        dir.clone()
    };
    check_engine(name, &model, &r);
    let whole = check_runner(name, &model, &r, usize::MAX);
    let chunked = check_runner(name, &model, &r, 7);
    eprintln!(
        "{name}: {} prompts x {} greedy tokens identical; worst relative logit error {whole:.2e} (whole prefill), {chunked:.2e} (chunks of 7)",
        r.prompts.len(),
        r.steps
    );
}

#[test]
fn tiny_llama_llama3_rope_sharded_safetensors() {
    check_model("tiny-llama");
}

#[test]
fn tiny_mistral_sliding_window() {
    check_model("tiny-mistral");
}

#[test]
fn tiny_qwen2_qkv_bias_tied_embeddings() {
    check_model("tiny-qwen2");
}

#[test]
fn tiny_qwen3_qk_norm() {
    check_model("tiny-qwen3");
}

/// The GPU fixtures (head sizes 64 / 128, bf16 weights) on the CPU: the same checks, so the
/// CUDA runner's test (tests/gpu_engine.rs) compares against references the CPU reproduces.
#[test]
fn gpu_fixtures_on_the_cpu() {
    for name in [
        "gpu-tiny-llama",
        "gpu-tiny-mistral",
        "gpu-tiny-qwen2",
        "gpu-tiny-qwen3",
    ] {
        check_model(name);
    }
}

#[test]
fn gguf_every_encoding_matches_transformers_loading_it() {
    check_model("tiny-llama-gguf");
}

#[test]
fn hf_tokenizer_and_chat_template() {
    let dir = fixture("tiny-qwen2");
    let r = reference(&dir);
    let mut args = EngineArgs::new(&dir);
    args.device = Some(vllm_engine::Device::Cpu);
    let engine = Engine::new(&args).unwrap();
    let texts: Vec<String> = serde_json::from_value(r.json["texts"].clone()).unwrap();
    let encoded: Vec<Vec<u32>> = serde_json::from_value(r.json["encoded"].clone()).unwrap();
    for (t, want) in texts.iter().zip(&encoded) {
        assert_eq!(&engine.encode(t).unwrap(), want, "{t:?}");
        assert_eq!(&engine.decode(want, false).unwrap(), t);
    }
    let chat = engine
        .apply_chat_template(&[vllm_engine::chat::ChatMessage::new("user", "Hello world!")])
        .unwrap();
    assert_eq!(chat, r.json["chat_prompt"].as_str().unwrap());
}

/// Prompt logprobs against transformers: the prompt is a reference prompt followed by its 31
/// first greedy tokens, so the logprob of each of those tokens must be log-softmax of the
/// reference logits of its step. Chunked (16-token budget), after the same prefix was cached.
#[test]
fn prompt_logprobs_match_reference_logits() {
    let dir = fixture("tiny-llama");
    let r = reference(&dir);
    let mut args = EngineArgs::new(&dir);
    args.device = Some(vllm_engine::Device::Cpu);
    args.block_size = 4;
    args.max_num_batched_tokens = 16;
    let mut llm = LLM::new(args).unwrap();
    let i = 1;
    let p = &r.prompts[i];
    llm.generate(&[Prompt::Tokens(p.clone())], &greedy(1))
        .unwrap();
    let mut prompt = p.clone();
    prompt.extend(&r.tokens[i][..r.steps - 1]);
    let params = SamplingParams {
        prompt_logprobs: Some(3),
        ..greedy(1)
    };
    let out = llm
        .generate(&[Prompt::Tokens(prompt.clone())], &params)
        .unwrap();
    let lps = out[0].outputs[0].prompt_logprobs.clone().unwrap();
    assert_eq!(lps.len(), prompt.len() - 1);
    for (j, lp) in lps.iter().enumerate() {
        assert_eq!(lp.token, prompt[j + 1]);
        assert_eq!(lp.top.len(), 3);
        let step = match (j + 1).checked_sub(p.len()) {
            Some(s) => s,
            None => continue, // inside the original prompt: no reference logits
        };
        let want = log_softmax_at(r.step(i, step), lp.token);
        assert!(
            (lp.logprob - want).abs() < 1e-3 * want.abs().max(1.0),
            "position {}",
            j + 1
        );
        // Greedy tokens are the most likely: first in the top list.
        assert_eq!(lp.top[0].token, lp.token);
    }
}

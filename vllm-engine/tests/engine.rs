//! Engine behaviour on a real (tiny) model: prefix-cache hits reuse blocks, preemption under
//! a tiny KV pool changes nothing in greedy outputs, abort frees every block, a soak of 2,000
//! random requests with random aborts leaves the pool full, seeded sampling does not depend
//! on the batch, stop strings cut across token boundaries, and multi-byte characters split
//! between tokens stream without U+FFFD.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::PathBuf;
use vllm_engine::detokenizer::{Decode, OutputText};
use vllm_engine::scheduler::FinishReason;
use vllm_engine::{Engine, EngineArgs, LLM, Prompt, RequestOutput, SamplingParams};

fn model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-qwen2")
}

fn args(f: impl FnOnce(&mut EngineArgs)) -> EngineArgs {
    let mut a = EngineArgs::new(model());
    a.device = Some(vllm_engine::Device::Cpu);
    a.block_size = 4;
    f(&mut a);
    a
}

fn greedy(max_tokens: usize) -> SamplingParams {
    SamplingParams {
        temperature: 0.0,
        max_tokens: Some(max_tokens),
        ignore_eos: true,
        ..Default::default()
    }
}

fn prompt(rng: &mut StdRng, len: usize) -> Vec<u32> {
    (0..len).map(|_| rng.random_range(3..320)).collect()
}

/// Runs until idle; returns whole outputs by (request, index).
fn drain(e: &mut Engine) -> HashMap<(u64, usize), RequestOutput> {
    let mut acc: HashMap<(u64, usize), RequestOutput> = HashMap::new();
    while e.has_unfinished() {
        for d in e.step() {
            let o = acc
                .entry((d.request_id, d.index))
                .or_insert_with(|| RequestOutput {
                    text: String::new(),
                    token_ids: Vec::new(),
                    ..d.clone()
                });
            o.text.push_str(&d.text);
            o.token_ids.extend(&d.token_ids);
            o.finished = d.finished;
            o.finish_reason = d.finish_reason;
            o.stop_reason = d.stop_reason.clone().or(o.stop_reason.take());
            o.metrics = d.metrics;
        }
    }
    acc
}

#[test]
fn prefix_cache_hits_reuse_blocks_and_change_nothing() {
    let mut rng = StdRng::seed_from_u64(1);
    let shared = prompt(&mut rng, 21);
    let mut b_prompt = shared.clone();
    b_prompt.extend(prompt(&mut rng, 6));

    let mut e = Engine::new(&args(|_| {})).unwrap();
    e.add_request(Prompt::Tokens(shared.clone()), greedy(4))
        .unwrap();
    drain(&mut e);
    let hits_before = e.stats().prefix_cache_hit_blocks;
    let id = e
        .add_request(Prompt::Tokens(b_prompt.clone()), greedy(8))
        .unwrap();
    let out = drain(&mut e).remove(&(id, 0)).unwrap();
    // 21 prompt tokens fill 5 blocks of 4: all 5 are found again.
    assert_eq!(e.stats().prefix_cache_hit_blocks - hits_before, 5);
    assert_eq!(out.metrics.num_cached_tokens, 20);

    let mut cold = Engine::new(&args(|a| a.enable_prefix_caching = false)).unwrap();
    let id = cold
        .add_request(Prompt::Tokens(b_prompt), greedy(8))
        .unwrap();
    let want = drain(&mut cold).remove(&(id, 0)).unwrap();
    assert_eq!(out.token_ids, want.token_ids);
    assert_eq!(cold.stats().prefix_cache_hit_blocks, 0);
}

#[test]
fn preemption_under_a_tiny_pool_keeps_greedy_outputs() {
    let mut rng = StdRng::seed_from_u64(2);
    let prompts: Vec<Prompt> = (0..6)
        .map(|i| Prompt::Tokens(prompt(&mut rng, 6 + 3 * i)))
        .collect();
    let params = greedy(24);
    let mut roomy = LLM::new(args(|_| {})).unwrap();
    let want = roomy.generate(&prompts, &params).unwrap();
    // Each request needs up to 12 blocks of 4; 14 blocks in all force preemptions.
    let mut tight = LLM::new(args(|a| a.num_kv_blocks = Some(14))).unwrap();
    let got = tight.generate(&prompts, &params).unwrap();
    let mut preemptions = 0;
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.outputs[0].token_ids, w.outputs[0].token_ids);
        assert_eq!(g.outputs[0].token_ids.len(), 24);
        preemptions += g.outputs[0].metrics.preemptions;
    }
    assert!(preemptions > 0, "the tiny pool never preempted");
    assert_eq!(tight.engine().stats().kv_blocks_used, 0);
}

/// A KV cache smaller than the model's context: max_model_len is lowered to the cache's
/// capacity (and the report says so), so a request that grows to the whole cache finishes by
/// length instead of being preempted and parked forever (the engine used to spin with no
/// output). The run is bounded by a timeout so a regression fails instead of hanging.
#[test]
fn a_request_as_long_as_the_whole_cache_finishes_by_length() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let a = args(|a| {
            a.block_size = 16;
            a.num_kv_blocks = Some(2);
        });
        let run = || -> Result<_, vllm_engine::EngineError> {
            let mut llm = LLM::new(a)?;
            let report = llm.engine().device_report().unwrap_or_default();
            let out = llm.generate(&[Prompt::Tokens(vec![5, 6, 7, 8, 9])], &greedy(200))?;
            Ok((report, out, llm.engine().stats().kv_blocks_used))
        };
        let _ = tx.send(run());
    });
    let (report, out, used) = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the engine did not finish within 120 s (a request parked forever?)")
        .unwrap();
    assert!(
        report.contains("max_model_len lowered from 256 to 32"),
        "{report}"
    );
    let o = &out[0].outputs[0];
    assert_eq!(o.finish_reason, Some(FinishReason::Length));
    assert_eq!(
        5 + o.token_ids.len(),
        32,
        "prompt + output = the cache's 32 tokens"
    );
    assert_eq!(used, 0);
}

#[test]
fn abort_frees_every_block() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut e = Engine::new(&args(|_| {})).unwrap();
    let ids: Vec<u64> = (0..5)
        .map(|i| {
            e.add_request(Prompt::Tokens(prompt(&mut rng, 10 + i)), greedy(50))
                .unwrap()
        })
        .collect();
    for _ in 0..4 {
        e.step();
    }
    assert!(e.stats().kv_blocks_used > 0);
    for id in &ids {
        let fin = e.abort(*id).expect("live request");
        assert!(
            fin.iter()
                .all(|o| o.finish_reason == Some(FinishReason::Abort))
        );
    }
    assert!(e.abort(ids[0]).is_none(), "second abort of the same id");
    assert!(!e.has_unfinished());
    let s = e.stats();
    assert_eq!(s.kv_blocks_used, 0);
    assert_eq!(s.kv_blocks_free, s.kv_blocks_total);
}

#[test]
fn soak_2000_random_requests_with_random_aborts_leaves_the_pool_full() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut e = Engine::new(&args(|a| {
        a.num_kv_blocks = Some(96);
        a.max_num_seqs = 32;
        a.max_num_batched_tokens = 96;
    }))
    .unwrap();
    let total = e.stats().kv_blocks_total;
    let (mut submitted, mut finished, mut aborted) = (0, 0, 0);
    let mut live: Vec<u64> = Vec::new();
    while submitted < 2000 || e.has_unfinished() {
        for _ in 0..rng.random_range(0..6) {
            if submitted == 2000 {
                break;
            }
            let params = SamplingParams {
                temperature: if rng.random_bool(0.5) { 0.0 } else { 0.8 },
                top_p: 0.9,
                max_tokens: Some(rng.random_range(1..16)),
                n: rng.random_range(1..3),
                seed: Some(rng.random()),
                ..Default::default()
            };
            let len = rng.random_range(1..40);
            let id = e
                .add_request(Prompt::Tokens(prompt(&mut rng, len)), params)
                .unwrap();
            live.push(id);
            submitted += 1;
        }
        if !live.is_empty() && rng.random_bool(0.1) {
            let id = live.swap_remove(rng.random_range(0..live.len()));
            if e.abort(id).is_some() {
                aborted += 1;
            }
        }
        for d in e.step() {
            assert!(d.error.is_none(), "{:?}", d.error);
            if d.finished {
                finished += 1;
            }
        }
        let s = e.stats();
        assert_eq!(s.kv_blocks_used + s.kv_blocks_free, total);
    }
    let s = e.stats();
    assert_eq!(s.kv_blocks_used, 0, "blocks leaked");
    assert_eq!(s.kv_blocks_free, total);
    assert!(aborted > 50, "only {aborted} aborts landed");
    eprintln!("soak: 2000 requests, {finished} sequences finished, {aborted} requests aborted");
}

#[test]
fn seeded_samples_do_not_depend_on_the_batch() {
    let mut rng = StdRng::seed_from_u64(5);
    let p = prompt(&mut rng, 12);
    let p_copy = p.clone();
    let params = params_for_seed();
    let mut alone = Engine::new(&args(|_| {})).unwrap();
    let id = alone
        .add_request(Prompt::Tokens(p.clone()), params.clone())
        .unwrap();
    let want = drain(&mut alone).remove(&(id, 0)).unwrap().token_ids;

    let mut crowd = Engine::new(&args(|_| {})).unwrap();
    for _ in 0..5 {
        let len = rng.random_range(3..30);
        let noise = SamplingParams {
            temperature: 1.0,
            max_tokens: Some(rng.random_range(5..25)),
            ..Default::default()
        };
        crowd
            .add_request(Prompt::Tokens(prompt(&mut rng, len)), noise)
            .unwrap();
    }
    crowd.step();
    let id = crowd.add_request(Prompt::Tokens(p), params).unwrap();
    let got = drain(&mut crowd).remove(&(id, 0)).unwrap().token_ids;
    assert_eq!(got, want);
    // Another seed draws other tokens (so the equality above is not vacuous).
    let other = SamplingParams {
        seed: Some(4321),
        ..params_for_seed()
    };
    let mut e = Engine::new(&args(|_| {})).unwrap();
    let id = e.add_request(Prompt::Tokens(p_copy), other).unwrap();
    assert_ne!(drain(&mut e).remove(&(id, 0)).unwrap().token_ids, want);
}

fn params_for_seed() -> SamplingParams {
    SamplingParams {
        temperature: 1.0,
        top_p: 0.9,
        top_k: 50,
        seed: Some(1234),
        max_tokens: Some(20),
        ignore_eos: true,
        ..Default::default()
    }
}

#[test]
fn stop_strings_cut_across_token_boundaries() {
    let mut rng = StdRng::seed_from_u64(6);
    let p = prompt(&mut rng, 10);
    let mut e = Engine::new(&args(|_| {})).unwrap();
    let id = e
        .add_request(Prompt::Tokens(p.clone()), greedy(32))
        .unwrap();
    let full = drain(&mut e).remove(&(id, 0)).unwrap();
    let tok = e.tokenizer().unwrap().clone();
    // A stop string that starts inside one token and ends inside a later one: around a
    // token boundary b (where the decoded prefix is a prefix of the text), bytes b-1..b+2.
    let text = &full.text;
    let cut = (2..full.token_ids.len()).find_map(|i| {
        let prefix = tok.decode(&full.token_ids[..i], true);
        let b = prefix.len();
        let s = b.checked_sub(1)?;
        let prev = tok.decode(&full.token_ids[..i - 1], true).len();
        if !(text.starts_with(&prefix) && s > prev && text.is_char_boundary(s)) {
            return None;
        }
        (b + 1..=(b + 4).min(text.len())).find_map(|t| {
            let ok = text.is_char_boundary(t) && !text[s..t].contains('\u{FFFD}');
            ok.then_some((s, t))
        })
    });
    let pieces: Vec<String> = full
        .token_ids
        .iter()
        .map(|&t| tok.decode(&[t], true))
        .collect();
    let (s, t) =
        cut.unwrap_or_else(|| panic!("no stop string spanning tokens in {text:?} {pieces:?}"));
    let stop = full.text[s..t].to_string();
    let first = full.text.find(&stop).unwrap();
    let params = SamplingParams {
        stop: vec![stop.clone()],
        ..greedy(32)
    };
    let id = e.add_request(Prompt::Tokens(p), params).unwrap();
    let got = drain(&mut e).remove(&(id, 0)).unwrap();
    assert_eq!(got.finish_reason, Some(FinishReason::Stop));
    assert_eq!(got.stop_reason.as_deref(), Some(stop.as_str()));
    assert_eq!(got.text, full.text[..first], "stop {stop:?}");
    assert_eq!(e.stats().kv_blocks_used, 0);
}

#[test]
fn multibyte_characters_split_between_tokens_stream_whole() {
    let e = Engine::new(&args(|_| {})).unwrap();
    let tok = e.tokenizer().unwrap().clone();
    let text = "Über café 🙂 漢字 done";
    let ids = tok.encode(text, false).unwrap();
    // The byte-level BPE splits at least one character over several tokens.
    assert!(
        ids.iter()
            .any(|&t| tok.decode(&[t], false).contains('\u{FFFD}')),
        "no split character in {ids:?}"
    );
    let mut out = OutputText::new(&[], &[], false, false);
    let mut streamed = String::new();
    for &t in &ids {
        let d = out.push(tok.as_ref(), t);
        assert!(!d.text.contains('\u{FFFD}'), "delta {:?}", d.text);
        streamed.push_str(&d.text);
    }
    streamed.push_str(&out.finish());
    assert_eq!(streamed, text);
}

#[test]
fn bad_requests_are_refused_and_others_keep_running() {
    let mut e = Engine::new(&args(|a| a.max_model_len = Some(64))).unwrap();
    let ok = e
        .add_request(Prompt::Tokens(vec![5; 10]), greedy(5))
        .unwrap();
    let too_long = e
        .add_request(Prompt::Tokens(vec![5; 65]), greedy(5))
        .unwrap_err();
    assert!(
        too_long.to_string().contains("max_model_len 64"),
        "{too_long}"
    );
    let bad_tok = e
        .add_request(Prompt::Tokens(vec![5, 100_000]), greedy(5))
        .unwrap_err();
    assert!(bad_tok.to_string().contains("100000"), "{bad_tok}");
    let bad_p = SamplingParams {
        top_p: 1.5,
        ..greedy(5)
    };
    let err = e
        .add_request(Prompt::Tokens(vec![5; 3]), bad_p)
        .unwrap_err();
    assert!(err.to_string().contains("top_p"), "{err}");
    let out = drain(&mut e).remove(&(ok, 0)).unwrap();
    assert_eq!(out.token_ids.len(), 5);
    assert_eq!(e.stats().kv_blocks_used, 0);
}

#[test]
fn missing_and_truncated_models_are_clear_errors() {
    let err = Engine::new(&EngineArgs::new("/nonexistent/model")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/model"), "{err}");
    // A truncated GGUF names the file and what it could not read.
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/tiny-llama-gguf/model.gguf");
    let bytes = std::fs::read(&src).unwrap();
    let dir = std::env::temp_dir().join(format!("vllm-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for keep in [3, 100, bytes.len() / 2, bytes.len() - 1] {
        let p = dir.join("cut.gguf");
        std::fs::write(&p, &bytes[..keep]).unwrap();
        let mut a = EngineArgs::new(&p);
        a.device = Some(vllm_engine::Device::Cpu);
        let err = Engine::new(&a).unwrap_err().to_string();
        assert!(
            err.contains("cut.gguf") && err.contains("truncated"),
            "{keep}: {err}"
        );
    }
    // A safetensors shard cut short, and a missing tensor.
    let model_dir = dir.join("st");
    std::fs::create_dir_all(&model_dir).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(model().join(f), model_dir.join(f)).unwrap();
    }
    let st = std::fs::read(model().join("model.safetensors")).unwrap();
    std::fs::write(model_dir.join("model.safetensors"), &st[..st.len() - 10]).unwrap();
    let mut a = EngineArgs::new(&model_dir);
    a.device = Some(vllm_engine::Device::Cpu);
    let err = Engine::new(&a).unwrap_err().to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("truncated"),
        "{err}"
    );
    let cfg = std::fs::read_to_string(model().join("config.json"))
        .unwrap()
        .replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3");
    std::fs::write(model_dir.join("config.json"), cfg).unwrap();
    std::fs::copy(
        model().join("model.safetensors"),
        model_dir.join("model.safetensors"),
    )
    .unwrap();
    let err = Engine::new(&a).unwrap_err().to_string();
    assert!(err.contains("model.layers.2."), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn generation_config_sampling_defaults() {
    let dir = std::env::temp_dir().join(format!("vllm-gencfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(model().join(f), dir.join(f)).unwrap();
    }
    std::fs::write(
        dir.join("generation_config.json"),
        r#"{"do_sample": true, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "eos_token_id": [2, 7]}"#,
    )
    .unwrap();
    let mut a = EngineArgs::new(&dir);
    a.device = Some(vllm_engine::Device::Cpu);
    let e = Engine::new(&a).unwrap();
    let d = e.default_sampling_params();
    assert_eq!((d.temperature, d.top_p, d.top_k), (0.7, 0.8, 20));
    assert_eq!(d.min_p, 0.0);
    assert!(e.eos_token_ids().contains(&7));
    let _ = std::fs::remove_dir_all(&dir);
}

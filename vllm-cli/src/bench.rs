//! `vllm bench throughput` (nano-vllm's shape: N sequences, random input and output lengths,
//! `ignore_eos`, all submitted at once) and `vllm bench latency` (a fixed batch, fixed
//! lengths: time to first token and time per output token).

use crate::engine_args::ModelFlags;
use crate::generate::load;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;
use vllm_engine::{Prompt, SamplingParams};

fn random_prompt(rng: &mut StdRng, len: usize, vocab: usize) -> Vec<u32> {
    (0..len)
        .map(|_| rng.random_range(0..vocab as u32))
        .collect()
}

/// `(top_k, top_p)` apply to every request.
pub fn throughput(
    model: &ModelFlags,
    num_seqs: usize,
    (min_input, max_input): (usize, usize),
    (min_output, max_output): (usize, usize),
    seed: u64,
    (top_k, top_p): (i32, f32),
) -> Result<(), String> {
    if num_seqs == 0
        || min_input == 0
        || min_input > max_input
        || min_output == 0
        || min_output > max_output
    {
        return Err(format!(
            "need num_seqs > 0 and 0 < min <= max lengths; got {num_seqs} sequences, input {min_input}..={max_input}, output {min_output}..={max_output}"
        ));
    }
    let mut engine = load(model)?;
    report_device(&engine);
    let mem_start = engine.device_memory_in_use();
    let vocab = engine.config().vocab_size;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut total_out = 0usize;
    let mut total_in = 0usize;
    let mut ids = Vec::new();
    let t = Instant::now();
    for _ in 0..num_seqs {
        let n_in = rng.random_range(min_input..=max_input);
        let n_out = rng.random_range(min_output..=max_output);
        total_in += n_in;
        total_out += n_out;
        let params = SamplingParams {
            temperature: 0.6,
            top_k,
            top_p,
            ignore_eos: true,
            max_tokens: Some(n_out),
            seed: Some(rng.random()),
            ..Default::default()
        };
        ids.push(
            engine
                .add_request(Prompt::Tokens(random_prompt(&mut rng, n_in, vocab)), params)
                .map_err(|e| e.to_string())?,
        );
    }
    let bar = ProgressBar::new(num_seqs as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} requests [{elapsed_precise}] {msg}")
            .map_err(|e| e.to_string())?,
    );
    let mut produced = 0usize;
    let mut preemptions = 0u64;
    while engine.has_unfinished() {
        for d in engine.step() {
            produced += d.token_ids.len();
            if let Some(e) = d.error {
                return Err(e);
            }
            if d.finished {
                preemptions += u64::from(d.metrics.preemptions);
                bar.inc(1);
            }
        }
        bar.set_message(format!(
            "{:.0} output tok/s",
            produced as f64 / t.elapsed().as_secs_f64()
        ));
    }
    bar.finish();
    let secs = t.elapsed().as_secs_f64();
    if produced != total_out {
        return Err(format!("produced {produced} tokens, expected {total_out}"));
    }
    println!(
        "throughput: {num_seqs} requests, {total_in} input + {total_out} output tokens in {secs:.2} s on {}",
        engine.device().describe()
    );
    println!(
        "{:.2} requests/s, {:.1} output tokens/s, {:.1} total tokens/s",
        num_seqs as f64 / secs,
        total_out as f64 / secs,
        (total_in + total_out) as f64 / secs
    );
    println!("every request completed; {preemptions} preemptions");
    if let Some(t) = engine.step_timing() {
        println!("step timing: {t}");
    }
    if let (Some(a), Some(b)) = (mem_start, engine.device_memory_in_use()) {
        println!(
            "device memory in use: {:.3} GiB at start, {:.3} GiB at end ({:+.1} MiB)",
            a as f64 / GIB,
            b as f64 / GIB,
            (b as f64 - a as f64) / (1u64 << 20) as f64
        );
    }
    Ok(())
}

const GIB: f64 = (1u64 << 30) as f64;

fn report_device(engine: &vllm_engine::Engine) {
    if let Some(r) = engine.device_report() {
        println!("{r}");
    }
}

/// Bytes of the decoder's weights read once per decode step in `bytes_per_param`-byte
/// elements: every matrix and norm (the embedding table is gathered, not read whole; the LM
/// head is read whole, tied or not).
pub fn decode_weight_bytes(c: &vllm_engine::config::ModelConfig, bytes_per_param: usize) -> usize {
    let (h, d, i) = (c.hidden_size, c.head_dim, c.intermediate_size);
    let (q, kv) = (c.num_attention_heads * d, c.num_key_value_heads * d);
    let layer = h * (q + 2 * kv) + q * h + 3 * h * i + 2 * h;
    (c.num_hidden_layers * layer + c.vocab_size * h + h) * bytes_per_param
}

pub fn latency(
    model: &ModelFlags,
    batch: usize,
    input_len: usize,
    output_len: usize,
    iters: usize,
    roofline_gbps: Option<f64>,
) -> Result<(), String> {
    if batch == 0 || input_len == 0 || output_len == 0 || iters == 0 {
        return Err("batch size, input length, output length and iterations must be > 0".into());
    }
    let mut engine = load(model)?;
    report_device(&engine);
    let vocab = engine.config().vocab_size;
    let mut rng = StdRng::seed_from_u64(0);
    let (mut ttfts, mut tpots, mut totals) = (Vec::new(), Vec::new(), Vec::new());
    for it in 0..=iters {
        let params = SamplingParams {
            temperature: 0.0,
            ignore_eos: true,
            max_tokens: Some(output_len),
            ..Default::default()
        };
        for _ in 0..batch {
            engine
                .add_request(
                    Prompt::Tokens(random_prompt(&mut rng, input_len, vocab)),
                    params.clone(),
                )
                .map_err(|e| e.to_string())?;
        }
        let t = Instant::now();
        let mut first = None;
        while engine.has_unfinished() {
            let out = engine.step();
            if first.is_none() && out.iter().any(|d| !d.token_ids.is_empty()) {
                first = Some(t.elapsed().as_secs_f64());
            }
        }
        let total = t.elapsed().as_secs_f64();
        let ttft = first.unwrap_or(total);
        if it > 0 {
            // Iteration 0 warms up.
            ttfts.push(ttft);
            tpots.push((total - ttft) / (output_len.max(2) - 1) as f64);
            totals.push(total);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "latency: batch {batch}, input {input_len}, output {output_len}, {iters} iterations (after 1 warm-up) on {}",
        engine.device().describe()
    );
    let tpot = median(&mut tpots);
    println!(
        "median: time to first token {:.1} ms, time per output token {:.2} ms, end to end {:.3} s",
        median(&mut ttfts) * 1e3,
        tpot * 1e3,
        median(&mut totals)
    );
    if let Some(t) = engine.step_timing() {
        println!("step timing: {t}");
    }
    if let Some(gbps) = roofline_gbps {
        let elem = if engine.device() == vllm_engine::Device::Cpu {
            4
        } else {
            2
        };
        let bytes = decode_weight_bytes(engine.config(), elem);
        let roof = bytes as f64 / (gbps * 1e9);
        println!(
            "roofline: {:.2} GB of weights per step / {gbps:.0} GB/s = {:.2} ms per token; \
             measured {:.2} ms = {:.1}% of roofline",
            bytes as f64 / 1e9,
            roof * 1e3,
            tpot * 1e3,
            100.0 * roof / tpot
        );
    }
    Ok(())
}

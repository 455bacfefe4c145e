//! `vllm generate` (offline batch, prints texts and tokens/s) and `vllm chat` (interactive,
//! streaming).

use crate::engine_args::{ModelFlags, SamplingFlags};
use std::io::{BufRead, Write};
use std::time::Instant;
use vllm_engine::chat::ChatMessage;
use vllm_engine::{Engine, LLM, Prompt};

/// Loads the engine and reports what was loaded where.
pub fn load(model: &ModelFlags) -> Result<Engine, String> {
    let args = model.engine_args()?;
    let t = Instant::now();
    let engine = Engine::new(&args).map_err(|e| e.to_string())?;
    let c = engine.config();
    let s = engine.stats();
    eprintln!(
        "loaded {} ({:?}, {} layers, hidden {}, vocab {}) on {} in {:.2} s; KV cache {} blocks of {}",
        args.model.display(),
        c.architecture,
        c.num_hidden_layers,
        c.hidden_size,
        c.vocab_size,
        engine.device().describe(),
        t.elapsed().as_secs_f64(),
        s.kv_blocks_total,
        args.block_size,
    );
    Ok(engine)
}

pub fn generate(
    model: &ModelFlags,
    sampling: &SamplingFlags,
    prompts: Vec<String>,
    chat: bool,
) -> Result<(), String> {
    let prompts = if prompts.is_empty() {
        let stdin = std::io::stdin();
        stdin
            .lock()
            .lines()
            .map_while(Result::ok)
            .filter(|l| !l.trim().is_empty())
            .collect()
    } else {
        prompts
    };
    if prompts.is_empty() {
        return Err("no prompts: pass --prompt TEXT (repeatable) or lines on stdin".into());
    }
    let engine = load(model)?;
    let inputs: Vec<Prompt> = prompts
        .iter()
        .map(|p| {
            if chat {
                engine
                    .encode_chat(&[ChatMessage::new("user", p.as_str())])
                    .map(Prompt::Tokens)
            } else {
                engine.encode(p).map(Prompt::Tokens)
            }
        })
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let params = sampling.params(engine.default_sampling_params());
    let mut llm = LLM::from_engine(engine);
    let t = Instant::now();
    let outs = llm.generate(&inputs, &params).map_err(|e| e.to_string())?;
    let secs = t.elapsed().as_secs_f64();
    let (mut n_in, mut n_out) = (0, 0);
    for (p, o) in prompts.iter().zip(&outs) {
        n_in += o.prompt_token_ids.len();
        for s in &o.outputs {
            n_out += s.token_ids.len();
            println!("### prompt: {p}");
            println!("{}", s.text.trim_end());
            println!(
                "[{} prompt tokens, {} output tokens, finish: {}, first token after {:.0} ms]\n",
                o.prompt_token_ids.len(),
                s.token_ids.len(),
                s.finish_reason.map_or("-", |r| r.as_str()),
                s.metrics
                    .time_to_first_token
                    .map_or(0.0, |d| d.as_secs_f64() * 1e3),
            );
        }
    }
    println!(
        "{} prompts, {n_in} prompt tokens, {n_out} output tokens in {secs:.2} s: {:.1} output tokens/s on {}",
        outs.len(),
        n_out as f64 / secs,
        llm.engine().device().describe()
    );
    Ok(())
}

pub fn chat(
    model: &ModelFlags,
    sampling: &SamplingFlags,
    system: Option<String>,
) -> Result<(), String> {
    let mut engine = load(model)?;
    let mut history: Vec<ChatMessage> = system
        .into_iter()
        .map(|s| ChatMessage::new("system", s))
        .collect();
    eprintln!("chat: type a message and press Enter; an empty line or Ctrl-D ends.");
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| e.to_string())?
            == 0
        {
            break;
        }
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            break;
        }
        history.push(ChatMessage::new("user", line));
        let ids = engine.encode_chat(&history).map_err(|e| e.to_string())?;
        let id = engine
            .add_request(
                Prompt::Tokens(ids),
                sampling.params(engine.default_sampling_params()),
            )
            .map_err(|e| e.to_string())?;
        let (mut reply, mut tokens, t) = (String::new(), 0usize, Instant::now());
        while engine.has_unfinished() {
            for d in engine.step() {
                if d.request_id != id {
                    continue;
                }
                tokens += d.token_ids.len();
                reply.push_str(&d.text);
                print!("{}", d.text);
                out.flush().map_err(|e| e.to_string())?;
                if let Some(e) = d.error {
                    return Err(e);
                }
            }
        }
        println!();
        eprintln!(
            "[{tokens} tokens, {:.1} tokens/s]",
            tokens as f64 / t.elapsed().as_secs_f64()
        );
        history.push(ChatMessage::new("assistant", reply.trim()));
    }
    Ok(())
}

//! Async scheduling (`EngineArgs::async_scheduling`) against the one-step-at-a-time engine, on a
//! stand-in runner that can launch: every draw depends on the row's input token, position and
//! seed, and a launched step's pending tokens are filled from the previous launch's draws as
//! the CUDA runner does on its device, so a token taken from the wrong row, a placeholder that
//! leaks into a step, a stop that is missed or a block that is not returned changes the
//! outputs. The mixes cover stop tokens (one extra step computed and dropped), max_tokens,
//! n > 1, preemption when the cache runs out, rows sampled on the host (logprobs, penalties,
//! min_tokens, prompt logprobs) between launched steps, and aborts with a step in flight.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use vllm_engine::config::ModelConfig;
use vllm_engine::engine::{EngineArgs, RequestOutput};
use vllm_engine::runner::{
    KvGeometry, ModelRunner, RowSampling, RunnerError, StepBatch, StepOutput,
};
use vllm_engine::{Device, Engine, Prompt, SamplingParams};

const VOCAB: usize = 64;
const EOS: u32 = 3;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The "model": the next token of a row from its input token and position (and the seed of a
/// device row), so every input matters.
fn draw(token: u32, pos: usize, seed: u64) -> u32 {
    (mix(seed ^ mix(u64::from(token) << 32 | pos as u64)) % VOCAB as u64) as u32
}

#[derive(Default)]
struct Device2 {
    kv: Option<KvGeometry>,
    /// Draws of the last launched step, while no executed step sampled after it.
    last_draws: Option<Vec<u32>>,
    launched: VecDeque<StepOutput>,
    can_async: bool,
    /// Steps launched, steps executed, and launches made while another was in flight.
    counts: Arc<[AtomicUsize; 3]>,
    /// Fail the launch with this number (1-based).
    fail_launch: Option<usize>,
}

impl Device2 {
    fn compute(&self, batch: &StepBatch, tokens: &[u32]) -> StepOutput {
        let mut out = StepOutput::default();
        for (i, &row) in batch.logits_rows.iter().enumerate() {
            let (tok, pos) = (tokens[row], batch.positions[row]);
            match batch
                .row_sampling
                .get(i)
                .copied()
                .unwrap_or(RowSampling::Host)
            {
                RowSampling::Device { seed, params } => {
                    let seed = if params.temperature == 0.0 { 0 } else { seed };
                    out.tokens.push(Some(draw(tok, pos, seed)));
                }
                RowSampling::Host => {
                    // Two likely tokens, so penalties can flip the host's choice.
                    let mut l = vec![-4.0f32; VOCAB];
                    l[draw(tok, pos, 1) as usize] = 2.0;
                    l[draw(tok, pos, 2) as usize] = 1.5;
                    out.logits.extend(l);
                    out.tokens.push(None);
                }
            }
        }
        out
    }
}

impl ModelRunner for Device2 {
    fn execute(&mut self, batch: &StepBatch) -> Result<StepOutput, RunnerError> {
        batch.validate(self.kv.unwrap(), VOCAB)?;
        assert!(
            batch.pending.is_empty(),
            "an executed step has pending tokens"
        );
        assert!(batch.tokens.iter().all(|&t| (t as usize) < VOCAB));
        self.counts[1].fetch_add(1, Ordering::Relaxed);
        self.last_draws = None;
        Ok(self.compute(batch, &batch.tokens))
    }
    fn samples_on_device(&self) -> bool {
        true
    }
    fn can_launch(&self, batch: &StepBatch) -> bool {
        self.can_async
            && self.launched.len() < 2
            && batch.row_sampling.len() == batch.logits_rows.len()
            && batch
                .row_sampling
                .iter()
                .all(|r| matches!(r, RowSampling::Device { .. }))
    }
    fn launch(&mut self, batch: &StepBatch) -> Result<(), RunnerError> {
        batch.validate(self.kv.unwrap(), VOCAB)?;
        assert!(self.can_launch(batch));
        let n = self.counts[0].fetch_add(1, Ordering::Relaxed) + 1;
        if self.fail_launch == Some(n) {
            return Err(RunnerError::Backend(format!("launch {n} failed (test)")));
        }
        let mut tokens = batch.tokens.clone();
        let mut seen = vec![false; tokens.len()];
        for &(row, from) in &batch.pending {
            let draws = self
                .last_draws
                .as_ref()
                .expect("pending tokens without a launch");
            tokens[row] = draws[from];
            assert!(!seen[row], "row {row} pending twice");
            seen[row] = true;
        }
        let out = self.compute(batch, &tokens);
        self.last_draws = Some(out.tokens.iter().map(|t| t.unwrap()).collect());
        self.launched.push_back(out);
        if self.launched.len() == 2 {
            self.counts[2].fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
    fn collect(&mut self) -> Result<StepOutput, RunnerError> {
        Ok(self.launched.pop_front().expect("collect without a launch"))
    }
    fn vocab_size(&self) -> usize {
        VOCAB
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn kv_geometry(&self) -> KvGeometry {
        self.kv.unwrap()
    }
}

fn engine(async_scheduling: bool, num_blocks: usize, max_num_seqs: usize) -> Engine {
    engine_with(async_scheduling, num_blocks, max_num_seqs, None).0
}

fn engine_counted(
    async_scheduling: bool,
    num_blocks: usize,
    max_num_seqs: usize,
) -> (Engine, Arc<[AtomicUsize; 3]>) {
    engine_with(async_scheduling, num_blocks, max_num_seqs, None)
}

/// The stand-in engine; `fail_launch`: the launch (1-based) that fails.
fn engine_with(
    async_scheduling: bool,
    num_blocks: usize,
    max_num_seqs: usize,
    fail_launch: Option<usize>,
) -> (Engine, Arc<[AtomicUsize; 3]>) {
    let mut config = ModelConfig::from_json(
        include_str!("../../benches/configs/smollm2-135m/config.json"),
        "smollm2",
    )
    .unwrap();
    config.vocab_size = VOCAB;
    config.eos_token_ids = vec![EOS];
    let runner = Device2 {
        kv: Some(KvGeometry {
            num_blocks,
            block_size: 16,
        }),
        can_async: true,
        fail_launch,
        ..Default::default()
    };
    let counts = runner.counts.clone();
    let args = EngineArgs {
        max_model_len: Some(512),
        max_num_seqs,
        max_num_batched_tokens: 256,
        async_scheduling,
        ..Default::default()
    };
    (
        Engine::with_runner(config, Box::new(runner), &args).unwrap(),
        counts,
    )
}

/// A mix of requests; `host_rows` adds the kinds that need logits on the host.
fn requests(seed: u64, n: usize, host_rows: bool) -> Vec<(Vec<u32>, SamplingParams)> {
    let mut r = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let len = r.random_range(1..=120);
            let prompt = (0..len).map(|_| r.random_range(4..VOCAB as u32)).collect();
            let mut p = SamplingParams {
                temperature: [0.0, 0.8][i % 2],
                max_tokens: Some(r.random_range(1..=90)),
                seed: Some(r.random()),
                ignore_eos: i % 3 == 0,
                ..Default::default()
            };
            if i % 5 == 1 {
                p.stop_token_ids = vec![5, 9];
            }
            if i % 7 == 2 {
                p.n = 2;
            }
            if host_rows {
                match i % 6 {
                    1 => p.logprobs = Some(2),
                    2 => p.repetition_penalty = 1.3,
                    3 => {
                        p.min_tokens = 4;
                        p.max_tokens = p.max_tokens.map(|m| m.max(4));
                    }
                    4 => p.prompt_logprobs = Some(1),
                    _ => {}
                }
            }
            (prompt, p)
        })
        .collect()
}

/// Every output of every request, by (request id, sequence index): tokens, finish reason and
/// logprobs as they streamed, and the number of steps.
type Outputs = HashMap<(u64, usize), (Vec<u32>, Option<String>, Vec<f32>, usize)>;

fn run(e: &mut Engine, reqs: &[(Vec<u32>, SamplingParams)]) -> Outputs {
    for (prompt, p) in reqs {
        e.add_request(Prompt::Tokens(prompt.clone()), p.clone())
            .unwrap();
    }
    let mut out: Outputs = HashMap::new();
    let mut steps = 0;
    while e.has_unfinished() {
        steps += 1;
        assert!(steps < 100_000, "no progress");
        for o in e.step() {
            record(&mut out, o);
        }
    }
    let stats = e.stats();
    assert_eq!(stats.kv_blocks_used, 0, "every block returned");
    out
}

fn record(out: &mut Outputs, o: RequestOutput) {
    let entry = out.entry((o.request_id, o.index)).or_default();
    assert!(entry.1.is_none(), "output after the request finished");
    entry.0.extend(&o.token_ids);
    if let Some(lp) = &o.logprobs {
        entry.2.extend(lp.iter().map(|t| t.logprob));
    }
    if let Some(p) = &o.prompt_logprobs {
        entry.2.extend(p.iter().map(|t| t.logprob));
    }
    entry.3 += 1;
    if o.finished {
        entry.1 = Some(o.finish_reason.map_or("none", |f| f.as_str()).to_string());
    }
}

fn compare(a: &Outputs, b: &Outputs) {
    assert_eq!(a.len(), b.len());
    for (k, (toks, fin, lp, _)) in a {
        let (t2, f2, lp2, _) = &b[k];
        assert_eq!(toks, t2, "tokens of {k:?}");
        assert_eq!(fin, f2, "finish of {k:?}");
        assert_eq!(lp.len(), lp2.len(), "logprobs of {k:?}");
        for (x, y) in lp.iter().zip(lp2) {
            assert!(
                x == y || x.is_nan() && y.is_nan(),
                "logprob of {k:?}: {x} vs {y}"
            );
        }
        assert!(fin.is_some(), "{k:?} never finished");
    }
}

#[test]
fn async_scheduling_matches_one_step_at_a_time() {
    for (seed, host_rows) in [(1, false), (2, true), (3, false), (4, true)] {
        let reqs = requests(seed, 60, host_rows);
        let sync = run(&mut engine(false, 4096, 32), &reqs);
        let asyn = run(&mut engine(true, 4096, 32), &reqs);
        compare(&sync, &asyn);
        let stops = sync
            .values()
            .filter(|v| v.1.as_deref() == Some("stop"))
            .count();
        let lengths = sync
            .values()
            .filter(|v| v.1.as_deref() == Some("length"))
            .count();
        assert!(
            stops > 5 && lengths > 5,
            "mix: {stops} stops, {lengths} length"
        );
    }
}

#[test]
fn async_scheduling_matches_under_preemption() {
    for (seed, host_rows) in [(5, false), (6, true)] {
        let reqs = requests(seed, 80, host_rows);
        // 40 blocks of 16: far fewer than the requests need at once.
        let mut e = engine(false, 40, 64);
        let sync = run(&mut e, &reqs);
        let mut e = engine(true, 40, 64);
        let asyn = run(&mut e, &reqs);
        compare(&sync, &asyn);
    }
}

#[test]
fn async_scheduling_launches_and_overlaps() {
    // Device rows only: every step but the last is launched before the previous is collected.
    let reqs = requests(7, 40, false);
    let (mut e, counts) = engine_counted(true, 4096, 64);
    let out = run(&mut e, &reqs);
    assert!(out.values().all(|v| v.1.is_some()));
    let [launched, executed, overlapped] = counts
        .as_ref()
        .each_ref()
        .map(|c| c.load(Ordering::Relaxed));
    eprintln!("{launched} launched, {executed} executed, {overlapped} launched behind another");
    assert_eq!(
        executed, 0,
        "device rows only: nothing executed one at a time"
    );
    assert!(
        launched > 50 && overlapped + 1 >= launched / 2,
        "{launched} / {overlapped}"
    );
    // With host rows (in most requests here) a step holding one runs one at a time; the
    // others are still launched.
    let reqs = requests(8, 40, true);
    let (mut e, counts) = engine_counted(true, 4096, 64);
    run(&mut e, &reqs);
    let [launched, executed, _] = counts
        .as_ref()
        .each_ref()
        .map(|c| c.load(Ordering::Relaxed));
    assert!(
        launched > 0 && executed > 10,
        "{launched} launched, {executed} executed"
    );
}

#[test]
fn abort_with_a_step_in_flight() {
    let reqs = requests(8, 30, false);
    let mut sync_e = engine(false, 4096, 64);
    let mut async_e = engine(true, 4096, 64);
    let mut ids = Vec::new();
    for (prompt, p) in &reqs {
        let mut p = p.clone();
        p.n = 1;
        p.max_tokens = Some(60);
        p.ignore_eos = true;
        p.stop_token_ids.clear();
        ids.push(
            sync_e
                .add_request(Prompt::Tokens(prompt.clone()), p.clone())
                .unwrap(),
        );
        async_e
            .add_request(Prompt::Tokens(prompt.clone()), p)
            .unwrap();
    }
    let mut outs: [Outputs; 2] = [HashMap::new(), HashMap::new()];
    for (k, e) in [&mut sync_e, &mut async_e].into_iter().enumerate() {
        let mut steps = 0;
        while e.has_unfinished() {
            steps += 1;
            assert!(steps < 100_000, "no progress");
            for o in e.step() {
                record(&mut outs[k], o);
            }
            if steps == 10 {
                // Aborted with a launched step in flight (async): its draws for these are dropped.
                for &id in ids.iter().step_by(3) {
                    for o in e.abort(id).unwrap_or_default() {
                        assert_eq!(o.finish_reason.map(|f| f.as_str()), Some("abort"));
                        record(&mut outs[k], o);
                    }
                }
            }
        }
        assert_eq!(e.stats().kv_blocks_used, 0, "every block returned");
    }
    for (key, (toks, fin, _, _)) in &outs[0] {
        let (t2, f2, _, _) = &outs[1][key];
        if fin.as_deref() == Some("abort") {
            // Aborted one step apart at most: the async engine had returned one step less.
            assert_eq!(f2.as_deref(), Some("abort"));
            assert!(
                t2.len() <= toks.len() && t2[..] == toks[..t2.len()],
                "{key:?}"
            );
            assert!(
                toks.len() - t2.len() <= 1,
                "{key:?}: {} vs {}",
                toks.len(),
                t2.len()
            );
        } else {
            assert_eq!((toks, fin), (t2, f2), "{key:?}");
        }
    }
}

/// A launch that fails: the step in flight before it still counts (a stop token it drew ends
/// its request as "stop", not "error"), the failed plan's requests end with an error, the
/// others go on, and every block is returned.
#[test]
fn a_failed_launch_keeps_the_step_before_it() {
    let prompt: Vec<u32> = (10..40).collect();
    let greedy = |stop: Vec<u32>| SamplingParams {
        temperature: 0.0,
        max_tokens: Some(30),
        stop_token_ids: stop,
        ..Default::default()
    };
    // The greedy tokens, then the 6th made a stop token.
    let mut e = engine(false, 4096, 8);
    let free = run(&mut e, &[(prompt.clone(), greedy(vec![]))]);
    let toks = &free.values().next().unwrap().0;
    let stop = toks[5];
    let first = toks.iter().position(|&t| t == stop).unwrap();
    let want = run(
        &mut engine(false, 4096, 8),
        &[(prompt.clone(), greedy(vec![stop]))],
    );
    let want = want.values().next().unwrap();
    assert_eq!((want.0.len(), want.1.as_deref()), (first + 1, Some("stop")));
    // Async: launch k + 1 draws output k; the launch after the stop token's is the extra
    // step planned before the stop is known. Make exactly that one fail.
    for fail in [first + 2, first + 1, 3] {
        let (mut e, _) = engine_failing(fail);
        let got = run(&mut e, &[(prompt.clone(), greedy(vec![stop]))]);
        let got = got.values().next().unwrap();
        if fail == first + 2 {
            assert_eq!((&got.0, &got.1), (&want.0, &want.1), "launch {fail} failed");
        } else {
            // The request's own step failed: it ends with an error after the tokens before.
            assert_eq!(got.1.as_deref(), Some("error"), "launch {fail} failed");
            assert_eq!(got.0[..], want.0[..fail - 1], "launch {fail} failed");
        }
    }
    // Among many: the failed plan's requests end with an error, the rest as one step at a time.
    let reqs = requests(9, 30, false);
    let sync = run(&mut engine(false, 4096, 64), &reqs);
    let (mut e, _) = engine_failing(20);
    let asyn = run(&mut e, &reqs);
    let errors = asyn
        .values()
        .filter(|v| v.1.as_deref() == Some("error"))
        .count();
    assert!(errors > 0);
    for (k, v) in &asyn {
        if v.1.as_deref() != Some("error") {
            assert_eq!((&v.0, &v.1), (&sync[k].0, &sync[k].1), "{k:?}");
        } else {
            assert!(
                sync[k].0.starts_with(&v.0),
                "{k:?}: error output is a prefix"
            );
        }
    }
}

fn engine_failing(fail_launch: usize) -> (Engine, Arc<[AtomicUsize; 3]>) {
    engine_with(true, 4096, 64, Some(fail_launch))
}

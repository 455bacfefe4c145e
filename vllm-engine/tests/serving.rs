//! The serving handle on the tiny model: outputs through the engine thread equal the engine's
//! own (from several threads at once), streams end after the last output, abort and refusals
//! come back typed, a sink calling back into the handle is refused instead of deadlocking, a
//! sink that panics or a consumer that goes away loses only its own request, shutdown ends
//! every request in flight before it returns, and a step that panics stops the engine with an
//! ERROR output for each live request.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vllm_engine::config::ModelConfig;
use vllm_engine::runner::{KvGeometry, ModelRunner, RunnerError, StepBatch, StepOutput};
use vllm_engine::scheduler::FinishReason;
use vllm_engine::serving::{EngineHandle, ServingError};
use vllm_engine::{Device, Engine, EngineArgs, EngineError, Prompt, RequestOutput, SamplingParams};

fn args() -> EngineArgs {
    let mut a = EngineArgs::new(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-qwen2"),
    );
    a.device = Some(Device::Cpu);
    a.block_size = 4;
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

fn prompt(i: u32) -> Prompt {
    Prompt::Tokens((0..6).map(|k| 3 + (i * 7 + k * 13) % 300).collect())
}

/// Texts of one request's deltas, joined per sequence.
fn texts(outs: &[RequestOutput]) -> Vec<String> {
    let mut by_index: HashMap<usize, String> = HashMap::new();
    for o in outs {
        by_index.entry(o.index).or_default().push_str(&o.text);
    }
    let mut v: Vec<(usize, String)> = by_index.into_iter().collect();
    v.sort();
    v.into_iter().map(|(_, t)| t).collect()
}

/// The engine's own output for `p`, stepped on this thread.
fn direct(p: Prompt, params: SamplingParams) -> Vec<String> {
    let mut e = Engine::new(&args()).unwrap();
    e.add_request(p, params).unwrap();
    let mut outs = Vec::new();
    while e.has_unfinished() {
        outs.extend(e.step());
    }
    texts(&outs)
}

#[test]
fn the_handle_is_shared_across_threads() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<EngineHandle>();
}

#[test]
fn outputs_equal_the_engine_from_many_threads() {
    let handle = EngineHandle::spawn(args()).unwrap();
    assert!(handle.tokenizer().is_some());
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let h = handle.clone();
            std::thread::spawn(move || h.generate(prompt(i), greedy(12)).unwrap())
        })
        .collect();
    let outs: Vec<Vec<RequestOutput>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for (i, o) in outs.iter().enumerate() {
        assert_eq!(
            texts(o),
            direct(prompt(i as u32), greedy(12)),
            "request {i}"
        );
        let last = o.last().unwrap();
        assert!(last.finished);
        assert_eq!(last.finish_reason, Some(FinishReason::Length));
        assert_eq!(o.iter().map(|d| d.token_ids.len()).sum::<usize>(), 12);
    }
    // n = 2: both sequences, each to its own finish.
    let params = SamplingParams { n: 2, ..greedy(5) };
    let two = handle.generate(prompt(9), params.clone()).unwrap();
    assert_eq!(two.iter().filter(|o| o.finished).count(), 2);
    assert_eq!(texts(&two), direct(prompt(9), params));
    let s = handle.stats().unwrap();
    assert_eq!((s.running, s.waiting), (0, 0));
}

#[test]
fn a_stream_ends_after_its_last_output() {
    let handle = EngineHandle::spawn(args()).unwrap();
    let stream = handle.submit_stream(prompt(1), greedy(8)).unwrap();
    let id = stream.id();
    let outs: Vec<RequestOutput> = stream.collect();
    assert!(outs.iter().all(|o| o.request_id == id));
    assert!(outs.last().unwrap().finished);
    assert_eq!(outs.iter().filter(|o| o.finished).count(), 1);
    // Finished requests are forgotten.
    assert!(matches!(
        handle.abort(id),
        Err(ServingError::UnknownRequest { id: i }) if i == id
    ));
}

#[test]
fn abort_ends_a_request_once() {
    let handle = EngineHandle::spawn(args()).unwrap();
    let stream = handle.submit_stream(prompt(2), greedy(200)).unwrap();
    let first = stream.recv().unwrap();
    assert!(!first.finished);
    handle.abort(stream.id()).unwrap();
    let last = stream.last().unwrap();
    assert!(last.finished);
    assert_eq!(last.finish_reason, Some(FinishReason::Abort));
    assert!(matches!(
        handle.abort(last.request_id),
        Err(ServingError::UnknownRequest { .. })
    ));
    assert_eq!(handle.stats().unwrap().kv_blocks_used, 0);
}

#[test]
fn refusals_come_back_typed() {
    let handle = EngineHandle::spawn(args()).unwrap();
    let bad = SamplingParams {
        top_p: 1.5,
        ..greedy(4)
    };
    let err = handle.submit_stream(prompt(0), bad).unwrap_err();
    assert!(
        matches!(err, ServingError::Engine(EngineError::Params(_))),
        "{err}"
    );
    let too_long = Prompt::Tokens(vec![7; 100_000]);
    let err = handle.generate(too_long, greedy(4)).unwrap_err();
    assert!(
        matches!(err, ServingError::Engine(EngineError::Schedule(_))),
        "{err}"
    );
    // The engine still serves.
    let outs = handle.generate(prompt(3), greedy(3)).unwrap();
    assert!(outs.last().unwrap().finished);

    let mut missing = args();
    missing.model = PathBuf::from("/no/such/model");
    let err = EngineHandle::spawn(missing).unwrap_err();
    assert!(
        matches!(err, ServingError::Engine(EngineError::Load(_))),
        "{err}"
    );
}

#[test]
fn a_sink_calling_back_is_refused_not_deadlocked() {
    let handle = EngineHandle::spawn(args()).unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let (h, s) = (handle.clone(), seen.clone());
    handle
        .submit(prompt(4), greedy(3), move |o: RequestOutput, done: bool| {
            let mut s = s.lock().unwrap();
            if s.is_empty() {
                for r in [
                    h.stats().map(|_| ()),
                    h.abort(o.request_id),
                    h.generate(prompt(5), greedy(2)).map(|_| ()),
                    h.shutdown(),
                ] {
                    s.push(format!(
                        "{:?}",
                        r.map_err(|e| matches!(e, ServingError::Reentrant))
                    ));
                }
            }
            if done {
                let _ = done_tx.send(());
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    done_rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(*seen.lock().unwrap(), vec!["Err(true)"; 4]);
    assert!(handle.stats().is_ok());
}

#[test]
fn a_failing_sink_or_consumer_loses_only_its_request() {
    let handle = EngineHandle::spawn(args()).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    handle
        .submit(prompt(6), greedy(50), move |_: RequestOutput, _: bool| {
            c.fetch_add(1, Ordering::SeqCst);
            panic!("a sink bug");
        })
        .unwrap();
    // A stream dropped at once: its consumer is gone.
    drop(handle.submit_stream(prompt(7), greedy(50)).unwrap());
    let outs = handle.generate(prompt(8), greedy(6)).unwrap();
    assert_eq!(texts(&outs), direct(prompt(8), greedy(6)));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let s = handle.stats().unwrap();
    assert_eq!((s.running, s.waiting, s.kv_blocks_used), (0, 0, 0));
}

#[test]
fn shutdown_ends_every_request_in_flight() {
    let handle = EngineHandle::spawn(args()).unwrap();
    let aborted = Arc::new(AtomicUsize::new(0));
    let mut streams = Vec::new();
    for i in 0..3 {
        let a = aborted.clone();
        handle
            .submit(
                prompt(i),
                greedy(200),
                move |o: RequestOutput, done: bool| {
                    // Slow consumers: no request can finish before the shutdown below.
                    std::thread::sleep(Duration::from_millis(10));
                    if done && o.finish_reason == Some(FinishReason::Abort) {
                        a.fetch_add(1, Ordering::SeqCst);
                    }
                    ControlFlow::Continue(())
                },
            )
            .unwrap();
        streams.push(handle.submit_stream(prompt(i + 3), greedy(200)).unwrap());
    }
    let clone = handle.clone();
    handle.shutdown().unwrap();
    assert_eq!(aborted.load(Ordering::SeqCst), 3);
    for s in streams {
        let last = s.last().unwrap();
        assert_eq!(last.finish_reason, Some(FinishReason::Abort));
    }
    assert!(matches!(clone.stats(), Err(ServingError::Stopped(_))));
    assert!(clone.stop_reason().is_some());
    // Dropping the handles after shutdown is fine.
    drop(clone);
    drop(handle);

    // Dropping the last handle shuts down the same way.
    let handle = EngineHandle::spawn(args()).unwrap();
    let stream = handle.submit_stream(prompt(1), greedy(200)).unwrap();
    drop(handle);
    let last = stream.last().unwrap();
    assert_eq!(last.finish_reason, Some(FinishReason::Abort));
}

/// A runner whose forward pass panics.
struct Panics {
    vocab: usize,
    kv: KvGeometry,
}

impl ModelRunner for Panics {
    fn execute(&mut self, _batch: &StepBatch) -> Result<StepOutput, RunnerError> {
        panic!("a runner bug")
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
fn a_panicking_step_stops_the_engine_with_error_outputs() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-qwen2");
    let json = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let config = ModelConfig::from_json(&json, "tiny-qwen2").unwrap();
    let runner = Panics {
        vocab: config.vocab_size,
        kv: KvGeometry {
            num_blocks: 64,
            block_size: 4,
        },
    };
    let engine = Engine::with_runner(config, Box::new(runner), &args()).unwrap();
    let handle = EngineHandle::start(engine).unwrap();
    let outs: Vec<RequestOutput> = handle
        .submit_stream(prompt(0), greedy(4))
        .unwrap()
        .collect();
    let last = outs.last().unwrap();
    assert_eq!(last.finish_reason, Some(FinishReason::Error));
    assert!(last.error.as_deref().unwrap().contains("a runner bug"));
    let err = handle.stats().unwrap_err();
    assert!(
        matches!(&err, ServingError::Stopped(why) if why.contains("a runner bug")),
        "{err}"
    );
    assert!(matches!(
        handle.submit_stream(prompt(1), greedy(4)),
        Err(ServingError::Stopped(_))
    ));
}

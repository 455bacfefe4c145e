//! Scheduler behaviour with a stand-in model that "computes" whatever is scheduled and samples
//! a token that depends only on the sequence so far (so recomputation gives the same outputs).

use std::collections::HashMap;
use vllm_engine::kv_cache::BlockManager;
use vllm_engine::sampling::SamplingParams;
use vllm_engine::scheduler::{
    FinishReason, FinishedRequest, ScheduleError, Scheduler, SchedulerConfig, SchedulerOutput,
    SeqId,
};

const EOS: u32 = 0;

fn sched(blocks: usize, block_size: usize, budget: usize, seqs: usize, chunked: bool) -> Scheduler {
    let cfg = SchedulerConfig {
        max_num_batched_tokens: budget,
        max_num_seqs: seqs,
        max_model_len: 4096,
        chunked_prefill: chunked,
    };
    Scheduler::new(cfg, BlockManager::new(blocks, block_size, true).unwrap()).unwrap()
}

fn params(max_tokens: usize) -> vllm_engine::sampling::ValidSamplingParams {
    SamplingParams::greedy(max_tokens).validate(1000).unwrap()
}

/// The fake model's next token: a hash of the whole sequence, never EOS.
fn next_token(s: &Scheduler, id: SeqId) -> u32 {
    let r = s.request(id).unwrap();
    let h = r
        .all_tokens()
        .iter()
        .fold(17u64, |h, &t| h.wrapping_mul(31).wrapping_add(t as u64));
    1 + (h % 997) as u32
}

fn step(s: &mut Scheduler) -> (SchedulerOutput, Vec<FinishedRequest>) {
    let out = s.schedule();
    let cfg = *s.config();
    assert!(out.num_batched_tokens <= cfg.max_num_batched_tokens);
    assert!(out.scheduled.len() <= cfg.max_num_seqs);
    assert_eq!(
        out.num_batched_tokens,
        out.scheduled.iter().map(|x| x.num_tokens).sum::<usize>()
    );
    let sampled: HashMap<SeqId, u32> = out
        .scheduled
        .iter()
        .filter(|x| x.samples)
        .map(|x| (x.id, next_token(s, x.id)))
        .collect();
    let fin = s.update(&out, &sampled, &[EOS]);
    (out, fin)
}

fn run_all(s: &mut Scheduler) -> HashMap<SeqId, FinishedRequest> {
    let mut done = HashMap::new();
    for _ in 0..100_000 {
        if !s.has_unfinished() {
            return done;
        }
        for f in step(s).1 {
            done.insert(f.id, f);
        }
    }
    panic!("did not finish");
}

fn prompt(seed: u32, len: usize) -> Vec<u32> {
    (0..len as u32)
        .map(|i| 1 + (seed * 7919 + i * 104729) % 997)
        .collect()
}

#[test]
fn continuous_batching_finishes_everything_and_frees_all_blocks() {
    let mut s = sched(64, 16, 256, 8, true);
    for id in 0..20 {
        s.add_request(
            SeqId(id),
            prompt(id as u32, 10 + (id as usize * 37) % 90),
            params(5 + id as usize % 7),
        )
        .unwrap();
    }
    let done = run_all(&mut s);
    assert_eq!(done.len(), 20);
    for (id, f) in &done {
        assert_eq!(f.reason, FinishReason::Length);
        assert_eq!(f.output.len(), 5 + id.0 as usize % 7);
    }
    assert_eq!(s.block_manager().num_used_blocks(), 0);
}

#[test]
fn chunked_prefill_mixes_with_decodes() {
    let mut s = sched(256, 16, 64, 8, true);
    s.add_request(SeqId(1), prompt(1, 10), params(50)).unwrap();
    step(&mut s); // prefill of request 1
    s.add_request(SeqId(2), prompt(2, 200), params(3)).unwrap();
    let (out, _) = step(&mut s);
    let one = out.scheduled.iter().find(|x| x.id == SeqId(1)).unwrap();
    let two = out.scheduled.iter().find(|x| x.id == SeqId(2)).unwrap();
    assert_eq!(
        (one.num_tokens, one.samples),
        (1, true),
        "request 1 decodes"
    );
    assert_eq!(
        (two.start, two.num_tokens, two.samples),
        (0, 63, false),
        "request 2 prefills a chunk"
    );
    // 200 prompt tokens at 63 per step: three more steps, each beside a decode of request 1.
    let mut chunks = vec![two.num_tokens];
    while chunks.iter().sum::<usize>() < 200 {
        let (out, _) = step(&mut s);
        assert!(
            out.scheduled
                .iter()
                .any(|x| x.id == SeqId(1) && x.num_tokens == 1)
        );
        chunks.push(
            out.scheduled
                .iter()
                .find(|x| x.id == SeqId(2))
                .unwrap()
                .num_tokens,
        );
    }
    assert_eq!(chunks, vec![63, 63, 63, 11]);
}

#[test]
fn without_chunking_a_prompt_waits_for_a_step_with_room() {
    let mut s = sched(256, 16, 64, 8, false);
    let e = s
        .add_request(SeqId(9), prompt(9, 65), params(1))
        .unwrap_err();
    assert_eq!(
        e,
        ScheduleError::PromptOverBudget {
            id: SeqId(9),
            len: 65,
            limit: 64
        }
    );
    s.add_request(SeqId(1), prompt(1, 40), params(8)).unwrap();
    s.add_request(SeqId(2), prompt(2, 40), params(8)).unwrap();
    let (out, _) = step(&mut s);
    assert_eq!(
        out.scheduled.len(),
        1,
        "40 + 40 > 64: the second prompt waits"
    );
    let (out, _) = step(&mut s);
    assert_eq!(
        out.scheduled
            .iter()
            .map(|x| x.num_tokens)
            .collect::<Vec<_>>(),
        vec![1, 40]
    );
}

#[test]
fn kv_exhaustion_preempts_and_every_request_still_completes() {
    // 12 blocks of 4 tokens; 6 requests that each grow to 8 + 16 = 24 tokens (6 blocks).
    let mut s = sched(12, 4, 64, 6, true);
    for id in 0..6 {
        s.add_request(SeqId(id), prompt(id as u32, 8), params(16))
            .unwrap();
    }
    let mut preempted = 0;
    let mut done = HashMap::new();
    while s.has_unfinished() {
        let (out, fin) = step(&mut s);
        preempted += out.preempted.len();
        done.extend(fin.into_iter().map(|f| (f.id, f)));
    }
    assert!(preempted > 0, "the cache is too small for all six at once");
    assert_eq!(done.len(), 6);
    // Recomputation gives the same tokens as an unconstrained run.
    let mut big = sched(256, 4, 64, 6, true);
    for id in 0..6 {
        big.add_request(SeqId(id), prompt(id as u32, 8), params(16))
            .unwrap();
    }
    let reference = run_all(&mut big);
    for id in 0..6 {
        assert_eq!(
            done[&SeqId(id)].output,
            reference[&SeqId(id)].output,
            "request {id}"
        );
    }
    assert!(done.values().any(|f| f.preemptions > 0));
    assert_eq!(s.block_manager().num_used_blocks(), 0);
}

#[test]
fn abort_anywhere_frees_blocks_and_leaves_others_alone() {
    let mut s = sched(64, 16, 32, 2, true);
    s.add_request(SeqId(1), prompt(1, 20), params(10)).unwrap();
    s.add_request(SeqId(2), prompt(2, 100), params(10)).unwrap();
    s.add_request(SeqId(3), prompt(3, 20), params(10)).unwrap();
    step(&mut s); // 1 prefilled, 2 partly prefilled, 3 waiting (max_num_seqs 2)
    assert!(s.request(SeqId(2)).unwrap().num_computed > 0);
    let f = s.abort(SeqId(2)).unwrap();
    assert_eq!(f.reason, FinishReason::Abort);
    assert!(s.abort(SeqId(2)).is_none(), "a second abort finds nothing");
    assert!(
        s.abort(SeqId(3)).is_some(),
        "a waiting request can be aborted"
    );
    assert!(s.abort(SeqId(42)).is_none());
    let done = run_all(&mut s);
    assert_eq!(done[&SeqId(1)].output.len(), 10);
    assert_eq!(s.block_manager().num_used_blocks(), 0);
}

#[test]
fn bad_requests_are_refused_without_disturbing_others() {
    let mut s = sched(8, 16, 256, 4, true);
    s.add_request(SeqId(1), prompt(1, 10), params(4)).unwrap();
    assert_eq!(
        s.add_request(SeqId(1), prompt(1, 10), params(4)),
        Err(ScheduleError::DuplicateId { id: SeqId(1) })
    );
    assert_eq!(
        s.add_request(SeqId(2), vec![], params(4)),
        Err(ScheduleError::EmptyPrompt { id: SeqId(2) })
    );
    let e = s
        .add_request(SeqId(3), prompt(3, 5000), params(4))
        .unwrap_err();
    assert_eq!(
        e,
        ScheduleError::PromptTooLong {
            id: SeqId(3),
            len: 5000,
            limit: 4096
        }
    );
    let e = s
        .add_request(SeqId(4), prompt(4, 200), params(4))
        .unwrap_err();
    assert_eq!(
        e,
        ScheduleError::NeverFits {
            id: SeqId(4),
            len: 200,
            need: 13,
            total: 8
        }
    );
    assert!(
        e.to_string()
            .contains("needs 13 KV blocks, the whole cache has 8")
    );
    let done = run_all(&mut s);
    assert_eq!(done.len(), 1);
    assert_eq!(done[&SeqId(1)].output.len(), 4);
}

#[test]
fn prefix_cache_hits_skip_prefill_of_the_shared_prefix() {
    let mut s = sched(64, 16, 256, 4, true);
    let shared = prompt(5, 48);
    s.add_request(SeqId(1), shared.clone(), params(2)).unwrap();
    run_all(&mut s);
    let mut second = shared.clone();
    second.extend([7, 8, 9]);
    s.add_request(SeqId(2), second, params(2)).unwrap();
    let (out, _) = step(&mut s);
    let x = &out.scheduled[0];
    assert_eq!(
        (x.start, x.num_tokens),
        (48, 3),
        "three 16-token blocks came from the cache"
    );
    assert_eq!(s.request(SeqId(2)).unwrap().cached_tokens, 48);
}

#[test]
fn stop_tokens_and_eos_respect_min_tokens() {
    let mut s = sched(64, 16, 256, 4, true);
    let p = SamplingParams {
        min_tokens: 2,
        max_tokens: Some(10),
        ..SamplingParams::greedy(10)
    };
    s.add_request(SeqId(1), prompt(1, 4), p.validate(1000).unwrap())
        .unwrap();
    // Feed EOS by hand: ignored before min_tokens, honoured after.
    for expect_done in [false, false, true] {
        let out = s.schedule();
        let fin = s.update(&out, &HashMap::from([(SeqId(1), EOS)]), &[EOS]);
        assert_eq!(!fin.is_empty(), expect_done);
        if expect_done {
            assert_eq!(fin[0].reason, FinishReason::Stop);
            assert_eq!(fin[0].output, vec![EOS, EOS, EOS]);
        }
    }
}

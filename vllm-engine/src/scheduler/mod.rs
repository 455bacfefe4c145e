//! Continuous batching with chunked prefill and preemption by recompute; the engine's only
//! request table (one [`Request`] per sequence, keyed by [`SeqId`]).
//!
//! Every step has a token budget (`max_num_batched_tokens`) and a sequence cap
//! (`max_num_seqs`). [`Scheduler::schedule`] first serves the running requests in arrival
//! order: a decode takes one token, a prefill in progress takes what is left of its prompt (up
//! to the remaining budget when chunked prefill is on). When the KV cache cannot hold the next
//! tokens, the most recently admitted running request is preempted: its blocks are freed and it
//! goes back to the front of the queue, to be recomputed later (prefix-cache hits make that
//! cheap). Then, if nothing was preempted, waiting requests are admitted in order while budget,
//! sequence slots and blocks last; a long prompt is split over several steps, mixed with the
//! decodes of the others. [`Scheduler::layout`] (`batch.rs`) turns the plan into the runner's
//! batch. After the step, [`Scheduler::record`] takes the sampled tokens and commits computed
//! blocks to the prefix cache; whether a token ends its request is decided by one rule,
//! [`check_stop`] (`finish.rs`), and [`Scheduler::finish`] then frees the request (the engine
//! adds stop strings to that decision; [`Scheduler::update`] applies it without them, for a
//! scheduler used alone). [`Scheduler::abort`] removes a request at any time.
//!
//! Async scheduling splits a step's bookkeeping in two: [`Scheduler::update_launched`] records
//! a launched step's progress and gives every sampling request a placeholder token (so the next
//! step can be planned before the token is known), and [`Scheduler::record`], once the step
//! completed, commits its blocks and replaces each placeholder with the drawn token. A request
//! whose placeholder will end it by length is not scheduled again; one that ends by a stop
//! token has already been scheduled once more, and that step's result for it is dropped.
//!
//! Cost per step: O(running + admitted) plus the block manager's work for the tokens scheduled.

mod batch;
mod finish;
mod request;

pub use batch::{LONGEST_FIRST_MIN_SEQS, Row, RowSource, StepLayout};
pub use finish::{Finish, FinishReason, check_stop, length_reached};
pub use request::{Request, RequestId, SeqId, Status};

use crate::kv_cache::{BlockManager, CopyOnWrite, KvCacheError};
use crate::sampling::ValidSamplingParams;
use std::collections::{HashMap, VecDeque};

/// Limits of one engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    pub max_num_batched_tokens: usize,
    pub max_num_seqs: usize,
    /// Prompt plus output tokens of one request, at most.
    pub max_model_len: usize,
    /// Split prompts longer than the remaining budget over several steps.
    pub chunked_prefill: bool,
}

/// A request refused at submission (nothing else is affected), or a bad configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("request {id}: the prompt is empty")]
    EmptyPrompt { id: SeqId },
    #[error("request {id}: prompt of {len} tokens exceeds max_model_len {limit}")]
    PromptTooLong { id: SeqId, len: usize, limit: usize },
    #[error(
        "request {id}: prompt of {len} tokens exceeds max_num_batched_tokens {limit} and chunked prefill is off"
    )]
    PromptOverBudget { id: SeqId, len: usize, limit: usize },
    #[error(
        "request {id}: prompt of {len} tokens needs {need} KV blocks, the whole cache has {total}"
    )]
    NeverFits {
        id: SeqId,
        len: usize,
        need: usize,
        total: usize,
    },
    #[error("request id {id} is already in use")]
    DuplicateId { id: SeqId },
    #[error("scheduler config: {0}")]
    BadConfig(String),
}

/// One request's share of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledRequest {
    pub id: SeqId,
    /// Position of the first token computed this step.
    pub start: usize,
    pub num_tokens: usize,
    /// Whether this step reaches the request's last token, so a token is sampled for it.
    pub samples: bool,
    /// A block to copy before this step writes (fork copy-on-write).
    pub copy: Option<CopyOnWrite>,
}

/// What one step computes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedulerOutput {
    pub scheduled: Vec<ScheduledRequest>,
    /// Requests preempted this step (their K/V are dropped; they wait again).
    pub preempted: Vec<SeqId>,
    pub num_batched_tokens: usize,
}

/// A request that ended, with everything it produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedRequest {
    pub id: SeqId,
    pub reason: FinishReason,
    pub prompt_len: usize,
    pub output: Vec<u32>,
    pub preemptions: u32,
}

#[derive(Debug)]
pub struct Scheduler {
    config: SchedulerConfig,
    blocks: BlockManager,
    requests: HashMap<SeqId, Request>,
    waiting: VecDeque<SeqId>,
    running: Vec<SeqId>,
}

impl Scheduler {
    pub fn new(config: SchedulerConfig, blocks: BlockManager) -> Result<Self, ScheduleError> {
        let c = &config;
        if c.max_num_batched_tokens == 0 || c.max_num_seqs == 0 || c.max_model_len == 0 {
            return Err(ScheduleError::BadConfig(format!(
                "max_num_batched_tokens {}, max_num_seqs {} and max_model_len {} must all be > 0",
                c.max_num_batched_tokens, c.max_num_seqs, c.max_model_len
            )));
        }
        Ok(Self {
            config,
            blocks,
            requests: HashMap::new(),
            waiting: VecDeque::new(),
            running: Vec::new(),
        })
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    pub fn block_manager(&self) -> &BlockManager {
        &self.blocks
    }

    pub fn request(&self, id: SeqId) -> Option<&Request> {
        self.requests.get(&id)
    }

    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    pub fn has_unfinished(&self) -> bool {
        !self.requests.is_empty()
    }

    /// Queues a request. A prompt that can never run is refused here with the limit it breaks.
    pub fn add_request(
        &mut self,
        id: SeqId,
        prompt: Vec<u32>,
        params: ValidSamplingParams,
    ) -> Result<(), ScheduleError> {
        let c = &self.config;
        let len = prompt.len();
        if self.requests.contains_key(&id) {
            return Err(ScheduleError::DuplicateId { id });
        }
        if len == 0 {
            return Err(ScheduleError::EmptyPrompt { id });
        }
        if len > c.max_model_len {
            return Err(ScheduleError::PromptTooLong {
                id,
                len,
                limit: c.max_model_len,
            });
        }
        if !c.chunked_prefill && len > c.max_num_batched_tokens {
            return Err(ScheduleError::PromptOverBudget {
                id,
                len,
                limit: c.max_num_batched_tokens,
            });
        }
        let need = self.blocks.blocks_for(len + 1);
        if need > self.blocks.num_blocks() {
            return Err(ScheduleError::NeverFits {
                id,
                len,
                need,
                total: self.blocks.num_blocks(),
            });
        }
        self.requests.insert(
            id,
            Request {
                id,
                prompt,
                output: Vec::new(),
                params,
                status: Status::Waiting,
                num_computed: 0,
                table: None,
                preemptions: 0,
                cached_tokens: 0,
                pending: false,
            },
        );
        self.waiting.push_back(id);
        Ok(())
    }

    /// Frees a request's blocks and queues it again at the front (recompute later).
    fn preempt(&mut self, id: SeqId) {
        self.running.retain(|&r| r != id);
        if let Some(r) = self.requests.get_mut(&id) {
            r.table = None;
            r.num_computed = 0;
            r.status = Status::Waiting;
            r.preemptions += 1;
        }
        self.waiting.push_front(id);
    }

    /// Plans the next step. See the module doc for the policy.
    pub fn schedule(&mut self) -> SchedulerOutput {
        let mut out = SchedulerOutput::default();
        let mut budget = self.config.max_num_batched_tokens;

        let mut i = 0;
        'running: while i < self.running.len() && budget > 0 {
            let id = self.running[i];
            let Some(r) = self.requests.get(&id) else {
                self.running.remove(i);
                continue;
            };
            let remaining = r.num_tokens() - r.num_computed;
            if remaining == 0 || r.pending && length_reached(r, self.config.max_model_len) {
                // Waits for its sampled token (none was given last step), or finishes by
                // length when its pending token resolves.
                i += 1;
                continue;
            }
            let n = remaining.min(budget);
            let want = r.num_computed + n;
            // Retry after each preemption until the blocks fit or this request itself is preempted.
            while let Some(r) = self.requests.get_mut(&id) {
                let Some(table) = r.table.as_mut() else { break };
                match self.blocks.grow(table, want) {
                    Ok(copy) => {
                        out.scheduled.push(ScheduledRequest {
                            id,
                            start: r.num_computed,
                            num_tokens: n,
                            samples: want == r.num_tokens(),
                            copy,
                        });
                        budget -= n;
                        i += 1;
                        continue 'running;
                    }
                    Err(KvCacheError::OutOfBlocks { .. }) | Err(KvCacheError::BadConfig { .. }) => {
                        let victim = *self.running.last().unwrap_or(&id);
                        self.preempt(victim);
                        out.preempted.push(victim);
                        if victim == id {
                            continue 'running;
                        }
                    }
                }
            }
            i += 1;
        }

        while out.preempted.is_empty()
            && budget > 0
            && self.running.len() < self.config.max_num_seqs
        {
            let Some(&id) = self.waiting.front() else {
                break;
            };
            let Some(r) = self.requests.get_mut(&id) else {
                self.waiting.pop_front();
                continue;
            };
            if r.pending {
                break; // preempted this step with its token still on the device
            }
            let tokens = r.all_tokens();
            // Prompt logprobs need every prompt position computed: no prefix reuse.
            let reuse = r.params.prompt_logprobs.is_none();
            let Ok(alloc) = self.blocks.allocate_with(&tokens, reuse) else {
                break;
            };
            let remaining = tokens.len() - alloc.cached_tokens;
            if !self.config.chunked_prefill && remaining > budget {
                break; // waits for a step with room for its whole prompt (the table is dropped)
            }
            let n = remaining.min(budget);
            r.num_computed = alloc.cached_tokens;
            r.cached_tokens = alloc.cached_tokens;
            r.table = Some(alloc.table);
            r.status = Status::Running;
            out.scheduled.push(ScheduledRequest {
                id,
                start: r.num_computed,
                num_tokens: n,
                samples: r.num_computed + n == tokens.len(),
                copy: None,
            });
            budget -= n;
            self.waiting.pop_front();
            self.running.push(id);
        }
        out.num_batched_tokens = self.config.max_num_batched_tokens - budget;
        out
    }

    /// Applies a step's results: `sampled` holds the token drawn for each scheduled request
    /// with `samples == true`. Returns the requests that finished by [`check_stop`] (without
    /// stop strings). (A launched step's two halves in one go: progress and a placeholder,
    /// then the token in its place.)
    pub fn update(
        &mut self,
        step: &SchedulerOutput,
        sampled: &HashMap<SeqId, u32>,
        eos_token_ids: &[u32],
    ) -> Vec<FinishedRequest> {
        self.update_launched(step);
        self.resolve(step, sampled, eos_token_ids)
    }

    /// Async scheduling, right after a step is launched (and after the step before it was
    /// resolved): its progress, and a placeholder token for each request it samples for.
    /// Its blocks go to the prefix cache only once the step completed ([`Self::resolve`], or
    /// [`Self::record`] for the engine).
    pub fn update_launched(&mut self, step: &SchedulerOutput) {
        for s in &step.scheduled {
            if self.advance(s)
                && s.samples
                && let Some(r) = self.requests.get_mut(&s.id)
            {
                debug_assert!(!r.pending, "request {} has two pending tokens", s.id);
                r.output.push(0);
                r.pending = true;
            }
        }
    }

    /// Async scheduling: the tokens of a step given to [`Self::update_launched`] replace their
    /// placeholders ([`Self::record`]); then each request whose new token ends it (by
    /// [`check_stop`], without stop strings: the scheduler has no text) is finished.
    pub fn resolve(
        &mut self,
        step: &SchedulerOutput,
        sampled: &HashMap<SeqId, u32>,
        eos_token_ids: &[u32],
    ) -> Vec<FinishedRequest> {
        let mut finished = Vec::new();
        for id in self.record(step, |id| sampled.get(&id).copied()) {
            let ends = self
                .requests
                .get(&id)
                .and_then(|r| check_stop(r, self.config.max_model_len, eos_token_ids, None));
            if let Some(f) = ends {
                finished.extend(self.finish(id, f.reason));
            }
        }
        finished
    }

    /// The tokens of a step given to [`Self::update_launched`] (`token_of` each sampled
    /// request's draw) replace their placeholders; the step's computed full blocks go to the
    /// prefix cache. Returns the requests that got their token, in plan order. Finishes
    /// nothing: the caller decides with [`check_stop`] and calls [`Self::finish`].
    pub fn record(
        &mut self,
        step: &SchedulerOutput,
        token_of: impl Fn(SeqId) -> Option<u32>,
    ) -> Vec<SeqId> {
        let mut recorded = Vec::new();
        for s in &step.scheduled {
            self.commit_computed(s.id);
        }
        for s in step.scheduled.iter().filter(|s| s.samples) {
            let Some(r) = self.requests.get_mut(&s.id) else {
                continue;
            };
            if !r.pending {
                continue;
            }
            r.pending = false;
            let Some(tok) = token_of(s.id) else {
                r.output.pop(); // no token was drawn for it: nothing to record
                continue;
            };
            if let Some(last) = r.output.last_mut() {
                *last = tok;
            }
            recorded.push(s.id);
        }
        recorded
    }

    /// Records that `s` was computed; false if the request is gone (aborted or finished
    /// meanwhile).
    fn advance(&mut self, s: &ScheduledRequest) -> bool {
        let Some(r) = self.requests.get_mut(&s.id) else {
            return false;
        };
        if r.status == Status::Running {
            r.num_computed = s.start + s.num_tokens;
        } // else preempted after this step was planned: recomputed later
        true
    }

    /// Gives `id`'s computed full blocks to the prefix cache (they hold only known tokens: a
    /// placeholder is never computed before it is resolved).
    fn commit_computed(&mut self, id: SeqId) {
        let Some(r) = self.requests.get_mut(&id) else {
            return;
        };
        let due = r
            .table
            .as_ref()
            .is_some_and(|t| self.blocks.commit_due(t, r.num_tokens(), r.num_computed));
        if due {
            let tokens = r.all_tokens();
            if let Some(table) = r.table.as_mut() {
                self.blocks.commit(table, &tokens, r.num_computed);
            }
        }
    }

    /// Ends a request with `reason` (a stop string matched, a failed step); `None` if unknown.
    pub fn finish(&mut self, id: SeqId, reason: FinishReason) -> Option<FinishedRequest> {
        let mut r = self.requests.remove(&id)?;
        if r.pending {
            r.output.pop(); // its id never arrived (aborted or failed in flight)
        }
        self.running.retain(|&x| x != id);
        self.waiting.retain(|&x| x != id);
        // Dropping the request drops its block table, returning its blocks.
        Some(FinishedRequest {
            id,
            reason,
            prompt_len: r.prompt.len(),
            output: r.output,
            preemptions: r.preemptions,
        })
    }

    /// Removes a request wherever it is; `None` if unknown or already finished.
    pub fn abort(&mut self, id: SeqId) -> Option<FinishedRequest> {
        self.finish(id, FinishReason::Abort)
    }
}

//! The engine's per-sequence output state, in one table keyed by [`SeqId`]: each sequence's
//! random generator, detokenizer ([`OutputText`]), prompt-logprob cursor and metrics, and
//! which request (and which of its `n`) it belongs to. The scheduler owns everything else
//! about a sequence (tokens, parameters, blocks).
//!
//! Per step: [`OutputProcessor::sample`] turns the runner's rows into tokens (host rows by the
//! CPU sampler, device rows as drawn) and prompt logprobs; once the scheduler has recorded the
//! tokens, [`OutputProcessor::on_token`] detokenizes each one, decides with
//! [`check_stop`] whether it ends the sequence (EOS, stop token, length, stop string: the one
//! finish decision) and builds the streaming delta. Cost per step: O(1) hash work per row,
//! O(vocab) per host-sampled row, and a detokenizer window per token.

use super::{RequestMetrics, RequestOutput, TokenLogprobs};
use crate::detokenizer::OutputText;
use crate::runner::StepOutput;
use crate::sampling::{Sample, SamplerState, ValidSamplingParams, sample, token_logprobs};
use crate::scheduler::{
    FinishReason, Request, RequestId, Row, RowSource, Scheduler, SeqId, check_stop,
};
use crate::tokenizer::Tokenizer;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// One sequence's output state.
#[derive(Debug)]
pub(super) struct SeqOutput {
    request_id: RequestId,
    index: usize,
    sampler: SamplerState,
    text: Option<OutputText>,
    arrival: Instant,
    first_token: Option<Instant>,
    want_logprobs: bool,
    num_prompt_tokens: usize,
    num_output_tokens: usize,
    num_cached_tokens: usize,
    /// `prompt_logprobs` asked for: top-k per prompt token.
    prompt_logprobs: Option<usize>,
    /// Prompt logprobs computed but not yet returned.
    prompt_lp: Vec<TokenLogprobs>,
    /// The next prompt position whose logprob is due (position 0 has none).
    prompt_lp_next: usize,
}

impl SeqOutput {
    /// Sequence `index` of request `request_id`, over `prompt`, drawing from `seed`.
    pub(super) fn new(
        request_id: RequestId,
        index: usize,
        seed: Option<u64>,
        prompt: &[u32],
        params: &ValidSamplingParams,
        detokenize: bool,
    ) -> Self {
        let text = detokenize.then(|| {
            OutputText::new(
                prompt,
                &params.stop,
                params.include_stop_str_in_output,
                params.skip_special_tokens,
            )
        });
        Self {
            request_id,
            index,
            sampler: SamplerState::new(seed),
            text,
            arrival: Instant::now(),
            first_token: None,
            want_logprobs: params.logprobs.is_some(),
            num_prompt_tokens: prompt.len(),
            num_output_tokens: 0,
            num_cached_tokens: 0,
            prompt_logprobs: params.prompt_logprobs,
            prompt_lp: Vec::new(),
            prompt_lp_next: 1,
        }
    }

    fn metrics(&self, preemptions: u32, now: Instant) -> RequestMetrics {
        RequestMetrics {
            num_prompt_tokens: self.num_prompt_tokens,
            num_output_tokens: self.num_output_tokens,
            num_cached_tokens: self.num_cached_tokens,
            preemptions,
            time_to_first_token: self.first_token.map(|t| t - self.arrival),
            elapsed: now - self.arrival,
        }
    }
}

/// Every live sequence's output state, and the request -> sequences relation.
#[derive(Debug)]
pub(super) struct OutputProcessor {
    tokenizer: Option<Arc<Tokenizer>>,
    /// End-of-sequence ids (config, generation config and tokenizer).
    eos: Vec<u32>,
    seqs: HashMap<SeqId, SeqOutput>,
    /// Request id -> its live sequences.
    requests: HashMap<RequestId, Vec<SeqId>>,
    next_request: RequestId,
    next_seq: u64,
}

impl OutputProcessor {
    pub(super) fn new(tokenizer: Option<Arc<Tokenizer>>, eos: Vec<u32>) -> Self {
        Self {
            tokenizer,
            eos,
            seqs: HashMap::new(),
            requests: HashMap::new(),
            next_request: 0,
            next_seq: 0,
        }
    }

    pub(super) fn eos(&self) -> &[u32] {
        &self.eos
    }

    pub(super) fn detokenizes(&self) -> bool {
        self.tokenizer.is_some()
    }

    pub(super) fn num_seqs(&self) -> usize {
        self.seqs.len()
    }

    /// The id the next request gets and the id of its first sequence (the others follow).
    pub(super) fn next_ids(&self) -> (RequestId, u64) {
        (self.next_request, self.next_seq)
    }

    /// Adds a request's sequences (ids from [`Self::next_ids`]).
    pub(super) fn insert(&mut self, request_id: RequestId, seqs: Vec<(SeqId, SeqOutput)>) {
        self.next_request = request_id + 1;
        self.next_seq += seqs.len() as u64;
        let ids = seqs.iter().map(|(id, _)| *id).collect();
        self.seqs.extend(seqs);
        self.requests.insert(request_id, ids);
    }

    /// The live sequences of `request_id`, no longer listed under it; `None` if it is unknown
    /// or already finished.
    pub(super) fn take_request(&mut self, request_id: RequestId) -> Option<Vec<SeqId>> {
        self.requests.remove(&request_id)
    }

    /// Tokens for a step's sampling rows (host rows drawn here, device rows as the runner drew
    /// them); prompt-logprob rows are scored into their sequence's pending prompt logprobs.
    pub(super) fn sample(
        &mut self,
        rows: &[Row],
        step: &StepOutput,
        scheduler: &Scheduler,
        vocab: usize,
    ) -> HashMap<SeqId, Sample> {
        let mut samples = HashMap::with_capacity(rows.len());
        let mut host_row = 0;
        for (row, &use_) in rows.iter().enumerate() {
            let device_token = step.tokens.get(row).copied().flatten();
            let logits = if device_token.is_none() {
                host_row += 1;
                &step.logits[(host_row - 1) * vocab..host_row * vocab]
            } else {
                &[]
            };
            match use_ {
                Row::Prompt(id, token) => {
                    if let Some(seq) = self.seqs.get_mut(&id) {
                        let k = seq.prompt_logprobs.unwrap_or(0);
                        let (logprob, top) = token_logprobs(logits, token, k);
                        seq.prompt_lp.push(TokenLogprobs {
                            token,
                            logprob,
                            top,
                        });
                        seq.prompt_lp_next += 1;
                    }
                }
                Row::Sample(id) => {
                    let (Some(r), Some(seq)) = (scheduler.request(id), self.seqs.get_mut(&id))
                    else {
                        continue;
                    };
                    seq.num_cached_tokens = r.cached_tokens;
                    let smp = match device_token {
                        Some(token) => Sample {
                            token,
                            logprob: f32::NAN,
                            top_logprobs: Vec::new(),
                        },
                        None => sample(
                            logits,
                            &r.params,
                            &r.prompt,
                            &r.output,
                            &self.eos,
                            &mut seq.sampler,
                        ),
                    };
                    samples.insert(id, smp);
                }
            }
        }
        samples
    }

    /// The delta of `id`'s new token `smp` (already recorded in `r`); it is the last one, with
    /// its `finish_reason`, when the token ends the sequence ([`check_stop`] with the stop
    /// string the detokenizer found). `None` if the sequence is unknown.
    pub(super) fn on_token(
        &mut self,
        id: SeqId,
        smp: Sample,
        r: &Request,
        max_model_len: usize,
        now: Instant,
    ) -> Option<RequestOutput> {
        let seq = self.seqs.get_mut(&id)?;
        seq.first_token.get_or_insert(now);
        seq.num_output_tokens += 1;
        let (mut text, mut stop_string) = (String::new(), None);
        if let (Some(t), Some(ot)) = (&self.tokenizer, seq.text.as_mut()) {
            let d = ot.push(t.as_ref(), smp.token);
            text = d.text;
            stop_string = d.stopped.map(|m| m.stop);
        }
        let finish = check_stop(r, max_model_len, &self.eos, stop_string.as_deref());
        if finish.is_some()
            && let Some(ot) = seq.text.as_mut()
        {
            text.push_str(&ot.finish());
        }
        let preemptions = if finish.is_some() { r.preemptions } else { 0 };
        Some(RequestOutput {
            request_id: seq.request_id,
            index: seq.index,
            text,
            token_ids: vec![smp.token],
            logprobs: seq.want_logprobs.then(|| {
                vec![TokenLogprobs {
                    token: smp.token,
                    logprob: smp.logprob,
                    top: smp.top_logprobs,
                }]
            }),
            prompt_logprobs: seq
                .prompt_logprobs
                .map(|_| std::mem::take(&mut seq.prompt_lp)),
            finished: finish.is_some(),
            finish_reason: finish.as_ref().map(|f| f.reason),
            stop_reason: finish.and_then(|f| f.stop_reason),
            error: None,
            metrics: seq.metrics(preemptions, now),
        })
    }

    /// The last output of `id`, ended by `reason` without a new token (abort, failed step);
    /// drops its state. `None` if the sequence is unknown.
    pub(super) fn finish(
        &mut self,
        id: SeqId,
        reason: FinishReason,
        preemptions: u32,
        error: Option<&str>,
    ) -> Option<RequestOutput> {
        let seq = self.seqs.get(&id)?;
        let o = RequestOutput {
            request_id: seq.request_id,
            index: seq.index,
            text: String::new(),
            token_ids: Vec::new(),
            logprobs: seq.want_logprobs.then(Vec::new),
            prompt_logprobs: None,
            finished: true,
            finish_reason: Some(reason),
            stop_reason: None,
            error: error.map(str::to_string),
            metrics: seq.metrics(preemptions, Instant::now()),
        };
        self.retire(id);
        Some(o)
    }

    /// Drops a finished sequence's state, and its request once all its sequences are done.
    pub(super) fn retire(&mut self, id: SeqId) {
        if let Some(seq) = self.seqs.remove(&id)
            && let Some(list) = self.requests.get_mut(&seq.request_id)
        {
            list.retain(|&s| s != id);
            if list.is_empty() {
                self.requests.remove(&seq.request_id);
            }
        }
    }
}

impl RowSource for OutputProcessor {
    fn prompt_logprobs_from(&self, id: SeqId) -> Option<usize> {
        let seq = self.seqs.get(&id)?;
        seq.prompt_logprobs.map(|_| seq.prompt_lp_next)
    }

    fn next_device_seed(&mut self, id: SeqId) -> Option<u64> {
        self.seqs.get_mut(&id).map(|s| s.sampler.next_seed())
    }
}

//! Offline batches: [`LLM::generate`] submits every prompt, steps the engine until all
//! finish, and returns whole outputs in prompt order; [`LLM::chat`] applies the chat template
//! first.

use crate::chat::ChatMessage;
use crate::engine::{Engine, EngineArgs, EngineError, Prompt, RequestOutput};
use crate::sampling::SamplingParams;
use crate::scheduler::RequestId;
use std::collections::HashMap;

/// A finished request: one [`RequestOutput`] per sequence (`n` of them), whole.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOutput {
    pub request_id: RequestId,
    pub prompt_token_ids: Vec<u32>,
    /// Ordered by sequence index.
    pub outputs: Vec<RequestOutput>,
}

/// The offline entry point.
#[derive(Debug)]
pub struct LLM {
    engine: Engine,
}

fn merge(into: &mut RequestOutput, d: RequestOutput) {
    into.text.push_str(&d.text);
    into.token_ids.extend(d.token_ids);
    match (&mut into.logprobs, d.logprobs) {
        (Some(a), Some(b)) => a.extend(b),
        (a @ None, b) => *a = b,
        _ => {}
    }
    match (&mut into.prompt_logprobs, d.prompt_logprobs) {
        (Some(a), Some(b)) => a.extend(b),
        (a @ None, b) => *a = b,
        _ => {}
    }
    into.finished = d.finished;
    into.finish_reason = d.finish_reason;
    into.stop_reason = d.stop_reason.or(into.stop_reason.take());
    into.error = d.error.or(into.error.take());
    let ttft = into.metrics.time_to_first_token;
    into.metrics = d.metrics;
    if into.metrics.time_to_first_token.is_none() {
        into.metrics.time_to_first_token = ttft;
    }
}

impl LLM {
    pub fn new(args: EngineArgs) -> Result<Self, EngineError> {
        Ok(Self {
            engine: Engine::new(&args)?,
        })
    }

    pub fn from_engine(engine: Engine) -> Self {
        Self { engine }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// Generates for every prompt with the same parameters; outputs in prompt order. A
    /// prompt refused at submission fails the call before anything runs.
    pub fn generate<P: Into<Prompt> + Clone>(
        &mut self,
        prompts: &[P],
        params: &SamplingParams,
    ) -> Result<Vec<GenerateOutput>, EngineError> {
        let mut order = Vec::with_capacity(prompts.len());
        let mut prompt_ids = HashMap::new();
        for p in prompts {
            let prompt = p.clone().into();
            let ids = match &prompt {
                Prompt::Tokens(t) => t.clone(),
                Prompt::Text(s) => self.engine.encode(s)?,
            };
            match self
                .engine
                .add_request(Prompt::Tokens(ids.clone()), params.clone())
            {
                Ok(id) => {
                    order.push(id);
                    prompt_ids.insert(id, ids);
                }
                Err(e) => {
                    for id in order {
                        self.engine.abort(id);
                    }
                    return Err(e);
                }
            }
        }
        let mut acc: HashMap<(RequestId, usize), RequestOutput> = HashMap::new();
        while self.engine.has_unfinished() {
            for d in self.engine.step() {
                match acc.get_mut(&(d.request_id, d.index)) {
                    Some(o) => merge(o, d),
                    None => {
                        acc.insert((d.request_id, d.index), d);
                    }
                }
            }
        }
        let n = params.n.max(1);
        Ok(order
            .into_iter()
            .map(|id| GenerateOutput {
                request_id: id,
                prompt_token_ids: prompt_ids.remove(&id).unwrap_or_default(),
                outputs: (0..n).filter_map(|i| acc.remove(&(id, i))).collect(),
            })
            .collect())
    }

    /// Generates one reply per conversation, each rendered by the model's chat template.
    pub fn chat(
        &mut self,
        conversations: &[Vec<ChatMessage>],
        params: &SamplingParams,
    ) -> Result<Vec<GenerateOutput>, EngineError> {
        let prompts = conversations
            .iter()
            .map(|m| self.engine.encode_chat(m).map(Prompt::Tokens))
            .collect::<Result<Vec<_>, _>>()?;
        self.generate(&prompts, params)
    }
}

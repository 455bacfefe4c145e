//! A sequence as the scheduler tracks it: tokens, progress, blocks. Its id type, [`SeqId`].

use crate::kv_cache::BlockTable;
use crate::sampling::ValidSamplingParams;

/// The id [`crate::Engine::add_request`] gives a request (all its `n` sequences).
pub type RequestId = u64;

/// One sequence the scheduler runs: a request with `n > 1` runs as `n` of them, each with its
/// own id (the engine's output processor keeps which request each belongs to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqId(pub u64);

impl std::fmt::Display for SeqId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Waiting,
    Running,
}

#[derive(Debug)]
pub struct Request {
    pub id: SeqId,
    pub prompt: Vec<u32>,
    pub output: Vec<u32>,
    pub params: ValidSamplingParams,
    pub status: Status,
    /// Tokens whose K/V are in the cache (prefix hits count).
    pub num_computed: usize,
    /// Blocks, while the request holds any (dropped on preemption and on finish).
    pub table: Option<BlockTable>,
    /// Times the request was preempted (its K/V dropped and recomputed later).
    pub preemptions: u32,
    /// Prompt tokens served from the prefix cache at the last admission.
    pub cached_tokens: usize,
    /// The last output token is a placeholder: its step was launched and not yet collected
    /// (async scheduling). It counts as a token (the next step computes it) but its id is
    /// still on the device.
    pub pending: bool,
}

impl Request {
    pub fn num_tokens(&self) -> usize {
        self.prompt.len() + self.output.len()
    }

    /// The token at `pos` of prompt then output, without building the whole sequence.
    pub fn token_at(&self, pos: usize) -> Option<u32> {
        match pos.checked_sub(self.prompt.len()) {
            None => self.prompt.get(pos).copied(),
            Some(i) => self.output.get(i).copied(),
        }
    }

    /// Whether the token at `pos` is the pending placeholder.
    pub fn is_pending(&self, pos: usize) -> bool {
        self.pending && pos + 1 == self.num_tokens()
    }

    /// Prompt then output tokens.
    pub fn all_tokens(&self) -> Vec<u32> {
        let mut t = Vec::with_capacity(self.num_tokens());
        t.extend_from_slice(&self.prompt);
        t.extend_from_slice(&self.output);
        t
    }
}

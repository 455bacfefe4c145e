//! A step's inputs, packed on the host into one [`InputArena`] and copied in one transfer.
//!
//! Sections (fixed device addresses, sized for the largest step): token ids (with, per token,
//! the previous step's logits row it takes its id from when that id is still pending on the
//! device, else -1), positions, KV slots, per-sequence lengths and query offsets, the logits rows with each row's sampling
//! parameters, and the block tables last (`[seqs, max_blocks_per_seq]`, so a small batch copies
//! only its own rows). Decode batches can be padded to a captured graph's size: padding
//! sequences read block 0 for one token and write no KV (slot -1). Cost: O(tokens + seqs x
//! max_blocks_per_seq) host writes and one copy of that many bytes.

use super::super::{RowSampling, RunnerError, StepBatch};
use std::sync::Arc;
use vllm_kernels::cuda::{ArenaLayout, CudaStream, InputArena, Section};

/// Capacities of the input sections.
#[derive(Debug, Clone, Copy)]
pub struct InputCaps {
    pub max_tokens: usize,
    pub max_seqs: usize,
    pub max_blocks_per_seq: usize,
}

/// The sections of the arena.
#[derive(Debug, Clone, Copy)]
pub struct Sections {
    pub tokens: Section<i32>,
    pub token_from: Section<i32>,
    pub positions: Section<i64>,
    pub slots: Section<i64>,
    pub seq_lens: Section<i32>,
    pub cu_query_lens: Section<i32>,
    pub rows: Section<i32>,
    pub temperature: Section<f32>,
    pub min_p: Section<f32>,
    pub top_k: Section<i32>,
    pub top_p: Section<f32>,
    pub seeds: Section<u64>,
    pub block_tables: Section<i32>,
}

/// What the forward pass needs to know about a packed step (host-side scalars).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepShape {
    pub num_tokens: usize,
    pub num_seqs: usize,
    pub num_rows: usize,
    pub max_query_len: usize,
    pub max_seq_len: usize,
    /// Leading sequences with one new token each, sequence `i` at token row `i` (padding
    /// included): the decode kernel takes them, prefill attention the rest.
    pub decode_seqs: usize,
    /// Some row is sampled on the device.
    pub any_device_rows: bool,
}

impl StepShape {
    /// Every sequence has one new token (decode kernels, graphs).
    pub fn decode_only(&self) -> bool {
        self.decode_seqs == self.num_seqs
    }
}

pub fn layout(c: InputCaps) -> (ArenaLayout, Sections) {
    let mut l = ArenaLayout::default();
    let s = Sections {
        tokens: l.section(c.max_tokens),
        token_from: l.section(c.max_tokens),
        positions: l.section(c.max_tokens),
        slots: l.section(c.max_tokens),
        seq_lens: l.section(c.max_seqs),
        cu_query_lens: l.section(c.max_seqs + 1),
        rows: l.section(c.max_tokens),
        temperature: l.section(c.max_tokens),
        min_p: l.section(c.max_tokens),
        top_k: l.section(c.max_tokens),
        top_p: l.section(c.max_tokens),
        seeds: l.section(c.max_tokens),
        block_tables: l.section(c.max_seqs * c.max_blocks_per_seq),
    };
    (l, s)
}

fn too_big(what: &str, n: usize, cap: usize) -> RunnerError {
    RunnerError::BadInput(format!(
        "{what}: {n} exceeds the runner's capacity of {cap}"
    ))
}

/// Packs `batch` (padded to `pad_seqs` decode sequences when given) and uploads it.
pub fn pack(
    arena: &mut InputArena,
    s: &Sections,
    caps: InputCaps,
    batch: &StepBatch,
    pad_seqs: Option<usize>,
    stream: &Arc<CudaStream>,
) -> Result<StepShape, RunnerError> {
    let n = batch.tokens.len();
    let seqs = pad_seqs.unwrap_or(batch.seqs.len());
    if n > caps.max_tokens {
        return Err(too_big("tokens in the step", n, caps.max_tokens));
    }
    if seqs > caps.max_seqs {
        return Err(too_big("sequences in the step", seqs, caps.max_seqs));
    }
    let pad = seqs - batch.seqs.len();
    let total = n + pad;
    let mut tokens: Vec<i32> = batch.tokens.iter().map(|&t| t as i32).collect();
    let mut token_from = vec![-1i32; total];
    for &(row, r) in &batch.pending {
        token_from[row] = r as i32;
    }
    let mut positions: Vec<i64> = batch.positions.iter().map(|&p| p as i64).collect();
    let mut slots = batch.slots.clone();
    tokens.resize(total, 0);
    positions.resize(total, 0);
    slots.resize(total, -1);
    let mbps = caps.max_blocks_per_seq;
    let mut tables = vec![0i32; seqs * mbps];
    let mut seq_lens = vec![1i32; seqs];
    let mut cu = vec![0i32; seqs + 1];
    let (mut max_q, mut max_len) = (0, 0);
    for (i, q) in batch.seqs.iter().enumerate() {
        if q.block_table.len() > mbps {
            return Err(too_big("blocks of a sequence", q.block_table.len(), mbps));
        }
        for (d, &b) in tables[i * mbps..].iter_mut().zip(&q.block_table) {
            *d = b as i32;
        }
        seq_lens[i] = q.context_len as i32;
        cu[i + 1] = (q.first_row + q.num_tokens) as i32;
        max_q = max_q.max(q.num_tokens);
        max_len = max_len.max(q.context_len);
    }
    for i in batch.seqs.len()..seqs {
        cu[i + 1] = cu[i] + 1;
    }
    // Logits rows: the batch's, then one per padding sequence (never read back).
    let mut rows: Vec<i32> = batch.logits_rows.iter().map(|&r| r as i32).collect();
    rows.extend((n..total).map(|r| r as i32));
    let nrows = rows.len();
    if nrows > caps.max_tokens {
        return Err(too_big("logits rows", nrows, caps.max_tokens));
    }
    let mut temperature = vec![0.0f32; nrows];
    let mut min_p = vec![0.0f32; nrows];
    let mut top_k = vec![0i32; nrows];
    let mut top_p = vec![1.0f32; nrows];
    let mut seeds = vec![0u64; nrows];
    let mut any_device = false;
    for (i, r) in batch.row_sampling.iter().enumerate() {
        if let RowSampling::Device { params: p, seed } = *r {
            any_device = true;
            temperature[i] = p.temperature;
            min_p[i] = p.min_p;
            top_k[i] = p.top_k;
            top_p[i] = p.top_p;
            seeds[i] = seed;
        }
    }
    let e = |e: vllm_kernels::KernelError| RunnerError::Backend(e.to_string());
    arena.put(s.tokens, &tokens).map_err(e)?;
    arena.put(s.token_from, &token_from).map_err(e)?;
    arena.put(s.positions, &positions).map_err(e)?;
    arena.put(s.slots, &slots).map_err(e)?;
    arena.put(s.seq_lens, &seq_lens).map_err(e)?;
    arena.put(s.cu_query_lens, &cu).map_err(e)?;
    arena.put(s.rows, &rows).map_err(e)?;
    arena.put(s.temperature, &temperature).map_err(e)?;
    arena.put(s.min_p, &min_p).map_err(e)?;
    arena.put(s.top_k, &top_k).map_err(e)?;
    arena.put(s.top_p, &top_p).map_err(e)?;
    arena.put(s.seeds, &seeds).map_err(e)?;
    arena.put(s.block_tables, &tables).map_err(e)?;
    arena.upload(stream).map_err(e)?;
    Ok(StepShape {
        num_tokens: total,
        num_seqs: seqs,
        num_rows: nrows,
        max_query_len: max_q.max(1),
        max_seq_len: max_len.max(1),
        decode_seqs: if batch.seqs.iter().all(|q| q.num_tokens == 1) {
            seqs
        } else {
            batch
                .seqs
                .iter()
                .enumerate()
                .take_while(|(i, q)| q.num_tokens == 1 && q.first_row == *i)
                .count()
        },
        any_device_rows: any_device,
    })
}

//! [`LayerOps`] on the CPU: every op is `vllm-kernels`' CPU op (the same code the GPU kernels
//! are tested against) over f32 activations sized for this step: the residual stream, the
//! normed hidden states, the fused q | k | v rows, the attention output, gate | up and the
//! activation. The step's inputs are laid out once as those ops take them (i32 ids, local
//! positions with their cos | sin rows, the block tables padded to the longest). Cost: the ops'
//! own, plus O(T x D) for the rotary rows and O(sequences x blocks) for the tables.

use super::LayerCache;
use crate::config::ModelConfig;
use crate::model::{LayerOps, Linear, NormSite, Proj, Rope};
use crate::runner::{KvGeometry, RunnerError, StepBatch};
use vllm_kernels::args::{
    ActAndMulArgs, Activation, AddBiasArgs, AttentionGeometry, FusedAddRmsNormArgs, GatherRowsArgs,
    HeadRmsNormArgs, PagedKvLayout, PrefillAttentionArgs, ReshapeAndCacheArgs, RmsNormArgs,
    RotaryArgs,
};
use vllm_kernels::cpu;

/// One step's activations and inputs on the CPU.
pub struct CpuOps<'a> {
    c: &'a ModelConfig,
    cache: &'a mut [LayerCache],
    kv: KvGeometry,
    t: usize,
    ids: Vec<i32>,
    /// `0..t`: each token's row of `cos_sin`.
    rows: Vec<i64>,
    cos_sin: Vec<f32>,
    slots: &'a [i64],
    tables: Vec<i32>,
    cu_query_lens: Vec<i32>,
    seq_lens: Vec<i32>,
    max_blocks: usize,
    max_query_len: usize,
    logits_rows: Vec<i32>,
    residual: Vec<f32>,
    hidden: Vec<f32>,
    qkv: Vec<f32>,
    attn: Vec<f32>,
    gate_up: Vec<f32>,
    act: Vec<f32>,
    logits: Vec<f32>,
}

fn backend(e: vllm_kernels::KernelError) -> RunnerError {
    RunnerError::Backend(e.to_string())
}

impl<'a> CpuOps<'a> {
    /// Lays out `batch` (validated by the caller) for the ops.
    pub fn new(
        c: &'a ModelConfig,
        rope: &Rope,
        kv: KvGeometry,
        cache: &'a mut [LayerCache],
        batch: &'a StepBatch,
    ) -> Self {
        let t = batch.tokens.len();
        let (h, d) = (c.hidden_size, c.head_dim);
        let q_w = c.num_attention_heads * d;
        let qkv_w = q_w + 2 * c.num_key_value_heads * d;
        let mut cos_sin = Vec::with_capacity(t * d);
        for &pos in &batch.positions {
            rope.extend_cos_sin(pos, &mut cos_sin);
        }
        let max_blocks = batch
            .seqs
            .iter()
            .map(|s| s.block_table.len())
            .max()
            .unwrap_or(0)
            .max(1);
        let mut tables = vec![0i32; batch.seqs.len() * max_blocks];
        let mut cu_query_lens = vec![0i32];
        for (s, row) in batch.seqs.iter().zip(tables.chunks_exact_mut(max_blocks)) {
            for (dst, &b) in row.iter_mut().zip(&s.block_table) {
                *dst = b as i32;
            }
            cu_query_lens.push((s.first_row + s.num_tokens) as i32);
        }
        Self {
            c,
            cache,
            kv,
            t,
            ids: batch.tokens.iter().map(|&x| x as i32).collect(),
            rows: (0..t as i64).collect(),
            cos_sin,
            slots: &batch.slots,
            tables,
            cu_query_lens,
            seq_lens: batch.seqs.iter().map(|s| s.context_len as i32).collect(),
            max_blocks,
            max_query_len: batch.seqs.iter().map(|s| s.num_tokens).max().unwrap_or(0),
            logits_rows: batch.logits_rows.iter().map(|&r| r as i32).collect(),
            residual: vec![0.0; t * h],
            hidden: vec![0.0; t * h],
            qkv: vec![0.0; t * qkv_w],
            attn: vec![0.0; t * q_w],
            gate_up: vec![0.0; t * 2 * c.intermediate_size],
            act: vec![0.0; t * c.intermediate_size],
            logits: Vec::new(),
        }
    }

    /// The logits of the step's logits rows, `[rows, vocab]`.
    pub fn into_logits(self) -> Vec<f32> {
        self.logits
    }

    fn widths(&self) -> (usize, usize, usize) {
        let d = self.c.head_dim;
        let (q, kv) = (
            self.c.num_attention_heads * d,
            self.c.num_key_value_heads * d,
        );
        (q, kv, q + 2 * kv)
    }

    fn layout(&self) -> PagedKvLayout {
        PagedKvLayout {
            num_blocks: self.kv.num_blocks,
            num_kv_heads: self.c.num_key_value_heads,
            block_size: self.kv.block_size,
            head_size: self.c.head_dim,
        }
    }
}

/// `out = a w^T` over `m` rows.
fn product(out: &mut [f32], a: &[f32], w: &Linear<Vec<f32>>, m: usize) -> Result<(), RunnerError> {
    match w {
        Linear::Dense {
            weight,
            out_features,
            in_features,
        } => {
            cpu::matmul_bt(out, a, weight, (m, *out_features, *in_features), false).map_err(backend)
        }
    }
}

impl LayerOps for CpuOps<'_> {
    type Tensor = Vec<f32>;
    type Error = RunnerError;

    fn embed(&mut self, table: &Linear<Vec<f32>>) -> Result<(), RunnerError> {
        let Linear::Dense { weight, .. } = table;
        let a = GatherRowsArgs::new(self.t, self.c.hidden_size, self.c.vocab_size);
        cpu::gather_rows(&mut self.residual, weight, &self.ids, &a).map_err(backend)
    }

    fn norm(&mut self, site: NormSite, w: &Vec<f32>) -> Result<(), RunnerError> {
        let (t, h, eps) = (self.t, self.c.hidden_size, self.c.rms_norm_eps);
        match site {
            NormSite::Input { first: true } => {
                let a = RmsNormArgs::new(t, h, eps);
                cpu::rms_norm(&mut self.hidden, &self.residual, w, &a)
            }
            _ => {
                let a = FusedAddRmsNormArgs::new(t, h, eps);
                cpu::fused_add_rms_norm(&mut self.hidden, &mut self.residual, w, &a)
            }
        }
        .map_err(backend)
    }

    fn linear(&mut self, proj: Proj, w: &Linear<Vec<f32>>) -> Result<(), RunnerError> {
        let t = self.t;
        match proj {
            Proj::Qkv => product(&mut self.qkv, &self.hidden, w, t),
            Proj::O => product(&mut self.hidden, &self.attn, w, t),
            Proj::GateUp => product(&mut self.gate_up, &self.hidden, w, t),
            Proj::Down => product(&mut self.hidden, &self.act, w, t),
        }
    }

    fn qkv_bias(&mut self, bias: &Vec<f32>) -> Result<(), RunnerError> {
        let (_, _, qkv_w) = self.widths();
        let mut a = AddBiasArgs::new(self.t, qkv_w);
        a.stride = qkv_w;
        cpu::add_bias(&mut self.qkv, bias, &a).map_err(backend)
    }

    fn qk_norm(&mut self, q: &Vec<f32>, k: &Vec<f32>) -> Result<(), RunnerError> {
        let (q_w, _, qkv_w) = self.widths();
        let (t, d, eps) = (self.t, self.c.head_dim, self.c.rms_norm_eps);
        let mut a = HeadRmsNormArgs::new(t, self.c.num_attention_heads, d, eps);
        a.token_stride = qkv_w;
        cpu::head_rms_norm(&mut self.qkv, q, &a).map_err(backend)?;
        let mut a = HeadRmsNormArgs::new(t, self.c.num_key_value_heads, d, eps);
        a.token_stride = qkv_w;
        cpu::head_rms_norm(&mut self.qkv[q_w..], k, &a).map_err(backend)
    }

    fn rotary_and_cache(&mut self, layer: usize) -> Result<(), RunnerError> {
        let (q_w, kv_w, qkv_w) = self.widths();
        let (t, d) = (self.t, self.c.head_dim);
        let (heads, kv_heads) = (self.c.num_attention_heads, self.c.num_key_value_heads);
        let mut rot = RotaryArgs::new(t, heads, kv_heads, d, d, t, true);
        rot.query_stride = qkv_w;
        rot.key_stride = qkv_w;
        cpu::rotary_embedding_qkv(&self.rows, &mut self.qkv, q_w, &self.cos_sin, &rot)
            .map_err(backend)?;
        let mut a = ReshapeAndCacheArgs::new(t, self.layout());
        a.key_stride = qkv_w;
        a.value_stride = qkv_w;
        let cache = &mut self.cache[layer];
        let (key, value) = (&self.qkv[q_w..], &self.qkv[q_w + kv_w..]);
        cpu::reshape_and_cache(key, value, &mut cache.k, &mut cache.v, self.slots, &a)
            .map_err(backend)
    }

    fn attention(&mut self, layer: usize) -> Result<(), RunnerError> {
        let (_, _, qkv_w) = self.widths();
        let c = self.c;
        let mut g = AttentionGeometry::new(
            c.num_attention_heads,
            c.num_key_value_heads,
            c.head_dim,
            self.kv.block_size,
            self.max_blocks,
        );
        g.q_stride = qkv_w;
        g.sliding_window = c.sliding_window;
        let a = PrefillAttentionArgs::new(g, self.seq_lens.len(), self.t, self.max_query_len);
        let cache = &self.cache[layer];
        let io = cpu::PrefillAttentionIo {
            out: &mut self.attn,
            query: &self.qkv,
            key_cache: &cache.k,
            value_cache: &cache.v,
            block_tables: &self.tables,
            cu_query_lens: &self.cu_query_lens,
            seq_lens: &self.seq_lens,
        };
        cpu::causal_attention(io, &a).map_err(backend)
    }

    fn silu_and_mul(&mut self) -> Result<(), RunnerError> {
        let a = ActAndMulArgs::new(self.t, self.c.intermediate_size, Activation::Silu);
        cpu::act_and_mul(&mut self.act, &self.gate_up, &a).map_err(backend)
    }

    fn logits(&mut self, head: &Linear<Vec<f32>>) -> Result<(), RunnerError> {
        let (r, h) = (self.logits_rows.len(), self.c.hidden_size);
        let mut last = vec![0.0; r * h];
        if r > 0 {
            let a = GatherRowsArgs::new(r, h, self.t);
            cpu::gather_rows(&mut last, &self.hidden, &self.logits_rows, &a).map_err(backend)?;
        }
        self.logits = vec![0.0; r * head.out_features()];
        product(&mut self.logits, &last, head, r)
    }
}

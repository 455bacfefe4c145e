//! The model's layer ops on the GPU ([`CudaOps`], run by [`crate::model::llama::forward`]) over
//! a packed batch: the token ids (the host's, or the previous step's device draws for tokens
//! still pending under async scheduling), the embedding gather, RMSNorm fused with the residual
//! add, the products (cuBLAS or `skinny_gemm`, by the runner's tuned route), bias / per-head q/k
//! norm when the model has them, rotary, the KV cache write, attention (the paged decode
//! kernel for the leading sequences with one new token, prefill attention over the paged cache
//! for the others, which covers chunked prefill and prefix hits), SiLU-and-mul; the logits rows
//! gathered, the LM head in f32 and the device sampler.
//!
//! Everything is stream-ordered on one stream, allocation-free and sync-free, so the same code
//! is captured into CUDA graphs for decode. Cost: the products (2 tokens x parameters flops),
//! the attention (reads each sequence's KV once per layer), O(tokens x hidden) elementwise.

use super::inputs::{Sections, StepShape};
use super::phases::Phases;
use super::{RunnerCache, RunnerFloat};
use crate::config::ModelConfig;
use crate::model::{LayerOps, Linear, NormSite, Proj};
use std::sync::Arc;
use vllm_kernels::args::{
    AddBiasArgs, AttentionGeometry, AttentionVersion, FillTokensArgs, FusedAddRmsNormArgs,
    GatherRowsArgs, HeadRmsNormArgs, MatmulArgs, PagedAttentionArgs, PagedKvLayout,
    PrefillAttentionArgs, ReshapeAndCacheArgs, RmsNormArgs, RotaryArgs, SampleArgs,
};
use vllm_kernels::cuda::{self as k, Blas, CudaSlice, CudaStream, GpuFloat, InputArena};
use vllm_kernels::{KernelError, Result};

/// Model dimensions the forward needs.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub inter: usize,
    pub vocab: usize,
    pub eps: f32,
    pub block_size: usize,
    pub num_blocks: usize,
    pub max_blocks_per_seq: usize,
    pub max_position: usize,
    pub sliding_window: Option<usize>,
    /// Logits rows computed per LM-head chunk (the logits buffer's rows).
    pub max_rows: usize,
    /// Decode attention kernel and v2 partition (`VLLM_DECODE_ATTENTION`; default: the rule).
    pub decode_version: AttentionVersion,
    pub decode_partition: Option<usize>,
}

impl Dims {
    pub fn q_width(&self) -> usize {
        self.heads * self.head_dim
    }
    pub fn kv_width(&self) -> usize {
        self.kv_heads * self.head_dim
    }
    pub fn qkv_width(&self) -> usize {
        self.q_width() + 2 * self.kv_width()
    }
    pub fn layout(&self) -> PagedKvLayout {
        PagedKvLayout {
            num_blocks: self.num_blocks,
            num_kv_heads: self.kv_heads,
            block_size: self.block_size,
            head_size: self.head_dim,
        }
    }
    pub fn from_config(c: &ModelConfig, block_size: usize, max_model_len: usize) -> Self {
        Self {
            hidden: c.hidden_size,
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
            inter: c.intermediate_size,
            vocab: c.vocab_size,
            eps: c.rms_norm_eps,
            block_size,
            num_blocks: 0,
            max_blocks_per_seq: max_model_len.div_ceil(block_size),
            max_position: max_model_len,
            sliding_window: c.sliding_window,
            max_rows: 0,
            decode_version: AttentionVersion::Auto,
            decode_partition: None,
        }
    }
}

/// Activation buffers, sized for the largest step.
#[derive(Debug)]
pub struct Buffers<T> {
    /// The step's token ids, `[max_tokens]` (host ids with pending ones filled in).
    pub tokens: CudaSlice<i32>,
    pub residual: CudaSlice<T>,
    pub hidden: CudaSlice<T>,
    pub qkv: CudaSlice<T>,
    pub attn: CudaSlice<T>,
    pub gate_up: CudaSlice<T>,
    pub act: CudaSlice<T>,
    /// The rows whose logits are wanted, `[max_rows, hidden]`.
    pub last: CudaSlice<T>,
    /// `[max_rows, vocab]` f32.
    pub logits: CudaSlice<f32>,
    pub sampled: CudaSlice<i32>,
    /// Decode v2 partials.
    pub attn_workspace: CudaSlice<f32>,
}

impl<T: RunnerFloat> Buffers<T> {
    pub fn new(
        stream: &std::sync::Arc<k::CudaStream>,
        d: &Dims,
        max_tokens: usize,
        workspace_floats: usize,
    ) -> Result<Self> {
        let z = |n: usize| stream.alloc_zeros::<T>(n.max(1));
        Ok(Self {
            tokens: stream.alloc_zeros::<i32>(max_tokens.max(1))?,
            residual: z(max_tokens * d.hidden)?,
            hidden: z(max_tokens * d.hidden)?,
            qkv: z(max_tokens * d.qkv_width())?,
            attn: z(max_tokens * d.q_width())?,
            gate_up: z(max_tokens * 2 * d.inter)?,
            act: z(max_tokens * d.inter)?,
            last: z(d.max_rows * d.hidden)?,
            logits: stream.alloc_zeros::<f32>((d.max_rows * d.vocab).max(1))?,
            sampled: stream.alloc_zeros::<i32>(d.max_rows.max(1))?,
            attn_workspace: stream.alloc_zeros::<f32>(workspace_floats.max(1))?,
        })
    }
}

/// K and V caches, one pair per layer, `[num_blocks, kv_heads, block_size, head_dim]` of `C`
/// (the model's type, or FP8 E4M3 bytes with per-tensor scales).
#[derive(Debug)]
pub struct KvCaches<C> {
    pub k: Vec<CudaSlice<C>>,
    pub v: Vec<CudaSlice<C>>,
    /// FP8 scales (k, v) when `C` is FP8: stored value = e4m3(x / scale).
    pub fp8_scales: Option<(f32, f32)>,
}

/// The step's packed inputs: the arena, its sections, and the shape they were packed for.
#[derive(Clone, Copy)]
pub struct StepInputs<'a> {
    pub arena: &'a InputArena,
    pub sections: &'a Sections,
    pub shape: &'a StepShape,
}

/// [`LayerOps`] on the GPU for one step: the runner's buffers and caches, the packed inputs,
/// and each op's arguments prepared once per step. With `phases`, an event marks the end of
/// each op (eager steps only: not while capturing).
pub struct CudaOps<'a, T: RunnerFloat, C: RunnerCache<T>> {
    blas: &'a Blas,
    stream: Arc<CudaStream>,
    cos_sin: &'a CudaSlice<T>,
    cache: &'a mut KvCaches<C>,
    b: &'a mut Buffers<T>,
    inputs: StepInputs<'a>,
    d: &'a Dims,
    phases: Option<&'a mut Phases>,
    rotary: RotaryArgs,
    cache_write: ReshapeAndCacheArgs,
    decode: PagedAttentionArgs,
    prefill: PrefillAttentionArgs,
}

impl<'a, T: RunnerFloat, C: RunnerCache<T>> CudaOps<'a, T, C> {
    /// The ops of one step over `inputs` (packed by the caller).
    pub fn new(
        blas: &'a Blas,
        cos_sin: &'a CudaSlice<T>,
        (cache, b): (&'a mut KvCaches<C>, &'a mut Buffers<T>),
        inputs: StepInputs<'a>,
        d: &'a Dims,
        phases: Option<&'a mut Phases>,
    ) -> Self {
        let shape = inputs.shape;
        let (t, qkvw) = (shape.num_tokens, d.qkv_width());
        let mut rotary = RotaryArgs::new(
            t,
            d.heads,
            d.kv_heads,
            d.head_dim,
            d.head_dim,
            d.max_position,
            true,
        );
        rotary.query_stride = qkvw;
        rotary.key_stride = qkvw;
        let mut cache_write = match cache.fp8_scales {
            Some((ks, vs)) => ReshapeAndCacheArgs::fp8(t, d.layout(), ks, vs),
            None => ReshapeAndCacheArgs::new(t, d.layout()),
        };
        cache_write.key_stride = qkvw;
        cache_write.value_stride = qkvw;
        // The decode kernel takes the leading one-token sequences (all of a decode step),
        // prefill attention the others (its query offsets are absolute token rows, so it
        // reads the tables, offsets and lengths from sequence `nd` on).
        let nd = shape.decode_seqs;
        let mut geometry = AttentionGeometry::new(
            d.heads,
            d.kv_heads,
            d.head_dim,
            d.block_size,
            d.max_blocks_per_seq,
        );
        geometry.q_stride = qkvw;
        geometry.sliding_window = d.sliding_window;
        if let Some((ks, vs)) = cache.fp8_scales {
            geometry = geometry.with_fp8_cache(ks, vs);
        }
        let mut decode = PagedAttentionArgs::new(geometry, nd, shape.max_seq_len);
        decode.version = d.decode_version;
        decode.partition_tokens = d.decode_partition;
        let prefill =
            PrefillAttentionArgs::new(geometry, shape.num_seqs - nd, t, shape.max_query_len);
        Self {
            blas,
            stream: blas.stream().clone(),
            cos_sin,
            cache,
            b,
            inputs,
            d,
            phases,
            rotary,
            cache_write,
            decode,
            prefill,
        }
    }

    /// The end of op `label` (when timing phases).
    fn mark(&mut self, label: &'static str) -> Result<()> {
        match self.phases.as_deref_mut() {
            Some(p) => p.mark(&self.stream, label),
            None => Ok(()),
        }
    }

    fn tokens(&self) -> usize {
        self.inputs.shape.num_tokens
    }

    /// Logits (and device samples) of rows `first .. first + max_rows` of the step's logits
    /// rows.
    pub fn lm_head_chunk(&mut self, head: &Linear<CudaSlice<T>>, first: usize) -> Result<()> {
        let (arena, s, shape, d) = (
            self.inputs.arena,
            self.inputs.sections,
            self.inputs.shape,
            self.d,
        );
        let st = &*self.stream;
        let n = shape.num_rows.saturating_sub(first).min(d.max_rows);
        if n == 0 {
            return Ok(());
        }
        let rows = arena.view(s.rows, first + n)?.slice(first..first + n);
        k::gather_rows(
            st,
            &mut self.b.last,
            &self.b.hidden,
            &rows,
            &GatherRowsArgs::new(n, d.hidden, shape.num_tokens),
        )?;
        product(self.blas, &mut self.b.logits, &self.b.last, head, n)?;
        if shape.any_device_rows {
            let temp = arena
                .view(s.temperature, first + n)?
                .slice(first..first + n);
            let min_p = arena.view(s.min_p, first + n)?.slice(first..first + n);
            let top_k = arena.view(s.top_k, first + n)?.slice(first..first + n);
            let top_p = arena.view(s.top_p, first + n)?.slice(first..first + n);
            let seeds = arena.view(s.seeds, first + n)?.slice(first..first + n);
            let rows = k::SampleRowsDev {
                temperature: &temp,
                min_p: &min_p,
                top_k: &top_k,
                top_p: &top_p,
                seeds: &seeds,
            };
            k::sample_tokens(
                st,
                &mut self.b.sampled,
                &self.b.logits,
                &rows,
                &SampleArgs::new(n, d.vocab),
            )?;
        }
        Ok(())
    }
}

/// `out = input W^T` over `m` rows, its row stride `W`'s output width.
fn product<T: RunnerFloat, O: GpuFloat>(
    blas: &Blas,
    out: &mut CudaSlice<O>,
    input: &CudaSlice<T>,
    w: &Linear<CudaSlice<T>>,
    m: usize,
) -> Result<()> {
    match w {
        Linear::Dense {
            weight,
            out_features: n,
            in_features: k,
        } => blas.matmul_bt(out, input, weight, &MatmulArgs::new(m, *n, *k)),
    }
}

impl<T: RunnerFloat, C: RunnerCache<T>> LayerOps for CudaOps<'_, T, C> {
    type Tensor = CudaSlice<T>;
    type Error = KernelError;

    fn embed(&mut self, table: &Linear<CudaSlice<T>>) -> Result<()> {
        let (arena, s) = (self.inputs.arena, self.inputs.sections);
        let t = self.tokens();
        let host_tokens = arena.view(s.tokens, t)?;
        let token_from = arena.view(s.token_from, t)?;
        let st = &*self.stream;
        k::fill_tokens(
            st,
            &mut self.b.tokens,
            &host_tokens,
            &self.b.sampled,
            &token_from,
            &FillTokensArgs::new(t, self.b.sampled.len()),
        )?;
        let Linear::Dense { weight, .. } = table;
        k::gather_rows(
            st,
            &mut self.b.residual,
            weight,
            &self.b.tokens,
            &GatherRowsArgs::new(t, self.d.hidden, self.d.vocab),
        )?;
        self.mark("embed")
    }

    fn norm(&mut self, site: NormSite, w: &CudaSlice<T>) -> Result<()> {
        let (t, h, eps) = (self.tokens(), self.d.hidden, self.d.eps);
        let st = &*self.stream;
        match site {
            NormSite::Input { first: true } => k::rms_norm(
                st,
                &mut self.b.hidden,
                &self.b.residual,
                w,
                &RmsNormArgs::new(t, h, eps),
            )?,
            _ => k::fused_add_rms_norm(
                st,
                &mut self.b.hidden,
                &mut self.b.residual,
                w,
                &FusedAddRmsNormArgs::new(t, h, eps),
            )?,
        }
        self.mark(site.label())
    }

    fn linear(&mut self, proj: Proj, w: &Linear<CudaSlice<T>>) -> Result<()> {
        let (t, b, blas) = (self.tokens(), &mut *self.b, self.blas);
        match proj {
            Proj::Qkv => product(blas, &mut b.qkv, &b.hidden, w, t)?,
            Proj::O => product(blas, &mut b.hidden, &b.attn, w, t)?,
            Proj::GateUp => product(blas, &mut b.gate_up, &b.hidden, w, t)?,
            Proj::Down => product(blas, &mut b.hidden, &b.act, w, t)?,
        }
        self.mark(proj.label())
    }

    fn qkv_bias(&mut self, bias: &CudaSlice<T>) -> Result<()> {
        let qkvw = self.d.qkv_width();
        let mut a = AddBiasArgs::new(self.tokens(), qkvw);
        a.stride = qkvw;
        k::add_bias(&self.stream, &mut self.b.qkv, bias, &a)?;
        self.mark("qkv_bias")
    }

    fn qk_norm(&mut self, q: &CudaSlice<T>, key: &CudaSlice<T>) -> Result<()> {
        let (t, d) = (self.tokens(), self.d);
        let st = &*self.stream;
        let mut a = HeadRmsNormArgs::new(t, d.heads, d.head_dim, d.eps);
        a.token_stride = d.qkv_width();
        k::head_rms_norm(st, &mut self.b.qkv, q, &a)?;
        let mut a = HeadRmsNormArgs::new(t, d.kv_heads, d.head_dim, d.eps);
        a.token_stride = d.qkv_width();
        k::head_rms_norm(st, &mut self.b.qkv.slice_mut(d.q_width()..), key, &a)?;
        self.mark("qk_norm")
    }

    fn rotary_and_cache(&mut self, layer: usize) -> Result<()> {
        let (arena, s) = (self.inputs.arena, self.inputs.sections);
        let t = self.tokens();
        let (qw, kvw) = (self.d.q_width(), self.d.kv_width());
        let positions = arena.view(s.positions, t)?;
        let slots = arena.view(s.slots, t)?;
        let st = &*self.stream;
        k::rotary_embedding_qkv(
            st,
            &positions,
            &mut self.b.qkv,
            qw,
            self.cos_sin,
            &self.rotary,
        )?;
        if let Some(p) = self.phases.as_deref_mut() {
            p.mark(st, "rotary")?;
        }
        let key = self.b.qkv.slice(qw..);
        let value = self.b.qkv.slice(qw + kvw..);
        k::reshape_and_cache(
            st,
            &key,
            &value,
            &mut self.cache.k[layer],
            &mut self.cache.v[layer],
            &slots,
            &self.cache_write,
        )?;
        self.mark("cache_write")
    }

    fn attention(&mut self, layer: usize) -> Result<()> {
        let (arena, s, shape) = (self.inputs.arena, self.inputs.sections, self.inputs.shape);
        let mb = self.d.max_blocks_per_seq;
        let seq_lens = arena.view(s.seq_lens, shape.num_seqs)?;
        let cu = arena.view(s.cu_query_lens, shape.num_seqs + 1)?;
        let tables = arena.view(s.block_tables, shape.num_seqs * mb)?;
        let nd = shape.decode_seqs;
        if nd > 0 {
            let io = k::PagedAttentionIo {
                out: &mut self.b.attn,
                query: &self.b.qkv,
                key_cache: &self.cache.k[layer],
                value_cache: &self.cache.v[layer],
                block_tables: &tables.slice(..nd * mb),
                seq_lens: &seq_lens.slice(..nd),
                alibi_slopes: None,
            };
            k::paged_attention(
                &self.stream,
                io,
                Some(&mut self.b.attn_workspace),
                &self.decode,
            )?;
        }
        if nd < shape.num_seqs {
            let io = k::PrefillAttentionIo {
                out: &mut self.b.attn,
                query: &self.b.qkv,
                key_cache: &self.cache.k[layer],
                value_cache: &self.cache.v[layer],
                block_tables: &tables.slice(nd * mb..),
                cu_query_lens: &cu.slice(nd..),
                seq_lens: &seq_lens.slice(nd..),
            };
            k::prefill_attention(&self.stream, io, &self.prefill)?;
        }
        self.mark("attention")
    }

    fn silu_and_mul(&mut self) -> Result<()> {
        let t = self.tokens();
        k::silu_and_mul(
            &self.stream,
            &mut self.b.act,
            &self.b.gate_up,
            t,
            self.d.inter,
        )?;
        self.mark("silu_and_mul")
    }

    fn logits(&mut self, head: &Linear<CudaSlice<T>>) -> Result<()> {
        self.lm_head_chunk(head, 0)?;
        self.mark("lm_head_and_sample")
    }
}

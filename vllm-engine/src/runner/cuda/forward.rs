//! One forward step on the GPU over a packed batch: the token ids (the host's, or the previous
//! step's device draws for tokens still pending under async scheduling), the embedding gather,
//! then per layer RMSNorm
//! (fused with the residual add), the fused QKV product (cuBLAS), bias / per-head q/k norm
//! when the model has them, rotary, the KV cache write, attention (the paged decode kernel
//! for the leading sequences with one new token, prefill attention over the paged cache for the
//! others, which covers chunked prefill and prefix hits), the output product, the gated MLP; then the final
//! norm, the logits rows gathered, the LM head in f32 and the device sampler.
//!
//! Everything is stream-ordered on one stream, allocation-free and sync-free, so the same code
//! is captured into CUDA graphs for decode. Cost: the products (2 tokens x parameters flops),
//! the attention (reads each sequence's KV once per layer), O(tokens x hidden) elementwise.

use super::inputs::{Sections, StepShape};
use super::phases::Phases;
use super::{RunnerCache, RunnerFloat};
use crate::config::ModelConfig;
use crate::model::ModelWeights;
use vllm_kernels::Result;
use vllm_kernels::args::{
    AddBiasArgs, AttentionVersion, FillTokensArgs, FusedAddRmsNormArgs, GatherRowsArgs,
    HeadRmsNormArgs, PagedAttentionArgs, PagedKvLayout, PrefillAttentionArgs, ReshapeAndCacheArgs,
    RmsNormArgs, RotaryArgs, SampleArgs,
};
use vllm_kernels::cuda::{self as k, Blas, CudaSlice, InputArena};

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

/// Runs the layers over `shape.num_tokens` packed tokens, then the first LM-head chunk
/// (rows `0..min(num_rows, max_rows)`); [`lm_head_chunk`] runs any further chunks. With
/// `phases`, an event marks the end of each op (eager steps only: not while capturing).
#[allow(clippy::too_many_arguments)]
pub fn forward<T: RunnerFloat, C: RunnerCache<T>>(
    blas: &Blas,
    w: &ModelWeights<CudaSlice<T>>,
    cos_sin: &CudaSlice<T>,
    cache: &mut KvCaches<C>,
    b: &mut Buffers<T>,
    arena: &InputArena,
    s: &Sections,
    d: &Dims,
    shape: &StepShape,
    mut phases: Option<&mut Phases>,
) -> Result<()> {
    let stream = blas.stream().clone();
    let st = &*stream;
    let mut mark = |label: &'static str| match phases.as_deref_mut() {
        Some(p) => p.mark(st, label),
        None => Ok(()),
    };
    let t = shape.num_tokens;
    let (h, qw, kvw, qkvw, inter) = (d.hidden, d.q_width(), d.kv_width(), d.qkv_width(), d.inter);
    let host_tokens = arena.view(s.tokens, t)?;
    let token_from = arena.view(s.token_from, t)?;
    let positions = arena.view(s.positions, t)?;
    let slots = arena.view(s.slots, t)?;
    let seq_lens = arena.view(s.seq_lens, shape.num_seqs)?;
    let cu = arena.view(s.cu_query_lens, shape.num_seqs + 1)?;
    let tables = arena.view(s.block_tables, shape.num_seqs * d.max_blocks_per_seq)?;

    k::fill_tokens(
        st,
        &mut b.tokens,
        &host_tokens,
        &b.sampled,
        &token_from,
        &FillTokensArgs::new(t, b.sampled.len()),
    )?;
    k::gather_rows(
        st,
        &mut b.residual,
        &w.embed,
        &b.tokens,
        &GatherRowsArgs::new(t, h, d.vocab),
    )?;
    mark("embed")?;
    let mut rot = RotaryArgs::new(
        t,
        d.heads,
        d.kv_heads,
        d.head_dim,
        d.head_dim,
        d.max_position,
        true,
    );
    rot.query_stride = qkvw;
    rot.key_stride = qkvw;
    let mut cache_args = match cache.fp8_scales {
        Some((ks, vs)) => ReshapeAndCacheArgs::fp8(t, d.layout(), ks, vs),
        None => ReshapeAndCacheArgs::new(t, d.layout()),
    };
    cache_args.key_stride = qkvw;
    cache_args.value_stride = qkvw;
    // The decode kernel takes the leading one-token sequences (all of a decode step),
    // prefill attention the others (its query offsets are absolute token rows, so it
    // reads the tables, offsets and lengths from sequence `nd` on).
    let nd = shape.decode_seqs;
    let mut decode = PagedAttentionArgs::new(
        nd,
        d.heads,
        d.kv_heads,
        d.head_dim,
        d.block_size,
        d.max_blocks_per_seq,
        shape.max_seq_len,
    );
    decode.q_stride = qkvw;
    decode.version = d.decode_version;
    decode.partition_tokens = d.decode_partition;
    decode.sliding_window = d.sliding_window;
    if let Some((ks, vs)) = cache.fp8_scales {
        decode = decode.with_fp8_cache(ks, vs);
    }
    let mut prefill = PrefillAttentionArgs::new(
        shape.num_seqs - nd,
        t,
        d.heads,
        d.kv_heads,
        d.head_dim,
        d.block_size,
        d.max_blocks_per_seq,
        shape.max_query_len,
    );
    prefill.q_stride = qkvw;
    prefill.sliding_window = d.sliding_window;
    if let Some((ks, vs)) = cache.fp8_scales {
        prefill = prefill.with_fp8_cache(ks, vs);
    }

    for (l, lw) in w.layers.iter().enumerate() {
        if l == 0 {
            k::rms_norm(
                st,
                &mut b.hidden,
                &b.residual,
                &lw.input_norm,
                &RmsNormArgs::new(t, h, d.eps),
            )?;
        } else {
            k::fused_add_rms_norm(
                st,
                &mut b.hidden,
                &mut b.residual,
                &lw.input_norm,
                &FusedAddRmsNormArgs::new(t, h, d.eps),
            )?;
        }
        mark("input_norm")?;
        blas.matmul_bt(&mut b.qkv, qkvw, &b.hidden, &lw.qkv, t, qkvw, h)?;
        mark("qkv_proj")?;
        if let Some(bias) = &lw.qkv_bias {
            let mut a = AddBiasArgs::new(t, qkvw);
            a.stride = qkvw;
            k::add_bias(st, &mut b.qkv, bias, &a)?;
            mark("qkv_bias")?;
        }
        if let (Some(qn), Some(kn)) = (&lw.q_norm, &lw.k_norm) {
            let mut a = HeadRmsNormArgs::new(t, d.heads, d.head_dim, d.eps);
            a.token_stride = qkvw;
            k::head_rms_norm(st, &mut b.qkv, qn, &a)?;
            let mut a = HeadRmsNormArgs::new(t, d.kv_heads, d.head_dim, d.eps);
            a.token_stride = qkvw;
            k::head_rms_norm(st, &mut b.qkv.slice_mut(qw..), kn, &a)?;
            mark("qk_norm")?;
        }
        k::rotary_embedding_qkv(st, &positions, &mut b.qkv, qw, cos_sin, &rot)?;
        mark("rotary")?;
        let key = b.qkv.slice(qw..);
        let value = b.qkv.slice(qw + kvw..);
        k::reshape_and_cache(
            st,
            &key,
            &value,
            &mut cache.k[l],
            &mut cache.v[l],
            &slots,
            &cache_args,
        )?;
        mark("cache_write")?;
        if nd > 0 {
            k::paged_attention(
                &stream,
                &mut b.attn,
                &b.qkv,
                &cache.k[l],
                &cache.v[l],
                &tables.slice(..nd * d.max_blocks_per_seq),
                &seq_lens.slice(..nd),
                None,
                Some(&mut b.attn_workspace),
                &decode,
            )?;
        }
        if nd < shape.num_seqs {
            k::prefill_attention(
                st,
                &mut b.attn,
                &b.qkv,
                &cache.k[l],
                &cache.v[l],
                &tables.slice(nd * d.max_blocks_per_seq..),
                &cu.slice(nd..),
                &seq_lens.slice(nd..),
                &prefill,
            )?;
        }
        mark("attention")?;
        blas.matmul_bt(&mut b.hidden, h, &b.attn, &lw.o_proj, t, h, qw)?;
        mark("o_proj")?;
        k::fused_add_rms_norm(
            st,
            &mut b.hidden,
            &mut b.residual,
            &lw.post_norm,
            &FusedAddRmsNormArgs::new(t, h, d.eps),
        )?;
        mark("post_norm")?;
        blas.matmul_bt(
            &mut b.gate_up,
            2 * inter,
            &b.hidden,
            &lw.gate_up,
            t,
            2 * inter,
            h,
        )?;
        mark("gate_up_proj")?;
        k::silu_and_mul(st, &mut b.act, &b.gate_up, t, inter)?;
        mark("silu_and_mul")?;
        blas.matmul_bt(&mut b.hidden, h, &b.act, &lw.down, t, h, inter)?;
        mark("down_proj")?;
    }
    // hidden = norm(residual + mlp out): the final hidden states of every token.
    k::fused_add_rms_norm(
        st,
        &mut b.hidden,
        &mut b.residual,
        &w.norm,
        &FusedAddRmsNormArgs::new(t, h, d.eps),
    )?;
    mark("final_norm")?;
    lm_head_chunk(blas, w, b, arena, s, d, shape, 0)?;
    mark("lm_head_and_sample")
}

/// Logits (and device samples) of rows `first .. first + max_rows` of the step's logits rows.
#[allow(clippy::too_many_arguments)]
pub fn lm_head_chunk<T: RunnerFloat>(
    blas: &Blas,
    w: &ModelWeights<CudaSlice<T>>,
    b: &mut Buffers<T>,
    arena: &InputArena,
    s: &Sections,
    d: &Dims,
    shape: &StepShape,
    first: usize,
) -> Result<()> {
    let st = &**blas.stream();
    let n = shape.num_rows.saturating_sub(first).min(d.max_rows);
    if n == 0 {
        return Ok(());
    }
    let rows = arena.view(s.rows, first + n)?.slice(first..first + n);
    k::gather_rows(
        st,
        &mut b.last,
        &b.hidden,
        &rows,
        &GatherRowsArgs::new(n, d.hidden, shape.num_tokens),
    )?;
    blas.matmul_bt(
        &mut b.logits,
        d.vocab,
        &b.last,
        w.head(),
        n,
        d.vocab,
        d.hidden,
    )?;
    if shape.any_device_rows {
        let temp = arena
            .view(s.temperature, first + n)?
            .slice(first..first + n);
        let min_p = arena.view(s.min_p, first + n)?.slice(first..first + n);
        let top_k = arena.view(s.top_k, first + n)?.slice(first..first + n);
        let top_p = arena.view(s.top_p, first + n)?.slice(first..first + n);
        let seeds = arena.view(s.seeds, first + n)?.slice(first..first + n);
        k::sample_tokens(
            st,
            &mut b.sampled,
            &b.logits,
            &temp,
            &min_p,
            &top_k,
            &top_p,
            &seeds,
            &SampleArgs::new(n, d.vocab),
        )?;
    }
    Ok(())
}

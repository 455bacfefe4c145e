/*
 * vllm-kernels launcher ABI: the one header shared by the CUDA sources and (through bindgen)
 * the Rust crate vllm-kernels.
 *
 * Rules (see DESIGN.md "Launcher ABI rules"):
 *  - one params struct per op, passed by const pointer; the stream comes last;
 *  - every launcher returns a vllm_kstatus, never aborts, never throws;
 *  - strides are in elements (int64_t); dtypes are an enum;
 *  - the shape of every pointer is written next to it.
 *
 * Paged KV cache layout ("HND"), used by reshape_and_cache, copy_blocks, swap_blocks and the
 * attention kernels:  key_cache, value_cache : [num_blocks, num_kv_heads, block_size, head_size].
 * A (block, kv head) pair is one contiguous block_size x head_size tile, so a decode warp reads
 * whole 16-byte vectors of consecutive tokens and a prefill CTA copies a K/V tile in one burst.
 *
 * This header must stay plain C (no CUDA types): cudaStream_t travels as vllm_stream.
 */
#ifndef VLLM_KERNELS_H
#define VLLM_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status of a launcher. Stable numbers: only ever appended. */
typedef enum vllm_kstatus {
  VLLM_K_OK = 0,
  VLLM_K_INVALID_ARGUMENT = 1, /* a NULL pointer, a negative size, a stride below the row length */
  VLLM_K_UNSUPPORTED_DTYPE = 2,
  VLLM_K_UNSUPPORTED_SHAPE = 3,
  VLLM_K_CUDA_ERROR = 4 /* see vllm_kernels_last_cuda_error() */
} vllm_kstatus;

/* Element type of the tensors of an op. Stable numbers: only ever appended. */
typedef enum vllm_dtype {
  VLLM_DTYPE_F32 = 0,
  VLLM_DTYPE_F16 = 1,
  VLLM_DTYPE_BF16 = 2
} vllm_dtype;

/* Element type of the paged KV cache. Stable numbers: only ever appended.
 * AUTO: the model's dtype (the op's vllm_dtype). FP8_E4M3: OCP e4m3 bytes (bias 7, max 448, no
 * infinities) holding x / scale, one scale per tensor (k_scale for keys, v_scale for values),
 * rounded to nearest even and saturated to +-448. */
typedef enum vllm_cache_dtype {
  VLLM_CACHE_AUTO = 0,
  VLLM_CACHE_FP8_E4M3 = 1
} vllm_cache_dtype;

/* Activation of act_and_mul. */
typedef enum vllm_activation {
  VLLM_ACT_SILU = 0,
  VLLM_ACT_GELU_ERF = 1,
  VLLM_ACT_GELU_TANH = 2
} vllm_activation;

/* A cudaStream_t (the same handle as a driver-API CUstream). NULL is the legacy default stream. */
typedef void *vllm_stream;

/* The cudaError_t of the last launcher on this host thread that returned VLLM_K_CUDA_ERROR. */
int32_t vllm_kernels_last_cuda_error(void);
/* cudaGetErrorString of a cudaError_t; a static string, never NULL. */
const char *vllm_kernels_cuda_error_string(int32_t code);

/* ---------------------------------------------------------------- layernorm/rms_norm.cu */

/* out = (x / sqrt(mean(x^2) + eps)) rounded to dtype, times weight. */
typedef struct vllm_rms_norm_params {
  void *out;           /* [num_tokens, hidden_size], row stride out_stride */
  const void *input;   /* [num_tokens, hidden_size], row stride input_stride */
  const void *weight;  /* [hidden_size] */
  int64_t num_tokens;
  int64_t hidden_size;
  int64_t input_stride; /* elements between rows; >= hidden_size */
  int64_t out_stride;   /* elements between rows; >= hidden_size */
  float epsilon;
  vllm_dtype dtype;
} vllm_rms_norm_params;

vllm_kstatus vllm_rms_norm(const vllm_rms_norm_params *p, vllm_stream stream);

/* In place: residual = input + residual (rounded to dtype); input = rms_norm(residual) * weight. */
typedef struct vllm_fused_add_rms_norm_params {
  void *input;         /* [num_tokens, hidden_size], row stride input_stride; in: x, out: normed */
  void *residual;      /* [num_tokens, hidden_size], contiguous; in: r, out: x + r */
  const void *weight;  /* [hidden_size] */
  int64_t num_tokens;
  int64_t hidden_size;
  int64_t input_stride;
  float epsilon;
  vllm_dtype dtype;
} vllm_fused_add_rms_norm_params;

vllm_kstatus vllm_fused_add_rms_norm(const vllm_fused_add_rms_norm_params *p, vllm_stream stream);

/* ---------------------------------------------------------- pos_encoding/rotary_embedding.cu */

/* In-place rotary embedding of query and key at arbitrary positions.
 * NeoX style rotates pairs (i, i + rot_dim/2); GPT-J style rotates pairs (2i, 2i+1).
 * Only the first rot_dim elements of each head are rotated. Tokens whose position is outside
 * [0, max_position) are left untouched (the host validates positions). */
typedef struct vllm_rotary_embedding_params {
  const int64_t *positions;   /* [num_tokens] */
  void *query;                /* [num_tokens, num_heads, head_size], token stride query_stride */
  void *key;                  /* [num_tokens, num_kv_heads, head_size], token stride key_stride; may be NULL */
  const void *cos_sin_cache;  /* [max_position, rot_dim]: cos in [0, rot_dim/2), sin in [rot_dim/2, rot_dim) */
  int64_t num_tokens;
  int64_t num_heads;
  int64_t num_kv_heads;
  int64_t head_size;
  int64_t rot_dim;            /* even, <= head_size */
  int64_t query_stride;       /* >= num_heads * head_size */
  int64_t key_stride;         /* >= num_kv_heads * head_size */
  int64_t max_position;
  int32_t is_neox;
  vllm_dtype dtype;           /* of query, key and cos_sin_cache */
} vllm_rotary_embedding_params;

vllm_kstatus vllm_rotary_embedding(const vllm_rotary_embedding_params *p, vllm_stream stream);

/* --------------------------------------------------------------- activation/act_and_mul.cu */

/* out = act(input[:, :d]) * input[:, d:2d], act rounded to dtype before the product. */
typedef struct vllm_act_and_mul_params {
  void *out;          /* [num_tokens, d], contiguous */
  const void *input;  /* [num_tokens, 2 * d], row stride input_stride */
  int64_t num_tokens;
  int64_t d;
  int64_t input_stride; /* >= 2 * d */
  vllm_activation act;
  vllm_dtype dtype;
} vllm_act_and_mul_params;

vllm_kstatus vllm_act_and_mul(const vllm_act_and_mul_params *p, vllm_stream stream);

/* ------------------------------------------------------------------ cache/reshape_and_cache.cu */

/* Scatter new K/V rows into the paged cache: token t goes to block slot_mapping[t] / block_size,
 * offset slot_mapping[t] % block_size. Slots < 0 (padding) and slots >= num_blocks * block_size
 * are skipped. With cache_dtype FP8_E4M3 the caches are bytes and get e4m3(key / k_scale),
 * e4m3(value / v_scale); key and value stay in dtype (f32, f16 or bf16). */
typedef struct vllm_reshape_and_cache_params {
  const void *key;            /* [num_tokens, num_kv_heads, head_size], token stride key_stride */
  const void *value;          /* [num_tokens, num_kv_heads, head_size], token stride value_stride */
  void *key_cache;            /* [num_blocks, num_kv_heads, block_size, head_size] */
  void *value_cache;          /* [num_blocks, num_kv_heads, block_size, head_size] */
  const int64_t *slot_mapping; /* [num_tokens] */
  int64_t num_tokens;
  int64_t num_kv_heads;
  int64_t head_size;
  int64_t block_size;
  int64_t num_blocks;
  int64_t key_stride;         /* >= num_kv_heads * head_size */
  int64_t value_stride;       /* >= num_kv_heads * head_size */
  vllm_dtype dtype;           /* of key and value (and of the caches when cache_dtype is AUTO) */
  vllm_cache_dtype cache_dtype;
  float k_scale;              /* FP8_E4M3: finite, > 0; ignored for AUTO */
  float v_scale;              /* FP8_E4M3: finite, > 0; ignored for AUTO */
} vllm_reshape_and_cache_params;

vllm_kstatus vllm_reshape_and_cache(const vllm_reshape_and_cache_params *p, vllm_stream stream);

/* ---------------------------------------------------------------------- cache/copy_blocks.cu */

/* For every cache c and pair i: caches[c][block_mapping[2i+1]] = caches[c][block_mapping[2i]].
 * Byte copy, dtype-agnostic. Destinations must be distinct and never a source (the wrapper checks). */
typedef struct vllm_copy_blocks_params {
  void *const *caches;          /* device array [num_caches] of pointers to [num_blocks, block_bytes] */
  const int64_t *block_mapping; /* device [num_pairs, 2] of (src, dst) block numbers */
  int64_t num_caches;
  int64_t num_pairs;
  int64_t block_bytes;          /* bytes of one block of one cache */
} vllm_copy_blocks_params;

vllm_kstatus vllm_copy_blocks(const vllm_copy_blocks_params *p, vllm_stream stream);

/* ---------------------------------------------------------------------- cache/swap_blocks.cu */

/* dst[block_mapping[2i+1]] = src[block_mapping[2i]] for every pair, one cudaMemcpyAsync each.
 * src and dst are device memory or pinned host memory (unified addressing decides the direction). */
typedef struct vllm_swap_blocks_params {
  const void *src;              /* [src_num_blocks, block_bytes] */
  void *dst;                    /* [dst_num_blocks, block_bytes] */
  const int64_t *block_mapping; /* HOST array [num_pairs, 2] of (src, dst) block numbers */
  int64_t num_pairs;
  int64_t block_bytes;
  int64_t src_num_blocks;
  int64_t dst_num_blocks;
} vllm_swap_blocks_params;

vllm_kstatus vllm_swap_blocks(const vllm_swap_blocks_params *p, vllm_stream stream);

/* -------------------------------------------------------------- attention/paged_attention*.cu */

/* Decode attention: one query token per sequence over its paged K/V (HND layout above), all
 * query heads of a KV head in one CTA (GQA/MQA read K/V once per group).
 * v1 (workspace == NULL): one CTA per (sequence, KV head, group of query heads).
 * v2 (workspace != NULL): the context is split into max_partitions partitions of
 *     partition_size tokens run in parallel, then merged by a second kernel (log-sum-exp).
 * Supported: f16 and bf16; head_size 64, 80, 96, 112, 128, 256; block_size 16, 32.
 * cache_dtype FP8_E4M3 (caches of e4m3 bytes, dequantized on load): head_size 128 and 256. */
typedef struct vllm_paged_attention_params {
  void *out;                    /* [num_seqs, num_heads, head_size] */
  const void *query;            /* [num_seqs, num_heads, head_size], sequence stride q_stride */
  const void *key_cache;        /* [num_blocks, num_kv_heads, block_size, head_size] */
  const void *value_cache;      /* [num_blocks, num_kv_heads, block_size, head_size] */
  const int32_t *block_tables;  /* [num_seqs, max_blocks_per_seq] */
  const int32_t *seq_lens;      /* [num_seqs], each in 1 .. max_blocks_per_seq * block_size */
  const float *alibi_slopes;    /* [num_heads], or NULL */
  float *workspace;             /* v2: vllm_paged_attention_workspace_floats() floats; NULL: v1 */
  int64_t num_seqs;
  int64_t num_heads;
  int64_t num_kv_heads;         /* divides num_heads */
  int64_t head_size;
  int64_t block_size;
  int64_t max_blocks_per_seq;
  int64_t q_stride;             /* >= num_heads * head_size */
  int64_t max_partitions;       /* v2: >= ceil(max seq_len / partition_size) */
  int64_t partition_size;       /* v2: a multiple of block_size */
  int32_t sliding_window;       /* attend to the last sliding_window tokens only; 0: all */
  float scale;                  /* softmax scale, usually 1 / sqrt(head_size) */
  vllm_dtype dtype;             /* of query and out (and of the caches when cache_dtype is AUTO) */
  vllm_cache_dtype cache_dtype;
  float k_scale;                /* FP8_E4M3: key = e4m3 value * k_scale; ignored for AUTO */
  float v_scale;                /* FP8_E4M3: value = e4m3 value * v_scale; ignored for AUTO */
} vllm_paged_attention_params;

vllm_kstatus vllm_paged_attention(const vllm_paged_attention_params *p, vllm_stream stream);

/* Floats of workspace v2 needs: num_seqs * num_heads * max_partitions * (head_size + 2). */
int64_t vllm_paged_attention_workspace_floats(int64_t num_seqs, int64_t num_heads,
                                              int64_t head_size, int64_t max_partitions);

/* ----------------------------------------------------------- attention/prefill_attention*.cu */

/* Prefill attention over the paged KV cache (chunked prefill, prefix caching): the new query
 * tokens of each sequence attend causally to the sequence's whole context in the cache, i.e. its
 * cached prefix and the new tokens themselves, whose K/V reshape_and_cache must have written
 * first. Query row i of sequence s (global row cu_query_lens[s] + i) sits at position
 * seq_lens[s] - q_len + i and sees the keys at positions <= its own (and > position -
 * sliding_window when sliding_window > 0).
 * Supported: f16 and bf16; head_size 64, 80, 96, 112, 128, 256; block_size 16, 32; caches of the
 * model dtype, or with cache_dtype FP8_E4M3 (e4m3 bytes, dequantized on load) head_size 128 and
 * 256. */
typedef struct vllm_prefill_attention_params {
  void *out;                    /* [num_tokens, num_heads, head_size] */
  const void *query;            /* [num_tokens, num_heads, head_size], token stride q_stride */
  const void *key_cache;        /* [num_blocks, num_kv_heads, block_size, head_size] */
  const void *value_cache;      /* [num_blocks, num_kv_heads, block_size, head_size] */
  const int32_t *block_tables;  /* [num_seqs, max_blocks_per_seq] */
  const int32_t *cu_query_lens; /* [num_seqs + 1], 0 = cu[0] <= cu[1] <= ... = num_tokens */
  const int32_t *seq_lens;      /* [num_seqs], seq_lens[s] >= cu[s + 1] - cu[s] */
  int64_t num_seqs;
  int64_t num_tokens;
  int64_t num_heads;
  int64_t num_kv_heads;         /* divides num_heads */
  int64_t head_size;
  int64_t block_size;
  int64_t max_blocks_per_seq;
  int64_t q_stride;             /* >= num_heads * head_size */
  int64_t max_query_len;        /* >= every cu[s + 1] - cu[s] */
  int32_t sliding_window;       /* 0: none */
  float scale;                  /* softmax scale, finite and > 0 */
  vllm_dtype dtype;
  int32_t split_p;              /* 0: the softmax weights P rounded once to the dtype before P.V
                                   (FlashAttention's choice; error <= ~2^-9 max|V| for bf16);
                                   1: P as hi + lo halves (two P.V MMAs, ~16-bit weights, ~25%
                                   slower) */
  vllm_cache_dtype cache_dtype;  /* AUTO: caches of dtype; FP8_E4M3: e4m3 bytes */
  float k_scale;                 /* FP8_E4M3: key = e4m3 value * k_scale; ignored for AUTO */
  float v_scale;                 /* FP8_E4M3: value = e4m3 value * v_scale; ignored for AUTO */
} vllm_prefill_attention_params;

vllm_kstatus vllm_prefill_attention(const vllm_prefill_attention_params *p, vllm_stream stream);

/* ----------------------------------------------------------------------- rows/gather_rows.cu */

/* out[r, :] = table[ids[r], :] (embedding lookup; picking the rows whose logits are needed).
 * ids are not checked on the host: an id outside [0, table_rows) writes a row of zeros. */
typedef struct vllm_gather_rows_params {
  void *out;           /* [num_rows, row_len], row stride out_stride */
  const void *table;   /* [table_rows, row_len], row stride table_stride */
  const int32_t *ids;  /* [num_rows] */
  int64_t num_rows;
  int64_t row_len;
  int64_t table_rows;
  int64_t table_stride; /* >= row_len */
  int64_t out_stride;   /* >= row_len */
  vllm_dtype dtype;
} vllm_gather_rows_params;

vllm_kstatus vllm_gather_rows(const vllm_gather_rows_params *p, vllm_stream stream);

/* -------------------------------------------------------------------------- rows/add_bias.cu */

/* In place: x[r, c] = x[r, c] + bias[c], the sum computed in f32 and rounded once to dtype. */
typedef struct vllm_add_bias_params {
  void *x;             /* [num_rows, row_len], row stride stride */
  const void *bias;    /* [row_len] */
  int64_t num_rows;
  int64_t row_len;
  int64_t stride;      /* >= row_len */
  vllm_dtype dtype;
} vllm_add_bias_params;

vllm_kstatus vllm_add_bias(const vllm_add_bias_params *p, vllm_stream stream);

/* -------------------------------------------------------------------- layernorm/head_rms_norm.cu */

/* In place, each head vector v of each token (Qwen3's q_norm / k_norm):
 * v = (v / sqrt(mean(v^2) + eps)) rounded to dtype, times weight (the rms_norm convention). */
typedef struct vllm_head_rms_norm_params {
  void *x;             /* [num_tokens, num_heads, head_size], token stride token_stride */
  const void *weight;  /* [head_size] */
  int64_t num_tokens;
  int64_t num_heads;
  int64_t head_size;
  int64_t token_stride; /* >= num_heads * head_size */
  float epsilon;
  vllm_dtype dtype;
} vllm_head_rms_norm_params;

vllm_kstatus vllm_head_rms_norm(const vllm_head_rms_norm_params *p, vllm_stream stream);

/* -------------------------------------------------------------------- sampling/sample_tokens.cu */

/* One token per row of f32 logits. temperature[r] > 0: Gumbel-max sampling from
 * softmax(logits / T) restricted by min-p (token i allowed when min_p[r] <= 0 or
 * logits[i] / T >= max_j logits[j] / T + ln(min(min_p[r], 1))): the allowed i maximising
 * logits[i] * (1 / T) + g_i, g_i = -ln(-ln(u_i)), u_i in (0, 1) from a splitmix64 hash of
 * (seeds[r], i), after top-k then top-p (when given) keep only the best tokens in the order
 * (score descending, index ascending), as the CPU sampler does. Otherwise (T <= 0 or NaN): greedy argmax. Ties go to the lowest index; NaN
 * scores never win; a row whose scores are all NaN gives token 0. No allocation, no host sync
 * (CUDA-graph capturable). */
typedef struct vllm_sample_tokens_params {
  int32_t *out;              /* [num_rows] */
  const float *logits;       /* [num_rows, vocab], row stride logits_stride */
  const float *temperature;  /* [num_rows] */
  const float *min_p;        /* [num_rows] */
  const int32_t *top_k;      /* [num_rows]: 0 < k < vocab keeps the k best; NULL: none */
  const float *top_p;        /* [num_rows]: 0 < p < 1 keeps the nucleus; NULL: none */
  const uint64_t *seeds;     /* [num_rows] */
  int64_t num_rows;
  int64_t vocab;             /* 1 .. INT32_MAX */
  int64_t logits_stride;     /* >= vocab */
} vllm_sample_tokens_params;

vllm_kstatus vllm_sample_tokens(const vllm_sample_tokens_params *p, vllm_stream stream);

/* ---------------------------------------------------------------------- sampling/fill_tokens.cu */

/* out[i] = sampled[from[i]] when 0 <= from[i] < num_sampled, else tokens[i], for i < n: a
 * step's input token ids, some of them drawn on the device by the previous step (async
 * scheduling), assembled without a trip through the host. from is read on the device; -1 (or
 * any value out of range) keeps the host's id. No allocation, no host sync (graph-capturable). */
typedef struct vllm_fill_tokens_params {
  int32_t *out;            /* [n]; may not alias tokens */
  const int32_t *tokens;   /* [n]: the host's ids */
  const int32_t *sampled;  /* [num_sampled]: the previous step's draws */
  const int32_t *from;     /* [n]: index into sampled, or -1 */
  int64_t n;
  int64_t num_sampled;
} vllm_fill_tokens_params;

vllm_kstatus vllm_fill_tokens(const vllm_fill_tokens_params *p, vllm_stream stream);

/* ------------------------------------------------------------------------ gemm/skinny_gemm.cu */

#define VLLM_SKINNY_GEMM_MAX_M 4
#define VLLM_SKINNY_GEMM_MAX_K 16384

/* y[r, c] = sum_k x[r, k] * w[c, k] for r < m (1..=4), c < n: the decode-time products, one
 * pass over w. f32 accumulation, one rounding to out_dtype (dtype or F32). x and w contiguous
 * and 16-byte aligned, k a multiple of 8 and at most VLLM_SKINNY_GEMM_MAX_K. */
typedef struct vllm_skinny_gemm_params {
  void *y;                /* [m, n], row stride ldy, out_dtype */
  const void *x;          /* [m, k] */
  const void *w;          /* [n, k] */
  int64_t m;
  int64_t n;
  int64_t k;
  int64_t ldy;            /* >= n */
  vllm_dtype dtype;       /* of x and w: F16 or BF16 */
  vllm_dtype out_dtype;   /* dtype or F32 */
  int32_t preload;        /* 1: load the first weight chunk before waiting on the previous kernel */
} vllm_skinny_gemm_params;

vllm_kstatus vllm_skinny_gemm(const vllm_skinny_gemm_params *p, vllm_stream stream);

/* -------------------------------------------------------------------------- gemm/sm90_gemm.cu */

/* y[r, c] = sum_k x[r, k] * w[c, k] for r < m, c < n on Hopper tensor cores (wgmma + TMA,
 * CUTLASS), the weights as the 128-row tile and the rows (tokens) as a tile of tile_n
 * (16, 32, 64 or 128; m may exceed it: ceil(m / tile_n) token tiles), stream-K over
 * the SMs. f32 accumulation, one rounding to dtype. x, w, y and the workspace 16-byte
 * aligned, k, n and ldy multiples of 8. VLLM_K_UNSUPPORTED_SHAPE when the build has no sm_90a CUTLASS kernels or
 * the device is not sm_90 (see vllm_sm90_gemm_available). */
typedef struct vllm_sm90_gemm_params {
  void *y;                 /* [m, n], row stride ldy, dtype */
  const void *x;           /* [m, k] */
  const void *w;           /* [n, k] */
  int64_t m;
  int64_t n;
  int64_t k;
  int64_t ldy;             /* >= n */
  vllm_dtype dtype;        /* F16 or BF16 (x, w and y) */
  int32_t tile_n;
  void *workspace;         /* device scratch (stream-K partial tiles), 16-byte aligned, zeroed by the launch */
  int64_t workspace_bytes; /* >= vllm_sm90_gemm_workspace(); 0 with a NULL workspace */
} vllm_sm90_gemm_params;

/* 1 when this build has the kernels and the current device is sm_90, else 0. */
int32_t vllm_sm90_gemm_available(void);
/* The workspace the launch needs for these arguments (checked as for the launch; the workspace
 * pointer and size are not read). */
vllm_kstatus vllm_sm90_gemm_workspace(const vllm_sm90_gemm_params *p, int64_t *bytes);
vllm_kstatus vllm_sm90_gemm(const vllm_sm90_gemm_params *p, vllm_stream stream);

#ifdef __cplusplus
}
#endif

#endif /* VLLM_KERNELS_H */

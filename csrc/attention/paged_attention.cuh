// Paged decode attention (v1 and v2), shared by the per-dtype .cu files.
//
// A CTA of 4 warps owns one (sequence, KV head, tile of G_TILE query heads of that KV head) and
// one partition of the context (v2; the whole context in v1). Inside it, groups of TG lanes each
// own one token at a time: the group's lanes split the head dimension (E = HS / TG elements
// each, loaded as VEC-element vectors laid out so consecutive lanes read consecutive vectors of
// the token's row), reduce q.k with TG-lane shuffles, and keep their own online softmax state
// (running max m, sum l, accumulator acc) per query head. The 4 * 32 / TG groups walk the tokens
// with that stride, so each warp reads whole adjacent rows of a block. At the end the groups are
// merged with the log-sum-exp rule: across a warp with shuffles, across warps in shared memory.
// Bytes: K and V of the context read once per query-head tile (once per KV head when the group
// fits in a tile); flops: 4 * heads * context * head_size.
#pragma once

#include "../common/launch.cuh"

namespace vllm {
namespace attn {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;

struct Args {
  void *out;
  const void *query;
  const void *key_cache;
  const void *value_cache;
  const int32_t *block_tables;
  const int32_t *seq_lens;
  const float *alibi_slopes;
  float *exp_sums;    // v2 only
  float *max_logits;  // v2 only
  float *tmp_out;     // v2 only
  int num_heads;
  int num_kv_heads;
  int block_size;
  int max_blocks_per_seq;
  int64_t q_stride;
  int max_partitions;
  int partition_size;  // v1: INT32_MAX
  int sliding_window;
  float scale;
  float k_scale;  // FP8 caches: stored key = key / k_scale
  float v_scale;  // FP8 caches: stored value = value / v_scale
};

// Lanes per token and elements per vector load for each head size (see the file comment).
template <int HS> struct Shape;
template <> struct Shape<64> { static constexpr int TG = 16, VEC = 4, GMAX = 8; };
template <> struct Shape<80> { static constexpr int TG = 8, VEC = 2, GMAX = 4; };
template <> struct Shape<96> { static constexpr int TG = 8, VEC = 4, GMAX = 4; };
template <> struct Shape<112> { static constexpr int TG = 8, VEC = 2, GMAX = 4; };
template <> struct Shape<128> { static constexpr int TG = 16, VEC = 8, GMAX = 8; };
template <> struct Shape<256> { static constexpr int TG = 32, VEC = 8, GMAX = 8; };

// What one CTA of either decode kernel owns (grid: x = KV head x tile of its query heads, y =
// sequence, z = partition): a tile of up to g_tile query heads of one KV head and the tokens
// [start, end) of one sequence (its partition, clipped to the sliding window).
struct CtaWork {
  int seq, part, kvh, head0, n_heads, seq_len, start, end;
};

__device__ __forceinline__ CtaWork cta_work(const Args &a, int g_tile) {
  CtaWork w;
  w.seq = blockIdx.y;
  w.part = blockIdx.z;
  const int tiles_per_kv = gridDim.x / a.num_kv_heads;
  w.kvh = blockIdx.x / tiles_per_kv;
  const int group_size = a.num_heads / a.num_kv_heads;
  const int g0 = (blockIdx.x % tiles_per_kv) * g_tile;  // first query head of the tile, in group
  w.head0 = w.kvh * group_size + g0;
  w.n_heads = min(g_tile, group_size - g0);
  w.seq_len = a.seq_lens[w.seq];
  w.start = w.part * a.partition_size;
  w.end = min(w.seq_len, w.start + a.partition_size);
  if (a.sliding_window > 0) w.start = max(w.start, w.seq_len - a.sliding_window);
  return w;
}

// The end of both decode kernels: merges WARPS partial results (running max m in natural-log
// units, sum l, unnormalised output o) of n_heads query heads with the log-sum-exp rule and writes
// the output (v1) or this partition's slot of the v2 workspace. Warp w's values of head g:
// m[w * ml_stride + g], l[w * ml_stride + g], o[w * o_stride + g * HS + d].
template <typename T, int HS, int WARPS>
__device__ __forceinline__ void merge_warps_and_store(const Args &a, int seq, int part, int head0,
                                                      int n_heads, const float *m, const float *l,
                                                      int ml_stride, const float *o,
                                                      int o_stride) {
  for (int i = threadIdx.x; i < n_heads * HS; i += WARPS * 32) {
    const int g = i / HS, d = i % HS;
    float mm = -INFINITY;
#pragma unroll
    for (int w = 0; w < WARPS; ++w) mm = fmaxf(mm, m[w * ml_stride + g]);
    float lsum = 0.0f, acc = 0.0f;
    if (mm != -INFINITY) {
#pragma unroll
      for (int w = 0; w < WARPS; ++w) {
        const float c = __expf(m[w * ml_stride + g] - mm);
        lsum += l[w * ml_stride + g] * c;
        acc += o[w * o_stride + g * HS + d] * c;
      }
    }
    const int h = head0 + g;
    const float res = lsum > 0.0f ? acc / lsum : 0.0f;
    if (a.tmp_out == nullptr) {
      static_cast<T *>(a.out)[((int64_t)seq * a.num_heads + h) * HS + d] = from_f32<T>(res);
    } else {
      const int64_t idx = ((int64_t)seq * a.num_heads + h) * a.max_partitions + part;
      a.tmp_out[idx * HS + d] = res;
      if (d == 0) {
        a.max_logits[idx] = mm;
        a.exp_sums[idx] = lsum;
      }
    }
  }
}

template <typename T, int HS, int G_TILE>
__global__ void __launch_bounds__(kThreads) paged_attention_kernel(Args a) {
  constexpr int TG = Shape<HS>::TG, VEC = Shape<HS>::VEC;
  constexpr int E = HS / TG;       // elements per lane
  constexpr int NV = E / VEC;      // vector loads per lane per row
  constexpr int GROUPS = kThreads / TG;
  static_assert(E % VEC == 0, "head size split");
  pdl_wait_and_trigger();

  const CtaWork wk = cta_work(a, G_TILE);
  const int seq = wk.seq, part = wk.part, kvh = wk.kvh, head0 = wk.head0, n_heads = wk.n_heads;
  const int seq_len = wk.seq_len, start = wk.start, end = wk.end;

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int sub = threadIdx.x % TG;  // lane within the token group

  // This lane's query elements for each head, scaled.
  const T *q_base = static_cast<const T *>(a.query) + seq * a.q_stride;
  float q[G_TILE][E];
#pragma unroll
  for (int g = 0; g < G_TILE; ++g)
#pragma unroll
    for (int j = 0; j < NV; ++j) {
      const int h = head0 + (g < n_heads ? g : 0);
      Vec<T, VEC> v = *reinterpret_cast<const Vec<T, VEC> *>(q_base + h * HS + (j * TG + sub) * VEC);
#pragma unroll
      for (int k = 0; k < VEC; ++k) q[g][j * VEC + k] = to_f32(v.v[k]) * a.scale;
    }
  float slope[G_TILE];
#pragma unroll
  for (int g = 0; g < G_TILE; ++g)
    slope[g] = a.alibi_slopes ? a.alibi_slopes[head0 + (g < n_heads ? g : 0)] : 0.0f;

  float m[G_TILE], l[G_TILE], acc[G_TILE][E];
#pragma unroll
  for (int g = 0; g < G_TILE; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int e = 0; e < E; ++e) acc[g][e] = 0.0f;
  }

  const int32_t *table = a.block_tables + (int64_t)seq * a.max_blocks_per_seq;
  const T *kc = static_cast<const T *>(a.key_cache);
  const T *vc = static_cast<const T *>(a.value_cache);
  // The loop is warp-uniform (every lane runs every iteration) because the q.k reductions
  // shuffle with a full mask; a group past the end of the range computes nothing.
  constexpr int TPW = 32 / TG;  // tokens per warp per step
  const int gw = lane / TG;     // group within the warp
  for (int base = start + warp * TPW; base < end; base += GROUPS) {
    const int t = base + gw;
    const bool valid = t < end;
    Vec<T, VEC> kv[NV], vv[NV];
    if (valid) {
      const int64_t blk = table[t / a.block_size];
      const int64_t row = ((blk * a.num_kv_heads + kvh) * a.block_size + t % a.block_size) * HS;
#pragma unroll
      for (int j = 0; j < NV; ++j) {
        kv[j] = *reinterpret_cast<const Vec<T, VEC> *>(kc + row + (j * TG + sub) * VEC);
        vv[j] = *reinterpret_cast<const Vec<T, VEC> *>(vc + row + (j * TG + sub) * VEC);
      }
    } else {
#pragma unroll
      for (int j = 0; j < NV; ++j)
#pragma unroll
        for (int k = 0; k < VEC; ++k) kv[j].v[k] = vv[j].v[k] = from_f32<T>(0.0f);
    }
#pragma unroll
    for (int g = 0; g < G_TILE; ++g) {
      float s = 0.0f;
#pragma unroll
      for (int j = 0; j < NV; ++j)
#pragma unroll
        for (int k = 0; k < VEC; ++k) s += q[g][j * VEC + k] * to_f32(kv[j].v[k]);
#pragma unroll
      for (int o = TG / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
      if (!valid) continue;
      s += slope[g] * (float)(t - (seq_len - 1));
      const float m_new = fmaxf(m[g], s);
      const float c = __expf(m[g] - m_new);  // 0 on the first token (m = -inf)
      const float pr = __expf(s - m_new);
      l[g] = l[g] * c + pr;
      m[g] = m_new;
#pragma unroll
      for (int j = 0; j < NV; ++j)
#pragma unroll
        for (int k = 0; k < VEC; ++k)
          acc[g][j * VEC + k] = acc[g][j * VEC + k] * c + pr * to_f32(vv[j].v[k]);
    }
  }

  // Merge the groups of a warp: lanes with the same `sub` hold the same elements.
#pragma unroll
  for (int o = TG; o < 32; o <<= 1) {
#pragma unroll
    for (int g = 0; g < G_TILE; ++g) {
      const float m2 = __shfl_xor_sync(0xffffffffu, m[g], o);
      const float l2 = __shfl_xor_sync(0xffffffffu, l[g], o);
      const float mm = fmaxf(m[g], m2);
      const float c1 = mm == -INFINITY ? 0.0f : __expf(m[g] - mm);
      const float c2 = mm == -INFINITY ? 0.0f : __expf(m2 - mm);
      l[g] = l[g] * c1 + l2 * c2;
#pragma unroll
      for (int e = 0; e < E; ++e) {
        const float a2 = __shfl_xor_sync(0xffffffffu, acc[g][e], o);
        acc[g][e] = acc[g][e] * c1 + a2 * c2;
      }
      m[g] = mm;
    }
  }

  // Merge the warps in shared memory.
  __shared__ float s_m[kWarps][G_TILE], s_l[kWarps][G_TILE];
  __shared__ float s_acc[kWarps][G_TILE][HS];
  if (lane < TG) {
#pragma unroll
    for (int g = 0; g < G_TILE; ++g) {
      if (lane == 0) {
        s_m[warp][g] = m[g];
        s_l[warp][g] = l[g];
      }
#pragma unroll
      for (int j = 0; j < NV; ++j)
#pragma unroll
        for (int k = 0; k < VEC; ++k) s_acc[warp][g][(j * TG + sub) * VEC + k] = acc[g][j * VEC + k];
    }
  }
  __syncthreads();
  merge_warps_and_store<T, HS, kWarps>(a, seq, part, head0, n_heads, &s_m[0][0], &s_l[0][0], G_TILE,
                                       &s_acc[0][0][0], G_TILE * HS);
}

// v2 merge: out = sum_p w_p o_p / sum_p w_p with w_p = exp_sum_p * exp(max_p - max).
template <typename T, int HS>
__global__ void __launch_bounds__(kThreads) paged_attention_reduce_kernel(Args a) {
  pdl_wait_and_trigger();
  const int h = blockIdx.x, seq = blockIdx.y;
  const int seq_len = a.seq_lens[seq];
  const int parts = min(a.max_partitions, (seq_len + a.partition_size - 1) / a.partition_size);
  const int64_t base = ((int64_t)seq * a.num_heads + h) * a.max_partitions;
  float mm = -INFINITY;
  for (int p = 0; p < parts; ++p) mm = fmaxf(mm, a.max_logits[base + p]);
  for (int d = threadIdx.x; d < HS; d += kThreads) {
    float wsum = 0.0f, o = 0.0f;
    if (mm != -INFINITY) {
      for (int p = 0; p < parts; ++p) {
        const float w = a.exp_sums[base + p] * __expf(a.max_logits[base + p] - mm);
        wsum += w;
        o += w * a.tmp_out[(base + p) * HS + d];
      }
    }
    static_cast<T *>(a.out)[((int64_t)seq * a.num_heads + h) * HS + d] =
        from_f32<T>(wsum > 0.0f ? o / wsum : 0.0f);
  }
}

template <typename T, int HS, int G_TILE>
void launch_tile(const Args &a, int num_seqs, int group_size, int parts, cudaStream_t stream) {
  const int tiles = (group_size + G_TILE - 1) / G_TILE;
  const dim3 grid(a.num_kv_heads * tiles, num_seqs, parts);
  launch_pdl(paged_attention_kernel<T, HS, G_TILE>, grid, dim3(kThreads), stream, a);
  if (a.tmp_out != nullptr)
    launch_pdl(paged_attention_reduce_kernel<T, HS>, dim3(a.num_heads, num_seqs), dim3(kThreads),
               stream, a);
}

}  // namespace attn
}  // namespace vllm

// sample_tokens: one token per row of f32 logits, greedy or Gumbel-max with temperature and
// min-p, seeded per row. Exact in distribution (up to the 24-bit uniforms) and reproducible.
//
// Gumbel-max: for g_i i.i.d. standard Gumbel, argmax_i (s_i + g_i) is distributed as
// softmax(s), so sampling needs no normalisation, no sort and no scratch memory. Here
// s_i = logits[i] * (1 / T) and g_i = -ln(-ln(u_i)) with u_i = k / 2^24, k the top 24 bits of
// splitmix64's output for (seed, i) (k = 0 taken as 2^-25): u_i is never 0 or 1, so g_i lies in
// [-2.9, 16.7]. The hash: key = mix(seed + G), bits_i = mix(key + (i + 1) G), G the golden-ratio
// increment, i.e. output i + 1 of a splitmix64 stream started at mix(seed): counter-based, so
// any element is computed on its own.
// min-p (min_p > 0): token i is allowed when s_i >= max_j s_j + ln(min(min_p, 1)), i.e.
// p_i >= min_p * p_max on the tempered distribution; the row's max is a first pass.
// T <= 0 (or NaN): greedy argmax of the logits. Ties go to the lowest index; NaN never wins; a
// row of NaN gives token 0.
//
// Products and sums of the scores are rounded one by one (__fmul_rn / __fadd_rn, no FMA
// contraction) so the CPU reference computes the same f32 values.
// One CTA of 512 threads per row, 16-byte loads when aligned, a block reduction of
// (score, index) pairs. Cost: the row is read once (twice with min-p); per element a 64-bit
// hash and two logs, skipped for elements that cannot beat the best score the block has seen so
// far (s_i + 17 < best: exact, since g_i <= 16.7; the block's best lives in shared memory,
// raised by atomics), so on real logits, where a few tokens stand far above the bulk, most of
// the row costs only its load. No allocation, no host sync: capturable in a CUDA graph.
#include <math_constants.h>

#include "../common/launch.cuh"

namespace vllm {
namespace {

constexpr int kThreads = 512;
constexpr int kUnroll = 2;
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;
// An upper bound of every g_i (the largest is -ln(-ln(1 - 2^-24)) = 16.64).
constexpr float kGumbelMax = 17.0f;

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

__device__ __forceinline__ float gumbel(uint64_t key, int64_t i) {
  const uint64_t z = mix64(key + static_cast<uint64_t>(i + 1) * kGolden);
  const uint32_t k = static_cast<uint32_t>(z >> 40);
  const float u = k != 0 ? static_cast<float>(k) * 0x1p-24f : 0x1p-25f;
  const float e = -logf(u);  // accurate near u = 1, where the winners are
  return -logf(e);
}

struct Best {
  float score;
  int idx;
};

// *addr = max(*addr, v) for floats that are not NaN: non-negative floats order like their
// int bits, negative ones reversed like their unsigned bits.
__device__ __forceinline__ void atomic_max(float *addr, float v) {
  if (v >= 0.0f) {
    atomicMax(reinterpret_cast<int *>(addr), __float_as_int(v));
  } else {
    atomicMin(reinterpret_cast<unsigned *>(addr), __float_as_uint(v));
  }
}

// b beats a: a higher score, or the same score at a lower index.
__device__ __forceinline__ bool beats(float bs, int bi, float as, int ai) {
  return bs > as || (bs == as && bi < ai);
}

__device__ __forceinline__ Best block_argmax(Best b) {
  __shared__ float s_score[32];
  __shared__ int s_idx[32];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float os = __shfl_xor_sync(0xffffffffu, b.score, o);
    const int oi = __shfl_xor_sync(0xffffffffu, b.idx, o);
    if (beats(os, oi, b.score, b.idx)) b = {os, oi};
  }
  if (lane == 0) {
    s_score[warp] = b.score;
    s_idx[warp] = b.idx;
  }
  __syncthreads();
  if (warp == 0) {
    b = lane < (blockDim.x >> 5) ? Best{s_score[lane], s_idx[lane]} : Best{-CUDART_INF_F, INT32_MAX};
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float os = __shfl_xor_sync(0xffffffffu, b.score, o);
      const int oi = __shfl_xor_sync(0xffffffffu, b.idx, o);
      if (beats(os, oi, b.score, b.idx)) b = {os, oi};
    }
  }
  return b;  // valid in thread 0
}

__device__ __forceinline__ float block_max(float v) {
  __shared__ float partial[32];
  __shared__ float total;
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < (blockDim.x >> 5) ? partial[lane] : -CUDART_INF_F;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (lane == 0) total = v;
  }
  __syncthreads();
  return total;
}

// Calls visit(index, value) for every element of the row this thread owns, in increasing index
// order, kUnroll vectors loaded before any is visited.
template <int N, bool STREAM, typename F>
__device__ __forceinline__ void for_each(const float *row, int nvec, F &&visit) {
  using V = Vec<float, N>;
  const V *x = reinterpret_cast<const V *>(row);
  for (int base = threadIdx.x; base < nvec; base += kUnroll * blockDim.x) {
    V buf[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = base + u * blockDim.x;
      if (i < nvec) buf[u] = STREAM ? load_stream(x + i) : x[i];
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = base + u * blockDim.x;
      if (i < nvec) {
#pragma unroll
        for (int j = 0; j < N; ++j) visit(i * N + j, buf[u].v[j]);
      }
    }
  }
}

template <int N>
__global__ void __launch_bounds__(kThreads)
    sample_tokens_kernel(int32_t *__restrict__ out, const float *__restrict__ logits,
                         const float *__restrict__ temperature, const float *__restrict__ min_p,
                         const uint64_t *__restrict__ seeds, int vocab, int64_t stride) {
  pdl_wait_and_trigger();
  const int64_t r = blockIdx.x;
  const float *row = logits + r * stride;
  const int nvec = vocab / N;
  const float t = temperature[r];
  Best b{-CUDART_INF_F, INT32_MAX};
  if (!(t > 0.0f)) {
    for_each<N, true>(row, nvec, [&](int i, float x) {
      if (x == x && beats(x, i, b.score, b.idx)) b = {x, i};
    });
  } else {
    const float inv_t = 1.0f / t;
    const float mp = min_p[r];
    float thr = -CUDART_INF_F;
    if (mp > 0.0f) {
      float m = -CUDART_INF_F;
      for_each<N, false>(row, nvec, [&](int, float x) { m = fmaxf(m, x); });
      thr = __fadd_rn(__fmul_rn(block_max(m), inv_t), fminf(logf(mp), 0.0f));
    }
    const uint64_t key = mix64(seeds[r] + kGolden);
    // The best score any thread of the block has reached so far: a lower bound of the row's
    // final best, so an element with s + kGumbelMax below it cannot win and needs no hash.
    __shared__ float block_best;
    if (threadIdx.x == 0) block_best = -CUDART_INF_F;
    __syncthreads();
    float bound = -CUDART_INF_F;
    for_each<N, true>(row, nvec, [&](int i, float x) {
      const float s = __fmul_rn(x, inv_t);
      if (!(s >= thr) || s + kGumbelMax < bound) return;  // NaN, below min-p, or cannot win
      bound = fmaxf(bound, *static_cast<volatile float *>(&block_best));
      if (s + kGumbelMax < bound) return;
      const float score = __fadd_rn(s, gumbel(key, i));
      if (beats(score, i, b.score, b.idx)) {
        b = {score, i};
        if (score > bound) {
          bound = score;
          atomic_max(&block_best, score);
        }
      }
    });
  }
  b = block_argmax(b);
  if (threadIdx.x == 0) out[r] = b.idx == INT32_MAX ? 0 : b.idx;
}

template <int N>
vllm_kstatus launch(const vllm_sample_tokens_params *p, cudaStream_t stream) {
  launch_pdl(sample_tokens_kernel<N>, dim3(static_cast<unsigned>(p->num_rows)), dim3(kThreads),
             stream, p->out, p->logits, p->temperature, p->min_p, p->seeds,
             static_cast<int>(p->vocab), p->logits_stride);
  return launch_status();
}

}  // namespace
}  // namespace vllm

extern "C" vllm_kstatus vllm_sample_tokens(const vllm_sample_tokens_params *p,
                                           vllm_stream stream) {
  VLLM_CHECK_ARG(p != nullptr);
  VLLM_CHECK_ARG(p->num_rows >= 0 && p->num_rows <= INT32_MAX);
  VLLM_CHECK_ARG(p->vocab > 0 && p->vocab < INT32_MAX);
  VLLM_CHECK_ARG(p->logits_stride >= p->vocab);
  if (p->num_rows == 0) return VLLM_K_OK;
  VLLM_CHECK_ARG(p->out && p->logits && p->temperature && p->min_p && p->seeds);
  auto s = static_cast<cudaStream_t>(stream);
  const bool vec = vllm::aligned16(p->logits) && p->vocab % 4 == 0 && p->logits_stride % 4 == 0;
  return vec ? vllm::launch<4>(p, s) : vllm::launch<1>(p, s);
}

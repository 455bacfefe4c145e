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
// top-k (0 < top_k < vocab) and top-p (0 < top_p < 1), applied after min-p in that order as the
// CPU sampler does: the allowed tokens are those at or above a threshold in the order (score
// descending, index ascending), found by radix selection (below); the draw is then Gumbel-max
// over them, the same distribution as renormalising and sampling. Tokens whose probability
// relative to the best underflows (s_i < max + kMinRel) are never drawn on this path.
// T <= 0 (or NaN): greedy argmax of the logits. Ties go to the lowest index; NaN never wins; a
// row of NaN gives token 0.
//
// Products and sums of the scores are rounded one by one (__fmul_rn / __fadd_rn, no FMA
// contraction) so the CPU reference computes the same f32 values.
// One CTA of 512 threads per row, 16-byte loads when aligned, a block reduction of
// (score, index) pairs. Cost: the row is read once (twice with min-p; with top-k three more
// times, top-p four more, three more for either when ties straddle its threshold); per element a 64-bit
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
// With top-k / top-p: tokens with s_i - max < kMinRel (relative probability < 1.4e-45, an f32
// underflow) are not candidates, as on the CPU, where their weight rounds to 0.
constexpr float kMinRel = -103.0f;
// Top-p histograms leave out tokens that cannot be the threshold token: if the token where the
// mass from the top first reaches p Z weighed w, every token after it weighs <= w and together
// they weigh > (1 - p) Z, so w > (1 - p) Z / V (V tokens). Tokens under half that bound are
// skipped (the histograms still hold >= p Z, so the crossing is found); on real logits this
// is most of the vocabulary, and with it most of the contended atomics. The total Z counts all.
// Never above kMassFloor (weight < 1e-26 each).
constexpr float kMassFloor = -60.0f;
// Radix selection: 11-bit digits (11 + 11 + 10 bits of a 32-bit key).
constexpr int kBuckets = 1 << 11;

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

// Float -> uint32 with the same order (larger float, larger key); NaN is never passed.
__device__ __forceinline__ uint32_t order_key(float s) {
  const uint32_t u = __float_as_uint(s);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// The order of candidates: score descending, then index ascending.
__device__ __forceinline__ uint64_t rank_key(float s, int i) {
  return (static_cast<uint64_t>(order_key(s)) << 32) | static_cast<uint32_t>(~static_cast<uint32_t>(i));
}

__device__ __forceinline__ double block_sum(double v) {
  __shared__ double partial[32];
  __shared__ double total;
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < (blockDim.x >> 5) ? partial[lane] : 0.0;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) total = v;
  }
  __syncthreads();
  return total;
}

// Histograms of one radix pass, and the pass's pick.
struct Hist {
  uint32_t n[kBuckets];
  double w[kBuckets];
  int digit;
  int found;
  double above;
  double at;
  uint32_t n_at;
};

// The result of a selection: the key K with W(key > K) < target <= W(key >= K), W the summed
// weight of the elements (`above` = W(key > K), `at` = W(key == K), `n_at` their number);
// found = false when W(all) < target.
struct Pick {
  bool found;
  uint32_t key;
  double above;
  double at;
  uint32_t n_at;
};

// Radix selection over the 32-bit keys that `elem(i, x, key, w)` gives the row's elements
// (false: not a candidate), MSB digit first; weights are counts (MASS false) or `w`. Per pass
// the row is read once and each candidate still matching the chosen prefix adds to a shared
// histogram; warp 0 then finds the bucket where the weight from the top reaches the target.
template <int N, bool MASS, typename Elem>
__device__ Pick radix_select(const float *row, int nvec, double target, Elem &&elem, Hist &h) {
  uint32_t prefix = 0, mask = 0;
  double above = 0.0;
  int shift = 32;
  for (int pass = 0; pass < 3; ++pass) {
    const int bits = pass < 2 ? 11 : 10;
    shift -= bits;
    const uint32_t dmask = (1u << bits) - 1;
    for (int b = threadIdx.x; b < kBuckets; b += blockDim.x) {
      h.n[b] = 0;
      if (MASS) h.w[b] = 0.0;
    }
    __syncthreads();
    for_each<N, false>(row, nvec, [&](int i, float x) {
      uint32_t key;
      double w;
      if (!elem(i, x, key, w) || (key & mask) != prefix) return;
      const int d = static_cast<int>((key >> shift) & dmask);
      atomicAdd(&h.n[d], 1u);
      if (MASS) atomicAdd(&h.w[d], w);
    });
    __syncthreads();
    if (threadIdx.x < 32) {
      const int lane = threadIdx.x;
      const int per = (1 << bits) / 32;
      const int lo = (31 - lane) * per;  // lane 0 holds the top chunk
      auto weight = [&](int d) { return MASS ? h.w[d] : static_cast<double>(h.n[d]); };
      double sum = 0.0;
      uint32_t count = 0;
      for (int j = 0; j < per; ++j) {
        sum += weight(lo + j);
        count += h.n[lo + j];
      }
      double incl = sum;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const double v = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += v;
      }
      unsigned hit = __ballot_sync(0xffffffffu, above + incl >= target);
      const unsigned nonempty = __ballot_sync(0xffffffffu, count > 0);
      // After the first pass the target lies inside the chosen prefix; if the re-summed masses
      // round a few ulps short, take the lowest non-empty bucket rather than dropping the cut.
      if (hit == 0 && pass > 0 && nonempty != 0) hit = 1u << (31 - __clz(nonempty));
      if (hit == 0) {
        if (lane == 0) h.found = 0;
      } else if (lane == __ffs(hit) - 1) {
        // Walk this chunk from the top; if rounding keeps the walk from crossing, take the
        // lowest non-empty bucket (never an empty one).
        double acc = above + incl - sum;
        int pick = -1;
        double pick_acc = acc;
        for (int d = lo + per - 1; d >= lo; --d) {
          if (h.n[d] == 0) continue;
          pick = d;
          pick_acc = acc;
          if (acc + weight(d) >= target) break;
          acc += weight(d);
        }
        h.found = pick >= 0;
        h.digit = pick;
        h.above = pick_acc;
        if (pick >= 0) {
          h.at = weight(pick);
          h.n_at = h.n[pick];
        }
      }
    }
    __syncthreads();
    if (!h.found) return Pick{false, 0, 0.0, 0.0, 0};
    prefix |= static_cast<uint32_t>(h.digit) << shift;
    mask |= dmask << shift;
    above = h.above;
    __syncthreads();  // everyone has read h before the next pass clears it
  }
  return Pick{true, prefix, above, h.at, h.n_at};
}

// The lowest rank_key a token may have to be drawn under top-k (k > 0) then top-p (p < 1),
// among the tokens with s >= thr (min-p) and s - ms >= kMinRel, ms the row's largest score.
template <int N>
__device__ uint64_t filter_threshold(const float *row, int nvec, float inv_t, float thr,
                                     float ms, int k, float p, Hist &h) {
  auto cand = [=](float s) { return s >= thr && __fadd_rn(s, -ms) >= kMinRel; };
  uint64_t lowest = 0;
  // Among the candidates whose order key is `key`: the `need` lowest indices.
  auto tie_cut = [&](auto &&in_tie, double need) {
    const Pick ix = radix_select<N, false>(
        row, nvec, need,
        [&](int i, float x, uint32_t &key, double &w) {
          if (!in_tie(i, __fmul_rn(x, inv_t))) return false;
          key = ~static_cast<uint32_t>(i);
          w = 1.0;
          return true;
        },
        h);
    return ix.key;
  };
  if (k > 0) {
    const Pick v = radix_select<N, false>(
        row, nvec, static_cast<double>(k),
        [&](int, float x, uint32_t &key, double &w) {
          const float s = __fmul_rn(x, inv_t);
          if (!cand(s)) return false;
          key = order_key(s);
          w = 1.0;
          return true;
        },
        h);
    if (v.found) {
      const double need = static_cast<double>(k) - v.above;
      uint32_t low = 0;
      if (need < v.n_at) {
        low = tie_cut([&](int, float s) { return cand(s) && order_key(s) == v.key; }, need);
      }
      lowest = (static_cast<uint64_t>(v.key) << 32) | low;
    }
  }
  if (p < 1.0f) {
    const uint64_t after_k = lowest;
    auto allowed = [=](int i, float s) { return cand(s) && rank_key(s, i) >= after_k; };
    double z = 0.0;
    for_each<N, false>(row, nvec, [&](int i, float x) {
      const float s = __fmul_rn(x, inv_t);
      if (allowed(i, s)) z += static_cast<double>(expf(__fadd_rn(s, -ms)));
    });
    const double zsum = block_sum(z);
    const double target = static_cast<double>(p) * zsum;
    const float floor = fmaxf(
        kMassFloor,
        static_cast<float>(log(0.5 * (1.0 - static_cast<double>(p)) * zsum / (nvec * N))));
    const Pick v = radix_select<N, true>(
        row, nvec, target,
        [&](int i, float x, uint32_t &key, double &w) {
          const float s = __fmul_rn(x, inv_t);
          const float rel = __fadd_rn(s, -ms);
          if (!allowed(i, s) || rel < floor) return false;
          key = order_key(s);
          w = static_cast<double>(expf(rel));
          return true;
        },
        h);
    if (v.found) {
      // The tied tokens weigh the same: keep as many, lowest indices first, as it takes.
      const double each = v.at / v.n_at;
      const double need = fmin(fmax(ceil((target - v.above) / each), 1.0), double(v.n_at));
      uint32_t low = 0;
      if (need < v.n_at) {
        low = tie_cut([&](int i, float s) { return allowed(i, s) && order_key(s) == v.key; },
                      need);
      }
      const uint64_t t = (static_cast<uint64_t>(v.key) << 32) | low;
      lowest = t > lowest ? t : lowest;
    }
  }
  return lowest;
}

template <int N>
__global__ void __launch_bounds__(kThreads)
    sample_tokens_kernel(int32_t *__restrict__ out, const float *__restrict__ logits,
                         const float *__restrict__ temperature, const float *__restrict__ min_p,
                         const int32_t *__restrict__ top_k, const float *__restrict__ top_p,
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
    const int k = top_k != nullptr ? top_k[r] : 0;
    const float p = top_p != nullptr ? top_p[r] : 1.0f;
    const bool use_k = k > 0 && k < vocab;
    const bool use_p = p > 0.0f && p < 1.0f;
    bool filter = use_k || use_p;
    float thr = -CUDART_INF_F;
    float ms = -CUDART_INF_F;
    uint64_t lowest = 0;
    if (mp > 0.0f || filter) {
      float m = -CUDART_INF_F;
      for_each<N, false>(row, nvec, [&](int, float x) { m = fmaxf(m, x); });
      ms = __fmul_rn(block_max(m), inv_t);
      if (mp > 0.0f) thr = __fadd_rn(ms, fminf(logf(mp), 0.0f));
    }
    // A score of +inf takes all the probability: the draw is among the +inf tokens (lowest
    // index), which top-k / top-p keep anyway.
    filter = filter && ms < CUDART_INF_F;
    if (filter) {
      __shared__ Hist hist;
      lowest = filter_threshold<N>(row, nvec, inv_t, thr, ms, use_k ? k : 0, use_p ? p : 1.0f,
                                   hist);
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
      if (filter && !(__fadd_rn(s, -ms) >= kMinRel && rank_key(s, i) >= lowest)) return;
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
             stream, p->out, p->logits, p->temperature, p->min_p, p->top_k, p->top_p, p->seeds,
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

// skinny_gemm: y[m, n] = sum_k x[m, k] * w[n, k] for a few rows (1 <= M <= 4): the decode-time
// products, where reading W once from memory is the whole cost (2 n k bytes for 16-bit W).
//
// One warp per output column n at a time (grid-stride over n). The block first copies x
// (M x K, at most 4 x 16384 16-bit values) into shared memory; each lane then streams its share
// of W's row with 16-byte evict-first loads, eight loads in flight per lane (4 KB per warp)
// before it multiplies, so an SM keeps ~64 KB of weights in flight, enough to cover memory
// latency at full bandwidth. With `preload`, each warp loads the first chunk of its first row
// into registers before the PDL wait (weights never depend on the previous kernel). (Prefetching each warp's first row into L2 before the PDL wait was
// measured slower on an H100: qkv 19.5 -> 23.8 us, down 45.3 -> 59.9 us; not kept.) Products
// accumulate in f32, reduce across the warp with shuffles,
// and are rounded once to the output type (T or f32). Bytes moved = 2 n k (+ M k per block
// from L2); flops = 2 M n k.
#include <algorithm>

#include "../common/launch.cuh"

namespace vllm {
namespace {

constexpr int kWarps = 16;
constexpr int kUnroll = 8;

template <typename T> struct Pair;
template <> struct Pair<__half> {
  using P = __half2;
  static __device__ __forceinline__ float2 f2(P v) { return __half22float2(v); }
};
template <> struct Pair<__nv_bfloat16> {
  using P = __nv_bfloat162;
  static __device__ __forceinline__ float2 f2(P v) { return __bfloat1622float2(v); }
};

template <typename T, int M>
__device__ __forceinline__ void dot8(const uint4 &w, const uint4 *xs, int idx, int kv,
                                     float (&acc)[M]) {
  using P = typename Pair<T>::P;
  const P *wp = reinterpret_cast<const P *>(&w);
  float2 wf[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) wf[j] = Pair<T>::f2(wp[j]);
#pragma unroll
  for (int m = 0; m < M; ++m) {
    const uint4 xv = xs[m * kv + idx];
    const P *xp = reinterpret_cast<const P *>(&xv);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float2 xf = Pair<T>::f2(xp[j]);
      acc[m] = fmaf(wf[j].x, xf.x, acc[m]);
      acc[m] = fmaf(wf[j].y, xf.y, acc[m]);
    }
  }
}

template <typename T, typename O, int M, bool PRE>
__global__ void __launch_bounds__(kWarps * 32)
    skinny_gemm_kernel(O *__restrict__ y, const T *__restrict__ x, const T *__restrict__ w,
                       int n, int kv, int64_t ldy) {
  extern __shared__ uint4 xs[];  // [M, kv] vectors of 8 values
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int row0 = blockIdx.x * kWarps + warp;
  // PRE: the weights never depend on an earlier kernel, so the first chunk of the warp's first
  // row is loaded into registers before the PDL wait, overlapping the previous kernel's tail.
  const bool pre = PRE && row0 < n && lane + (kUnroll - 1) * 32 < kv;
  uint4 wpre[kUnroll];
  if (pre) {
    const uint4 *wr = reinterpret_cast<const uint4 *>(w) + static_cast<int64_t>(row0) * kv;
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) wpre[u] = __ldcs(wr + lane + u * 32);
  }
  pdl_wait_and_trigger();
  const uint4 *xg = reinterpret_cast<const uint4 *>(x);
  for (int i = threadIdx.x; i < M * kv; i += blockDim.x) xs[i] = xg[i];
  __syncthreads();
  for (int row = row0; row < n; row += gridDim.x * kWarps) {
    const uint4 *wr = reinterpret_cast<const uint4 *>(w) + static_cast<int64_t>(row) * kv;
    float acc[M];
#pragma unroll
    for (int m = 0; m < M; ++m) acc[m] = 0.f;
    int i = lane;
    if (pre && row == row0) {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) dot8<T, M>(wpre[u], xs, i + u * 32, kv, acc);
      i += kUnroll * 32;
    }
    for (; i + (kUnroll - 1) * 32 < kv; i += kUnroll * 32) {
      uint4 wv[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) wv[u] = __ldcs(wr + i + u * 32);
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) dot8<T, M>(wv[u], xs, i + u * 32, kv, acc);
    }
    for (; i < kv; i += 32) dot8<T, M>(__ldcs(wr + i), xs, i, kv, acc);
#pragma unroll
    for (int m = 0; m < M; ++m) {
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) acc[m] += __shfl_xor_sync(0xffffffffu, acc[m], off);
    }
    if (lane == 0) {
#pragma unroll
      for (int m = 0; m < M; ++m) y[m * ldy + row] = from_f32<O>(acc[m]);
    }
  }
}

template <typename T, typename O, int M, bool PRE>
vllm_kstatus launch(const vllm_skinny_gemm_params *p, cudaStream_t stream) {
  const int kv = static_cast<int>(p->k / 8);
  const size_t smem = static_cast<size_t>(M) * kv * sizeof(uint4);
  auto kernel = skinny_gemm_kernel<T, O, M, PRE>;
  if (smem > 48 * 1024 &&
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(smem)) != cudaSuccess)
    return launch_status();
  int dev = 0, sms = 0, per_sm = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kWarps * 32, smem);
  const int64_t want = (p->n + kWarps - 1) / kWarps;
  const int64_t grid = std::max<int64_t>(1, std::min<int64_t>(want, int64_t(sms) * std::max(per_sm, 1)));
  launch_pdl_smem(kernel, dim3(static_cast<unsigned>(grid)), dim3(kWarps * 32), smem, stream,
                  static_cast<O *>(p->y), static_cast<const T *>(p->x),
                  static_cast<const T *>(p->w), static_cast<int>(p->n), kv, p->ldy);
  return launch_status();
}

template <typename T, typename O, bool PRE>
vllm_kstatus dispatch_m(const vllm_skinny_gemm_params *p, cudaStream_t s) {
  switch (p->m) {
    case 1: return launch<T, O, 1, PRE>(p, s);
    case 2: return launch<T, O, 2, PRE>(p, s);
    case 3: return launch<T, O, 3, PRE>(p, s);
    case 4: return launch<T, O, 4, PRE>(p, s);
    default: return VLLM_K_INVALID_ARGUMENT;
  }
}

template <typename T, typename O>
vllm_kstatus dispatch_pre(const vllm_skinny_gemm_params *p, cudaStream_t s) {
  return p->preload ? dispatch_m<T, O, true>(p, s) : dispatch_m<T, O, false>(p, s);
}

template <typename T>
vllm_kstatus dispatch_out(const vllm_skinny_gemm_params *p, cudaStream_t s) {
  if (p->out_dtype == VLLM_DTYPE_F32) return dispatch_pre<T, float>(p, s);
  if (p->out_dtype == p->dtype) return dispatch_pre<T, T>(p, s);
  return VLLM_K_UNSUPPORTED_DTYPE;
}

}  // namespace
}  // namespace vllm

extern "C" vllm_kstatus vllm_skinny_gemm(const vllm_skinny_gemm_params *p, vllm_stream stream) {
  VLLM_CHECK_ARG(p != nullptr);
  VLLM_CHECK_ARG(p->m >= 1 && p->m <= VLLM_SKINNY_GEMM_MAX_M);
  VLLM_CHECK_ARG(p->n > 0 && p->n <= INT32_MAX && p->k > 0 && p->k % 8 == 0);
  VLLM_CHECK_ARG(p->k <= VLLM_SKINNY_GEMM_MAX_K && p->ldy >= p->n);
  VLLM_CHECK_ARG(p->y && p->x && p->w);
  VLLM_CHECK_ARG(vllm::aligned16(p->x) && vllm::aligned16(p->w));
  auto s = static_cast<cudaStream_t>(stream);
  switch (p->dtype) {
    case VLLM_DTYPE_F16: return vllm::dispatch_out<__half>(p, s);
    case VLLM_DTYPE_BF16: return vllm::dispatch_out<__nv_bfloat16>(p, s);
    default: return VLLM_K_UNSUPPORTED_DTYPE;
  }
}

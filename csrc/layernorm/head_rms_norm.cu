// head_rms_norm: in-place RMSNorm of every head vector of every token (Qwen3's q_norm and
// k_norm), with one weight of head_size shared by all heads.
//
// One warp per (token, head); 8 warps per CTA. A warp reads its head twice (sum of squares,
// then scale; the second read hits L1) as 16-byte vectors when aligned, and writes it once:
// bytes moved = num_tokens * num_heads * head_size * sizeof(T) * 2 (+ the weight, from L2).
// Rounding as rms_norm: (x * inv_rms) rounded to T, times the weight, rounded to T.
#include "../common/launch.cuh"
#include "../common/reduce.cuh"

namespace vllm {
namespace {

constexpr int kWarps = 8;

template <typename T, int N>
__global__ void __launch_bounds__(kWarps * 32)
    head_rms_norm_kernel(T *x, const T *__restrict__ weight, int64_t total_heads, int num_heads,
                         int head_size, int64_t token_stride, float eps) {
  using V = Vec<T, N>;
  pdl_wait_and_trigger();
  const int64_t head = blockIdx.x * (int64_t)kWarps + (threadIdx.x >> 5);
  if (head >= total_heads) return;
  const int lane = threadIdx.x & 31;
  const int64_t t = head / num_heads;
  const int h = static_cast<int>(head - t * num_heads);
  V *v = reinterpret_cast<V *>(x + t * token_stride + (int64_t)h * head_size);
  const V *w = reinterpret_cast<const V *>(weight);
  const int nvec = head_size / N;
  float ss = 0.0f;
  for (int i = lane; i < nvec; i += 32) {
    const V a = v[i];
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const float f = to_f32(a.v[j]);
      ss += f * f;
    }
  }
  const float inv = rsqrtf(warp_sum(ss) / head_size + eps);
  for (int i = lane; i < nvec; i += 32) {
    const V a = v[i];
    const V wv = w[i];
    V o;
#pragma unroll
    for (int j = 0; j < N; ++j)
      o.v[j] = from_f32<T>(round_to<T>(to_f32(a.v[j]) * inv) * to_f32(wv.v[j]));
    v[i] = o;
  }
}

template <typename T, int N>
vllm_kstatus launch(const vllm_head_rms_norm_params *p, cudaStream_t stream) {
  const int64_t total = p->num_tokens * p->num_heads;
  const int64_t blocks = (total + kWarps - 1) / kWarps;
  launch_pdl(head_rms_norm_kernel<T, N>, dim3(static_cast<unsigned>(blocks)), dim3(kWarps * 32),
             stream, static_cast<T *>(p->x), static_cast<const T *>(p->weight), total,
             static_cast<int>(p->num_heads), static_cast<int>(p->head_size), p->token_stride,
             p->epsilon);
  return launch_status();
}

template <typename T>
vllm_kstatus dispatch(const vllm_head_rms_norm_params *p, cudaStream_t stream) {
  constexpr int N = 16 / sizeof(T);
  const bool vec = aligned16(p->x) && aligned16(p->weight) && p->head_size % N == 0 &&
                   p->token_stride % N == 0;
  return vec ? launch<T, N>(p, stream) : launch<T, 1>(p, stream);
}

}  // namespace
}  // namespace vllm

extern "C" vllm_kstatus vllm_head_rms_norm(const vllm_head_rms_norm_params *p,
                                           vllm_stream stream) {
  VLLM_CHECK_ARG(p != nullptr);
  VLLM_CHECK_ARG(p->num_tokens >= 0 && p->num_heads > 0 && p->num_heads <= INT32_MAX);
  VLLM_CHECK_ARG(p->head_size > 0 && p->head_size <= (1 << 20));
  VLLM_CHECK_ARG(p->token_stride >= p->num_heads * p->head_size);
  VLLM_CHECK_ARG(p->num_tokens <= INT32_MAX / p->num_heads);
  if (p->num_tokens == 0) return VLLM_K_OK;
  VLLM_CHECK_ARG(p->x && p->weight);
  auto s = static_cast<cudaStream_t>(stream);
  VLLM_DISPATCH_FLOAT(p->dtype, T, return vllm::dispatch<T>(p, s));
  return VLLM_K_UNSUPPORTED_DTYPE;
}

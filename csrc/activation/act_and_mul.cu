// Gated activations: out = act(x[:, :d]) * x[:, d:] for SiLU, GELU (erf) and GELU (tanh).
//
// Grid (tokens, row chunks); each thread handles one 16-byte vector of the gate and the matching
// vector of the up projection. Bytes moved: rows * d * sizeof(T) * 3 (two halves read, one
// written). act(x) is rounded to T before the product, as a T model computes it.
#include "../common/launch.cuh"

namespace vllm {
namespace {

template <vllm_activation ACT> __device__ __forceinline__ float act(float x) {
  if constexpr (ACT == VLLM_ACT_SILU) {
    return x / (1.0f + __expf(-x));
  } else if constexpr (ACT == VLLM_ACT_GELU_ERF) {
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
  } else {
    const float k = 0.79788456080286536f;  // sqrt(2 / pi)
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
  }
}

template <typename T, int N, vllm_activation ACT>
__global__ void act_and_mul_kernel(T *__restrict__ out, const T *__restrict__ in, int d,
                                   int64_t in_stride) {
  using V = Vec<T, N>;
  const int64_t row = blockIdx.x;
  const int i = blockIdx.y * blockDim.x + threadIdx.x;
  if (i >= d / N) return;
  const V *gate = reinterpret_cast<const V *>(in + row * in_stride);
  const V *up = reinterpret_cast<const V *>(in + row * in_stride + d);
  V g = gate[i], u = up[i], o;
#pragma unroll
  for (int j = 0; j < N; ++j)
    o.v[j] = from_f32<T>(round_to<T>(act<ACT>(to_f32(g.v[j]))) * to_f32(u.v[j]));
  reinterpret_cast<V *>(out + row * (int64_t)d)[i] = o;
}

template <typename T, vllm_activation ACT>
vllm_kstatus launch(const vllm_act_and_mul_params *p, cudaStream_t stream) {
  constexpr int N = 16 / sizeof(T);
  const bool vec = aligned16(p->out) && aligned16(p->input) && p->d % N == 0 &&
                   p->input_stride % N == 0;
  const int d = static_cast<int>(p->d);
  const int n = vec ? N : 1;
  const int threads = 256;
  const dim3 grid(static_cast<unsigned>(p->num_tokens),
                  static_cast<unsigned>((d / n + threads - 1) / threads));
  auto *o = static_cast<T *>(p->out);
  auto *x = static_cast<const T *>(p->input);
  if (vec)
    act_and_mul_kernel<T, N, ACT><<<grid, threads, 0, stream>>>(o, x, d, p->input_stride);
  else
    act_and_mul_kernel<T, 1, ACT><<<grid, threads, 0, stream>>>(o, x, d, p->input_stride);
  return launch_status();
}

template <typename T>
vllm_kstatus launch_act(const vllm_act_and_mul_params *p, cudaStream_t stream) {
  switch (p->act) {
    case VLLM_ACT_SILU: return launch<T, VLLM_ACT_SILU>(p, stream);
    case VLLM_ACT_GELU_ERF: return launch<T, VLLM_ACT_GELU_ERF>(p, stream);
    case VLLM_ACT_GELU_TANH: return launch<T, VLLM_ACT_GELU_TANH>(p, stream);
    default: return VLLM_K_INVALID_ARGUMENT;
  }
}

}  // namespace
}  // namespace vllm

extern "C" vllm_kstatus vllm_act_and_mul(const vllm_act_and_mul_params *p, vllm_stream stream) {
  VLLM_CHECK_ARG(p != nullptr);
  VLLM_CHECK_ARG(p->num_tokens >= 0 && p->num_tokens <= INT32_MAX);
  VLLM_CHECK_ARG(p->d > 0 && p->d <= (1 << 22) && p->input_stride >= 2 * p->d);
  if (p->num_tokens == 0) return VLLM_K_OK;
  VLLM_CHECK_ARG(p->out && p->input);
  auto s = static_cast<cudaStream_t>(stream);
  VLLM_DISPATCH_FLOAT(p->dtype, T, return vllm::launch_act<T>(p, s));
  return VLLM_K_UNSUPPORTED_DTYPE;
}

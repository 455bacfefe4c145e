// Gated activations: out = act(x[:, :d]) * x[:, d:] for SiLU, GELU (erf) and GELU (tanh).
//
// Grid (tokens, row chunks); each thread handles two 16-byte vectors of the gate and the
// matching vectors of the up projection, loading all four before any math. Bytes moved: rows * d * sizeof(T) * 3 (two halves read, one
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
  constexpr int VPT = 2;  // vectors per thread: all loads issued before the math
  pdl_wait_and_trigger();
  const int64_t row = blockIdx.x;
  const int nvec = d / N;
  const int i0 = blockIdx.y * blockDim.x * VPT + threadIdx.x;
  const V *gate = reinterpret_cast<const V *>(in + row * in_stride);
  const V *up = reinterpret_cast<const V *>(in + row * in_stride + d);
  V *y = reinterpret_cast<V *>(out + row * (int64_t)d);
  V g[VPT], u[VPT];
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int i = i0 + k * blockDim.x;
    if (i < nvec) {
      g[k] = load_stream(gate + i);
      u[k] = load_stream(up + i);
    }
  }
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int i = i0 + k * blockDim.x;
    if (i < nvec) {
      V o;
#pragma unroll
      for (int j = 0; j < N; ++j)
        o.v[j] = from_f32<T>(round_to<T>(act<ACT>(to_f32(g[k].v[j]))) * to_f32(u[k].v[j]));
      store_stream(y + i, o);
    }
  }
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
                  static_cast<unsigned>((d / n + 2 * threads - 1) / (2 * threads)));
  auto *o = static_cast<T *>(p->out);
  auto *x = static_cast<const T *>(p->input);
  if (vec)
    launch_pdl(act_and_mul_kernel<T, N, ACT>, grid, dim3(threads), stream, o, x, d, p->input_stride);
  else
    launch_pdl(act_and_mul_kernel<T, 1, ACT>, grid, dim3(threads), stream, o, x, d, p->input_stride);
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

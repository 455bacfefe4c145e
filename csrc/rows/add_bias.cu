// add_bias: in place x[r, c] += bias[c] (Qwen2's QKV bias on the fused qkv projection).
//
// A 2-D grid: x over the row's vectors (16 bytes each when the pointers and the stride allow),
// y over rows in a grid-stride loop, so each thread loads its bias vector once. The sum is
// computed in f32 and rounded once to T. Bytes moved = num_rows * row_len * sizeof(T) read + the
// same written (+ the bias once).
#include <algorithm>

#include "../common/launch.cuh"

namespace vllm {
namespace {

template <typename T, int N>
__global__ void add_bias_kernel(T *__restrict__ x, const T *__restrict__ bias, int64_t rows,
                                int nvec, int64_t stride) {
  using V = Vec<T, N>;
  pdl_wait_and_trigger();
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= nvec) return;
  const V bv = reinterpret_cast<const V *>(bias)[c];
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    V *p = reinterpret_cast<V *>(x + r * stride) + c;
    V v = load_stream(p);
#pragma unroll
    for (int j = 0; j < N; ++j) v.v[j] = from_f32<T>(to_f32(v.v[j]) + to_f32(bv.v[j]));
    store_stream(p, v);
  }
}

template <typename T, int N>
vllm_kstatus launch(const vllm_add_bias_params *p, cudaStream_t stream) {
  const int nvec = static_cast<int>(p->row_len / N);
  constexpr int threads = 256;
  const int64_t cols = (nvec + threads - 1) / threads;
  // About 2048 CTAs in all (enough to fill any GPU); each thread keeps its bias vector in
  // registers and walks the rows gridDim.y apart. grid.x is at most 2^31 / 256 columns.
  const int64_t rows = std::max<int64_t>(1, std::min<int64_t>({p->num_rows, 2048 / cols, 65535}));
  launch_pdl(add_bias_kernel<T, N>, dim3(static_cast<unsigned>(cols), static_cast<unsigned>(rows)),
             dim3(threads), stream, static_cast<T *>(p->x), static_cast<const T *>(p->bias),
             p->num_rows, nvec, p->stride);
  return launch_status();
}

template <typename T>
vllm_kstatus dispatch(const vllm_add_bias_params *p, cudaStream_t stream) {
  constexpr int N = 16 / sizeof(T);
  const bool vec = aligned16(p->x) && aligned16(p->bias) && p->row_len % N == 0 &&
                   p->stride % N == 0;
  return vec ? launch<T, N>(p, stream) : launch<T, 1>(p, stream);
}

}  // namespace
}  // namespace vllm

extern "C" vllm_kstatus vllm_add_bias(const vllm_add_bias_params *p, vllm_stream stream) {
  VLLM_CHECK_ARG(p != nullptr);
  VLLM_CHECK_ARG(p->num_rows >= 0 && p->row_len > 0 && p->row_len <= INT32_MAX);
  VLLM_CHECK_ARG(p->stride >= p->row_len);
  if (p->num_rows == 0) return VLLM_K_OK;
  VLLM_CHECK_ARG(p->x && p->bias);
  auto s = static_cast<cudaStream_t>(stream);
  VLLM_DISPATCH_FLOAT(p->dtype, T, return vllm::dispatch<T>(p, s));
  return VLLM_K_UNSUPPORTED_DTYPE;
}

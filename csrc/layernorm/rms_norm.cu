// RMSNorm and fused residual-add + RMSNorm.
//
// One CTA per token row. Each thread loads its share of the row as 16-byte vectors and keeps it
// in registers (VPT vectors per thread), so the row is read from memory once and written once:
// bytes moved = rows * hidden * sizeof(T) * 2 (+ the residual read and write for the fused op).
// The sum of squares is a block reduction (common/reduce.cuh). Rows too long to hold in
// registers (> 8 vectors per thread at 1024 threads) fall back to reading the row twice.
// Launched with programmatic dependent launch (common/launch.cuh): on an H200 at 4096 x 4096
// bf16 it took the kernel from 19.75 to 18.62 us back to back (benches/results/NOTES.md).
// Misaligned pointers or strides take the same kernel with 1-element "vectors". Rows are
// loaded and stored with cache-streaming hints; the weight stays in L2.
#include "../common/launch.cuh"
#include "../common/reduce.cuh"

namespace vllm {
namespace {

// FUSED == false: out = norm(in).  FUSED == true: res = in + res; in = norm(res) (out == in).
template <typename T, int N, int VPT, bool FUSED>
__global__ void __launch_bounds__(1024) rms_norm_kernel(T *out, const T *in, T *__restrict__ residual,
                                const T *__restrict__ weight, int hidden, int64_t in_stride,
                                int64_t out_stride, float eps) {
  using V = Vec<T, N>;
  pdl_wait_and_trigger();
  const int64_t row = blockIdx.x;
  const int nvec = hidden / N;
  const V *x = reinterpret_cast<const V *>(in + row * in_stride);
  V *res = FUSED ? reinterpret_cast<V *>(residual + row * (int64_t)hidden) : nullptr;
  V *y = reinterpret_cast<V *>(out + row * out_stride);
  const V *w = reinterpret_cast<const V *>(weight);

  // Loads vector i of the row (after the residual add when FUSED) and adds its squares to ss.
  auto load = [&](int i, float &ss) {
    V v = load_stream(x + i);
    if constexpr (FUSED) {
      V r = load_stream(res + i);
#pragma unroll
      for (int j = 0; j < N; ++j) v.v[j] = from_f32<T>(to_f32(v.v[j]) + to_f32(r.v[j]));
      store_stream(res + i, v);
    }
#pragma unroll
    for (int j = 0; j < N; ++j) {
      float f = to_f32(v.v[j]);
      ss += f * f;
    }
    return v;
  };
  auto store = [&](int i, const V &v, float inv) {
    V wv = w[i];
    V o;
#pragma unroll
    for (int j = 0; j < N; ++j)
      o.v[j] = from_f32<T>(round_to<T>(to_f32(v.v[j]) * inv) * to_f32(wv.v[j]));
    store_stream(y + i, o);
  };

  float ss = 0.0f;
  if constexpr (VPT > 0) {
    V cache[VPT];
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
      const int i = threadIdx.x + k * blockDim.x;
      if (i < nvec) cache[k] = load(i, ss);
    }
    const float inv = rsqrtf(block_sum(ss) / hidden + eps);
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
      const int i = threadIdx.x + k * blockDim.x;
      if (i < nvec) store(i, cache[k], inv);
    }
  } else {
    for (int i = threadIdx.x; i < nvec; i += blockDim.x) load(i, ss);
    if constexpr (FUSED) __syncthreads();  // the second pass re-reads the residual this pass wrote
    const float inv = rsqrtf(block_sum(ss) / hidden + eps);
    for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
      V v = FUSED ? res[i] : x[i];
      store(i, v, inv);
    }
  }
}

template <typename T, int N, bool FUSED>
vllm_kstatus launch_rows(T *out, const T *in, T *residual, const T *weight, int64_t rows,
                         int hidden, int64_t in_stride, int64_t out_stride, float eps,
                         cudaStream_t stream) {
  const int nvec = hidden / N;
  int threads = nvec >= 256 ? 256 : ((nvec + 31) / 32) * 32;
  int vpt = (nvec + threads - 1) / threads;
  if (vpt > 8) {
    threads = 1024;
    vpt = (nvec + threads - 1) / threads;
  }
  const dim3 grid(static_cast<unsigned>(rows));
#define VLLM_RMS_LAUNCH(VPT)                                                                     \
  launch_pdl(rms_norm_kernel<T, N, VPT, FUSED>, grid, dim3(threads), stream, out, in, residual,   \
             weight, hidden, in_stride, out_stride, eps)
  if (vpt <= 1) VLLM_RMS_LAUNCH(1);
  else if (vpt <= 2) VLLM_RMS_LAUNCH(2);
  else if (vpt <= 4) VLLM_RMS_LAUNCH(4);
  else if (vpt <= 8) VLLM_RMS_LAUNCH(8);
  else VLLM_RMS_LAUNCH(0);
#undef VLLM_RMS_LAUNCH
  return launch_status();
}

template <typename T, bool FUSED>
vllm_kstatus dispatch(void *out, const void *in, void *residual, const void *weight, int64_t rows,
                      int64_t hidden, int64_t in_stride, int64_t out_stride, float eps,
                      cudaStream_t stream) {
  constexpr int N = 16 / sizeof(T);
  const bool vec = aligned16(out) && aligned16(in) && aligned16(weight) &&
                   (!FUSED || aligned16(residual)) && hidden % N == 0 && in_stride % N == 0 &&
                   out_stride % N == 0;
  auto *o = static_cast<T *>(out);
  auto *i = static_cast<const T *>(in);
  auto *r = static_cast<T *>(residual);
  auto *w = static_cast<const T *>(weight);
  const int h = static_cast<int>(hidden);
  if (vec) return launch_rows<T, N, FUSED>(o, i, r, w, rows, h, in_stride, out_stride, eps, stream);
  return launch_rows<T, 1, FUSED>(o, i, r, w, rows, h, in_stride, out_stride, eps, stream);
}

bool rows_ok(int64_t rows, int64_t hidden) {
  return rows >= 0 && rows <= INT32_MAX && hidden > 0 && hidden <= (1 << 20);
}

}  // namespace
}  // namespace vllm

extern "C" vllm_kstatus vllm_rms_norm(const vllm_rms_norm_params *p, vllm_stream stream) {
  VLLM_CHECK_ARG(p != nullptr);
  VLLM_CHECK_ARG(vllm::rows_ok(p->num_tokens, p->hidden_size));
  VLLM_CHECK_ARG(p->input_stride >= p->hidden_size && p->out_stride >= p->hidden_size);
  if (p->num_tokens == 0) return VLLM_K_OK;
  VLLM_CHECK_ARG(p->out && p->input && p->weight);
  auto s = static_cast<cudaStream_t>(stream);
  VLLM_DISPATCH_FLOAT(p->dtype, T,
                      return vllm::dispatch<T, false>(p->out, p->input, nullptr, p->weight,
                                                      p->num_tokens, p->hidden_size,
                                                      p->input_stride, p->out_stride, p->epsilon, s));
  return VLLM_K_UNSUPPORTED_DTYPE;
}

extern "C" vllm_kstatus vllm_fused_add_rms_norm(const vllm_fused_add_rms_norm_params *p,
                                                vllm_stream stream) {
  VLLM_CHECK_ARG(p != nullptr);
  VLLM_CHECK_ARG(vllm::rows_ok(p->num_tokens, p->hidden_size));
  VLLM_CHECK_ARG(p->input_stride >= p->hidden_size);
  if (p->num_tokens == 0) return VLLM_K_OK;
  VLLM_CHECK_ARG(p->input && p->residual && p->weight);
  auto s = static_cast<cudaStream_t>(stream);
  VLLM_DISPATCH_FLOAT(p->dtype, T,
                      return vllm::dispatch<T, true>(p->input, p->input, p->residual, p->weight,
                                                     p->num_tokens, p->hidden_size,
                                                     p->input_stride, p->input_stride, p->epsilon,
                                                     s));
  return VLLM_K_UNSUPPORTED_DTYPE;
}

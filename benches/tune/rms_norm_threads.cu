// Tuning probe, built and run on the GPU box with its nvcc (not part of the library build):
//   nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Icsrc/include \
//        benches/tune/rms_norm_threads.cu -o /tmp/tune && /tmp/tune
// Times the CTA-per-row RMSNorm kernel at 4096 x 4096 bf16 for each threads-per-row choice, and
// a device-to-device copy of the same bytes, to choose the launch configuration from data.
#include <cstdio>
#include <vector>
#include <algorithm>

#include "../../csrc/common/status.cu"
#include "../../csrc/layernorm/rms_norm.cu"

// Median microseconds per launch of `launch(set)` over batches of 16 launches.
template <typename F> float time_launches(int sets, F launch) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<float> t;
  for (int rep = 0; rep < 30; ++rep) {
    cudaEventRecord(a);
    for (int i = 0; i < 16; ++i) launch(i % sets);
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float ms;
    cudaEventElapsedTime(&ms, a, b);
    if (rep >= 5) t.push_back(ms * 1000 / 16);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

template <int VPT>
float time_cfg(int threads, int rows, int hidden, std::vector<__nv_bfloat16 *> &in,
               std::vector<__nv_bfloat16 *> &out, __nv_bfloat16 *w) {
  return time_launches((int)in.size(), [&](int i) {
    vllm::rms_norm_kernel<__nv_bfloat16, 8, VPT, false><<<rows, threads>>>(
        out[i], in[i], nullptr, w, hidden, hidden, hidden, 1e-6f);
  });
}

// The same kernel with cache-streaming hints: loads of x evict-first (__ldcs), stores of y
// streaming (__stcs), so the row does not displace the weight vector in L2.
template <int VPT>
__global__ void __launch_bounds__(1024) rms_stream(__nv_bfloat16 *out, const __nv_bfloat16 *in,
                                                   const __nv_bfloat16 *weight, int hidden, float eps) {
  using V = uint4;
  const int64_t row = blockIdx.x;
  const int nvec = hidden / 8;
  const V *x = reinterpret_cast<const V *>(in + row * hidden);
  V *y = reinterpret_cast<V *>(out + row * hidden);
  const V *w = reinterpret_cast<const V *>(weight);
  V cache[VPT];
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int i = threadIdx.x + k * blockDim.x;
    if (i < nvec) {
      cache[k] = __ldcs(x + i);
      const __nv_bfloat16 *e = reinterpret_cast<const __nv_bfloat16 *>(&cache[k]);
#pragma unroll
      for (int j = 0; j < 8; ++j) { float f = __bfloat162float(e[j]); ss += f * f; }
    }
  }
  const float inv = rsqrtf(vllm::block_sum(ss) / hidden + eps);
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int i = threadIdx.x + k * blockDim.x;
    if (i < nvec) {
      V wv = w[i], o;
      const __nv_bfloat16 *e = reinterpret_cast<const __nv_bfloat16 *>(&cache[k]);
      const __nv_bfloat16 *we = reinterpret_cast<const __nv_bfloat16 *>(&wv);
      __nv_bfloat16 *oe = reinterpret_cast<__nv_bfloat16 *>(&o);
#pragma unroll
      for (int j = 0; j < 8; ++j)
        oe[j] = __float2bfloat16_rn(vllm::round_to<__nv_bfloat16>(__bfloat162float(e[j]) * inv) * __bfloat162float(we[j]));
      __stcs(y + i, o);
    }
  }
}

template <int VPT>
float time_stream(int threads, int rows, int hidden, std::vector<__nv_bfloat16 *> &in,
                  std::vector<__nv_bfloat16 *> &out, __nv_bfloat16 *w) {
  return time_launches((int)in.size(), [&](int i) {
    rms_stream<VPT><<<rows, threads>>>(out[i], in[i], w, hidden, 1e-6f);
  });
}

int main() {
  const int rows = 4096, hidden = 4096, sets = 4;
  const size_t bytes = (size_t)rows * hidden * 2;
  std::vector<__nv_bfloat16 *> in(sets), out(sets);
  std::vector<unsigned short> host(rows * (size_t)hidden);
  for (size_t i = 0; i < host.size(); ++i) host[i] = 0x3f80 + (i * 2654435761u >> 20) % 256;
  for (int s = 0; s < sets; ++s) {
    cudaMalloc(&in[s], bytes);
    cudaMalloc(&out[s], bytes);
    cudaMemcpy(in[s], host.data(), bytes, cudaMemcpyHostToDevice);
  }
  __nv_bfloat16 *w;
  cudaMalloc(&w, hidden * 2);
  cudaMemcpy(w, host.data(), hidden * 2, cudaMemcpyHostToDevice);
  // Same-size copy.
  const float copy_us = time_launches(sets, [&](int i) {
    cudaMemcpyAsync(out[i], in[(i + 1) % sets], bytes, cudaMemcpyDeviceToDevice);
  });
  printf("copy of %zu MB: %.2f us = %.0f GB/s (read+write)\n", bytes >> 20, copy_us, 2.0 * bytes / copy_us / 1e3);
  const double moved = 2.0 * bytes + hidden * 2;
  printf("threads  vpt    us    GB/s\n");
  float u;
  u = time_cfg<8>(64, rows, hidden, in, out, w);   printf("%7d %4d %6.2f %7.0f\n", 64, 8, u, moved / u / 1e3);
  u = time_cfg<4>(128, rows, hidden, in, out, w);  printf("%7d %4d %6.2f %7.0f\n", 128, 4, u, moved / u / 1e3);
  u = time_cfg<2>(256, rows, hidden, in, out, w);  printf("%7d %4d %6.2f %7.0f\n", 256, 2, u, moved / u / 1e3);
  u = time_cfg<1>(512, rows, hidden, in, out, w);  printf("%7d %4d %6.2f %7.0f\n", 512, 1, u, moved / u / 1e3);
  u = time_stream<4>(128, rows, hidden, in, out, w);  printf("stream %4d %4d %6.2f %7.0f\n", 128, 4, u, moved / u / 1e3);
  u = time_stream<2>(256, rows, hidden, in, out, w);  printf("stream %4d %4d %6.2f %7.0f\n", 256, 2, u, moved / u / 1e3);
  u = time_stream<1>(512, rows, hidden, in, out, w);  printf("stream %4d %4d %6.2f %7.0f\n", 512, 1, u, moved / u / 1e3);
  u = time_launches(sets, [&](int i) {
    vllm::launch_pdl(vllm::rms_norm_kernel<__nv_bfloat16, 8, 2, false>, dim3(rows), dim3(256), 0,
                     out[i], in[i], (__nv_bfloat16 *)nullptr, w, hidden, (int64_t)hidden, (int64_t)hidden, 1e-6f);
  });
  printf("pdl    %4d %4d %6.2f %7.0f\n", 256, 2, u, moved / u / 1e3);
  printf("last error: %s\n", cudaGetErrorString(cudaGetLastError()));
  return 0;
}

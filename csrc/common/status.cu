// The per-thread record of the last CUDA error a launcher met.
#include "launch.cuh"

namespace {
thread_local int32_t g_last_cuda_error = 0;
}

namespace vllm {
void set_last_cuda_error(cudaError_t err) { g_last_cuda_error = static_cast<int32_t>(err); }
}  // namespace vllm

extern "C" int32_t vllm_kernels_last_cuda_error(void) { return g_last_cuda_error; }

extern "C" const char *vllm_kernels_cuda_error_string(int32_t code) {
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}

// Move KV blocks between device memory and pinned host memory (preemption by swapping), or
// between two device buffers. One cudaMemcpyAsync per block pair on the given stream; unified
// addressing (cudaMemcpyDefault) picks the direction. Cost: pairs * (launch overhead of a copy +
// block_bytes / link bandwidth).
#include "../common/launch.cuh"

extern "C" vllm_kstatus vllm_swap_blocks(const vllm_swap_blocks_params *p, vllm_stream stream) {
  VLLM_CHECK_ARG(p != nullptr);
  VLLM_CHECK_ARG(p->num_pairs >= 0 && p->block_bytes > 0);
  VLLM_CHECK_ARG(p->src_num_blocks >= 0 && p->dst_num_blocks >= 0);
  if (p->num_pairs == 0) return VLLM_K_OK;
  VLLM_CHECK_ARG(p->src && p->dst && p->block_mapping);
  for (int64_t i = 0; i < p->num_pairs; ++i) {
    const int64_t s = p->block_mapping[2 * i], d = p->block_mapping[2 * i + 1];
    VLLM_CHECK_ARG(s >= 0 && s < p->src_num_blocks && d >= 0 && d < p->dst_num_blocks);
  }
  auto st = static_cast<cudaStream_t>(stream);
  const auto *src = static_cast<const char *>(p->src);
  auto *dst = static_cast<char *>(p->dst);
  for (int64_t i = 0; i < p->num_pairs; ++i) {
    const int64_t s = p->block_mapping[2 * i], d = p->block_mapping[2 * i + 1];
    cudaError_t err = cudaMemcpyAsync(dst + d * p->block_bytes, src + s * p->block_bytes,
                                      static_cast<size_t>(p->block_bytes), cudaMemcpyDefault, st);
    if (err != cudaSuccess) {
      vllm::set_last_cuda_error(err);
      cudaGetLastError();  // clear the sticky-free error so later launches are not blamed
      return VLLM_K_CUDA_ERROR;
    }
  }
  return VLLM_K_OK;
}

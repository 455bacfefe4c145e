// Copy whole KV blocks inside each cache (copy-on-write of a shared prefix block).
//
// Grid (pairs, caches); one CTA copies one block of one cache as 16-byte words when the block
// size and the cache base allow it, else byte by byte. Bytes moved: 2 * caches * pairs * block.
#include "../common/launch.cuh"

namespace vllm {
namespace {

template <typename W>
__global__ void copy_blocks_kernel(void *const *__restrict__ caches,
                                   const int64_t *__restrict__ mapping, int64_t block_words) {
  vllm::pdl_wait_and_trigger();
  W *cache = static_cast<W *>(caches[blockIdx.y]);
  const int64_t src = mapping[2 * blockIdx.x] * block_words;
  const int64_t dst = mapping[2 * blockIdx.x + 1] * block_words;
  for (int64_t i = threadIdx.x; i < block_words; i += blockDim.x) cache[dst + i] = cache[src + i];
}

}  // namespace
}  // namespace vllm

extern "C" vllm_kstatus vllm_copy_blocks(const vllm_copy_blocks_params *p, vllm_stream stream) {
  VLLM_CHECK_ARG(p != nullptr);
  VLLM_CHECK_ARG(p->num_caches >= 0 && p->num_caches <= 65535);
  VLLM_CHECK_ARG(p->num_pairs >= 0 && p->num_pairs <= INT32_MAX && p->block_bytes > 0);
  if (p->num_caches == 0 || p->num_pairs == 0) return VLLM_K_OK;
  VLLM_CHECK_ARG(p->caches && p->block_mapping);
  auto s = static_cast<cudaStream_t>(stream);
  const dim3 grid(static_cast<unsigned>(p->num_pairs), static_cast<unsigned>(p->num_caches));
  // The wrapper guarantees 256-byte aligned cache bases (cudaMalloc); the block size decides.
  if (p->block_bytes % 16 == 0)
    vllm::launch_pdl(vllm::copy_blocks_kernel<uint4>, grid, dim3(256), s, p->caches,
                     p->block_mapping, p->block_bytes / 16);
  else
    vllm::launch_pdl(vllm::copy_blocks_kernel<uint8_t>, grid, dim3(256), s, p->caches,
                     p->block_mapping, p->block_bytes);
  return vllm::launch_status();
}

// Scatter new K/V rows into the paged cache (layout in include/vllm_kernels.h: HND,
// [num_blocks, num_kv_heads, block_size, head_size]).
//
// One CTA per token; threads walk the token's num_kv_heads * head_size elements as 16-byte
// vectors. Each head's row lands contiguously at cache[block, head, offset, :], so both reads and
// writes are whole vectors. Bytes moved: 2 * num_tokens * num_kv_heads * head_size * sizeof(T)
// read and written once.
#include "../common/launch.cuh"

namespace vllm {
namespace {

template <typename T, int N>
__global__ void reshape_and_cache_kernel(const T *__restrict__ key, const T *__restrict__ value,
                                         T *__restrict__ key_cache, T *__restrict__ value_cache,
                                         const int64_t *__restrict__ slot_mapping,
                                         int num_kv_heads, int head_size, int block_size,
                                         int64_t num_slots, int64_t key_stride,
                                         int64_t value_stride) {
  using V = Vec<T, N>;
  pdl_wait_and_trigger();
  const int64_t token = blockIdx.x;
  const int64_t slot = slot_mapping[token];
  if (slot < 0 || slot >= num_slots) return;
  const int64_t block = slot / block_size;
  const int64_t offset = slot % block_size;
  const int vecs_per_head = head_size / N;
  const int total = num_kv_heads * vecs_per_head;
  for (int i = threadIdx.x; i < total; i += blockDim.x) {
    const int h = i / vecs_per_head;
    const int e = (i % vecs_per_head) * N;
    const int64_t dst = ((block * num_kv_heads + h) * block_size + offset) * head_size + e;
    const int64_t src = static_cast<int64_t>(h) * head_size + e;
    const V k = load_stream(reinterpret_cast<const V *>(key + token * key_stride + src));
    const V v = load_stream(reinterpret_cast<const V *>(value + token * value_stride + src));
    store_stream(reinterpret_cast<V *>(key_cache + dst), k);
    store_stream(reinterpret_cast<V *>(value_cache + dst), v);
  }
}

template <typename T>
vllm_kstatus launch(const vllm_reshape_and_cache_params *p, cudaStream_t stream) {
  constexpr int N = 16 / sizeof(T);
  const bool vec = aligned16(p->key) && aligned16(p->value) && aligned16(p->key_cache) &&
                   aligned16(p->value_cache) && p->head_size % N == 0 &&
                   p->key_stride % N == 0 && p->value_stride % N == 0;
  const int n = vec ? N : 1;
  const int total = static_cast<int>(p->num_kv_heads * p->head_size / n);
  const int threads = total >= 512 ? 512 : ((total + 31) / 32) * 32;
  const dim3 grid(static_cast<unsigned>(p->num_tokens));
  auto *k = static_cast<const T *>(p->key);
  auto *v = static_cast<const T *>(p->value);
  auto *kc = static_cast<T *>(p->key_cache);
  auto *vc = static_cast<T *>(p->value_cache);
  const int64_t slots = p->num_blocks * p->block_size;
  const int nkv = static_cast<int>(p->num_kv_heads), hs = static_cast<int>(p->head_size);
  const int bs = static_cast<int>(p->block_size);
  if (vec)
    launch_pdl(reshape_and_cache_kernel<T, N>, grid, dim3(threads), stream, k, v, kc, vc,
               p->slot_mapping, nkv, hs, bs, slots, p->key_stride, p->value_stride);
  else
    launch_pdl(reshape_and_cache_kernel<T, 1>, grid, dim3(threads), stream, k, v, kc, vc,
               p->slot_mapping, nkv, hs, bs, slots, p->key_stride, p->value_stride);
  return launch_status();
}

}  // namespace
}  // namespace vllm

extern "C" vllm_kstatus vllm_reshape_and_cache(const vllm_reshape_and_cache_params *p,
                                               vllm_stream stream) {
  VLLM_CHECK_ARG(p != nullptr);
  VLLM_CHECK_ARG(p->num_tokens >= 0 && p->num_tokens <= INT32_MAX);
  VLLM_CHECK_ARG(p->num_kv_heads > 0 && p->head_size > 0 && p->block_size > 0);
  VLLM_CHECK_ARG(p->num_kv_heads * p->head_size <= INT32_MAX && p->num_blocks >= 0);
  VLLM_CHECK_ARG(p->key_stride >= p->num_kv_heads * p->head_size);
  VLLM_CHECK_ARG(p->value_stride >= p->num_kv_heads * p->head_size);
  if (p->num_tokens == 0 || p->num_blocks == 0) return VLLM_K_OK;
  VLLM_CHECK_ARG(p->key && p->value && p->key_cache && p->value_cache && p->slot_mapping);
  auto s = static_cast<cudaStream_t>(stream);
  VLLM_DISPATCH_FLOAT(p->dtype, T, return vllm::launch<T>(p, s));
  return VLLM_K_UNSUPPORTED_DTYPE;
}

// Scatter new K/V rows into the paged cache (layout in include/vllm_kernels.h: HND,
// [num_blocks, num_kv_heads, block_size, head_size]).
//
// One CTA per token; threads walk the token's num_kv_heads * head_size elements as 16-byte
// vectors. Each head's row lands contiguously at cache[block, head, offset, :], so both reads and
// writes are whole vectors. Bytes moved: 2 * num_tokens * num_kv_heads * head_size * sizeof(T)
// read and written once. FP8 caches: the same walk, each element stored as e4m3(x / scale)
// (round to nearest even, saturated to +-448: cvt.rn.satfinite), N bytes per N-element vector.
#include <cuda_fp8.h>

#include "../common/launch.cuh"

namespace vllm {
namespace {

// C: the cache element, T itself (rows copied as they are) or uint8_t (e4m3 of x / scale).
template <typename T, typename C, int N>
__global__ void reshape_and_cache_kernel(const T *__restrict__ key, const T *__restrict__ value,
                                         C *__restrict__ key_cache, C *__restrict__ value_cache,
                                         const int64_t *__restrict__ slot_mapping,
                                         int num_kv_heads, int head_size, int block_size,
                                         int64_t num_slots, int64_t key_stride,
                                         int64_t value_stride, float k_scale, float v_scale) {
  using V = Vec<T, N>;
  using Q = Vec<C, N>;
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
    if constexpr (std::is_same_v<C, T>) {
      store_stream(reinterpret_cast<V *>(key_cache + dst), k);
      store_stream(reinterpret_cast<V *>(value_cache + dst), v);
    } else {
      Q kq, vq;
#pragma unroll
      for (int j = 0; j < N; ++j) {
        kq.v[j] = __nv_cvt_float_to_fp8(to_f32(k.v[j]) / k_scale, __NV_SATFINITE, __NV_E4M3);
        vq.v[j] = __nv_cvt_float_to_fp8(to_f32(v.v[j]) / v_scale, __NV_SATFINITE, __NV_E4M3);
      }
      store_stream(reinterpret_cast<Q *>(key_cache + dst), kq);
      store_stream(reinterpret_cast<Q *>(value_cache + dst), vq);
    }
  }
}

template <typename T, typename C>
vllm_kstatus launch_cache(const vllm_reshape_and_cache_params *p, cudaStream_t stream) {
  constexpr int N = 16 / sizeof(T);
  const auto aligned = [](const void *q) { return reinterpret_cast<uintptr_t>(q) % (N * sizeof(C)) == 0; };
  const bool vec = aligned16(p->key) && aligned16(p->value) && aligned(p->key_cache) &&
                   aligned(p->value_cache) && p->head_size % N == 0 &&
                   p->key_stride % N == 0 && p->value_stride % N == 0;
  const int n = vec ? N : 1;
  const int total = static_cast<int>(p->num_kv_heads * p->head_size / n);
  const int threads = total >= 512 ? 512 : ((total + 31) / 32) * 32;
  const dim3 grid(static_cast<unsigned>(p->num_tokens));
  auto *k = static_cast<const T *>(p->key);
  auto *v = static_cast<const T *>(p->value);
  auto *kc = static_cast<C *>(p->key_cache);
  auto *vc = static_cast<C *>(p->value_cache);
  const int64_t slots = p->num_blocks * p->block_size;
  const int nkv = static_cast<int>(p->num_kv_heads), hs = static_cast<int>(p->head_size);
  const int bs = static_cast<int>(p->block_size);
  const float ks = p->k_scale, vs = p->v_scale;
  if (vec)
    launch_pdl(reshape_and_cache_kernel<T, C, N>, grid, dim3(threads), stream, k, v, kc, vc,
               p->slot_mapping, nkv, hs, bs, slots, p->key_stride, p->value_stride, ks, vs);
  else
    launch_pdl(reshape_and_cache_kernel<T, C, 1>, grid, dim3(threads), stream, k, v, kc, vc,
               p->slot_mapping, nkv, hs, bs, slots, p->key_stride, p->value_stride, ks, vs);
  return launch_status();
}

template <typename T>
vllm_kstatus launch(const vllm_reshape_and_cache_params *p, cudaStream_t stream) {
  return p->cache_dtype == VLLM_CACHE_FP8_E4M3 ? launch_cache<T, uint8_t>(p, stream)
                                               : launch_cache<T, T>(p, stream);
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
  if (p->cache_dtype != VLLM_CACHE_AUTO && p->cache_dtype != VLLM_CACHE_FP8_E4M3)
    return VLLM_K_UNSUPPORTED_DTYPE;
  if (p->cache_dtype == VLLM_CACHE_FP8_E4M3)
    VLLM_CHECK_ARG(p->k_scale > 0.0f && p->v_scale > 0.0f && p->k_scale < INFINITY &&
                   p->v_scale < INFINITY);
  if (p->num_tokens == 0 || p->num_blocks == 0) return VLLM_K_OK;
  VLLM_CHECK_ARG(p->key && p->value && p->key_cache && p->value_cache && p->slot_mapping);
  auto s = static_cast<cudaStream_t>(stream);
  VLLM_DISPATCH_FLOAT(p->dtype, T, return vllm::launch<T>(p, s));
  return VLLM_K_UNSUPPORTED_DTYPE;
}

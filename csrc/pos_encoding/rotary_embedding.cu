// Rotary position embedding, in place on query and key, NeoX and GPT-J pair layouts.
//
// One CTA per token. A work item is P rotation pairs of one head: NeoX reads P elements of the
// first half and P of the second half (16 bytes each), GPT-J reads 2P interleaved elements
// (16 bytes); both read P cos and P sin values of the token's cache row (shared by all heads,
// so they come from L1 after the first head). Bytes moved: the rotated part of q and k, read
// and written once. Unaligned shapes take the same kernel with P = 1.
#include "../common/launch.cuh"

namespace vllm {
namespace {

template <typename T, bool NEOX, int P>
__device__ __forceinline__ void rotate_item(T *head, const T *cos, const T *sin, int i0,
                                            int half) {
  Vec<T, P> c = *reinterpret_cast<const Vec<T, P> *>(cos + i0);
  Vec<T, P> s = *reinterpret_cast<const Vec<T, P> *>(sin + i0);
  if constexpr (NEOX) {
    auto *p1 = reinterpret_cast<Vec<T, P> *>(head + i0);
    auto *p2 = reinterpret_cast<Vec<T, P> *>(head + half + i0);
    Vec<T, P> a = *p1, b = *p2;
#pragma unroll
    for (int j = 0; j < P; ++j) {
      const float x1 = to_f32(a.v[j]), x2 = to_f32(b.v[j]);
      const float cj = to_f32(c.v[j]), sj = to_f32(s.v[j]);
      a.v[j] = from_f32<T>(x1 * cj - x2 * sj);
      b.v[j] = from_f32<T>(x2 * cj + x1 * sj);
    }
    *p1 = a;
    *p2 = b;
  } else {
    auto *p = reinterpret_cast<Vec<T, 2 * P> *>(head + 2 * i0);
    Vec<T, 2 * P> a = *p;
#pragma unroll
    for (int j = 0; j < P; ++j) {
      const float x1 = to_f32(a.v[2 * j]), x2 = to_f32(a.v[2 * j + 1]);
      const float cj = to_f32(c.v[j]), sj = to_f32(s.v[j]);
      a.v[2 * j] = from_f32<T>(x1 * cj - x2 * sj);
      a.v[2 * j + 1] = from_f32<T>(x2 * cj + x1 * sj);
    }
    *p = a;
  }
}

template <typename T, bool NEOX, int P>
__global__ void rotary_kernel(const int64_t *__restrict__ positions, T *__restrict__ query,
                              T *__restrict__ key, const T *__restrict__ cos_sin_cache,
                              int num_heads, int num_kv_heads, int head_size, int rot_dim,
                              int64_t query_stride, int64_t key_stride, int64_t max_position) {
  const int64_t token = blockIdx.x;
  const int64_t pos = positions[token];
  if (pos < 0 || pos >= max_position) return;
  const int half = rot_dim / 2;
  const T *cos = cos_sin_cache + pos * rot_dim;
  const T *sin = cos + half;
  const int items_per_head = half / P;

  const int q_items = num_heads * items_per_head;
  T *q = query + token * query_stride;
  for (int it = threadIdx.x; it < q_items; it += blockDim.x) {
    const int h = it / items_per_head;
    rotate_item<T, NEOX, P>(q + h * head_size, cos, sin, (it % items_per_head) * P, half);
  }
  if (key == nullptr) return;
  const int k_items = num_kv_heads * items_per_head;
  T *k = key + token * key_stride;
  for (int it = threadIdx.x; it < k_items; it += blockDim.x) {
    const int h = it / items_per_head;
    rotate_item<T, NEOX, P>(k + h * head_size, cos, sin, (it % items_per_head) * P, half);
  }
}

template <typename T, bool NEOX>
vllm_kstatus launch(const vllm_rotary_embedding_params *p, cudaStream_t stream) {
  // P pairs per item: 16 bytes of x per access in both layouts.
  constexpr int PV = NEOX ? 16 / sizeof(T) : 8 / sizeof(T);
  constexpr int N = 16 / sizeof(T);  // alignment unit, in elements, of every row start
  const int half = static_cast<int>(p->rot_dim / 2);
  const bool vec = aligned16(p->query) && (p->key == nullptr || aligned16(p->key)) &&
                   aligned16(p->cos_sin_cache) && half % PV == 0 && p->rot_dim % N == 0 &&
                   p->head_size % N == 0 && p->query_stride % N == 0 &&
                   (p->key == nullptr || p->key_stride % N == 0);
  const int P = vec ? PV : 1;
  const int items = static_cast<int>((p->num_heads > p->num_kv_heads ? p->num_heads
                                                                      : p->num_kv_heads) *
                                     (half / P));
  const int threads = items >= 512 ? 512 : ((items + 31) / 32) * 32;
  const dim3 grid(static_cast<unsigned>(p->num_tokens));
  auto *q = static_cast<T *>(p->query);
  auto *k = static_cast<T *>(p->key);
  auto *cs = static_cast<const T *>(p->cos_sin_cache);
  const int nh = static_cast<int>(p->num_heads), nkv = static_cast<int>(p->num_kv_heads);
  const int hs = static_cast<int>(p->head_size), rd = static_cast<int>(p->rot_dim);
  if (vec)
    rotary_kernel<T, NEOX, PV><<<grid, threads, 0, stream>>>(
        p->positions, q, k, cs, nh, nkv, hs, rd, p->query_stride, p->key_stride, p->max_position);
  else
    rotary_kernel<T, NEOX, 1><<<grid, threads, 0, stream>>>(
        p->positions, q, k, cs, nh, nkv, hs, rd, p->query_stride, p->key_stride, p->max_position);
  return launch_status();
}

}  // namespace
}  // namespace vllm

extern "C" vllm_kstatus vllm_rotary_embedding(const vllm_rotary_embedding_params *p,
                                              vllm_stream stream) {
  VLLM_CHECK_ARG(p != nullptr);
  VLLM_CHECK_ARG(p->num_tokens >= 0 && p->num_tokens <= INT32_MAX);
  VLLM_CHECK_ARG(p->num_heads > 0 && p->num_kv_heads >= 0 && p->head_size > 0);
  VLLM_CHECK_ARG(p->num_heads * p->head_size <= INT32_MAX);
  VLLM_CHECK_ARG(p->query_stride >= p->num_heads * p->head_size);
  VLLM_CHECK_ARG(p->key == nullptr || p->key_stride >= p->num_kv_heads * p->head_size);
  VLLM_CHECK_ARG(p->max_position > 0);
  if (p->rot_dim <= 0 || p->rot_dim % 2 != 0 || p->rot_dim > p->head_size)
    return VLLM_K_UNSUPPORTED_SHAPE;
  if (p->num_tokens == 0) return VLLM_K_OK;
  VLLM_CHECK_ARG(p->positions && p->query && p->cos_sin_cache);
  auto s = static_cast<cudaStream_t>(stream);
  VLLM_DISPATCH_FLOAT(p->dtype, T,
                      return p->is_neox ? vllm::launch<T, true>(p, s)
                                        : vllm::launch<T, false>(p, s));
  return VLLM_K_UNSUPPORTED_DTYPE;
}

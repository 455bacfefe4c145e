// Rotary position embedding, in place on query and key, NeoX and GPT-J pair layouts.
//
// One CTA per token. A work item is P = 16 / sizeof(T) rotation pairs of one head: NeoX reads
// P elements of each half (16 bytes each), GPT-J reads 2P interleaved elements (two 16-byte
// vectors); both read P cos and P sin values of the token's cache row (shared by all heads, so
// they come from L1 after the first head). Bytes moved: the rotated part of q and k, read and
// written once. Unaligned shapes take the same kernel with P = 1 and element accesses.
#include "../common/launch.cuh"

namespace vllm {
namespace {

// Loads / stores K elements of T as whole 16-byte vectors when VEC, else one by one.
// STREAM: the data is touched once (q, k): cache-streaming hints; else (cos, sin) plain loads.
template <typename T, int K, bool VEC, bool STREAM = false>
__device__ __forceinline__ void load(T (&dst)[K], const T *src) {
  constexpr int N = 16 / sizeof(T);
  if constexpr (VEC && K % N == 0) {
#pragma unroll
    for (int c = 0; c < K / N; ++c) {
      const Vec<T, N> *p = reinterpret_cast<const Vec<T, N> *>(src) + c;
      Vec<T, N> v = STREAM ? load_stream(p) : *p;
#pragma unroll
      for (int j = 0; j < N; ++j) dst[c * N + j] = v.v[j];
    }
  } else {
#pragma unroll
    for (int j = 0; j < K; ++j) dst[j] = src[j];
  }
}
template <typename T, int K, bool VEC>
__device__ __forceinline__ void store(T *dst, const T (&src)[K]) {
  constexpr int N = 16 / sizeof(T);
  if constexpr (VEC && K % N == 0) {
#pragma unroll
    for (int c = 0; c < K / N; ++c) {
      Vec<T, N> v;
#pragma unroll
      for (int j = 0; j < N; ++j) v.v[j] = src[c * N + j];
      store_stream(reinterpret_cast<Vec<T, N> *>(dst) + c, v);
    }
  } else {
#pragma unroll
    for (int j = 0; j < K; ++j) dst[j] = src[j];
  }
}

// Rotates pairs i0 .. i0 + P of one head. VEC: 16-byte accesses (P = 16 / sizeof(T)).
template <typename T, bool NEOX, int P, bool VEC>
__device__ __forceinline__ void rotate_item(T *head, const T *cos, const T *sin, int i0,
                                            int half) {
  T c[P], s[P];
  load<T, P, VEC>(c, cos + i0);
  load<T, P, VEC>(s, sin + i0);
  if constexpr (NEOX) {
    T a[P], b[P];
    load<T, P, VEC, true>(a, head + i0);
    load<T, P, VEC, true>(b, head + half + i0);
#pragma unroll
    for (int j = 0; j < P; ++j) {
      const float x1 = to_f32(a[j]), x2 = to_f32(b[j]);
      const float cj = to_f32(c[j]), sj = to_f32(s[j]);
      a[j] = from_f32<T>(x1 * cj - x2 * sj);
      b[j] = from_f32<T>(x2 * cj + x1 * sj);
    }
    store<T, P, VEC>(head + i0, a);
    store<T, P, VEC>(head + half + i0, b);
  } else {
    T a[2 * P];
    load<T, 2 * P, VEC, true>(a, head + 2 * i0);
#pragma unroll
    for (int j = 0; j < P; ++j) {
      const float x1 = to_f32(a[2 * j]), x2 = to_f32(a[2 * j + 1]);
      const float cj = to_f32(c[j]), sj = to_f32(s[j]);
      a[2 * j] = from_f32<T>(x1 * cj - x2 * sj);
      a[2 * j + 1] = from_f32<T>(x2 * cj + x1 * sj);
    }
    store<T, 2 * P, VEC>(head + 2 * i0, a);
  }
}

// One CTA per token; the query's and the key's items form one flat range so every thread has
// the same amount of work.
template <typename T, bool NEOX, int P, bool VEC>
__global__ void rotary_kernel(const int64_t *__restrict__ positions, T *__restrict__ query,
                              T *__restrict__ key, const T *__restrict__ cos_sin_cache,
                              int num_heads, int num_kv_heads, int head_size, int rot_dim,
                              int64_t query_stride, int64_t key_stride, int64_t max_position) {
  pdl_wait_and_trigger();
  const int64_t token = blockIdx.x;
  const int64_t pos = positions[token];
  if (pos < 0 || pos >= max_position) return;
  const int half = rot_dim / 2;
  const T *cos = cos_sin_cache + pos * rot_dim;
  const T *sin = cos + half;
  const int items_per_head = half / P;
  const int q_items = num_heads * items_per_head;
  const int total = q_items + (key != nullptr ? num_kv_heads * items_per_head : 0);
  T *q = query + token * query_stride;
  T *k = key + token * key_stride;
  for (int it = threadIdx.x; it < total; it += blockDim.x) {
    const bool is_q = it < q_items;
    const int j = is_q ? it : it - q_items;
    T *head = (is_q ? q : k) + (j / items_per_head) * head_size;
    rotate_item<T, NEOX, P, VEC>(head, cos, sin, (j % items_per_head) * P, half);
  }
}

template <typename T, bool NEOX>
vllm_kstatus launch(const vllm_rotary_embedding_params *p, cudaStream_t stream) {
  constexpr int N = 16 / sizeof(T);  // elements per 16-byte access, and pairs per item
  const int half = static_cast<int>(p->rot_dim / 2);
  const bool vec = aligned16(p->query) && (p->key == nullptr || aligned16(p->key)) &&
                   aligned16(p->cos_sin_cache) && half % N == 0 && p->head_size % N == 0 &&
                   p->query_stride % N == 0 && (p->key == nullptr || p->key_stride % N == 0);
  const int pairs = vec ? N : 1;
  const int64_t heads = p->num_heads + (p->key != nullptr ? p->num_kv_heads : 0);
  const int items = static_cast<int>(heads * (half / pairs));
  const int threads = items >= 512 ? 512 : ((items + 31) / 32) * 32;
  const dim3 grid(static_cast<unsigned>(p->num_tokens));
  auto *q = static_cast<T *>(p->query);
  auto *k = static_cast<T *>(p->key);
  auto *cs = static_cast<const T *>(p->cos_sin_cache);
  const int nh = static_cast<int>(p->num_heads), nkv = static_cast<int>(p->num_kv_heads);
  const int hs = static_cast<int>(p->head_size), rd = static_cast<int>(p->rot_dim);
  if (vec)
    launch_pdl(rotary_kernel<T, NEOX, N, true>, grid, dim3(threads), stream, p->positions, q, k, cs,
               nh, nkv, hs, rd, p->query_stride, p->key_stride, p->max_position);
  else
    launch_pdl(rotary_kernel<T, NEOX, 1, false>, grid, dim3(threads), stream, p->positions, q, k,
               cs, nh, nkv, hs, rd, p->query_stride, p->key_stride, p->max_position);
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

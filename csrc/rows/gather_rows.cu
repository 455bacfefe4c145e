// gather_rows: out[r, :] = table[ids[r], :] (embedding lookup, picking logits rows).
//
// One CTA per output row; its threads copy the row as 16-byte vectors when the pointers and
// strides allow, one element at a time otherwise. Bytes moved = num_rows * row_len * sizeof(T)
// read + the same written (+ 4 bytes of id per row). The table row is read with default caching
// (a token repeated in the batch hits L2); the output is written with a streaming hint.
// ids are read on the device and not checked on the host: an id outside [0, table_rows) writes
// a row of zeros instead of reading out of bounds.
#include "../common/launch.cuh"

namespace vllm {
namespace {

template <typename T, int N>
__global__ void gather_rows_kernel(T *__restrict__ out, const T *__restrict__ table,
                                   const int32_t *__restrict__ ids, int row_len,
                                   int64_t table_rows, int64_t table_stride,
                                   int64_t out_stride) {
  using V = Vec<T, N>;
  pdl_wait_and_trigger();
  const int64_t r = blockIdx.x;
  const int64_t id = ids[r];
  const int nvec = row_len / N;
  V *y = reinterpret_cast<V *>(out + r * out_stride);
  if (id < 0 || id >= table_rows) {
    V z;
#pragma unroll
    for (int j = 0; j < N; ++j) z.v[j] = from_f32<T>(0.0f);
    for (int i = threadIdx.x; i < nvec; i += blockDim.x) store_stream(y + i, z);
    return;
  }
  const V *x = reinterpret_cast<const V *>(table + id * table_stride);
  for (int i = threadIdx.x; i < nvec; i += blockDim.x) store_stream(y + i, x[i]);
}

template <typename T, int N>
vllm_kstatus launch(const vllm_gather_rows_params *p, cudaStream_t stream) {
  const int nvec = static_cast<int>(p->row_len / N);
  const int threads = nvec >= 256 ? 256 : ((nvec + 31) / 32) * 32;
  launch_pdl(gather_rows_kernel<T, N>, dim3(static_cast<unsigned>(p->num_rows)), dim3(threads),
             stream, static_cast<T *>(p->out), static_cast<const T *>(p->table), p->ids,
             static_cast<int>(p->row_len), p->table_rows, p->table_stride, p->out_stride);
  return launch_status();
}

template <typename T>
vllm_kstatus dispatch(const vllm_gather_rows_params *p, cudaStream_t stream) {
  constexpr int N = 16 / sizeof(T);
  const bool vec = aligned16(p->out) && aligned16(p->table) && p->row_len % N == 0 &&
                   p->table_stride % N == 0 && p->out_stride % N == 0;
  return vec ? launch<T, N>(p, stream) : launch<T, 1>(p, stream);
}

}  // namespace
}  // namespace vllm

extern "C" vllm_kstatus vllm_gather_rows(const vllm_gather_rows_params *p, vllm_stream stream) {
  VLLM_CHECK_ARG(p != nullptr);
  VLLM_CHECK_ARG(p->num_rows >= 0 && p->num_rows <= INT32_MAX);
  VLLM_CHECK_ARG(p->row_len > 0 && p->row_len <= INT32_MAX && p->table_rows >= 0);
  VLLM_CHECK_ARG(p->table_stride >= p->row_len && p->out_stride >= p->row_len);
  if (p->num_rows == 0) return VLLM_K_OK;
  VLLM_CHECK_ARG(p->out && p->table && p->ids);
  auto s = static_cast<cudaStream_t>(stream);
  VLLM_DISPATCH_FLOAT(p->dtype, T, return vllm::dispatch<T>(p, s));
  return VLLM_K_UNSUPPORTED_DTYPE;
}

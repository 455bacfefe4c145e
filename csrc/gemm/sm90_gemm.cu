// The C entry points of sm90_gemm.cuh: argument checks and the token-tile dispatch. The
// instantiations live in sm90_gemm_tiles_{a,b}.cu; without CUTLASS or an sm_90a build every
// call answers VLLM_K_UNSUPPORTED_SHAPE and the caller keeps cuBLAS.
#include "sm90_gemm.cuh"

namespace vllm {
namespace {

bool sm90_device() {
  static const bool ok = [] {
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    return major == 9 && minor == 0;
  }();
  return ok;
}

vllm_kstatus check(const vllm_sm90_gemm_params *p) {
  VLLM_CHECK_ARG(p != nullptr);
  VLLM_CHECK_ARG(p->m >= 1 && p->n >= 1 && p->k >= 1);
  VLLM_CHECK_ARG(p->m <= INT32_MAX && p->n <= INT32_MAX && p->k <= INT32_MAX);
  VLLM_CHECK_ARG(p->ldy >= p->n && p->ldy <= INT32_MAX);
  VLLM_CHECK_ARG(p->y && p->x && p->w);
  if (p->dtype != VLLM_DTYPE_F16 && p->dtype != VLLM_DTYPE_BF16) return VLLM_K_UNSUPPORTED_DTYPE;
  // TMA: 16-byte aligned bases and rows (n is D^T's contiguous mode).
  if (p->k % 8 != 0 || p->n % 8 != 0 || p->ldy % 8 != 0 || !aligned16(p->x) || !aligned16(p->w) ||
      !aligned16(p->y))
    return VLLM_K_UNSUPPORTED_SHAPE;
  if (p->tile_n != 16 && p->tile_n != 32 && p->tile_n != 64 && p->tile_n != 128)
    return VLLM_K_UNSUPPORTED_SHAPE;
  return VLLM_K_OK;
}

#ifdef VLLM_SM90_GEMM_BUILT
using GemmFn = vllm_kstatus (*)(const vllm_sm90_gemm_params *, cudaStream_t);
using WorkspaceFn = size_t (*)(const vllm_sm90_gemm_params *);

template <typename T, typename R, typename F>
R by_tile(int tile, F f) {
  switch (tile) {
#define VLLM_TILE_CASE(TN) \
  case TN: return f(GemmFn(sm90::gemm<T, TN>), WorkspaceFn(sm90::workspace<T, TN>));
    VLLM_TILE_CASE(16) VLLM_TILE_CASE(32) VLLM_TILE_CASE(64) VLLM_TILE_CASE(128)
#undef VLLM_TILE_CASE
    default: return f(GemmFn(nullptr), WorkspaceFn(nullptr));
  }
}

template <typename R, typename F>
R by_type(const vllm_sm90_gemm_params *p, F f) {
  return p->dtype == VLLM_DTYPE_BF16 ? by_tile<__nv_bfloat16, R>(p->tile_n, f)
                                     : by_tile<__half, R>(p->tile_n, f);
}
#endif

}  // namespace
}  // namespace vllm

extern "C" int32_t vllm_sm90_gemm_available(void) {
#ifdef VLLM_SM90_GEMM_BUILT
  return vllm::sm90_device() ? 1 : 0;
#else
  return 0;
#endif
}

extern "C" vllm_kstatus vllm_sm90_gemm_workspace(const vllm_sm90_gemm_params *p, int64_t *bytes) {
  VLLM_CHECK_ARG(bytes != nullptr);
  *bytes = 0;
  const vllm_kstatus st = vllm::check(p);
  if (st != VLLM_K_OK) return st;
  if (!vllm_sm90_gemm_available()) return VLLM_K_UNSUPPORTED_SHAPE;
#ifdef VLLM_SM90_GEMM_BUILT
  *bytes = static_cast<int64_t>(vllm::by_type<size_t>(p, [&](auto, auto ws) -> size_t {
    return ws ? ws(p) : 0;
  }));
#endif
  return VLLM_K_OK;
}

extern "C" vllm_kstatus vllm_sm90_gemm(const vllm_sm90_gemm_params *p, vllm_stream stream) {
  const vllm_kstatus st = vllm::check(p);
  if (st != VLLM_K_OK) return st;
  if (!vllm_sm90_gemm_available()) return VLLM_K_UNSUPPORTED_SHAPE;
#ifdef VLLM_SM90_GEMM_BUILT
  VLLM_CHECK_ARG(p->workspace_bytes >= 0);
  VLLM_CHECK_ARG(p->workspace_bytes == 0 || (p->workspace != nullptr && vllm::aligned16(p->workspace)));
  auto s = static_cast<cudaStream_t>(stream);
  return vllm::by_type<vllm_kstatus>(p, [&](auto run, auto) -> vllm_kstatus {
    return run ? run(p, s) : VLLM_K_UNSUPPORTED_SHAPE;
  });
#else
  (void)stream;
  return VLLM_K_UNSUPPORTED_SHAPE;
#endif
}

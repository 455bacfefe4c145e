// The CUTLASS definitions behind sm90_gemm.cuh (algorithm and cost there). Included only by
// the instantiation files sm90_gemm_tiles_*.cu: each (type, tile) is ~20 s of nvcc.
#pragma once

#include "sm90_gemm.cuh"

#ifdef VLLM_SM90_GEMM_BUILT

// The kernels are launched with programmatic dependent launch like ours, so CUTLASS's producer
// warps must wait for the previous grid (griddepcontrol.wait) before their first load; without
// CUTLASS_GDC_ENABLED that wait compiles to nothing and X could be read before the previous
// kernel wrote it. CUTLASS_ENABLE_GDC_FOR_SM90, the documented switch, also turns on an early
// launch_dependents whose stream-K path does not compile in CUTLASS 4.2 (a const member calling
// a non-const one), so the wait is enabled alone, on the sm_90a device pass only; the next grid
// is then released when this one ends.
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define CUTLASS_GDC_ENABLED
#endif

#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/dispatch_policy.hpp"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "cutlass/gemm/kernel/tile_scheduler.hpp"
#include "cutlass/util/packed_stride.hpp"

namespace vllm {
namespace sm90 {

template <typename T> struct Cutlass;
template <> struct Cutlass<__half> { using type = cutlass::half_t; };
template <> struct Cutlass<__nv_bfloat16> { using type = cutlass::bfloat16_t; };

template <typename T, int TN> struct Config {
  using E = typename Cutlass<T>::type;
  using Tile = cute::Shape<cute::_128, cute::Int<TN>, cute::_64>;
  using Cluster = cute::Shape<cute::_1, cute::_1, cute::_1>;
  static constexpr int kAlign = 16 / sizeof(E);
  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Tile, Cluster,
      cutlass::epilogue::collective::EpilogueTileAuto, float, float,
      void, cutlass::layout::ColumnMajor, kAlign,  // no C operand (beta = 0)
      E, cutlass::layout::ColumnMajor, kAlign,     // D^T column-major = Y row-major
      cutlass::epilogue::TmaWarpSpecializedCooperative,
      cutlass::epilogue::fusion::LinearCombination<E, float, void, float>>::CollectiveOp;
  using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp,
      E, cutlass::layout::RowMajor, kAlign,     // W [n, k], k contiguous
      E, cutlass::layout::ColumnMajor, kAlign,  // X [m, k], k contiguous
      float, Tile, Cluster,
      cutlass::gemm::collective::StageCountAutoCarveout<
          static_cast<int>(sizeof(typename Epilogue::SharedStorage))>,
      cutlass::gemm::KernelTmaWarpSpecializedCooperative>::CollectiveOp;
  using Kernel = cutlass::gemm::kernel::GemmUniversal<cute::Shape<int, int, int, int>, Mainloop,
                                                      Epilogue, cutlass::gemm::StreamKScheduler>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;

  static typename Gemm::Arguments arguments(const vllm_sm90_gemm_params *p) {
    const int m = static_cast<int>(p->m), n = static_cast<int>(p->n), k = static_cast<int>(p->k);
    auto sa = cutlass::make_cute_packed_stride(typename Kernel::StrideA{}, cute::make_shape(n, k, 1));
    auto sb = cutlass::make_cute_packed_stride(typename Kernel::StrideB{}, cute::make_shape(m, k, 1));
    auto sd = cutlass::make_cute_packed_stride(typename Kernel::StrideD{}, cute::make_shape(n, m, 1));
    cute::get<1>(sd) = p->ldy;  // column stride of D^T = Y's row stride
    static const int sms = [] {
      int dev = 0, count = 0;
      cudaGetDevice(&dev);
      cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, dev);
      return count;
    }();
    cutlass::KernelHardwareInfo hw;
    hw.sm_count = sms;
    typename Gemm::Arguments args{cutlass::gemm::GemmUniversalMode::kGemm,
                                  {n, m, k, 1},
                                  {static_cast<const E *>(p->w), sa, static_cast<const E *>(p->x), sb},
                                  {{}, nullptr, sd, static_cast<E *>(p->y), sd},
                                  hw};
    args.epilogue.thread.alpha = 1.0f;
    args.epilogue.thread.beta = 0.0f;
    return args;
  }
};

template <typename T, int TN>
size_t workspace(const vllm_sm90_gemm_params *p) {
  using C = Config<T, TN>;
  return C::Gemm::get_workspace_size(C::arguments(p));
}

template <typename T, int TN>
vllm_kstatus gemm(const vllm_sm90_gemm_params *p, cudaStream_t stream) {
  using C = Config<T, TN>;
  auto args = C::arguments(p);
  typename C::Gemm op;
  if (op.can_implement(args) != cutlass::Status::kSuccess) return VLLM_K_UNSUPPORTED_SHAPE;
  if (C::Gemm::get_workspace_size(args) > static_cast<size_t>(p->workspace_bytes))
    return VLLM_K_INVALID_ARGUMENT;
  if (op.initialize(args, p->workspace, stream) != cutlass::Status::kSuccess) {
    // CUTLASS clears the CUDA error it met (cudaGetLastError) before returning: never OK here.
    const vllm_kstatus ls = launch_status();
    return ls != VLLM_K_OK ? ls : VLLM_K_CUDA_ERROR;
  }
  // Launched with programmatic dependent launch like every kernel of ours: the kernel waits
  // for the previous grid before it reads X.
  const cutlass::Status st = op.run(stream, nullptr, pdl_supported());
  const vllm_kstatus ls = launch_status();
  if (ls != VLLM_K_OK) return ls;
  return st == cutlass::Status::kSuccess ? VLLM_K_OK : VLLM_K_CUDA_ERROR;
}

}  // namespace sm90
}  // namespace vllm

#define VLLM_SM90_INSTANTIATE(T, TN)                                                          \
  template vllm_kstatus vllm::sm90::gemm<T, TN>(const vllm_sm90_gemm_params *, cudaStream_t); \
  template size_t vllm::sm90::workspace<T, TN>(const vllm_sm90_gemm_params *);
#else
#define VLLM_SM90_INSTANTIATE(T, TN)
#endif

// sm90_gemm: Y[m, n] = X[m, k] W[n, k]^T on Hopper tensor cores (wgmma fed by TMA, CUTLASS 3
// warp-specialised cooperative kernel) for the decode-time batch sizes, 5..256 rows.
//
// Measured on an H200 (benches/results/products-h200-2026-11-30.md): cuBLAS is already at 80-90%
// of the copy bandwidth on the large shapes and this kernel is not faster on average, so the
// runner uses it only where start-up timing finds it faster, and only with VLLM_SM90_GEMM=1.
//
// Why it was tried: with the tokens as the product's M, every kernel pads them up to its
// 64- or 128-row tile, so a step of 142 tokens computes 192 or 256 rows while it streams the
// weights once; at these sizes the product sits between the bandwidth and tensor-core
// ceilings and the padding is paid in full. Here the operands are swapped (swap-AB):
// D^T[n, m] = W[n, k] X[m, k]^T, the weights are the 128-row tile (n is always large), the
// tokens are the tile's N (16, 32, 64 or 128), chosen per batch size by measurement: one tile
// covering the batch reads W from memory once; more token tiles re-read it through L2.
// Few weight tiles (e.g. n = 4096: 32 tiles for 132 SMs) are spread over every SM by stream-K
// (CUTLASS's StreamKScheduler: K split across CTAs, partial tiles reduced through the
// workspace). D is written column-major over [n, m], i.e. row-major Y with row stride ldy.
// Cost: 2 m n k flops, 2 n k + 2 m k (per CTA, from L2) + 2 m n bytes.
#pragma once

#include "../common/launch.cuh"

namespace vllm {
namespace sm90 {

// One instantiation per (element type, token tile): defined in sm90_gemm_impl.cuh, compiled in
// sm90_gemm_tiles_*.cu only (this header declares, so the dispatcher instantiates nothing).
template <typename T, int TN>
vllm_kstatus gemm(const vllm_sm90_gemm_params *p, cudaStream_t stream);

template <typename T, int TN>
size_t workspace(const vllm_sm90_gemm_params *p);

}  // namespace sm90
}  // namespace vllm

#if defined(VLLM_HAS_CUTLASS) && defined(VLLM_HAS_SM90A)
#define VLLM_SM90_GEMM_BUILT 1
#endif

// Dispatch of paged decode attention by head size: the tensor-core kernel
// (paged_attention_mma.cuh) for every head size (80, 96, 112 padded to 128). Included by the
// per-dtype .cu files and the tuning probe (which also times the generic CUDA-core kernel of
// paged_attention.cuh).
#pragma once

#include "paged_attention_mma.cuh"

namespace vllm {
namespace attn {

// Pipeline depth (16-token stages per warp) of the tensor-core kernel per head size, from the
// H200 sweeps in benches/results/tune-attention-h200-*.txt (NOTES.md): 3 stages for head 64 and
// 128 (48 / 96 KiB per CTA) and FP8 caches, 2 for head 256 (128 KiB); deeper pipelines were no
// faster (head 64: 6 stages 97.9% of copy vs 3 stages 99.2% at 64 x 4096; FP8 head 128: 6 / 8
// stages 92.9 / 73.0% vs 3 stages 93.6%), 8 warps no faster than 4.
template <int HS> struct MmaConfig;
template <> struct MmaConfig<64> { static constexpr int NST = 3, WARPS = 4; };
template <> struct MmaConfig<128> { static constexpr int NST = 3, WARPS = 4; };
template <> struct MmaConfig<256> { static constexpr int NST = 2, WARPS = 4; };
template <int HS> struct MmaConfigFp8 { static constexpr int NST = 3, WARPS = 4; };

// Head sizes that are not a multiple of 64 run padded to the next multiple (80, 96, 112 -> 128).
template <typename T, int HS>
void launch_hs(const Args &a, int num_seqs, int parts, cudaStream_t stream) {
  const int group = a.num_heads / a.num_kv_heads;
  constexpr int HP = (HS + 63) / 64 * 64;
  launch_mma<T, T, HP, MmaConfig<HP>::NST, MmaConfig<HP>::WARPS, true, HS>(a, num_seqs, group,
                                                                           parts, stream);
}

// The generic CUDA-core kernel (paged_attention.cuh), kept as a reference point for the tuning
// probe: a query-head tile as large as its registers allow.
template <typename T, int HS>
void launch_generic(const Args &a, int num_seqs, int parts, cudaStream_t stream) {
  const int group = a.num_heads / a.num_kv_heads;
  constexpr int GMAX = Shape<HS>::GMAX;
  if (group <= 1) launch_tile<T, HS, 1>(a, num_seqs, group, parts, stream);
  else if (group <= 2) launch_tile<T, HS, 2>(a, num_seqs, group, parts, stream);
  else if (group <= 4 || GMAX == 4) launch_tile<T, HS, 4>(a, num_seqs, group, parts, stream);
  else launch_tile<T, HS, (GMAX >= 8 ? 8 : 4)>(a, num_seqs, group, parts, stream);
}

// Per-dtype entry points (paged_attention_f16.cu, paged_attention_bf16.cu). Return false for
// an unsupported head size (FP8 caches: 128 and 256 only).
bool launch_f16(const Args &a, int head_size, bool fp8, int num_seqs, int parts,
                cudaStream_t stream);
bool launch_bf16(const Args &a, int head_size, bool fp8, int num_seqs, int parts,
                 cudaStream_t stream);

template <typename T>
bool launch_dtype(const Args &a, int head_size, bool fp8, int num_seqs, int parts,
                  cudaStream_t stream) {
  const int group = a.num_heads / a.num_kv_heads;
  if (fp8) {
    switch (head_size) {
      case 128:
        launch_mma<T, uint8_t, 128, MmaConfigFp8<128>::NST, MmaConfigFp8<128>::WARPS, true>(
            a, num_seqs, group, parts, stream);
        return true;
      case 256:
        launch_mma<T, uint8_t, 256, MmaConfigFp8<256>::NST, MmaConfigFp8<256>::WARPS, true>(
            a, num_seqs, group, parts, stream);
        return true;
      default: return false;
    }
  }
  switch (head_size) {
    case 64: launch_hs<T, 64>(a, num_seqs, parts, stream); return true;
    case 80: launch_hs<T, 80>(a, num_seqs, parts, stream); return true;
    case 96: launch_hs<T, 96>(a, num_seqs, parts, stream); return true;
    case 112: launch_hs<T, 112>(a, num_seqs, parts, stream); return true;
    case 128: launch_hs<T, 128>(a, num_seqs, parts, stream); return true;
    case 256: launch_hs<T, 256>(a, num_seqs, parts, stream); return true;
    default: return false;
  }
}

}  // namespace attn
}  // namespace vllm

// Paged decode attention on tensor cores, for every head size: 64, 128 and 256 natively, 80, 96
// and 112 as 128 with zero padding in shared memory (only the real row is read from memory).
//
// Work split: as the generic kernel, one CTA per (sequence, KV head, tile of up to 8 query heads
// of that KV head, partition). Its warps take the partition's 16-token sub-blocks round-robin;
// each warp runs its own cp.async pipeline of NST stages (one stage = the K and V rows of one
// sub-block, 2 x 16 x HS elements, copied into shared memory with 16-byte cp.async), so no CTA
// barrier sits in the main loop and NST - 1 sub-blocks per warp are always in flight.
//
// Per sub-block, one warp does (m16n8k16, fp32 accumulation):
//   S   [16 q heads x 8 tokens]  = Q  K^T   two n-tiles, HS/16 k-steps each. A = Q (registers,
//        loaded once; rows 8..15 are zero), B = K rows read from shared memory.
//   online softmax on S (lane (g, c) holds head g, tokens 2c, 2c+1, 8+2c, 9+2c; max and the
//        rescale once per sub-block, not per token),
//   O^T [HS x 8 q heads]         += V^T P^T  HS/16 m-tiles. B = P^T straight from S's
//        accumulator registers (the C layout of S is the B layout of P^T), for 16-bit caches
//        split as hi + lo in the operand type so that two MMAs keep P to ~16 bits; A = V^T from
//        V rows with byte permutes (two tokens' values of one column per register).
// The k index of q.k is a permutation of the head dimension chosen so that each lane reads whole
// 16-byte units of a K row (units 2c, 2c+1, 2c+8, 2c+9, ... of its token); V columns are
// assigned so that lane g reads units g, g+8, ... of its tokens. Shared memory rows are swizzled
// (16-byte unit u of row r stored at u ^ (r & 7)), which makes every one of these 16-byte reads,
// and the cp.async writes, free of bank conflicts.
//
// Out-of-range tokens of a partial sub-block (end of the sequence, start of a sliding window) get
// S = -inf and V = 0 (the cache there may hold anything, NaN included). At the end the warps'
// (m, l, O) are merged in shared memory with the log-sum-exp rule, exactly as the generic kernel.
//
// FP8 E4M3 caches (head 128 / 256): the same walk over half the bytes; each 16-byte unit holds 16
// values, converted to 8 f16 pairs with cvt.rn.f16x2.e4m3x2 and multiplied in f16 (Q converted
// to f16 once); k_scale is folded into the softmax scale, v_scale applied to the output. The
// lane-to-unit assignment keeps the same k permutation (FP8 unit c + 4i = 16-bit units 2c + 8i,
// 2c + 1 + 8i) and the swizzle gains a bit, u ^ ((r & 7) ^ ((r & 1) << 2)), to stay
// conflict-free on the shorter rows.
//
// Bytes: K and V of the context once per CTA (once per KV head when the group is <= 8 heads).
#pragma once

#include "paged_attention.cuh"

namespace vllm {
namespace attn {

constexpr int kSub = 16;  // tokens per pipeline stage

__device__ __forceinline__ void cp_async16(void *smem, const void *gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async16_evict_first(void *smem, const void *gmem,
                                                       uint64_t policy) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2;" ::"r"(s),
               "l"(gmem), "l"(policy)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;" ::: "memory");
}
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

// c += a b, m16n8k16, fp32 accumulators.
template <typename T>
__device__ __forceinline__ void mma16816(float c[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                         uint32_t a3, uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
}

// Two floats rounded to T, packed (first in the low half).
template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
  } else {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
  }
}

// The two values of a packed pair (low half first).
template <typename T> __device__ __forceinline__ float2 unpack2(uint32_t x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&x));
  } else {
    return __half22float2(*reinterpret_cast<const __half2 *>(&x));
  }
}

__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t sel) {
  uint32_t r;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(sel));
  return r;
}

__device__ __forceinline__ uint32_t word(const uint4 &v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// 16 e4m3 values (one 16-byte unit) to 8 f16 pairs, element 2i in the low half of h[i].
__device__ __forceinline__ void e4m3x16_to_half2x8(const uint4 &v, uint32_t h[8]) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint16_t lo = static_cast<uint16_t>(w[i] & 0xffffu);
    const uint16_t hi = static_cast<uint16_t>(w[i] >> 16);
    asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(h[2 * i]) : "h"(lo));
    asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(h[2 * i + 1]) : "h"(hi));
  }
}

// A 16-bit pair of T as an f16 pair (the operand type of the FP8-cache kernel).
template <typename T> __device__ __forceinline__ uint32_t to_half2(uint32_t x) {
  if constexpr (std::is_same_v<T, __half>) {
    return x;
  } else {
    const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&x));
    __half2 h = __float22half2_rn(f);
    return *reinterpret_cast<uint32_t *>(&h);
  }
}

// Shared memory of one CTA: WARPS warps x NST stages x (K, V) x 16 rows x HS cache elements.
template <typename KV, int HS, int NST, int WARPS> constexpr size_t mma_smem_bytes() {
  return static_cast<size_t>(WARPS) * NST * 2 * kSub * HS * sizeof(KV);
}

// T: query and output type (f16 / bf16). KV: cache element, T itself or uint8_t for FP8 e4m3
// (dequantized on load: e4m3 -> f16 with one cvt per pair, the MMAs run in f16, k_scale folded
// into the softmax scale and v_scale applied to the output).
// HR: the real head size; HS: the width the kernel computes with (HR rounded up to a multiple of
// 64: head sizes 80, 96 and 112 run as 128 with zero padding in shared memory and in Q, so only
// the real HR elements of each row are read from memory).
template <typename T, typename KV, int HS, int NST, int WARPS, bool EVICT_FIRST, int HR = HS>
__global__ void __launch_bounds__(WARPS * 32)
    paged_attention_mma_kernel(Args a) {
  static_assert(HS % 64 == 0, "head size must be a multiple of 64");
  static_assert(HR <= HS && HR % 16 == 0 && HS - HR < 64, "padding");
  constexpr bool FP8 = sizeof(KV) == 1;
  static_assert(FP8 || std::is_same_v<KV, T>, "16-bit caches hold T");
  static_assert(!FP8 || (HS % 128 == 0 && HR == HS), "FP8 caches: head size 128 or 256");
  using M = std::conditional_t<FP8, __half, T>;  // MMA operand type
  constexpr int EPU = 16 / sizeof(KV);      // cache elements per 16-byte unit
  constexpr int PPU = EPU / 2;              // element pairs per unit
  constexpr int UPR = HS / EPU;             // units per row
  constexpr int NU = HS / 32;               // 8-element groups of a K row a lane multiplies
  constexpr int NVU = HS / (8 * EPU);       // units of a V row a lane reads
  constexpr int MT = HS / 16;               // m-tiles of O^T
  constexpr int UPR_R = HR / EPU;           // units per row in memory
  constexpr int TILE = kSub * UPR;          // units of one K (or V) tile
  constexpr int CP = kSub * UPR_R / 32;     // cp.async per lane per tile
  constexpr int STAGE = 2 * TILE;           // units of one stage
  constexpr float kLog2e = 1.4426950408889634f;
  static_assert(kSub * UPR_R % 32 == 0, "whole cp.async rounds");
  // Row swizzle (16-byte unit u of row r at u ^ swz(r)); the FP8 rows (HS bytes) need the extra
  // bit to keep the reads below conflict-free.
  auto swz = [](int r) { return FP8 ? ((r & 7) ^ ((r & 1) << 2)) : (r & 7); };
  extern __shared__ uint4 smem[];
  pdl_wait_and_trigger();

  const CtaWork wk = cta_work(a, 8);
  const int seq = wk.seq, part = wk.part, kvh = wk.kvh, head0 = wk.head0, n_heads = wk.n_heads;
  const int seq_len = wk.seq_len, start = wk.start, end = wk.end;

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, c = lane & 3;

  // Q of head g (zero rows past the tile), the 8-element groups q.k uses: 2c + (j & 1) + 8 (j >> 1).
  uint32_t qf[NU][4];
  {
    const T *q = static_cast<const T *>(a.query) + seq * a.q_stride + (head0 + g) * HR;
#pragma unroll
    for (int j = 0; j < NU; ++j) {
      const int u = 2 * c + (j & 1) + 8 * (j >> 1);
      uint4 v = make_uint4(0, 0, 0, 0);
      if (g < n_heads && u * 8 < HR) v = *reinterpret_cast<const uint4 *>(q + u * 8);
      const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int e = 0; e < 4; ++e) qf[j][e] = FP8 ? to_half2<T>(w[e]) : w[e];
    }
  }
  const float qk_scale = a.scale * (FP8 ? a.k_scale : 1.0f) * kLog2e;  // S in log2 units
  const float slope =
      (a.alibi_slopes != nullptr && g < n_heads) ? a.alibi_slopes[head0 + g] * kLog2e : 0.0f;

  float acc[MT][4];
#pragma unroll
  for (int i = 0; i < MT; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
  float m = -INFINITY, l = 0.0f;

  // This warp's sub-blocks: sb_begin + warp + WARPS * k, k < nk.
  const int sb_begin = start / kSub;
  const int sb_end = start < end ? (end + kSub - 1) / kSub : sb_begin;
  const int nsb = sb_end - sb_begin;
  const int nk = nsb > warp ? (nsb - warp + WARPS - 1) / WARPS : 0;
  const int sub_shift = a.block_size == 32 ? 1 : 0;  // sub-blocks per cache block: 1 or 2

  const int32_t *table = a.block_tables + (int64_t)seq * a.max_blocks_per_seq;
  auto table_at = [&](int k) -> int {
    const int sb = sb_begin + warp + WARPS * k;
    return k < nk ? table[sb >> sub_shift] : 0;
  };
  // Block ids for issue indices [kb, kb + 32) and the next 32, one per lane.
  int tb_cur = table_at(lane), tb_next = table_at(32 + lane);

  const KV *kc = static_cast<const KV *>(a.key_cache);
  const KV *vc = static_cast<const KV *>(a.value_cache);
  uint4 *wsm = smem + warp * NST * STAGE;  // this warp's stages
  uint64_t policy = 0;
  if constexpr (EVICT_FIRST)
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));

  // Warp-uniform: every lane calls it with the same k.
  auto issue = [&](int k) {
    if (k > 0 && (k & 31) == 0) {
      tb_cur = tb_next;
      tb_next = table_at(k + 32 + lane);
    }
    const int blk = __shfl_sync(0xffffffffu, tb_cur, k & 31);
    const int sb = sb_begin + warp + WARPS * k;
    const int64_t row0 = ((int64_t)blk * a.num_kv_heads + kvh) * a.block_size +
                         ((sb << 4) & (a.block_size - 1));
    const uint4 *ksrc = reinterpret_cast<const uint4 *>(kc + row0 * HR);
    const uint4 *vsrc = reinterpret_cast<const uint4 *>(vc + row0 * HR);
    uint4 *dst = wsm + (k % NST) * STAGE;
#pragma unroll
    for (int i = 0; i < CP; ++i) {
      const int idx = lane + 32 * i;
      const int r = idx / UPR_R, u = idx % UPR_R;
      const int d = r * UPR + (u ^ swz(r));
      if constexpr (EVICT_FIRST) {
        cp_async16_evict_first(dst + d, ksrc + idx, policy);
        cp_async16_evict_first(dst + TILE + d, vsrc + idx, policy);
      } else {
        cp_async16(dst + d, ksrc + idx);
        cp_async16(dst + TILE + d, vsrc + idx);
      }
    }
  };

  if constexpr (HR < HS) {
    // The padding columns are never copied into: zero them once for every stage.
    for (int i = lane; i < NST * STAGE; i += 32) wsm[i] = make_uint4(0, 0, 0, 0);
    __syncwarp();
  }
#pragma unroll
  for (int k = 0; k < NST - 1; ++k) {
    if (k < nk) issue(k);
    cp_async_commit();
  }

  for (int k = 0; k < nk; ++k) {
    __syncwarp();  // every lane is done with the stage the next issue overwrites
    if (k + NST - 1 < nk) issue(k + NST - 1);
    cp_async_commit();
    cp_async_wait<NST - 1>();
    __syncwarp();  // the other lanes' copies of sub-block k are visible

    const uint4 *ks = wsm + (k % NST) * STAGE;
    const uint4 *vs = ks + TILE;
    const int t0 = (sb_begin + warp + WARPS * k) * kSub;
    const bool partial = t0 < start || t0 + kSub > end;

    // S = Q K^T: n-tile nt holds tokens t0 + 8 nt + (0..7); this lane's token row is 8 nt + g.
    float s[2][4];
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
      const int r = 8 * nt + g;
      if constexpr (!FP8) {
#pragma unroll
        for (int j = 0; j < NU; ++j) {
          const int u = 2 * c + (j & 1) + 8 * (j >> 1);
          const uint4 kv = ks[r * UPR + (u ^ swz(r))];
          mma16816<M>(s[nt], qf[j][0], 0u, qf[j][1], 0u, kv.x, kv.y);
          mma16816<M>(s[nt], qf[j][2], 0u, qf[j][3], 0u, kv.z, kv.w);
        }
      } else {
        // FP8 unit c + 4i holds the 8-element groups 2c + 8i and 2c + 1 + 8i (j = 2i, 2i + 1).
#pragma unroll
        for (int i = 0; i < NU / 2; ++i) {
          const int u = c + 4 * i;
          uint32_t h[8];
          e4m3x16_to_half2x8(ks[r * UPR + (u ^ swz(r))], h);
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const uint32_t *q = qf[2 * i + e];
            mma16816<M>(s[nt], q[0], 0u, q[1], 0u, h[4 * e], h[4 * e + 1]);
            mma16816<M>(s[nt], q[2], 0u, q[3], 0u, h[4 * e + 2], h[4 * e + 3]);
          }
        }
      }
    }
    // Head g's logits for tokens 2c, 2c + 1, 8 + 2c, 9 + 2c of the sub-block.
    float x[4] = {s[0][0], s[0][1], s[1][0], s[1][1]};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int t = t0 + 2 * c + (i & 1) + 8 * (i >> 1);
      x[i] = x[i] * qk_scale + slope * (float)(t - (seq_len - 1));
      if (partial && (t < start || t >= end)) x[i] = -INFINITY;
    }
    float mb = fmaxf(fmaxf(x[0], x[1]), fmaxf(x[2], x[3]));
    mb = fmaxf(mb, __shfl_xor_sync(0xffffffffu, mb, 1));
    mb = fmaxf(mb, __shfl_xor_sync(0xffffffffu, mb, 2));
    const float m_new = fmaxf(m, mb);  // finite: every sub-block holds a token in range
    const float corr = exp2f(m - m_new);
    float p[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) p[i] = exp2f(x[i] - m_new);
    l = l * corr + (p[0] + p[1]) + (p[2] + p[3]);
    m = m_new;
    // 16-bit caches: P as hi + lo in the operand type; two MMAs keep ~16 (bf16) / ~22 (f16) bits
    // of each weight where one would round it to 8 / 11 bits (a single f16 P missed f16's 1e-3
    // tolerance). FP8 caches: one f16 P; its 2^-12 rounding is far below e4m3's 2^-4.
    const uint32_t pb0 = pack2<M>(p[0], p[1]), pb1 = pack2<M>(p[2], p[3]);
    uint32_t pl0 = 0, pl1 = 0;
    if constexpr (!FP8) {
      const float2 h0 = unpack2<M>(pb0), h1 = unpack2<M>(pb1);
      pl0 = pack2<M>(p[0] - h0.x, p[1] - h0.y);
      pl1 = pack2<M>(p[2] - h1.x, p[3] - h1.y);
    }
    // O^T's columns 2c, 2c + 1 are heads 2c, 2c + 1, whose factors live in lanes 8c and 8c + 4.
    const float c0 = __shfl_sync(0xffffffffu, corr, 8 * c);
    const float c1 = __shfl_sync(0xffffffffu, corr, 8 * c + 4);
#pragma unroll
    for (int i = 0; i < MT; ++i) {
      acc[i][0] *= c0;
      acc[i][1] *= c1;
      acc[i][2] *= c0;
      acc[i][3] *= c1;
    }

    // O^T += V^T P^T. Token rows 2c, 2c + 1, 2c + 8, 2c + 9; units g + 8 kk; m-tile PPU kk + pp
    // takes element pair pp of the unit (its rows g and g + 8 are the pair's two elements).
#pragma unroll
    for (int kk = 0; kk < NVU; ++kk) {
      const int u = g + 8 * kk;
      uint32_t w[4][PPU];
#pragma unroll
      for (int ri = 0; ri < 4; ++ri) {
        const int r = 2 * c + (ri & 1) + 8 * (ri >> 1);
        uint4 v = vs[r * UPR + (u ^ swz(r))];
        if (partial) {
          const int t = t0 + r;
          if (t < start || t >= end) v = make_uint4(0, 0, 0, 0);
        }
        if constexpr (FP8) {
          e4m3x16_to_half2x8(v, w[ri]);
        } else {
#pragma unroll
          for (int pp = 0; pp < PPU; ++pp) w[ri][pp] = word(v, pp);
        }
      }
#pragma unroll
      for (int pp = 0; pp < PPU; ++pp) {
        const uint32_t w0 = w[0][pp], w1 = w[1][pp], w2 = w[2][pp], w3 = w[3][pp];
        const uint32_t a0 = prmt(w0, w1, 0x5410), a1 = prmt(w0, w1, 0x7632);
        const uint32_t a2 = prmt(w2, w3, 0x5410), a3 = prmt(w2, w3, 0x7632);
        mma16816<M>(acc[PPU * kk + pp], a0, a1, a2, a3, pb0, pb1);
        if constexpr (!FP8) mma16816<M>(acc[PPU * kk + pp], a0, a1, a2, a3, pl0, pl1);
      }
    }
  }
  cp_async_wait<0>();
  __syncwarp();

  // Per warp: l summed over the four lanes of a head; (m, l, O) into this warp's stage memory.
  l += __shfl_xor_sync(0xffffffffu, l, 1);
  l += __shfl_xor_sync(0xffffffffu, l, 2);
  __shared__ float s_m[WARPS][8], s_l[WARPS][8];
  float *s_o = reinterpret_cast<float *>(wsm);  // [8 heads][HR]
  if (c == 0) {
    s_m[warp][g] = m / kLog2e;  // natural-log units, as the generic kernel and the reduce use
    s_l[warp][g] = l;
  }
  const float vs_ = FP8 ? a.v_scale : 1.0f;
#pragma unroll
  for (int i = 0; i < MT; ++i) {
    const int d = EPU * (g + 8 * (i / PPU)) + 2 * (i % PPU);  // O^T rows g, g + 8 of m-tile i
    if (d >= HR) continue;  // padding
    *reinterpret_cast<float2 *>(s_o + (2 * c) * HR + d) =
        make_float2(acc[i][0] * vs_, acc[i][2] * vs_);
    *reinterpret_cast<float2 *>(s_o + (2 * c + 1) * HR + d) =
        make_float2(acc[i][1] * vs_, acc[i][3] * vs_);
  }
  __syncthreads();

  merge_warps_and_store<T, HR, WARPS>(a, seq, part, head0, n_heads, &s_m[0][0], &s_l[0][0], 8,
                                      reinterpret_cast<const float *>(smem), NST * STAGE * 4);
}

// Sets the kernel's dynamic shared-memory limit once, then launches it (and the v2 reduce).
template <typename T, typename KV, int HS, int NST, int WARPS, bool EVICT_FIRST, int HR = HS>
void launch_mma(const Args &a, int num_seqs, int group_size, int parts, cudaStream_t stream) {
  auto *kernel = paged_attention_mma_kernel<T, KV, HS, NST, WARPS, EVICT_FIRST, HR>;
  constexpr size_t smem = mma_smem_bytes<KV, HS, NST, WARPS>();
  static const bool attr_set = [&] {
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                static_cast<int>(smem)) == cudaSuccess;
  }();
  (void)attr_set;  // a failure resurfaces as the launch's error
  const int tiles = (group_size + 7) / 8;
  const dim3 grid(a.num_kv_heads * tiles, num_seqs, parts);
  launch_pdl_smem(kernel, grid, dim3(WARPS * 32), smem, stream, a);
  if (a.tmp_out != nullptr)
    launch_pdl(paged_attention_reduce_kernel<T, HR>, dim3(a.num_heads, num_seqs), dim3(kThreads),
               stream, a);
}

}  // namespace attn
}  // namespace vllm

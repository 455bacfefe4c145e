// Prefill attention over the paged KV cache (chunked prefill, prefix caching): each sequence's
// new query tokens attend causally to its whole context in the cache (cached prefix + the new
// tokens themselves, which reshape_and_cache wrote before), optionally within a sliding window.
//
// Flash-attention-2 style: a CTA of 4 warps owns 64 MTW query rows of one (sequence, query head); it
// walks the context in tiles of BN tokens, double-buffered in shared memory with cp.async (a tile
// spans BN / block_size cache blocks, gathered through the block table; tokens past the context
// are zero-filled). Each warp owns 16 MTW query rows and computes, per tile, with mma.sync m16n8k16 and
// fp32 accumulators:
//   S = Q K^T (Q fragments held in registers for head sizes <= 128, re-read from shared memory
//   with ldmatrix above; K with ldmatrix), the causal / window mask, the online softmax
//   (running max and sum per row, rescale of O once per tile), then O += P V (P from S's
//   accumulators, which are already in the A-operand layout; V with ldmatrix.trans).
// P is rounded once to the dtype by default, as FlashAttention does (error <= one rounding of
// the weights times the largest |V| the row sees); split_p keeps it as hi + lo halves (two MMAs
// per P.V step, ~16 bits for bf16, ~25% slower), for callers that need every element within the
// dtype's element-wise tolerance even where a row's output cancels (NOTES.md).
// Shared-memory rows are padded by one 16-byte unit, which makes ldmatrix (8 rows, one unit each)
// and the cp.async writes conflict-free for every head size. The tiles of a query block that lie
// wholly in its future are never loaded; with the tile-major grid the query tiles with the most
// keys start first across all heads and sequences.
//
// Flops (causal): 4 * head_size * sum over query rows of the keys each row sees, per head.
#pragma once

#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "paged_attention_mma.cuh"

namespace vllm {
namespace attn {

struct PrefillArgs {
  void *out;
  const void *query;
  const void *key_cache;
  const void *value_cache;
  const int32_t *block_tables;
  const int32_t *cu_query_lens;
  const int32_t *seq_lens;
  int num_heads;
  int num_kv_heads;
  int block_size;
  int max_blocks_per_seq;
  int64_t q_stride;
  int sliding_window;
  float scale;
  float max_slack;  // OPT: log2 units a row's max may grow by before the running max moves
  int tile_major;   // grid (heads, seqs, query tiles), longest tiles of every head first
  float v_scale;    // FP8 caches: value = e4m3 value * v_scale (k_scale is folded into scale)
};

constexpr int kPrefillWarps = 4;

__device__ __forceinline__ void cp_async16_zfill(void *smem, const void *gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(gmem), "r"(n)
               : "memory");
}

// 2^x on the special-function unit (flush-to-zero: results below 2^-126 are 0, which the
// softmax weights can afford); -inf gives 0.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *smem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void *smem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

// MTW: 16-row m-tiles per warp (the CTA owns 64 * MTW query rows); each K / V fragment read from
// shared memory feeds MTW MMAs. SPLIT: P as hi + lo (two MMAs per P.V step).
// FP8: one 16-bit K/V tile (converted from the e4m3 staging tiles) instead of two, plus the
// double-buffered e4m3 staging tiles (BN rows of HS bytes, K and V).
template <int HS, int BN, int MTW, bool FP8 = false> constexpr size_t prefill_smem_bytes() {
  return static_cast<size_t>(16 * MTW * kPrefillWarps + (FP8 ? 2 : 4) * BN) * (HS / 8 + 1) * 16 +
         (FP8 ? static_cast<size_t>(4 * BN * HS) : 0);
}

// KKU: unroll factor of the q.K k-step loop (0: full), a register-pressure knob.
// OPT (second version, NOTES.md): the softmax as one FFMA + ex2 per score (max over raw scores),
// the running max raised only when a row's max grows by more than kMaxSlack (log2 units; the
// weights then stay <= 2^kMaxSlack, exact in fp32) and the O / l rescale skipped when no row of the
// warp's m-tile moved (a multiply by exactly 1), and the K/V copy with one column per thread and
// the length check hoisted out of full tiles.
constexpr float kMaxSlack = 8.0f;  // PrefillArgs::max_slack's default

// MV: measurement variants (bits; 0 is the library's kernel; NOTES.md, 2026-11-22 "mask").
// The library's mask is a block of its own before the row max, one compare pair and a select per
// element. kMvInline: the test per element inside the max loop instead (key and row positions,
// j <= pos and the window); kMvOldMask: as kMvInline plus key < seq_len (the kernel before, which
// the causal test already implies for every stored row); kMvWarpSkip: a warp skips the compute of
// a tile that holds no key any of its rows sees (the last diagonal tile, for half the warps);
// kMvNoMask: no mask at all (wrong results, timing only).
enum : int { kMvOldMask = 1, kMvWarpSkip = 2, kMvNoMask = 4, kMvInline = 8 };

// FP8: the caches hold e4m3 bytes; each tile is copied (cp.async, double-buffered) as bytes into a
// staging area, then converted once per tile to T in shared memory (exact: e4m3 -> f16 with
// cvt.rn.f16x2.e4m3x2, f16 -> bf16 through f32, both lossless for e4m3's 4 significant bits) and
// read by the same MMA code; k_scale is folded into the softmax scale by the launcher, v_scale
// multiplies the output once.
template <typename T, int HS, int BN, int MTW, bool SPLIT, int KKU = 0, bool OPT = true,
          bool FP8 = false, int MV = 0>
__global__ void __launch_bounds__(kPrefillWarps * 32)
    prefill_attention_kernel(PrefillArgs a) {
  constexpr int BM = 16 * MTW * kPrefillWarps;
  constexpr int UPR = HS / 8;     // 16-byte units per row
  constexpr int RS = UPR + 1;     // padded row stride, in units
  constexpr int KSTEPS = HS / 16;
  constexpr int NT = BN / 8;      // n-tiles of S
  constexpr int DT = HS / 8;      // n-tiles of O
  constexpr bool Q_IN_REGS = HS * MTW <= 128;
  constexpr float kLog2e = 1.4426950408889634f;
  constexpr int THREADS = kPrefillWarps * 32;
  extern __shared__ uint4 smem[];
  uint4 *qs = smem;                  // [BM][RS]
  uint4 *kvs = smem + BM * RS;       // [2 buffers][K, V][BN][RS] (FP8: one buffer)
  constexpr int UPR8 = HS / 16;      // FP8: 16-byte units per cache row
  uint4 *stage = kvs + (FP8 ? 2 : 4) * BN * RS;  // FP8: [2 buffers][K, V][BN][UPR8] e4m3 bytes
  pdl_wait_and_trigger();

  // CTAs start in blockIdx order (x fastest): with tile_major every (head, sequence) pair's
  // last query tile (the most keys under causality) starts before any shorter one, so the
  // long CTAs do not trail the grid (longest-processing-time-first).
  const int seq = a.tile_major ? blockIdx.y : blockIdx.z;
  const int head = a.tile_major ? blockIdx.x : blockIdx.y;
  const int tile = a.tile_major ? gridDim.z - 1 - blockIdx.z : gridDim.x - 1 - blockIdx.x;
  const int q_begin = a.cu_query_lens[seq];
  const int q_len = a.cu_query_lens[seq + 1] - q_begin;
  const int q0 = tile * BM;
  if (q0 >= q_len) return;
  const int seq_len = a.seq_lens[seq];
  const int ctx0 = seq_len - q_len;  // position of query row 0
  const int kvh = head / (a.num_heads / a.num_kv_heads);
  const int rows = min(BM, q_len - q0);
  // Keys this block can see: [lo, hi).
  const int hi = min(seq_len, ctx0 + q0 + rows);
  const int lo = a.sliding_window > 0 ? max(0, ctx0 + q0 - a.sliding_window + 1) : 0;
  const int t_first = lo / BN, t_end = (hi + BN - 1) / BN;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, c = lane & 3;
  const T *qg = static_cast<const T *>(a.query) + (int64_t)(q_begin + q0) * a.q_stride + head * HS;
  const T *kc = static_cast<const T *>(a.key_cache);
  const T *vc = static_cast<const T *>(a.value_cache);
  const int32_t *table = a.block_tables + (int64_t)seq * a.max_blocks_per_seq;

  // Q tile (rows past the sequence's queries zero-filled).
  for (int i = tid; i < BM * UPR; i += THREADS) {
    const int r = i / UPR, u = i % UPR;
    cp_async16_zfill(qs + r * RS + u, qg + (int64_t)r * a.q_stride + u * 8, r < rows);
  }
  // Block size 16 or 32: shifts and masks, not integer divisions, in the copy loop.
  const int bs_shift = a.block_size == 32 ? 5 : 4, bs_mask = a.block_size - 1;
  auto issue = [&](int t, int buf) {
    uint4 *ks = kvs + buf * 2 * BN * RS, *vs = ks + BN * RS;
    const int kv0 = t * BN;
    if constexpr (FP8) {
      static_assert(THREADS % UPR8 == 0 && BN % (THREADS / UPR8) == 0, "FP8 copy split");
      const uint8_t *kc8 = static_cast<const uint8_t *>(a.key_cache);
      const uint8_t *vc8 = static_cast<const uint8_t *>(a.value_cache);
      uint4 *ks8 = stage + buf * 2 * BN * UPR8, *vs8 = ks8 + BN * UPR8;
      constexpr int RSTEP = THREADS / UPR8, NR = BN / RSTEP;
      const int u = tid % UPR8, r0 = tid / UPR8;
      const bool all_valid = kv0 + BN <= seq_len;
      const int64_t col = (int64_t)kvh * (HS << bs_shift) + u * 16;
#pragma unroll
      for (int k = 0; k < NR; ++k) {
        const int r = r0 + k * RSTEP, tok = kv0 + r;
        const bool valid = all_valid || tok < seq_len;
        int64_t off = 0;
        if (valid) {
          const int64_t blk = table[tok >> bs_shift];
          off = blk * ((int64_t)a.num_kv_heads * (HS << bs_shift)) + col + (tok & bs_mask) * HS;
        }
        cp_async16_zfill(ks8 + r * UPR8 + u, kc8 + off, valid);
        cp_async16_zfill(vs8 + r * UPR8 + u, vc8 + off, valid);
      }
    } else if constexpr (OPT && THREADS % UPR == 0) {
      // Thread tid copies column u of rows r0, r0 + RSTEP, ...
      constexpr int RSTEP = THREADS / UPR, NR = BN / RSTEP;
      const int u = tid % UPR, r0 = tid / UPR;
      const bool all_valid = kv0 + BN <= seq_len;
      const int64_t col = (int64_t)kvh * (HS << bs_shift) + u * 8;
#pragma unroll
      for (int k = 0; k < NR; ++k) {
        const int r = r0 + k * RSTEP, tok = kv0 + r;
        const bool valid = all_valid || tok < seq_len;
        int64_t off = 0;
        if (valid) {
          const int64_t blk = table[tok >> bs_shift];
          off = blk * ((int64_t)a.num_kv_heads * (HS << bs_shift)) + col + (tok & bs_mask) * HS;
        }
        cp_async16_zfill(ks + r * RS + u, kc + off, valid);
        cp_async16_zfill(vs + r * RS + u, vc + off, valid);
      }
    } else {
#pragma unroll 4
      for (int i = tid; i < BN * UPR; i += THREADS) {
        const int r = i / UPR, u = i % UPR;  // constant divisor
        const int tok = kv0 + r;
        const bool valid = tok < seq_len;
        int64_t off = 0;
        if (valid) {
          const int64_t blk = table[tok >> bs_shift];
          off = ((((blk * a.num_kv_heads + kvh) << bs_shift) | (tok & bs_mask)) * HS) + u * 8;
        }
        cp_async16_zfill(ks + r * RS + u, kc + off, valid);
        cp_async16_zfill(vs + r * RS + u, vc + off, valid);
      }
    }
  };
  issue(t_first, 0);
  cp_async_commit();

  uint32_t qf[Q_IN_REGS ? MTW : 1][Q_IN_REGS ? KSTEPS : 1][4];
  float o[MTW][DT][4];
#pragma unroll
  for (int mt = 0; mt < MTW; ++mt)
#pragma unroll
    for (int i = 0; i < DT; ++i) o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.0f;
  float m[MTW][2], l[MTW][2];
#pragma unroll
  for (int mt = 0; mt < MTW; ++mt) m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.0f;
  const float sl2 = a.scale * kLog2e;
  // Rows of m-tile mt of this warp: warp * 16 * MTW + 16 mt + (g, g + 8).
  const int row0 = warp * 16 * MTW;
  // ldmatrix row addresses: lane -> (matrix lane / 8, row lane % 8).
  const int lm = lane >> 3, lr = lane & 7;
  auto q_frag = [&](uint32_t r[4], int mt, int kk) {
    ldmatrix_x4(r, qs + (row0 + 16 * mt + (lm & 1) * 8 + lr) * RS + kk * 2 + (lm >> 1));
  };

  // Key j is visible to the row at position pos iff 0 <= pos - j < win (a window >= seq_len is no
  // window). j < seq_len needs no test: every stored row has pos < seq_len (rows past the queries
  // see zero-filled keys, finite scores, and are never stored).
  const int win = a.sliding_window > 0 && a.sliding_window < seq_len ? a.sliding_window : seq_len;

  // One key tile. (The loop body is a lambda: with the kMvOldMask test, the same code as a plain
  // loop body compiled to a mask ~380 instructions longer per warp and tile, 5% slower on
  // 16 x 512; NOTES.md.)
  auto tile_step = [&](const int t) {
    const int buf = (t - t_first) & 1;
    if (t + 1 < t_end) {
      issue(t + 1, buf ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    // FP8: each thread converts exactly the staging units its own cp.async wrote (the copy
    // and the conversion loop map tid to the same (row, unit) pairs), which cp.async.wait_group
    // makes visible to it: no barrier before the conversion, one after it (it also covers Q).
    if constexpr (!FP8) __syncthreads();
    if constexpr (FP8) {
      static_assert(BN / (THREADS / UPR8) * THREADS == BN * UPR8, "copy = conversion ownership");
      // e4m3 staging tile -> the 16-bit K/V tile (K rows then V rows, as in the staging area).
      const uint4 *st = stage + buf * 2 * BN * UPR8;
      for (int i = tid; i < 2 * BN * UPR8; i += THREADS) {
        const int rr = i / UPR8, u = i % UPR8;
        uint32_t h[8];
        e4m3x16_to_half2x8(st[i], h);
        if constexpr (!std::is_same_v<T, __half>) {
#pragma unroll
          for (int k = 0; k < 8; ++k) {
            const float2 f = __half22float2(*reinterpret_cast<const __half2 *>(&h[k]));
            h[k] = pack2<T>(f.x, f.y);
          }
        }
        uint4 *dst = kvs + rr * RS + 2 * u;
        dst[0] = make_uint4(h[0], h[1], h[2], h[3]);
        dst[1] = make_uint4(h[4], h[5], h[6], h[7]);
      }
      __syncthreads();
    }
    if constexpr (Q_IN_REGS) {
      if (t == t_first) {
#pragma unroll
        for (int mt = 0; mt < MTW; ++mt)
#pragma unroll
          for (int kk = 0; kk < KSTEPS; ++kk) q_frag(qf[mt][kk], mt, kk);
      }
    }
    const uint4 *ks = kvs + (FP8 ? 0 : buf) * 2 * BN * RS, *vs = ks + BN * RS;
    const int kv0 = t * BN;
    // Mask (only tiles that reach past a row's position, the window start or the context end
    // need it).
    const bool full = (MV & kMvNoMask) != 0 ||
                      (kv0 + BN <= ctx0 + q0 + 1 && kv0 + BN <= seq_len &&
                       (a.sliding_window == 0 || kv0 > ctx0 + q0 + BM - 1 - a.sliding_window));
    // kMvWarpSkip: does any row of this warp see a key of this tile? (0 <= pos - j < win for some
    // pos of its rows that the block stores and j of the tile.)
    const int wpos0 = ctx0 + q0 + row0;
    const bool warp_sees = (MV & kMvWarpSkip) == 0 ||
                           (row0 < rows && kv0 <= wpos0 + 16 * MTW - 1 && kv0 + BN - 1 + win > wpos0);
    if (warp_sees) {

    float s[MTW][NT][4];
#pragma unroll
    for (int mt = 0; mt < MTW; ++mt)
#pragma unroll
      for (int i = 0; i < NT; ++i) s[mt][i][0] = s[mt][i][1] = s[mt][i][2] = s[mt][i][3] = 0.0f;
#pragma unroll(KKU == 0 ? KSTEPS : KKU)
    for (int kk = 0; kk < KSTEPS; ++kk) {
      uint32_t qa[MTW][4];
#pragma unroll
      for (int mt = 0; mt < MTW; ++mt) {
        if constexpr (Q_IN_REGS) {
#pragma unroll
          for (int e = 0; e < 4; ++e) qa[mt][e] = qf[mt][kk][e];
        } else {
          q_frag(qa[mt], mt, kk);
        }
      }
#pragma unroll
      for (int np = 0; np < NT / 2; ++np) {
        uint32_t kb[4];
        ldmatrix_x4(kb, ks + (np * 16 + (lm >> 1) * 8 + lr) * RS + kk * 2 + (lm & 1));
#pragma unroll
        for (int mt = 0; mt < MTW; ++mt) {
          mma16816<T>(s[mt][2 * np], qa[mt][0], qa[mt][1], qa[mt][2], qa[mt][3], kb[0], kb[1]);
          mma16816<T>(s[mt][2 * np + 1], qa[mt][0], qa[mt][1], qa[mt][2], qa[mt][3], kb[2], kb[3]);
        }
      }
    }

    // Mask, scale to log2 units, online softmax; P in the A layout (k-step j of P.V takes
    // n-tiles 2j and 2j + 1 of S).
    float mu[MTW][2];  // the max each row's P is relative to
    if constexpr (OPT) {
      // m in log2 units; scores stay raw until exp2(s * sl2 - mu) (one FFMA).
      if constexpr ((MV & (kMvInline | kMvOldMask)) == 0) {
        // The mask: pos - j = d - k for element (nt, e) of m-tile mt, k a constant.
        if (!full) {
#pragma unroll
          for (int mt = 0; mt < MTW; ++mt) {
            const int d = ctx0 + q0 + row0 + 16 * mt + g - kv0 - 2 * c, dw = d - win;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
              for (int e = 0; e < 4; ++e) {
                const int k = nt * 8 + (e & 1) - (e >> 1) * 8;
                if (!(k <= d && k > dw)) s[mt][nt][e] = -INFINITY;
              }
          }
        }
      }
#pragma unroll
      for (int mt = 0; mt < MTW; ++mt) {
        const int pos0 = ctx0 + q0 + row0 + 16 * mt + g;
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            float x = s[mt][nt][e];
            if (!full && (MV & (kMvInline | kMvOldMask)) != 0) {
              const int j = kv0 + nt * 8 + 2 * c + (e & 1);
              const int pos = pos0 + (e >> 1) * 8;
              const bool ok = j <= pos && ((MV & kMvOldMask) == 0 || j < seq_len) &&
                              (a.sliding_window == 0 || j > pos - a.sliding_window);
              if (!ok) x = -INFINITY;
            }
            s[mt][nt][e] = x;
            mx[e >> 1] = fmaxf(mx[e >> 1], x);
          }
        float corr[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
          mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
          const float mx2 = mx[r] * sl2;  // -inf stays -inf (sl2 > 0)
          const float mnew = mx2 > m[mt][r] + a.max_slack ? mx2 : m[mt][r];
          mu[mt][r] = mnew == -INFINITY ? 0.0f : mnew;
          corr[r] = mnew == m[mt][r] ? 1.0f : fast_exp2(m[mt][r] - mu[mt][r]);  // 0 from -inf
          m[mt][r] = mnew;
        }
        if (__any_sync(0xffffffffu, corr[0] != 1.0f || corr[1] != 1.0f)) {
#pragma unroll
          for (int r = 0; r < 2; ++r) l[mt][r] *= corr[r];
#pragma unroll
          for (int i = 0; i < DT; ++i) {
            o[mt][i][0] *= corr[0];
            o[mt][i][1] *= corr[0];
            o[mt][i][2] *= corr[1];
            o[mt][i][3] *= corr[1];
          }
        }
      }
    } else {
#pragma unroll
    for (int mt = 0; mt < MTW; ++mt) {
      const int pos0 = ctx0 + q0 + row0 + 16 * mt + g;  // positions of rows g and g + 8
      float mx[2] = {m[mt][0], m[mt][1]};
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float x = s[mt][nt][e] * sl2;
          if (!full) {
            const int j = kv0 + nt * 8 + 2 * c + (e & 1);
            const int pos = pos0 + (e >> 1) * 8;
            const bool ok = j <= pos && j < seq_len &&
                            (a.sliding_window == 0 || j > pos - a.sliding_window);
            if (!ok) x = -INFINITY;
          }
          s[mt][nt][e] = x;
          mx[e >> 1] = fmaxf(mx[e >> 1], x);
        }
      float corr[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        mu[mt][r] = mx[r] == -INFINITY ? 0.0f : mx[r];  // a row with nothing visible yet
        corr[r] = fast_exp2(m[mt][r] - mu[mt][r]);
        m[mt][r] = mx[r];
        l[mt][r] *= corr[r];
      }
#pragma unroll
      for (int i = 0; i < DT; ++i) {
        o[mt][i][0] *= corr[0];
        o[mt][i][1] *= corr[0];
        o[mt][i][2] *= corr[1];
        o[mt][i][3] *= corr[1];
      }
    }
    }
    // O += P V, 16 keys (one k-step) at a time; P made just before its k-step.
#pragma unroll
    for (int j = 0; j < NT / 2; ++j) {
      uint32_t pa[MTW][4], pl[MTW][4];
#pragma unroll
      for (int mt = 0; mt < MTW; ++mt) {
        float p[8];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          if constexpr (OPT) {
            p[e] = fast_exp2(fmaf(s[mt][2 * j][e], sl2, -mu[mt][e >> 1]));
            p[4 + e] = fast_exp2(fmaf(s[mt][2 * j + 1][e], sl2, -mu[mt][e >> 1]));
          } else {
            p[e] = fast_exp2(s[mt][2 * j][e] - mu[mt][e >> 1]);
            p[4 + e] = fast_exp2(s[mt][2 * j + 1][e] - mu[mt][e >> 1]);
          }
        }
        l[mt][0] += p[0] + p[1] + p[4] + p[5];
        l[mt][1] += p[2] + p[3] + p[6] + p[7];
        // A register e holds p[b], p[b + 1], b = 2 (e & 1) + 4 (e >> 1): rows g / g + 8, keys
        // 2c, 2c + 1 of n-tile 2j, then of n-tile 2j + 1.
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int b = (e & 1) * 2 + (e >> 1) * 4;
          pa[mt][e] = pack2<T>(p[b], p[b + 1]);
          pl[mt][e] = 0u;
          if constexpr (SPLIT) {
            const float2 h = unpack2<T>(pa[mt][e]);
            pl[mt][e] = pack2<T>(p[b] - h.x, p[b + 1] - h.y);
          }
        }
      }
#pragma unroll
      for (int dp = 0; dp < DT / 2; ++dp) {
        uint32_t vb[4];
        ldmatrix_x4_trans(vb, vs + (j * 16 + (lm & 1) * 8 + lr) * RS + dp * 2 + (lm >> 1));
#pragma unroll
        for (int mt = 0; mt < MTW; ++mt) {
          const uint32_t *pj = pa[mt];
          mma16816<T>(o[mt][2 * dp], pj[0], pj[1], pj[2], pj[3], vb[0], vb[1]);
          mma16816<T>(o[mt][2 * dp + 1], pj[0], pj[1], pj[2], pj[3], vb[2], vb[3]);
          if constexpr (SPLIT) {
            const uint32_t *lj = pl[mt];
            mma16816<T>(o[mt][2 * dp], lj[0], lj[1], lj[2], lj[3], vb[0], vb[1]);
            mma16816<T>(o[mt][2 * dp + 1], lj[0], lj[1], lj[2], lj[3], vb[2], vb[3]);
          }
        }
      }
    }
    }  // warp_sees
    __syncthreads();  // the buffer is rewritten by the next iteration's issue
  };
  for (int t = t_first; t < t_end; ++t) tile_step(t);

  T *og = static_cast<T *>(a.out) + ((int64_t)(q_begin + q0) * a.num_heads + head) * HS;
  const int64_t out_stride = (int64_t)a.num_heads * HS;
#pragma unroll
  for (int mt = 0; mt < MTW; ++mt)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float lr_ = l[mt][r];
      lr_ += __shfl_xor_sync(0xffffffffu, lr_, 1);
      lr_ += __shfl_xor_sync(0xffffffffu, lr_, 2);
      const int row = row0 + 16 * mt + g + 8 * r;
      if (row >= rows) continue;
      float inv = lr_ > 0.0f ? 1.0f / lr_ : 0.0f;
      if constexpr (FP8) inv *= a.v_scale;
#pragma unroll
      for (int i = 0; i < DT; ++i)
        *reinterpret_cast<uint32_t *>(og + row * out_stride + i * 8 + 2 * c) =
            pack2<T>(o[mt][i][2 * r] * inv, o[mt][i][2 * r + 1] * inv);
    }
}

template <typename T, int HS, int BN, int MTW, bool SPLIT, int KKU = 0, bool OPT = true,
          bool FP8 = false, int MV = 0>
void launch_prefill_cfg(const PrefillArgs &a_in, int num_seqs, int max_query_len,
                        cudaStream_t stream) {
  PrefillArgs a = a_in;
  auto *kernel = prefill_attention_kernel<T, HS, BN, MTW, SPLIT, KKU, OPT, FP8, MV>;
  constexpr size_t smem = prefill_smem_bytes<HS, BN, MTW, FP8>();
  static const bool attr_set = [&] {
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                static_cast<int>(smem)) == cudaSuccess;
  }();
  (void)attr_set;  // a failure resurfaces as the launch's error
  constexpr int BM = 16 * MTW * kPrefillWarps;
  const int tiles = (max_query_len + BM - 1) / BM;
  if (tiles > 65535) a.tile_major = 0;  // gridDim.z's limit
  const dim3 grid = a.tile_major ? dim3(a.num_heads, num_seqs, tiles)
                                 : dim3(tiles, a.num_heads, num_seqs);
  launch_pdl_smem(kernel, grid, dim3(kPrefillWarps * 32), smem, stream, a);
}

// Measurement variants (NOTES.md), from VLLM_PREFILL_VARIANT, read once per process: a list of
// flags: base (the first version's softmax and copy loop), bn32 (32-key tiles) for bf16 head 128;
// noslack (the running max follows every rise), oldgrid (grid (tiles, heads, seqs)) for all;
// oldmask, wskip, nomask, inline (the kMv* kernel variants) for bf16 head 128, single P;
// plainmask: that kernel without its default warp skip.
enum : int {
  kVarBase = 1,
  kVarBn32 = 2,
  kVarNoSlack = 4,
  kVarOldGrid = 8,
  kVarOldMask = 16,
  kVarWarpSkip = 32,
  kVarNoMask = 64,
  kVarInline = 128,
  kVarPlainMask = 256,
};
inline int prefill_variant() {
  static const int v = [] {
    const char *e = std::getenv("VLLM_PREFILL_VARIANT");
    if (e == nullptr) return 0;
    return (std::strstr(e, "base") ? kVarBase : 0) | (std::strstr(e, "bn32") ? kVarBn32 : 0) |
           (std::strstr(e, "noslack") ? kVarNoSlack : 0) |
           (std::strstr(e, "oldgrid") ? kVarOldGrid : 0) |
           (std::strstr(e, "oldmask") ? kVarOldMask : 0) |
           (std::strstr(e, "wskip") ? kVarWarpSkip : 0) |
           (std::strstr(e, "nomask") ? kVarNoMask : 0) | (std::strstr(e, "inline") ? kVarInline : 0) |
           (std::strstr(e, "plainmask") ? kVarPlainMask : 0);
  }();
  return v;
}

// The library's configuration (H200 sweeps in NOTES.md): 64-token K/V tiles and two 16-row m-tiles
// per warp (128 query rows per CTA) up to head 128; 32-token tiles and one m-tile for head 256
// (registers). P is one 16-bit rounding (FlashAttention's choice) unless split_p asks for hi + lo
// (two P.V MMAs, ~16-bit weights, ~25% slower; see the precision policy in NOTES.md).
template <typename T, int HS>
void launch_prefill(const PrefillArgs &a_in, bool split, int num_seqs, int max_query_len,
                    cudaStream_t stream) {
  const int var = prefill_variant();
  PrefillArgs a = a_in;
  a.max_slack = (var & kVarNoSlack) ? 0.0f : kMaxSlack;
  a.tile_major = (var & kVarOldGrid) ? 0 : 1;
  if constexpr (HS == 128 && std::is_same_v<T, __nv_bfloat16>) {
    if (var & kVarBase) {
      if (split) launch_prefill_cfg<T, HS, 64, 2, true, 0, false>(a, num_seqs, max_query_len, stream);
      else launch_prefill_cfg<T, HS, 64, 2, false, 0, false>(a, num_seqs, max_query_len, stream);
      return;
    }
    if (!split && (var & (kVarOldMask | kVarWarpSkip | kVarNoMask | kVarInline))) {
      constexpr auto cfg = [](auto mv) {
        return launch_prefill_cfg<T, HS, 64, 2, false, 0, true, false, decltype(mv)::value>;
      };
      if (var & kVarOldMask) cfg(std::integral_constant<int, kMvOldMask>{})(a, num_seqs, max_query_len, stream);
      else if (var & kVarWarpSkip) cfg(std::integral_constant<int, kMvWarpSkip>{})(a, num_seqs, max_query_len, stream);
      else if (var & kVarNoMask) cfg(std::integral_constant<int, kMvNoMask>{})(a, num_seqs, max_query_len, stream);
      else cfg(std::integral_constant<int, kMvInline>{})(a, num_seqs, max_query_len, stream);
      return;
    }
    if (var & kVarBn32) {
      if (split) launch_prefill_cfg<T, HS, 32, 2, true>(a, num_seqs, max_query_len, stream);
      else launch_prefill_cfg<T, HS, 32, 2, false>(a, num_seqs, max_query_len, stream);
      return;
    }
    // The library's bf16 head-128 single-P kernel skips, per warp, the diagonal tiles none of
    // its rows sees (kMvWarpSkip; H200: 16 x 512 1.13x SDPA flash, + 512 prefix 1.02x, NOTES.md);
    // `plainmask` measures the kernel without the skip.
    if (!split && !(var & kVarPlainMask)) {
      launch_prefill_cfg<T, HS, 64, 2, false, 0, true, false, kMvWarpSkip>(a, num_seqs,
                                                                           max_query_len, stream);
      return;
    }
  }
  if constexpr (HS <= 128) {
    if (split) launch_prefill_cfg<T, HS, 64, 2, true>(a, num_seqs, max_query_len, stream);
    else launch_prefill_cfg<T, HS, 64, 2, false>(a, num_seqs, max_query_len, stream);
  } else {
    if (split) launch_prefill_cfg<T, HS, 32, 1, true>(a, num_seqs, max_query_len, stream);
    else launch_prefill_cfg<T, HS, 32, 1, false>(a, num_seqs, max_query_len, stream);
  }
}

// FP8 E4M3 caches (head sizes 128 and 256, as decode): the library's tile shapes, e4m3 staging.
template <typename T, int HS>
void launch_prefill_fp8(const PrefillArgs &a_in, bool split, int num_seqs, int max_query_len,
                        cudaStream_t stream) {
  const int var = prefill_variant();
  PrefillArgs a = a_in;
  a.max_slack = (var & kVarNoSlack) ? 0.0f : kMaxSlack;
  a.tile_major = (var & kVarOldGrid) ? 0 : 1;
  constexpr int BN = HS <= 128 ? 64 : 32, MTW = HS <= 128 ? 2 : 1;
  if (split) launch_prefill_cfg<T, HS, BN, MTW, true, 0, true, true>(a, num_seqs, max_query_len, stream);
  else launch_prefill_cfg<T, HS, BN, MTW, false, 0, true, true>(a, num_seqs, max_query_len, stream);
}

// Per-dtype entry points (prefill_attention_{f16,bf16}.cu); false for an unsupported head size
// (fp8: the cache holds e4m3 bytes).
bool launch_prefill_f16(const PrefillArgs &a, bool split, bool fp8, int head_size, int num_seqs,
                        int max_query_len, cudaStream_t stream);
bool launch_prefill_bf16(const PrefillArgs &a, bool split, bool fp8, int head_size, int num_seqs,
                         int max_query_len, cudaStream_t stream);

template <typename T>
bool launch_prefill_dtype(const PrefillArgs &a, bool split, bool fp8, int head_size, int num_seqs,
                          int max_query_len, cudaStream_t stream) {
  if (fp8) {
    switch (head_size) {
      case 128: launch_prefill_fp8<T, 128>(a, split, num_seqs, max_query_len, stream); return true;
      case 256: launch_prefill_fp8<T, 256>(a, split, num_seqs, max_query_len, stream); return true;
      default: return false;
    }
  }
  switch (head_size) {
    case 64: launch_prefill<T, 64>(a, split, num_seqs, max_query_len, stream); return true;
    case 80: launch_prefill<T, 80>(a, split, num_seqs, max_query_len, stream); return true;
    case 96: launch_prefill<T, 96>(a, split, num_seqs, max_query_len, stream); return true;
    case 112: launch_prefill<T, 112>(a, split, num_seqs, max_query_len, stream); return true;
    case 128: launch_prefill<T, 128>(a, split, num_seqs, max_query_len, stream); return true;
    case 256: launch_prefill<T, 256>(a, split, num_seqs, max_query_len, stream); return true;
    default: return false;
  }
}

}  // namespace attn
}  // namespace vllm

// Tuning probe for paged decode attention (not part of the library build). Built here with the
// project toolchain and carried in the GPU bundle (scripts/gpu-bundle.sh):
//   nvcc -O3 -std=c++17 --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a \
//        -Icsrc/include benches/tune/paged_attention_tune.cu -o paged_attention_tune
// For the decode benchmark problem (32 query / 8 KV heads, block 16, shuffled block tables,
// random K/V) at head sizes 128, 64 and 256 over bf16 caches and 128 and 256 over FP8 caches, it
// times kernel variants (pipeline depth, warps; the generic CUDA-core kernel for reference) at
// v1 and at v2 with several partition sizes, and prints KV bytes read per second as % of a
// 1 GiB device-to-device copy measured in the same run. Every variant's output is compared with
// the first one's (max abs difference; poisoned with NaN before each checked run).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include <cuda_fp8.h>

#include "../../csrc/attention/paged_attention_dispatch.cuh"
#include "../../csrc/attention/prefill_attention.cuh"
#include "../../csrc/common/status.cu"

using bf16 = __nv_bfloat16;
using namespace vllm::attn;

#define CK(x)                                                                  \
  do {                                                                         \
    cudaError_t e = (x);                                                       \
    if (e != cudaSuccess) {                                                    \
      fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e)); \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

// Uniform [-1, 1) values (a hash of the index), as bf16 or as e4m3 bytes of 64x that.
template <typename E> __global__ void fill_random(E *p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    uint32_t x = (uint32_t)i * 2654435761u ^ seed;
    x ^= x >> 16;
    x *= 0x7feb352d;
    x ^= x >> 15;
    x *= 0x846ca68b;
    x ^= x >> 16;
    const float f = (x & 0xffffff) / 8388608.0f - 1.0f;
    if constexpr (sizeof(E) == 1)
      p[i] = __nv_cvt_float_to_fp8(f * 64.0f, __NV_SATFINITE, __NV_E4M3);
    else
      p[i] = __float2bfloat16(f);
  }
}

static float time_us(int sets, const std::function<void(int)> &launch, int reps = 15) {
  for (int i = 0; i < std::max(3, sets); ++i) launch(i % sets);
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  const int per = std::max(16, sets);
  std::vector<float> t;
  for (int r = 0; r < reps; ++r) {
    CK(cudaEventRecord(a));
    for (int i = 0; i < per; ++i) launch(i % sets);
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float ms;
    CK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms * 1000.0f / per);
  }
  CK(cudaGetLastError());
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

using Launch = void (*)(const Args &, int, int, int, cudaStream_t);

template <int HS> void generic(const Args &a, int n, int group, int parts, cudaStream_t s) {
  launch_tile<bf16, HS, HS == 80 || HS == 112 ? 4 : 8>(a, n, group, parts, s);
}

void generic96(const Args &a, int n, int, int parts, cudaStream_t s) {
  launch_generic<bf16, 96>(a, n, parts, s);
}

struct Variant {
  const char *name;
  Launch fn;
};

// Times every variant at every shape and partition size (0: v1) for head size HS over caches of
// KV (bf16 or e4m3 bytes).
template <int HS, typename KV>
void sweep(const char *title, const std::vector<Variant> &variants, const std::vector<int> &partitions,
           const std::vector<std::pair<int, int>> &shapes, double copy_gbps, float k_scale) {
  constexpr int NH = 32, NKV = 8, BS = 16;
  printf("\n#### %s\n", title);
  for (auto &sh : shapes) {
    const int batch = sh.first, ctx = sh.second;
    const int bps = ctx / BS, nblocks = batch * bps;
    const size_t numel = (size_t)nblocks * NKV * BS * HS;
    const size_t kv_bytes = 2 * numel * sizeof(KV);
    const int sets = std::max<int>(2, std::min<int>(8, (int)((400ull << 20) / kv_bytes + 1)));
    std::vector<KV *> kc(sets), vc(sets);
    for (int i = 0; i < sets; ++i) {
      CK(cudaMalloc(&kc[i], numel * sizeof(KV)));
      CK(cudaMalloc(&vc[i], numel * sizeof(KV)));
      fill_random<<<1024, 256>>>(kc[i], numel, 17 + 2 * i);
      fill_random<<<1024, 256>>>(vc[i], numel, 18 + 2 * i);
    }
    std::vector<int> ids(nblocks);
    for (int i = 0; i < nblocks; ++i) ids[i] = i;
    srand(batch * 7 + ctx);
    for (int i = nblocks - 1; i > 0; --i) std::swap(ids[i], ids[rand() % (i + 1)]);
    std::vector<int> lens(batch, ctx);
    int *tables, *slens;
    CK(cudaMalloc(&tables, nblocks * sizeof(int)));
    CK(cudaMalloc(&slens, batch * sizeof(int)));
    CK(cudaMemcpy(tables, ids.data(), nblocks * sizeof(int), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(slens, lens.data(), batch * sizeof(int), cudaMemcpyHostToDevice));
    bf16 *q, *out, *ref;
    const size_t qn = (size_t)batch * NH * HS;
    CK(cudaMalloc(&q, qn * sizeof(bf16)));
    CK(cudaMalloc(&out, qn * sizeof(bf16)));
    CK(cudaMalloc(&ref, qn * sizeof(bf16)));
    fill_random<<<64, 256>>>(q, qn, 99);
    const int max_parts = (ctx + 127) / 128;
    float *ws;
    CK(cudaMalloc(&ws, (size_t)batch * NH * max_parts * (HS + 2) * sizeof(float)));
    CK(cudaDeviceSynchronize());

    printf("\n== %d x %d: %.1f MB of K/V\n", batch, ctx, kv_bytes / 1e6);
    bool have_ref = false;
    for (auto &v : variants) {
      for (int P : partitions) {
        if (P >= ctx) continue;  // v2 with one partition: v1 with an extra pass
        Args a{};
        a.out = out;
        a.query = q;
        a.block_tables = tables;
        a.seq_lens = slens;
        a.num_heads = NH;
        a.num_kv_heads = NKV;
        a.block_size = BS;
        a.max_blocks_per_seq = bps;
        a.q_stride = NH * HS;
        a.scale = 1.0f / sqrtf((float)HS);
        a.k_scale = k_scale;
        a.v_scale = k_scale;
        int parts = 1;
        if (P > 0) {
          parts = (ctx + P - 1) / P;
          const size_t slots = (size_t)batch * NH * parts;
          a.exp_sums = ws;
          a.max_logits = ws + slots;
          a.tmp_out = ws + 2 * slots;
          a.max_partitions = parts;
          a.partition_size = P;
        } else {
          a.max_partitions = 1;
          a.partition_size = INT32_MAX;
        }
        const float us = time_us(sets, [&](int i) {
          Args b = a;
          b.key_cache = kc[i];
          b.value_cache = vc[i];
          v.fn(b, batch, NH / NKV, parts, 0);
        });
        // Correctness against the first variant on set 0.
        Args b = a;
        b.key_cache = kc[0];
        b.value_cache = vc[0];
        b.out = have_ref ? out : ref;
        CK(cudaMemset(b.out, 0xff, qn * sizeof(bf16)));  // NaN poison
        v.fn(b, batch, NH / NKV, parts, 0);
        CK(cudaDeviceSynchronize());
        float diff = 0.0f;
        if (have_ref) {
          std::vector<bf16> h1(qn), h2(qn);
          CK(cudaMemcpy(h1.data(), out, qn * 2, cudaMemcpyDeviceToHost));
          CK(cudaMemcpy(h2.data(), ref, qn * 2, cudaMemcpyDeviceToHost));
          for (size_t i = 0; i < qn; ++i) {
            const float d = fabsf(__bfloat162float(h1[i]) - __bfloat162float(h2[i]));
            diff = (d != d) ? INFINITY : std::max(diff, d);
          }
        }
        have_ref = true;
        const double gbps = kv_bytes / us / 1e3;
        printf("%-18s %-8s %9.2f us %7.0f GB/s %5.1f%% of copy  maxdiff %.3g\n", v.name,
               P ? ("P=" + std::to_string(P)).c_str() : "v1", us, gbps, 100.0 * gbps / copy_gbps,
               diff);
        fflush(stdout);
      }
    }
    for (int i = 0; i < sets; ++i) {
      CK(cudaFree(kc[i]));
      CK(cudaFree(vc[i]));
    }
    CK(cudaFree(tables));
    CK(cudaFree(slens));
    CK(cudaFree(q));
    CK(cudaFree(out));
    CK(cudaFree(ref));
    CK(cudaFree(ws));
  }
}

using PrefillLaunch = void (*)(const PrefillArgs &, int, int, cudaStream_t);

// Prefill variants (K/V tile, m-tiles per warp, split P) on bf16, head 128, 32 / 8 heads, causal:
// TFLOP/s counting causal flops, and max |difference| against the first variant.
void sweep_prefill() {
  constexpr int HS = 128, NH = 32, NKV = 8, BS = 16;
  const std::vector<std::pair<const char *, PrefillLaunch>> variants = {
      {"bn64 mtw2 split", launch_prefill_cfg<bf16, HS, 64, 2, true>},
      {"bn64 mtw2 split kku1", launch_prefill_cfg<bf16, HS, 64, 2, true, 1>},
      {"bn64 mtw2 split kku2", launch_prefill_cfg<bf16, HS, 64, 2, true, 2>},
      {"bn64 mtw2", launch_prefill_cfg<bf16, HS, 64, 2, false>},
      {"bn64 mtw2 kku1", launch_prefill_cfg<bf16, HS, 64, 2, false, 1>},
      {"bn64 mtw1 split", launch_prefill_cfg<bf16, HS, 64, 1, true>},
  };
  const int cases[][3] = {{1, 4096, 0}, {16, 512, 0}, {1, 4096, 4096}};
  printf("\n#### prefill, bf16, head 128, 32 / 8 heads, causal\n");
  for (auto &cs : cases) {
    const int seqs = cs[0], q_len = cs[1], prefix = cs[2], len = prefix + q_len;
    const int bps = len / BS, nblocks = seqs * bps;
    const size_t numel = (size_t)nblocks * NKV * BS * HS, tokens = (size_t)seqs * q_len;
    bf16 *kc, *vc, *q, *out, *ref;
    CK(cudaMalloc(&kc, numel * 2));
    CK(cudaMalloc(&vc, numel * 2));
    CK(cudaMalloc(&q, tokens * NH * HS * 2));
    CK(cudaMalloc(&out, tokens * NH * HS * 2));
    CK(cudaMalloc(&ref, tokens * NH * HS * 2));
    fill_random<<<1024, 256>>>(kc, numel, 5);
    fill_random<<<1024, 256>>>(vc, numel, 6);
    fill_random<<<1024, 256>>>(q, tokens * NH * HS, 7);
    std::vector<int> ids(nblocks), cu(seqs + 1), lens(seqs, len);
    for (int i = 0; i < nblocks; ++i) ids[i] = i;
    for (int i = nblocks - 1; i > 0; --i) std::swap(ids[i], ids[rand() % (i + 1)]);
    for (int i = 0; i <= seqs; ++i) cu[i] = i * q_len;
    int *dt, *dcu, *dl;
    CK(cudaMalloc(&dt, nblocks * 4));
    CK(cudaMalloc(&dcu, (seqs + 1) * 4));
    CK(cudaMalloc(&dl, seqs * 4));
    CK(cudaMemcpy(dt, ids.data(), nblocks * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dcu, cu.data(), (seqs + 1) * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dl, lens.data(), seqs * 4, cudaMemcpyHostToDevice));
    PrefillArgs a{};
    a.query = q;
    a.key_cache = kc;
    a.value_cache = vc;
    a.block_tables = dt;
    a.cu_query_lens = dcu;
    a.seq_lens = dl;
    a.num_heads = NH;
    a.num_kv_heads = NKV;
    a.block_size = BS;
    a.max_blocks_per_seq = bps;
    a.q_stride = NH * HS;
    a.scale = 1.0f / sqrtf((float)HS);
    double pairs = 0;
    for (int i = 0; i < q_len; ++i) pairs += prefix + i + 1;
    const double flops = 4.0 * HS * NH * pairs * seqs;
    bool have_ref = false;
    for (auto &v : variants) {
      a.out = out;
      const float us = time_us(1, [&](int) { v.second(a, seqs, q_len, 0); }, 10);
      a.out = have_ref ? out : ref;
      CK(cudaMemset(a.out, 0xff, tokens * NH * HS * 2));
      v.second(a, seqs, q_len, 0);
      CK(cudaDeviceSynchronize());
      float diff = 0.0f;
      if (have_ref) {
        std::vector<bf16> h1(tokens * NH * HS), h2(tokens * NH * HS);
        CK(cudaMemcpy(h1.data(), out, h1.size() * 2, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(h2.data(), ref, h2.size() * 2, cudaMemcpyDeviceToHost));
        for (size_t i = 0; i < h1.size(); ++i) {
          const float d = fabsf(__bfloat162float(h1[i]) - __bfloat162float(h2[i]));
          diff = (d != d) ? INFINITY : std::max(diff, d);
        }
      }
      have_ref = true;
      printf("prefill %2d x %-5d prefix %-5d %-18s %9.1f us %6.1f TFLOP/s  maxdiff %.3g\n", seqs,
             q_len, prefix, v.first, us, flops / us / 1e6, diff);
      fflush(stdout);
    }
    CK(cudaFree(kc));
    CK(cudaFree(vc));
    CK(cudaFree(q));
    CK(cudaFree(out));
    CK(cudaFree(ref));
    CK(cudaFree(dt));
    CK(cudaFree(dcu));
    CK(cudaFree(dl));
  }
}

int main(int argc, char **argv) {
  if (argc > 1 && std::string(argv[1]) == "prefill") {
    sweep_prefill();
    return 0;
  }
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  // Ceiling: 1 GiB device-to-device copy, bytes read + written.
  size_t cn = 1ull << 30;
  void *cs, *cd;
  CK(cudaMalloc(&cs, cn));
  CK(cudaMalloc(&cd, cn));
  const float copy_us =
      time_us(1, [&](int) { cudaMemcpyAsync(cd, cs, cn, cudaMemcpyDeviceToDevice); }, 10);
  const double copy_gbps = 2.0 * cn / copy_us / 1e3;
  CK(cudaFree(cs));
  CK(cudaFree(cd));
  printf("device %s, %d SMs; copy %.0f GB/s\n", prop.name, prop.multiProcessorCount, copy_gbps);

  const std::vector<std::pair<int, int>> all = {{1, 4096}, {1, 32768}, {8, 4096},
                                                {64, 4096}, {256, 1024}, {256, 4096}};
  const std::vector<std::pair<int, int>> some = {{1, 32768}, {8, 4096}, {64, 4096}};
  sweep<128, bf16>("bf16 cache, head 128",
                   {{"mma nst3 w4 evf", launch_mma<bf16, bf16, 128, 3, 4, true>},
                    {"mma nst2 w4 evf", launch_mma<bf16, bf16, 128, 2, 4, true>},
                    {"mma nst4 w4 evf", launch_mma<bf16, bf16, 128, 4, 4, true>},
                    {"mma nst2 w8 evf", launch_mma<bf16, bf16, 128, 2, 8, true>}},
                   {0, 4096, 2048, 1024, 512, 256}, all, copy_gbps, 1.0f);
  sweep<64, bf16>("bf16 cache, head 64",
                  {{"mma nst6 w4 evf", launch_mma<bf16, bf16, 64, 6, 4, true>},
                   {"mma nst4 w4 evf", launch_mma<bf16, bf16, 64, 4, 4, true>},
                   {"mma nst3 w4 evf", launch_mma<bf16, bf16, 64, 3, 4, true>},
                   {"generic g8", generic<64>}},
                  {0, 2048}, some, copy_gbps, 1.0f);
  sweep<96, bf16>("bf16 cache, head 96 (padded to 128) vs the generic kernel",
                  {{"mma pad128 nst3", launch_mma<bf16, bf16, 128, 3, 4, true, 96>},
                   {"generic", generic96}},
                  {0, 2048}, some, copy_gbps, 1.0f);
  sweep<80, bf16>("bf16 cache, head 80 (padded to 128)",
                  {{"mma pad128 nst3", launch_mma<bf16, bf16, 128, 3, 4, true, 80>}},
                  {0, 2048}, some, copy_gbps, 1.0f);
  sweep<112, bf16>("bf16 cache, head 112 (padded to 128)",
                   {{"mma pad128 nst3", launch_mma<bf16, bf16, 128, 3, 4, true, 112>}},
                   {0, 2048}, some, copy_gbps, 1.0f);
  sweep<256, bf16>("bf16 cache, head 256",
                   {{"mma nst2 w4 evf", launch_mma<bf16, bf16, 256, 2, 4, true>},
                    {"mma nst3 w4 evf", launch_mma<bf16, bf16, 256, 3, 4, true>},
                    {"mma nst1 w8 evf", launch_mma<bf16, bf16, 256, 1, 8, true>}},
                   {0, 2048}, some, copy_gbps, 1.0f);
  sweep<128, uint8_t>("fp8 cache, head 128",
                      {{"fp8 nst6 w4 evf", launch_mma<bf16, uint8_t, 128, 6, 4, true>},
                       {"fp8 nst4 w4 evf", launch_mma<bf16, uint8_t, 128, 4, 4, true>},
                       {"fp8 nst3 w4 evf", launch_mma<bf16, uint8_t, 128, 3, 4, true>},
                       {"fp8 nst8 w4 evf", launch_mma<bf16, uint8_t, 128, 8, 4, true>}},
                      {0, 4096, 2048, 1024}, all, copy_gbps, 1.0f / 64.0f);
  sweep<256, uint8_t>("fp8 cache, head 256",
                      {{"fp8 nst4 w4 evf", launch_mma<bf16, uint8_t, 256, 4, 4, true>},
                       {"fp8 nst3 w4 evf", launch_mma<bf16, uint8_t, 256, 3, 4, true>}},
                      {0, 2048}, some, copy_gbps, 1.0f / 64.0f);
  return 0;
}

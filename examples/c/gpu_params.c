/* The GPU options of VllmEngineParams through the C ABI: the same greedy requests on CUDA one
 * step at a time, with async scheduling, eagerly (no CUDA graphs) and with an FP8 KV cache,
 * dummy weights. Requests run one after another, so every mode computes the same batches and
 * greedy tokens must match between the bf16-cache modes and between FP8 with and without async
 * scheduling; then all at once, where the engine thread admits them as they arrive (batches
 * vary from run to run, so near-tie tokens may too: reported only), as is FP8 against bf16
 * (rounded K/V). Usage:
 *   gpu_params CONFIG_DIR   (a folder with a config.json, e.g. benches/configs/qwen3-0.6b)
 * Exits 0 with a message when no GPU is usable (the engine falls back to nothing: it fails). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vllm.h>

#define NREQ 16
#define MAXTOK 48

static int failures = 0;

static void check(enum VllmStatus s, const char *what) {
  if (s != VLLM_STATUS_OK) {
    char msg[512];
    vllm_last_error(msg, sizeof msg);
    fprintf(stderr, "FAIL %s: %s: %s\n", what, vllm_status_str((int)s), msg);
    failures++;
  }
}

/* Runs NREQ greedy requests; tokens[r][0..MAXTOK) gets each request's output. Returns 0 when
 * the engine could not be created. */
static void collect(VllmEngine *e, const char *mode, int r, uint64_t id, uint32_t out[MAXTOK]) {
  size_t got = 0;
  for (;;) {
    VllmOutput *o = NULL;
    enum VllmStatus w = vllm_wait(e, id, 120000, &o);
    if (w != VLLM_STATUS_OK) {
      check(w, "wait");
      break;
    }
    for (size_t i = 0; i < o->num_tokens && got < MAXTOK; i++) out[got++] = o->token_ids[i];
    int done = o->finished;
    vllm_output_free(o);
    if (done) break;
  }
  if (got != MAXTOK) {
    fprintf(stderr, "FAIL %s: request %d produced %zu tokens\n", mode, r, got);
    failures++;
  }
}

static int run(const char *dir, const char *mode, int together, uint32_t out[NREQ][MAXTOK]) {
  VllmEngineParams ep;
  check(vllm_engine_default_params(&ep), "default engine params");
  ep.device = VLLM_DEVICE_CUDA;
  ep.load_format = VLLM_LOAD_FORMAT_DUMMY;
  ep.dtype = VLLM_DTYPE_BFLOAT16;
  ep.max_model_len = 1024;
  ep.max_num_seqs = 32;
  ep.gpu_memory_utilization = 0.5f;
  ep.enforce_eager = strcmp(mode, "eager") == 0;
  ep.async_scheduling = strcmp(mode, "async") == 0 || strcmp(mode, "fp8+async") == 0;
  if (strncmp(mode, "fp8", 3) == 0) ep.kv_cache_dtype = VLLM_KV_CACHE_DTYPE_FP8_E4M3;
  VllmEngine *e = NULL;
  enum VllmStatus s = vllm_engine_create(dir, &ep, &e);
  if (s != VLLM_STATUS_OK) {
    char msg[512];
    vllm_last_error(msg, sizeof msg);
    fprintf(stderr, "%s: engine create: %s\n", mode, msg);
    return 0;
  }
  VllmSamplingParams sp;
  check(vllm_sampling_default_params(&sp), "default sampling params");
  sp.temperature = 0.0f;
  sp.ignore_eos = true;
  sp.max_tokens = MAXTOK;
  uint64_t ids[NREQ];
  for (int r = 0; r < NREQ; r++) {
    uint32_t prompt[200];
    size_t n = 20 + (size_t)r * 11;
    for (size_t i = 0; i < n; i++) prompt[i] = (uint32_t)((r * 7919 + i * 104729) % 30000);
    check(vllm_submit_tokens(e, prompt, n, &sp, NULL, NULL, &ids[r]), "submit");
    if (!together) collect(e, mode, r, ids[r], out[r]);
  }
  for (int r = 0; together && r < NREQ; r++) collect(e, mode, r, ids[r], out[r]);
  VllmStats st;
  check(vllm_engine_stats(e, &st), "stats");
  if (st.kv_blocks_used != 0) {
    fprintf(stderr, "FAIL %s: %llu KV blocks still used\n", mode,
            (unsigned long long)st.kv_blocks_used);
    failures++;
  }
  vllm_engine_destroy(e);
  return 1;
}

/* Requests with identical tokens; prints where the others first differ. */
static int same(uint32_t a[NREQ][MAXTOK], uint32_t b[NREQ][MAXTOK]) {
  int n = 0;
  for (int r = 0; r < NREQ; r++) {
    int t = 0;
    while (t < MAXTOK && a[r][t] == b[r][t]) t++;
    if (t == MAXTOK) {
      n++;
    } else {
      printf("  request %d differs from token %d on\n", r, t);
    }
  }
  return n;
}

int main(int argc, char **argv) {
  const int require_gpu = argc == 3 && strcmp(argv[2], "--require-gpu") == 0;
  if (argc != 2 && !require_gpu) {
    fprintf(stderr, "usage: %s CONFIG_DIR [--require-gpu]\n", argv[0]);
    return 2;
  }
  static uint32_t base[NREQ][MAXTOK], other[NREQ][MAXTOK], fp8_base[NREQ][MAXTOK];
  for (int together = 0; together < 2; together++) {
    const char *how = together ? "all at once" : "one by one";
    if (!run(argv[1], "sync", together, base)) {
      printf(require_gpu ? "FAIL: no CUDA engine (see above)\n" : "no CUDA engine: skipped\n");
      return require_gpu;
    }
    const char *modes[] = {"async", "eager", "fp8", "fp8+async"};
    for (int m = 0; m < 4; m++) {
      memset(other, 0, sizeof other);
      if (!run(argv[1], modes[m], together, other)) failures++;
      int n = same(m < 3 ? base : fp8_base, other);
      if (m == 2) {
        memcpy(fp8_base, other, sizeof other);
        printf("%s, %-9s: %d of %d requests equal to the bf16 cache's (rounded K/V)\n", how,
               modes[m], n, NREQ);
        continue;
      }
      printf("%s, %-9s: %d of %d requests token-identical to %s one step at a time\n", how,
             modes[m], n, NREQ, m == 3 ? "fp8" : "bf16");
      if (!together && n != NREQ) failures++;
    }
  }
  /* A bad value is refused before anything loads. */
  VllmEngineParams bad;
  vllm_engine_default_params(&bad);
  bad.device = VLLM_DEVICE_CUDA;
  bad.gpu_memory_utilization = 1.01f;
  VllmEngine *e = NULL;
  if (vllm_engine_create(argv[1], &bad, &e) != VLLM_STATUS_INVALID_ARGUMENT || e != NULL) {
    fprintf(stderr, "FAIL gpu_memory_utilization 1.01 accepted\n");
    failures++;
  }
  printf(failures ? "gpu_params: %d failures\n" : "gpu_params: OK\n", failures);
  return failures != 0;
}

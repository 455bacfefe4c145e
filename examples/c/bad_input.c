/* Bad input through the C API: every call returns its documented status with a message, the
 * process survives, and a request running meanwhile is unaffected (its greedy output equals a
 * run without the noise). Usage: bad_input MODEL_PATH [TRUNCATED_GGUF] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <math.h>
#include <stdatomic.h>
#include <threads.h>
#include <vllm.h>

static int failures = 0;

/* A callback that tries engine calls (they must be refused) and counts final outputs. */
struct probe {
  VllmEngine *engine;
  enum VllmStatus abort_status, stats_status;
  size_t message_len; /* of the last error on the engine thread */
  atomic_int finished;
  atomic_int aborted;
};

static void probe_cb(const VllmOutput *out, void *user) {
  struct probe *p = (struct probe *)user;
  if (p->engine != NULL) {
    VllmStats st;
    p->abort_status = vllm_abort(p->engine, out->request_id);
    p->stats_status = vllm_engine_stats(p->engine, &st);
    p->message_len = vllm_last_error(NULL, 0);
    p->engine = NULL; /* once */
  }
  if (out->finished) {
    if (out->finish_reason == VLLM_FINISH_REASON_ABORT) atomic_fetch_add(&p->aborted, 1);
    atomic_fetch_add(&p->finished, 1);
  }
}

static void expect(enum VllmStatus got, enum VllmStatus want, const char *what) {
  char msg[512];
  size_t len = vllm_last_error(msg, sizeof msg);
  if (got != want) {
    fprintf(stderr, "FAIL %s: got %s, want %s (%s)\n", what, vllm_status_str((int)got),
            vllm_status_str((int)want), msg);
    failures++;
  } else if (want != VLLM_STATUS_OK && len == 0) {
    fprintf(stderr, "FAIL %s: no error message\n", what);
    failures++;
  } else {
    printf("ok   %-44s %-18s %s\n", what, vllm_status_str((int)got), msg);
  }
}

static char *run_greedy(VllmEngine *e, const VllmSamplingParams *sp) {
  char *text = NULL;
  expect(vllm_generate(e, "Hello world!", sp, &text), VLLM_STATUS_OK, "generate");
  return text;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODEL_PATH [TRUNCATED_GGUF]\n", argv[0]);
    return 2;
  }
  const char *model = argv[1];
  VllmEngine *e = NULL;
  VllmEngineParams ep;
  vllm_engine_default_params(&ep);
  ep.device = VLLM_DEVICE_CPU;
  ep.max_model_len = 64;

  /* Creation. */
  expect(vllm_engine_create(NULL, &ep, &e), VLLM_STATUS_INVALID_ARGUMENT, "create: NULL path");
  expect(vllm_engine_create(model, &ep, NULL), VLLM_STATUS_INVALID_ARGUMENT, "create: NULL out");
  expect(vllm_engine_create("/no/such/model", &ep, &e), VLLM_STATUS_LOAD_FAILED,
         "create: missing path");
  if (e != NULL) failures++;
  expect(vllm_engine_create("\xff\xfe", &ep, &e), VLLM_STATUS_INVALID_ARGUMENT,
         "create: path not UTF-8");
  if (argc > 2) {
    expect(vllm_engine_create(argv[2], &ep, &e), VLLM_STATUS_LOAD_FAILED,
           "create: truncated GGUF");
    if (e != NULL) failures++;
  }
  VllmEngineParams bad = ep;
  bad.load_format = 99;
  expect(vllm_engine_create(model, &bad, &e), VLLM_STATUS_INVALID_ARGUMENT,
         "create: load_format 99");
  bad = ep;
  bad.block_size = 3;
  expect(vllm_engine_create(model, &bad, &e), VLLM_STATUS_INVALID_ARGUMENT,
         "create: block_size 3");
  bad = ep;
  bad.dtype = 7;
  expect(vllm_engine_create(model, &bad, &e), VLLM_STATUS_INVALID_ARGUMENT, "create: dtype 7");
  bad = ep;
  bad.kv_cache_dtype = 5;
  expect(vllm_engine_create(model, &bad, &e), VLLM_STATUS_INVALID_ARGUMENT,
         "create: kv_cache_dtype 5");
  bad = ep;
  bad.kv_cache_dtype = VLLM_KV_CACHE_DTYPE_FP8_E4M3;
  expect(vllm_engine_create(model, &bad, &e), VLLM_STATUS_INVALID_ARGUMENT,
         "create: FP8 KV cache on the CPU");
  bad = ep;
  bad.gpu_memory_utilization = 0.0f;
  expect(vllm_engine_create(model, &bad, &e), VLLM_STATUS_INVALID_ARGUMENT,
         "create: gpu_memory_utilization 0");
  bad.gpu_memory_utilization = 1.5f;
  expect(vllm_engine_create(model, &bad, &e), VLLM_STATUS_INVALID_ARGUMENT,
         "create: gpu_memory_utilization 1.5");
  if (e != NULL) failures++;
  expect(vllm_engine_default_params(NULL), VLLM_STATUS_INVALID_ARGUMENT, "default params NULL");
  expect(vllm_sampling_default_params(NULL), VLLM_STATUS_INVALID_ARGUMENT,
         "sampling default params NULL");
  expect(vllm_engine_create(model, &ep, &e), VLLM_STATUS_OK, "create");
  if (e == NULL) return 1;

  VllmSamplingParams sp;
  vllm_sampling_default_params(&sp);
  sp.temperature = 0.0f;
  sp.max_tokens = 20;
  sp.ignore_eos = true;
  char *quiet = run_greedy(e, &sp);

  /* A long request streams while the bad calls below run. */
  uint64_t live = 0;
  expect(vllm_submit_text(e, "Hello world!", &sp, NULL, NULL, &live), VLLM_STATUS_OK,
         "submit the live request");

  uint64_t id = 0;
  uint32_t tok = 5;
  VllmOutput *out_unused = NULL;
  expect(vllm_submit_text(NULL, "x", &sp, NULL, NULL, &id), VLLM_STATUS_INVALID_ARGUMENT,
         "submit: NULL engine");
  expect(vllm_submit_text(e, NULL, &sp, NULL, NULL, &id), VLLM_STATUS_INVALID_ARGUMENT,
         "submit: NULL prompt");
  expect(vllm_submit_text(e, "x", &sp, NULL, NULL, NULL), VLLM_STATUS_INVALID_ARGUMENT,
         "submit: NULL out id");
  expect(vllm_submit_text(e, "bad \xc3\x28 utf8", &sp, NULL, NULL, &id),
         VLLM_STATUS_INVALID_ARGUMENT, "submit: invalid UTF-8 prompt");
  expect(vllm_submit_tokens(e, NULL, 3, &sp, NULL, NULL, &id), VLLM_STATUS_INVALID_ARGUMENT,
         "submit tokens: NULL ids");
  expect(vllm_submit_tokens(e, &tok, 0, &sp, NULL, NULL, &id), VLLM_STATUS_INVALID_ARGUMENT,
         "submit tokens: empty prompt");
  uint32_t big = 4000000000u;
  expect(vllm_submit_tokens(e, &big, 1, &sp, NULL, NULL, &id), VLLM_STATUS_INVALID_ARGUMENT,
         "submit tokens: id outside vocabulary");
  uint32_t longp[100];
  for (int i = 0; i < 100; i++) longp[i] = 7;
  expect(vllm_submit_tokens(e, longp, 100, &sp, NULL, NULL, &id), VLLM_STATUS_REJECTED,
         "submit: prompt over max_model_len");
  expect(vllm_submit_chat(e, NULL, 1, &sp, NULL, NULL, &id), VLLM_STATUS_INVALID_ARGUMENT,
         "submit chat: NULL messages");
  VllmChatMessage m = {"user", NULL};
  expect(vllm_submit_chat(e, &m, 1, &sp, NULL, NULL, &id), VLLM_STATUS_INVALID_ARGUMENT,
         "submit chat: NULL content");

  VllmSamplingParams b = sp;
  b.top_p = 1.5f;
  expect(vllm_submit_text(e, "x", &b, NULL, NULL, &id), VLLM_STATUS_INVALID_ARGUMENT,
         "params: top_p 1.5");
  b = sp;
  b.temperature = -1.0f;
  expect(vllm_submit_text(e, "x", &b, NULL, NULL, &id), VLLM_STATUS_INVALID_ARGUMENT,
         "params: temperature -1");
  b = sp;
  b.temperature = NAN;
  expect(vllm_submit_text(e, "x", &b, NULL, NULL, &id), VLLM_STATUS_INVALID_ARGUMENT,
         "params: temperature NaN");
  b = sp;
  b.n = 2;
  char *two = NULL;
  expect(vllm_generate(e, "x", &b, &two), VLLM_STATUS_INVALID_ARGUMENT, "generate: n 2");
  b = sp;
  b.n = 0;
  expect(vllm_submit_text(e, "x", &b, NULL, NULL, &id), VLLM_STATUS_INVALID_ARGUMENT,
         "params: n 0");
  b = sp;
  b.logprobs = 1000;
  expect(vllm_submit_text(e, "x", &b, NULL, NULL, &id), VLLM_STATUS_INVALID_ARGUMENT,
         "params: logprobs 1000");
  b = sp;
  b.num_stop = 2;
  b.stop = NULL;
  expect(vllm_submit_text(e, "x", &b, NULL, NULL, &id), VLLM_STATUS_INVALID_ARGUMENT,
         "params: stop NULL with 2 entries");
  b = sp;
  b.num_logit_bias = 1;
  expect(vllm_submit_text(e, "x", &b, NULL, NULL, &id), VLLM_STATUS_INVALID_ARGUMENT,
         "params: logit_bias arrays NULL");

  /* NULL for every remaining pointer argument. */
  expect(vllm_submit_tokens(NULL, &tok, 1, &sp, NULL, NULL, &id), VLLM_STATUS_INVALID_ARGUMENT,
         "submit tokens: NULL engine");
  expect(vllm_submit_tokens(e, &tok, 1, &sp, NULL, NULL, NULL), VLLM_STATUS_INVALID_ARGUMENT,
         "submit tokens: NULL out id");
  VllmChatMessage ok_msg = {"user", "hi"};
  VllmChatMessage no_role = {NULL, "hi"};
  expect(vllm_submit_chat(NULL, &ok_msg, 1, &sp, NULL, NULL, &id), VLLM_STATUS_INVALID_ARGUMENT,
         "submit chat: NULL engine");
  expect(vllm_submit_chat(e, &ok_msg, 1, &sp, NULL, NULL, NULL), VLLM_STATUS_INVALID_ARGUMENT,
         "submit chat: NULL out id");
  expect(vllm_submit_chat(e, &no_role, 1, &sp, NULL, NULL, &id), VLLM_STATUS_INVALID_ARGUMENT,
         "submit chat: NULL role");
  expect(vllm_submit_chat(e, &ok_msg, 0, &sp, NULL, NULL, &id), VLLM_STATUS_INVALID_ARGUMENT,
         "submit chat: no messages");
  char *gen = NULL;
  expect(vllm_generate(NULL, "x", &sp, &gen), VLLM_STATUS_INVALID_ARGUMENT,
         "generate: NULL engine");
  expect(vllm_generate(e, NULL, &sp, &gen), VLLM_STATUS_INVALID_ARGUMENT, "generate: NULL prompt");
  if (gen != NULL) failures++;
  uint32_t tks[8] = {40, 41, 42, 43, 44, 45, 46, 47};
  size_t cnt = 0, tl = 0;
  expect(vllm_tokenize(NULL, "x", false, tks, 8, &cnt), VLLM_STATUS_INVALID_ARGUMENT,
         "tokenize: NULL engine");
  expect(vllm_tokenize(e, "x", false, tks, 8, NULL), VLLM_STATUS_INVALID_ARGUMENT,
         "tokenize: NULL count");
  expect(vllm_tokenize(e, "Hello", false, NULL, 0, &cnt), VLLM_STATUS_BUFFER_TOO_SMALL,
         "tokenize: NULL buffer asks the size");
  if (cnt == 0) failures++;
  char buf8[8];
  expect(vllm_detokenize(NULL, tks, 1, false, buf8, 8, &tl), VLLM_STATUS_INVALID_ARGUMENT,
         "detokenize: NULL engine");
  expect(vllm_detokenize(e, tks, 1, false, buf8, 8, NULL), VLLM_STATUS_INVALID_ARGUMENT,
         "detokenize: NULL length");
  expect(vllm_detokenize(e, tks, 1, false, NULL, 0, &tl), VLLM_STATUS_BUFFER_TOO_SMALL,
         "detokenize: NULL buffer asks the size");
  VllmStats st;
  expect(vllm_engine_stats(NULL, &st), VLLM_STATUS_INVALID_ARGUMENT, "stats: NULL engine");
  expect(vllm_poll(NULL, live, &out_unused), VLLM_STATUS_INVALID_ARGUMENT, "poll: NULL engine");
  expect(vllm_wait(e, live, 10, NULL), VLLM_STATUS_INVALID_ARGUMENT, "wait: NULL out");
  if (vllm_last_error(NULL, 0) == 0) failures++;

  VllmOutput *out = NULL;
  expect(vllm_poll(e, 987654321, &out), VLLM_STATUS_NOT_FOUND, "poll: unknown id");
  expect(vllm_poll(e, live, NULL), VLLM_STATUS_INVALID_ARGUMENT, "poll: NULL out");
  expect(vllm_wait(NULL, live, 10, &out), VLLM_STATUS_INVALID_ARGUMENT, "wait: NULL engine");
  expect(vllm_abort(e, 987654321), VLLM_STATUS_NOT_FOUND, "abort: unknown id");
  expect(vllm_abort(NULL, live), VLLM_STATUS_INVALID_ARGUMENT, "abort: NULL engine");

  /* Abort twice: the first works, the second is NOT_FOUND. */
  uint64_t victim = 0;
  expect(vllm_submit_text(e, "Hello", &sp, NULL, NULL, &victim), VLLM_STATUS_OK,
         "submit a request to abort");
  expect(vllm_abort(e, victim), VLLM_STATUS_OK, "abort");
  expect(vllm_abort(e, victim), VLLM_STATUS_NOT_FOUND, "abort twice");
  /* Its queued outputs end with ABORT. */
  enum VllmFinishReason last = VLLM_FINISH_REASON_NONE;
  while (vllm_poll(e, victim, &out) == VLLM_STATUS_OK && out != NULL) {
    last = out->finish_reason;
    vllm_output_free(out);
  }
  if (last != VLLM_FINISH_REASON_ABORT) {
    fprintf(stderr, "FAIL aborted request did not end with ABORT\n");
    failures++;
  }

  uint32_t ids[4];
  size_t n = 0;
  expect(vllm_tokenize(e, "Hello world! Hello world!", false, ids, 2, &n),
         VLLM_STATUS_BUFFER_TOO_SMALL, "tokenize: buffer of 2");
  if (n <= 2) failures++;
  expect(vllm_tokenize(e, NULL, false, ids, 4, &n), VLLM_STATUS_INVALID_ARGUMENT,
         "tokenize: NULL text");
  char small[2];
  size_t len = 0;
  uint32_t hello[2] = {40, 41};
  expect(vllm_detokenize(e, hello, 2, false, small, sizeof small, &len),
         VLLM_STATUS_BUFFER_TOO_SMALL, "detokenize: buffer of 2");
  expect(vllm_detokenize(e, NULL, 2, false, small, sizeof small, &len),
         VLLM_STATUS_INVALID_ARGUMENT, "detokenize: NULL ids");
  expect(vllm_engine_stats(e, NULL), VLLM_STATUS_INVALID_ARGUMENT, "stats: NULL out");
  expect(vllm_generate(e, "x", &sp, NULL), VLLM_STATUS_INVALID_ARGUMENT, "generate: NULL out");
  vllm_output_free(NULL);
  vllm_string_free(NULL);
  vllm_engine_destroy(NULL);
  if (strcmp(vllm_status_str(1000), "unknown status") != 0) failures++;

  /* The live request was unaffected. */
  char streamed[4096] = "";
  for (;;) {
    if (vllm_wait(e, live, 60000, &out) != VLLM_STATUS_OK || out == NULL) {
      fprintf(stderr, "FAIL live request stalled\n");
      failures++;
      break;
    }
    strncat(streamed, out->text, sizeof streamed - strlen(streamed) - 1);
    int done = out->finished;
    vllm_output_free(out);
    if (done) break;
  }
  if (quiet == NULL || strcmp(quiet, streamed) != 0) {
    fprintf(stderr, "FAIL live request output changed: '%s' vs '%s'\n", streamed,
            quiet ? quiet : "(null)");
    failures++;
  } else {
    printf("ok   live request output unchanged by the bad calls\n");
  }
  vllm_string_free(quiet);
  expect(vllm_abort(e, live), VLLM_STATUS_NOT_FOUND, "abort: finished request");

  /* Engine calls from inside a callback are refused, not deadlocked. */
  static struct probe pr;
  pr.engine = e;
  expect(vllm_submit_text(e, "Hello", &sp, probe_cb, &pr, &id), VLLM_STATUS_OK,
         "submit with a probing callback");
  for (int i = 0; i < 60000 && atomic_load(&pr.finished) == 0; i++)
    thrd_sleep(&(struct timespec){.tv_sec = 0, .tv_nsec = 1000000}, NULL);
  if (pr.abort_status != VLLM_STATUS_REENTRANT || pr.stats_status != VLLM_STATUS_REENTRANT ||
      pr.message_len == 0) {
    fprintf(stderr, "FAIL calls from a callback: abort %s, stats %s\n",
            vllm_status_str((int)pr.abort_status), vllm_status_str((int)pr.stats_status));
    failures++;
  } else {
    printf("ok   abort and stats from a callback        reentrant\n");
  }

  /* Destroy with requests in flight: 4 queued, 4 streaming to a callback that must see
   * each one end with ABORT before destroy returns. */
  VllmSamplingParams lots = sp;
  lots.max_tokens = 200;
  static struct probe flight; /* engine NULL: only counts */
  for (int i = 0; i < 4; i++) {
    expect(vllm_submit_text(e, "Hello world!", &lots, NULL, NULL, &id), VLLM_STATUS_OK,
           "submit (queued) before destroy");
    expect(vllm_submit_text(e, "Hello world!", &lots, probe_cb, &flight, &id), VLLM_STATUS_OK,
           "submit (callback) before destroy");
  }
  vllm_engine_destroy(e);
  if (atomic_load(&flight.finished) != 4) {
    fprintf(stderr, "FAIL destroy: %d of 4 callback requests finished, %d aborted\n",
            atomic_load(&flight.finished), atomic_load(&flight.aborted));
    failures++;
  }
  printf("ok   destroy with 8 requests in flight (callbacks saw %d finishes, %d aborts)\n",
         atomic_load(&flight.finished), atomic_load(&flight.aborted));
  printf("%s\n", failures ? "FAILED" : "OK");
  return failures ? 1 : 0;
}

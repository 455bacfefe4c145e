/* A C client of libvllm: blocking generation, streaming through a callback, streaming through
 * vllm_wait, chat, tokenize / detokenize and stats. Usage: generate MODEL_PATH
 * Exits non-zero on any unexpected result, printing vllm_last_error(). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>

#include <vllm.h>

static int failures = 0;

static void check(enum VllmStatus s, const char *what) {
  if (s != VLLM_STATUS_OK) {
    char msg[512];
    vllm_last_error(msg, sizeof msg);
    fprintf(stderr, "FAIL %s: %s: %s\n", what, vllm_status_str((int)s), msg);
    failures++;
  }
}

struct stream_state {
  char text[4096];
  size_t len;
  size_t tokens;
  enum VllmFinishReason reason;
  atomic_int finished; /* set last, with release order, by the engine thread */
};

static void on_output(const VllmOutput *out, void *user) {
  struct stream_state *st = (struct stream_state *)user;
  if (st->len + out->text_len < sizeof st->text) {
    memcpy(st->text + st->len, out->text, out->text_len);
    st->len += out->text_len;
    st->text[st->len] = '\0';
  }
  st->tokens += out->num_tokens;
  if (out->finished) {
    st->reason = out->finish_reason;
    atomic_store_explicit(&st->finished, 1, memory_order_release);
  }
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s MODEL_PATH\n", argv[0]);
    return 2;
  }
  printf("libvllm %s\n", vllm_version());

  VllmEngineParams ep;
  check(vllm_engine_default_params(&ep), "default engine params");
  ep.device = VLLM_DEVICE_CPU;
  VllmEngine *engine = NULL;
  check(vllm_engine_create(argv[1], &ep, &engine), "engine create");
  if (engine == NULL) return 1;

  VllmSamplingParams sp;
  check(vllm_sampling_default_params(&sp), "default sampling params");
  sp.temperature = 0.0f;
  sp.max_tokens = 24;
  sp.ignore_eos = true;

  /* 1. Blocking. */
  char *text = NULL;
  check(vllm_generate(engine, "Hello world!", &sp, &text), "generate");
  printf("generate: %s\n", text ? text : "(null)");

  /* 2. Streaming through a callback: the same greedy text. */
  static struct stream_state st; /* zero-initialized */
  uint64_t id = 0;
  check(vllm_submit_text(engine, "Hello world!", &sp, on_output, &st, &id), "submit (callback)");
  /* The callback runs on the engine thread; wait (up to 60 s) for its last output. */
  for (int i = 0; i < 60000 && !atomic_load_explicit(&st.finished, memory_order_acquire); i++) {
    thrd_sleep(&(struct timespec){.tv_sec = 0, .tv_nsec = 1000000}, NULL);
  }
  printf("callback: %zu tokens, finish %d: %s\n", st.tokens, (int)st.reason, st.text);
  if (!atomic_load(&st.finished) || st.tokens != 24 || st.reason != VLLM_FINISH_REASON_LENGTH) {
    fprintf(stderr, "FAIL callback stream did not finish with 24 tokens\n");
    failures++;
  }
  if (text && strcmp(text, st.text) != 0) {
    fprintf(stderr, "FAIL blocking and streamed greedy texts differ\n");
    failures++;
  }

  /* 3. Streaming through vllm_wait, with logprobs. */
  sp.logprobs = 2;
  check(vllm_submit_text(engine, "Hello world!", &sp, NULL, NULL, &id), "submit (queue)");
  size_t got = 0, lps = 0;
  char waited[4096] = "";
  for (;;) {
    VllmOutput *out = NULL;
    enum VllmStatus s = vllm_wait(engine, id, 10000, &out);
    check(s, "wait");
    if (s != VLLM_STATUS_OK || out == NULL) break;
    got += out->num_tokens;
    lps += out->num_logprobs;
    strncat(waited, out->text, sizeof waited - strlen(waited) - 1);
    if (out->num_logprobs > 0 && out->logprobs[0].num_top != 2) {
      fprintf(stderr, "FAIL expected 2 top logprobs\n");
      failures++;
    }
    int done = out->finished;
    vllm_output_free(out);
    if (done) break;
  }
  printf("wait: %zu tokens, %zu logprobs\n", got, lps);
  if (got != 24 || lps != 24 || (text && strcmp(text, waited) != 0)) {
    fprintf(stderr, "FAIL wait stream: %zu tokens, %zu logprobs\n", got, lps);
    failures++;
  }
  VllmOutput *none = NULL;
  if (vllm_poll(engine, id, &none) != VLLM_STATUS_NOT_FOUND || none != NULL) {
    fprintf(stderr, "FAIL a drained request must be NOT_FOUND\n");
    failures++;
  }
  sp.logprobs = -1;

  /* 4. Chat. */
  VllmChatMessage msgs[2] = {{"system", "Be brief."}, {"user", "Hello world!"}};
  check(vllm_submit_chat(engine, msgs, 2, &sp, NULL, NULL, &id), "submit chat");
  size_t chat_tokens = 0;
  enum VllmFinishReason chat_reason = VLLM_FINISH_REASON_NONE;
  for (;;) {
    VllmOutput *out = NULL;
    enum VllmStatus s = vllm_wait(engine, id, 60000, &out);
    check(s, "wait (chat)");
    if (s != VLLM_STATUS_OK || !out) break;
    chat_tokens += out->num_tokens;
    chat_reason = out->finish_reason;
    int done = out->finished;
    vllm_output_free(out);
    if (done) break;
  }
  if (chat_tokens != 24 || chat_reason != VLLM_FINISH_REASON_LENGTH) {
    fprintf(stderr, "FAIL chat: %zu tokens, finish %d\n", chat_tokens, (int)chat_reason);
    failures++;
  }
  printf("chat: %zu tokens\n", chat_tokens);

  /* 5. Tokenize / detokenize round trip. */
  uint32_t ids[64];
  size_t n = 0;
  check(vllm_tokenize(engine, "Hello world!", false, ids, 64, &n), "tokenize");
  char back[256];
  size_t back_len = 0;
  check(vllm_detokenize(engine, ids, n, false, back, sizeof back, &back_len), "detokenize");
  printf("tokenize: %zu ids -> \"%s\"\n", n, back);
  if (strcmp(back, "Hello world!") != 0) {
    fprintf(stderr, "FAIL round trip\n");
    failures++;
  }

  VllmStats stats;
  check(vllm_engine_stats(engine, &stats), "stats");
  printf("stats: running %llu, waiting %llu, kv blocks %llu used / %llu total\n",
         (unsigned long long)stats.running, (unsigned long long)stats.waiting,
         (unsigned long long)stats.kv_blocks_used, (unsigned long long)stats.kv_blocks_total);
  if (stats.kv_blocks_used != 0) {
    fprintf(stderr, "FAIL blocks still used after every request finished\n");
    failures++;
  }
  vllm_string_free(text);
  vllm_engine_destroy(engine);
  printf("%s\n", failures ? "FAILED" : "OK");
  return failures ? 1 : 0;
}

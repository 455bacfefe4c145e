// A C++17 RAII wrapper over libvllm's C API: vllm::Engine owns the handle (destroyed on
// scope exit), errors become vllm::Error exceptions carrying the status and message, and
// requests stream through std::function callbacks or are generated whole.
#pragma once

#include <vllm.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace vllm {

class Error : public std::runtime_error {
 public:
  Error(VllmStatus status, const std::string& what)
      : std::runtime_error(what), status_(status) {}
  VllmStatus status() const noexcept { return status_; }

 private:
  VllmStatus status_;
};

inline void check(VllmStatus s, const char* call) {
  if (s == VLLM_STATUS_OK) return;
  std::string msg(vllm_last_error(nullptr, 0) + 1, '\0');
  vllm_last_error(msg.data(), msg.size());
  msg.pop_back();
  throw Error(s, std::string(call) + ": " + vllm_status_str(static_cast<int>(s)) + ": " + msg);
}

/// One streamed delta, copied out of the library's buffer.
struct Delta {
  std::uint64_t request_id = 0;
  std::string text;
  std::vector<std::uint32_t> token_ids;
  bool finished = false;
  VllmFinishReason finish_reason = VLLM_FINISH_REASON_NONE;
};

class SamplingParams {
 public:
  SamplingParams() { check(vllm_sampling_default_params(&p_), "vllm_sampling_default_params"); }
  SamplingParams& greedy() { p_.temperature = 0.0f; return *this; }
  SamplingParams& max_tokens(std::uint32_t n) { p_.max_tokens = n; return *this; }
  SamplingParams& ignore_eos(bool b) { p_.ignore_eos = b; return *this; }
  SamplingParams& seed(std::uint64_t s) { p_.use_seed = true; p_.seed = s; return *this; }
  SamplingParams& temperature(float t) { p_.temperature = t; return *this; }
  const VllmSamplingParams* get() const { return &p_; }

 private:
  VllmSamplingParams p_{};
};

class Engine {
 public:
  explicit Engine(const std::string& model_path) {
    VllmEngineParams p;
    check(vllm_engine_default_params(&p), "vllm_engine_default_params");
    p.device = VLLM_DEVICE_CPU;
    VllmEngine* e = nullptr;
    check(vllm_engine_create(model_path.c_str(), &p, &e), "vllm_engine_create");
    handle_.reset(e);
  }

  /// The whole completion of `prompt` (blocks this thread only).
  std::string generate(const std::string& prompt, const SamplingParams& sp) const {
    char* out = nullptr;
    check(vllm_generate(handle_.get(), prompt.c_str(), sp.get(), &out), "vllm_generate");
    std::string s(out);
    vllm_string_free(out);
    return s;
  }

  /// Streams `prompt`'s deltas to `on_delta` (called on the engine thread) and returns the
  /// request id. `on_delta` must stay alive until the finished delta arrives.
  std::uint64_t stream(const std::string& prompt, const SamplingParams& sp,
                       std::function<void(const Delta&)>* on_delta) const {
    std::uint64_t id = 0;
    check(vllm_submit_text(handle_.get(), prompt.c_str(), sp.get(), &Engine::trampoline,
                           on_delta, &id),
          "vllm_submit_text");
    return id;
  }

  /// Collects a request submitted without a callback, waiting for each delta.
  std::string wait_all(std::uint64_t id) const {
    std::string text;
    for (;;) {
      VllmOutput* out = nullptr;
      check(vllm_wait(handle_.get(), id, -1, &out), "vllm_wait");
      std::unique_ptr<VllmOutput, decltype(&vllm_output_free)> guard(out, &vllm_output_free);
      text.append(out->text, out->text_len);
      if (out->finished) return text;
    }
  }

  std::uint64_t submit(const std::string& prompt, const SamplingParams& sp) const {
    std::uint64_t id = 0;
    check(vllm_submit_text(handle_.get(), prompt.c_str(), sp.get(), nullptr, nullptr, &id),
          "vllm_submit_text");
    return id;
  }

  VllmStats stats() const {
    VllmStats s{};
    check(vllm_engine_stats(handle_.get(), &s), "vllm_engine_stats");
    return s;
  }

 private:
  static void trampoline(const VllmOutput* out, void* user) {
    auto* f = static_cast<std::function<void(const Delta&)>*>(user);
    Delta d;
    d.request_id = out->request_id;
    d.text.assign(out->text, out->text_len);
    d.token_ids.assign(out->token_ids, out->token_ids + out->num_tokens);
    d.finished = out->finished;
    d.finish_reason = out->finish_reason;
    try {
      (*f)(d);
    } catch (...) {
      // Exceptions must not cross into the library.
    }
  }

  struct Destroy {
    void operator()(VllmEngine* e) const { vllm_engine_destroy(e); }
  };
  std::unique_ptr<VllmEngine, Destroy> handle_;
};

}  // namespace vllm

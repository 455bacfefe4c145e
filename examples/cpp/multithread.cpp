// 8 threads submit and stream at once (4 through callbacks, 4 through vllm_wait) against one
// engine; every greedy output must equal the single-threaded run of the same prompt.
// Usage: multithread MODEL_PATH
#include "vllm.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s MODEL_PATH\n", argv[0]);
    return 2;
  }
  try {
    vllm::Engine engine(argv[1]);
    auto sp = vllm::SamplingParams().greedy().max_tokens(32).ignore_eos(true);
    const int threads = 8, per_thread = 3;
    std::vector<std::string> prompts;
    for (int i = 0; i < threads * per_thread; i++)
      prompts.push_back("Request " + std::to_string(i) + ": Hello world! How are you today?");

    std::vector<std::string> single;
    for (const auto& p : prompts) single.push_back(engine.generate(p, sp));

    std::vector<std::string> multi(prompts.size());
    std::atomic<int> errors{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; t++) {
      pool.emplace_back([&, t] {
        try {
          for (int k = 0; k < per_thread; k++) {
            int i = t * per_thread + k;
            if (t % 2 == 0) {
              std::mutex m;
              std::condition_variable cv;
              bool done = false;
              std::string text;
              std::function<void(const vllm::Delta&)> f = [&](const vllm::Delta& d) {
                std::lock_guard<std::mutex> g(m);
                text += d.text;
                if (d.finished) {
                  done = true;
                  cv.notify_one();
                }
              };
              engine.stream(prompts[i], sp, &f);
              std::unique_lock<std::mutex> lk(m);
              cv.wait(lk, [&] { return done; });
              multi[i] = text;
            } else {
              multi[i] = engine.wait_all(engine.submit(prompts[i], sp));
            }
          }
        } catch (const std::exception& e) {
          std::fprintf(stderr, "thread %d: %s\n", t, e.what());
          errors++;
        }
      });
    }
    for (auto& th : pool) th.join();
    int mismatches = 0;
    for (size_t i = 0; i < prompts.size(); i++) {
      if (multi[i] != single[i] || single[i].empty()) {
        std::fprintf(stderr, "FAIL request %zu: '%s' vs '%s'\n", i, multi[i].c_str(),
                     single[i].c_str());
        mismatches++;
      }
    }
    auto s = engine.stats();
    std::printf("%zu requests from %d threads: %d mismatches, %d errors; kv blocks used %llu\n",
                prompts.size(), threads, mismatches, errors.load(),
                static_cast<unsigned long long>(s.kv_blocks_used));
    if (mismatches || errors || s.kv_blocks_used) return 1;
    // Errors surface as typed exceptions.
    try {
      vllm::Engine bad("/no/such/model");
      return 1;
    } catch (const vllm::Error& e) {
      if (e.status() != VLLM_STATUS_LOAD_FAILED) return 1;
      std::printf("missing model -> %s\n", e.what());
    }
    std::printf("OK\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

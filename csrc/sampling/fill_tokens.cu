// fill_tokens: out[i] = sampled[from[i]] where 0 <= from[i] < num_sampled, else tokens[i].
//
// Async scheduling: the engine plans step N+1 while step N runs, so a sequence's newest input
// token is the one step N draws on the device. This kernel builds step N+1's token ids from
// the host's ids and step N's sampler output, stream-ordered between the two steps (inside the
// decode graphs, as their first node), so no token goes through the host on the way. One
// thread per token: 8 bytes read (+4 from sampled) and 4 written per token, one launch's
// latency at decode sizes. from[] is read on the device: an entry outside [0, num_sampled)
// (the host's "no pending token", -1) keeps the host's id.
#include "../common/launch.cuh"

namespace vllm {
namespace {

__global__ void fill_tokens_kernel(int32_t *__restrict__ out, const int32_t *__restrict__ tokens,
                                   const int32_t *__restrict__ sampled,
                                   const int32_t *__restrict__ from, int64_t n,
                                   int64_t num_sampled) {
  pdl_wait_and_trigger();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int64_t f = from[i];
  out[i] = (f >= 0 && f < num_sampled) ? sampled[f] : tokens[i];
}

}  // namespace
}  // namespace vllm

extern "C" vllm_kstatus vllm_fill_tokens(const vllm_fill_tokens_params *p, vllm_stream stream) {
  VLLM_CHECK_ARG(p != nullptr);
  VLLM_CHECK_ARG(p->n >= 0 && p->n <= INT32_MAX && p->num_sampled >= 0);
  if (p->n == 0) return VLLM_K_OK;
  VLLM_CHECK_ARG(p->out && p->tokens && p->from && (p->sampled || p->num_sampled == 0));
  constexpr int kThreads = 256;
  const auto blocks = static_cast<unsigned>((p->n + kThreads - 1) / kThreads);
  vllm::launch_pdl(vllm::fill_tokens_kernel, dim3(blocks), dim3(kThreads),
                   static_cast<cudaStream_t>(stream), p->out, p->tokens, p->sampled, p->from,
                   p->n, p->num_sampled);
  return vllm::launch_status();
}

// f16 instances of the prefill attention kernel (prefill_attention.cuh).
#include "prefill_attention.cuh"

bool vllm::attn::launch_prefill_f16(const PrefillArgs &a, bool split, bool fp8, int head_size, int num_seqs,
                                  int max_query_len, cudaStream_t stream) {
  return launch_prefill_dtype<__half>(a, split, fp8, head_size, num_seqs, max_query_len, stream);
}

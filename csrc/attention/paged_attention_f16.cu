// f16 instances of the paged decode attention kernels (paged_attention.cuh).
#include "paged_attention_dispatch.cuh"

bool vllm::attn::launch_f16(const Args &a, int head_size, bool fp8, int num_seqs, int parts,
                            cudaStream_t stream) {
  return launch_dtype<__half>(a, head_size, fp8, num_seqs, parts, stream);
}

// The launcher of paged decode attention: argument checks, v1 / v2 choice by the workspace,
// dispatch by dtype (kernels in paged_attention.cuh, instances in paged_attention_{f16,bf16}.cu).
#include "paged_attention_dispatch.cuh"

extern "C" int64_t vllm_paged_attention_workspace_floats(int64_t num_seqs, int64_t num_heads,
                                                         int64_t head_size,
                                                         int64_t max_partitions) {
  if (num_seqs < 0 || num_heads < 0 || head_size < 0 || max_partitions < 0) return -1;
  return num_seqs * num_heads * max_partitions * (head_size + 2);
}

extern "C" vllm_kstatus vllm_paged_attention(const vllm_paged_attention_params *p,
                                             vllm_stream stream) {
  VLLM_CHECK_ARG(p != nullptr);
  VLLM_CHECK_ARG(p->num_seqs >= 0 && p->num_seqs <= 65535);
  VLLM_CHECK_ARG(p->num_heads > 0 && p->num_kv_heads > 0 && p->num_heads % p->num_kv_heads == 0);
  VLLM_CHECK_ARG(p->num_heads <= 65535 && p->max_blocks_per_seq > 0);
  VLLM_CHECK_ARG(p->q_stride >= p->num_heads * p->head_size && p->sliding_window >= 0);
  if (p->block_size != 16 && p->block_size != 32) return VLLM_K_UNSUPPORTED_SHAPE;
  const bool fp8 = p->cache_dtype == VLLM_CACHE_FP8_E4M3;
  if (!fp8 && p->cache_dtype != VLLM_CACHE_AUTO) return VLLM_K_UNSUPPORTED_DTYPE;
  if (fp8) VLLM_CHECK_ARG(p->k_scale > 0.0f && p->v_scale > 0.0f && p->k_scale < INFINITY &&
                          p->v_scale < INFINITY);
  const bool v2 = p->workspace != nullptr;
  if (v2) {
    VLLM_CHECK_ARG(p->max_partitions > 0 && p->max_partitions <= 65535);
    VLLM_CHECK_ARG(p->partition_size > 0 && p->partition_size % p->block_size == 0);
  }
  if (p->num_seqs == 0) return VLLM_K_OK;
  VLLM_CHECK_ARG(p->out && p->query && p->key_cache && p->value_cache && p->block_tables &&
                 p->seq_lens);
  vllm::attn::Args a{};
  a.out = p->out;
  a.query = p->query;
  a.key_cache = p->key_cache;
  a.value_cache = p->value_cache;
  a.block_tables = p->block_tables;
  a.seq_lens = p->seq_lens;
  a.alibi_slopes = p->alibi_slopes;
  a.num_heads = static_cast<int>(p->num_heads);
  a.num_kv_heads = static_cast<int>(p->num_kv_heads);
  a.block_size = static_cast<int>(p->block_size);
  a.max_blocks_per_seq = static_cast<int>(p->max_blocks_per_seq);
  a.q_stride = p->q_stride;
  a.sliding_window = p->sliding_window;
  a.scale = p->scale;
  a.k_scale = fp8 ? p->k_scale : 1.0f;
  a.v_scale = fp8 ? p->v_scale : 1.0f;
  int parts = 1;
  if (v2) {
    const int64_t slots = p->num_seqs * p->num_heads * p->max_partitions;
    a.exp_sums = p->workspace;
    a.max_logits = p->workspace + slots;
    a.tmp_out = p->workspace + 2 * slots;
    a.max_partitions = static_cast<int>(p->max_partitions);
    a.partition_size = static_cast<int>(p->partition_size);
    parts = a.max_partitions;
  } else {
    a.max_partitions = 1;
    a.partition_size = INT32_MAX;
  }
  auto s = static_cast<cudaStream_t>(stream);
  const int hs = static_cast<int>(p->head_size), n = static_cast<int>(p->num_seqs);
  bool ok;
  switch (p->dtype) {
    case VLLM_DTYPE_F16: ok = vllm::attn::launch_f16(a, hs, fp8, n, parts, s); break;
    case VLLM_DTYPE_BF16: ok = vllm::attn::launch_bf16(a, hs, fp8, n, parts, s); break;
    default: return VLLM_K_UNSUPPORTED_DTYPE;
  }
  if (!ok) return VLLM_K_UNSUPPORTED_SHAPE;
  return vllm::launch_status();
}

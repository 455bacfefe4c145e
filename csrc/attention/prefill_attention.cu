// The launcher of prefill attention over the paged KV cache: argument checks, dispatch by dtype
// (kernel in prefill_attention.cuh, instances in prefill_attention_{f16,bf16}.cu).
#include "prefill_attention.cuh"

extern "C" vllm_kstatus vllm_prefill_attention(const vllm_prefill_attention_params *p,
                                               vllm_stream stream) {
  VLLM_CHECK_ARG(p != nullptr);
  VLLM_CHECK_ARG(p->num_seqs >= 0 && p->num_seqs <= 65535 && p->num_tokens >= 0);
  VLLM_CHECK_ARG(p->num_heads > 0 && p->num_kv_heads > 0 && p->num_heads % p->num_kv_heads == 0);
  VLLM_CHECK_ARG(p->num_heads <= 65535 && p->max_blocks_per_seq > 0);
  VLLM_CHECK_ARG(p->q_stride >= p->num_heads * p->head_size && p->sliding_window >= 0);
  VLLM_CHECK_ARG(p->scale > 0.0f && p->scale <= 3.4e38f);  // finite and > 0
  VLLM_CHECK_ARG(p->split_p == 0 || p->split_p == 1);
  VLLM_CHECK_ARG(p->max_query_len >= 0 && p->max_query_len <= INT32_MAX);
  if (p->block_size != 16 && p->block_size != 32) return VLLM_K_UNSUPPORTED_SHAPE;
  VLLM_CHECK_ARG(p->cache_dtype == VLLM_CACHE_AUTO || p->cache_dtype == VLLM_CACHE_FP8_E4M3);
  const bool fp8 = p->cache_dtype == VLLM_CACHE_FP8_E4M3;
  if (fp8) {
    VLLM_CHECK_ARG(p->k_scale > 0.0f && p->k_scale <= 3.4e38f);
    VLLM_CHECK_ARG(p->v_scale > 0.0f && p->v_scale <= 3.4e38f);
    VLLM_CHECK_ARG(p->scale * p->k_scale <= 3.4e38f);
    if (p->head_size != 128 && p->head_size != 256) return VLLM_K_UNSUPPORTED_SHAPE;
  }
  if (p->num_seqs == 0 || p->num_tokens == 0 || p->max_query_len == 0) return VLLM_K_OK;
  VLLM_CHECK_ARG(p->out && p->query && p->key_cache && p->value_cache && p->block_tables &&
                 p->cu_query_lens && p->seq_lens);
  vllm::attn::PrefillArgs a{};
  a.out = p->out;
  a.query = p->query;
  a.key_cache = p->key_cache;
  a.value_cache = p->value_cache;
  a.block_tables = p->block_tables;
  a.cu_query_lens = p->cu_query_lens;
  a.seq_lens = p->seq_lens;
  a.num_heads = static_cast<int>(p->num_heads);
  a.num_kv_heads = static_cast<int>(p->num_kv_heads);
  a.block_size = static_cast<int>(p->block_size);
  a.max_blocks_per_seq = static_cast<int>(p->max_blocks_per_seq);
  a.q_stride = p->q_stride;
  a.sliding_window = p->sliding_window;
  // FP8: key = e4m3 * k_scale, folded into the softmax scale; v_scale applied to the output.
  a.scale = fp8 ? p->scale * p->k_scale : p->scale;
  a.v_scale = fp8 ? p->v_scale : 1.0f;
  auto s = static_cast<cudaStream_t>(stream);
  const int hs = static_cast<int>(p->head_size), n = static_cast<int>(p->num_seqs);
  const int mq = static_cast<int>(p->max_query_len);
  bool ok;
  switch (p->dtype) {
    case VLLM_DTYPE_F16: ok = vllm::attn::launch_prefill_f16(a, p->split_p != 0, fp8, hs, n, mq, s); break;
    case VLLM_DTYPE_BF16: ok = vllm::attn::launch_prefill_bf16(a, p->split_p != 0, fp8, hs, n, mq, s); break;
    default: return VLLM_K_UNSUPPORTED_DTYPE;
  }
  if (!ok) return VLLM_K_UNSUPPORTED_SHAPE;
  return vllm::launch_status();
}

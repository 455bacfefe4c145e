// Instantiations of sm90_gemm_impl.cuh, token tiles 16, 32.
// Split over two files that compile in parallel (each instantiation is ~20 s of nvcc).
#include "sm90_gemm_impl.cuh"

VLLM_SM90_INSTANTIATE(__nv_bfloat16, 16)
VLLM_SM90_INSTANTIATE(__nv_bfloat16, 32)
VLLM_SM90_INSTANTIATE(__half, 16)
VLLM_SM90_INSTANTIATE(__half, 32)

// Instantiations of sm90_gemm_impl.cuh, token tiles 64, 128.
// Split over two files that compile in parallel (each instantiation is ~20 s of nvcc).
#include "sm90_gemm_impl.cuh"

VLLM_SM90_INSTANTIATE(__nv_bfloat16, 64)
VLLM_SM90_INSTANTIATE(__nv_bfloat16, 128)
VLLM_SM90_INSTANTIATE(__half, 64)
VLLM_SM90_INSTANTIATE(__half, 128)

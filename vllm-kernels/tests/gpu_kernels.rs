//! The C launchers' own checks, called raw through `cuda::raw` (the params structs of
//! `csrc/include/vllm_kernels.h`): an unknown dtype value, a short stride, a zero vocab or NULL
//! params are refused with a status, not a launch. GPU only (feature `cuda`); on a machine
//! without libcuda or without a GPU each test prints SKIP and passes. The ops' own tests (CPU
//! reference and GPU against it) are in the per-op test files.
#![cfg(feature = "cuda")]

mod common;

use common::*;
use vllm_kernels::cuda;

/// The launchers' own checks: an unknown dtype value or an odd rot_dim is refused with a status,
/// not a launch.
#[test]
fn launchers_refuse_bad_params() {
    let Some(s) = stream("launchers_refuse_bad_params") else {
        return;
    };
    use cuda::raw::*;
    let mut out = up(&s, &vec![0.5f32; 64]);
    let input = up(&s, &vec![0.5f32; 64]);
    let (o, _g1) = cuda::DevicePtrMut::device_ptr_mut(&mut out, &s);
    let (i, _g2) = cuda::DevicePtr::device_ptr(&input, &s);
    let p = vllm_rms_norm_params {
        out: o as usize as *mut _,
        input: i as usize as *const _,
        weight: i as usize as *const _,
        num_tokens: 1,
        hidden_size: 64,
        input_stride: 64,
        out_stride: 64,
        epsilon: 1e-5,
        dtype: vllm_dtype(99),
    };
    // SAFETY: valid device pointers of 64 elements; the launcher must refuse the dtype.
    let st = unsafe { vllm_rms_norm(&p, s.cu_stream() as vllm_stream) };
    assert_eq!(st, vllm_kstatus::VLLM_K_UNSUPPORTED_DTYPE);
    let bad_stride = vllm_rms_norm_params {
        input_stride: 63,
        dtype: vllm_dtype::VLLM_DTYPE_F32,
        ..p
    };
    // SAFETY: as above; the launcher must refuse the stride.
    let st = unsafe { vllm_rms_norm(&bad_stride, s.cu_stream() as vllm_stream) };
    assert_eq!(st, vllm_kstatus::VLLM_K_INVALID_ARGUMENT);
    // SAFETY: NULL params must be refused, not dereferenced.
    let st = unsafe { vllm_rms_norm(std::ptr::null(), s.cu_stream() as vllm_stream) };
    assert_eq!(st, vllm_kstatus::VLLM_K_INVALID_ARGUMENT);
}

/// The launchers' own checks: a zero vocab, a short stride, an unknown dtype or NULL params are
/// refused with a status, not a launch.
#[test]
fn runner_launchers_refuse_bad_params() {
    let Some(s) = stream("runner_launchers_refuse_bad_params") else {
        return;
    };
    use cuda::raw::*;
    let st = s.cu_stream() as vllm_stream;
    let mut out = up(&s, &[-7i32; 2]);
    let f = up(&s, &[1.0f32; 64]);
    let seeds = up(&s, &[1u64; 2]);
    let (o, _g1) = cuda::DevicePtrMut::device_ptr_mut(&mut out, &s);
    let (fp, _g2) = cuda::DevicePtr::device_ptr(&f, &s);
    let (sp, _g3) = cuda::DevicePtr::device_ptr(&seeds, &s);
    let p = vllm_sample_tokens_params {
        out: o as usize as *mut i32,
        logits: fp as usize as *const f32,
        temperature: fp as usize as *const f32,
        min_p: fp as usize as *const f32,
        top_k: std::ptr::null(),
        top_p: std::ptr::null(),
        seeds: sp as usize as *const u64,
        num_rows: 2,
        vocab: 0,
        logits_stride: 32,
    };
    // SAFETY: valid device pointers of the sizes named; the launcher must refuse vocab 0.
    let got = unsafe { vllm_sample_tokens(&p, st) };
    assert_eq!(got, vllm_kstatus::VLLM_K_INVALID_ARGUMENT);
    let short = vllm_sample_tokens_params {
        vocab: 32,
        logits_stride: 31,
        ..p
    };
    // SAFETY: as above; the launcher must refuse the stride.
    let got = unsafe { vllm_sample_tokens(&short, st) };
    assert_eq!(got, vllm_kstatus::VLLM_K_INVALID_ARGUMENT);
    // SAFETY: NULL params must be refused, not dereferenced.
    let got = unsafe { vllm_sample_tokens(std::ptr::null(), st) };
    assert_eq!(got, vllm_kstatus::VLLM_K_INVALID_ARGUMENT);
    let g = vllm_gather_rows_params {
        out: fp as usize as *mut _,
        table: fp as usize as *const _,
        ids: o as usize as *const i32,
        num_rows: 2,
        row_len: 16,
        table_rows: 4,
        table_stride: 16,
        out_stride: 16,
        dtype: vllm_dtype(99),
    };
    // SAFETY: valid device pointers; the launcher must refuse the dtype.
    let got = unsafe { vllm_gather_rows(&g, st) };
    assert_eq!(got, vllm_kstatus::VLLM_K_UNSUPPORTED_DTYPE);
    // SAFETY: NULL params must be refused, not dereferenced.
    let got = unsafe { vllm_add_bias(std::ptr::null(), st) };
    assert_eq!(got, vllm_kstatus::VLLM_K_INVALID_ARGUMENT);
    // SAFETY: as above.
    let got = unsafe { vllm_head_rms_norm(std::ptr::null(), st) };
    assert_eq!(got, vllm_kstatus::VLLM_K_INVALID_ARGUMENT);
    drop((_g1, _g2, _g3));
    assert_eq!(down(&s, &out), vec![-7, -7], "nothing launched");
}

//! Safe wrappers over the CUDA launchers (feature `cuda`).
//!
//! Each wrapper validates its arguments with the same `args` code as the CPU reference, takes
//! device pointers from cudarc buffers (keeping their stream-sync guards alive across the
//! launch), calls the launcher on the given stream and maps its status to a [`KernelError`].
//! Nothing is launched when validation fails. Ops with many buffers take them as one operand
//! struct of `&dyn DevicePtr` ([`PagedAttentionIo`], [`PrefillAttentionIo`], [`SampleRowsDev`]),
//! so any cudarc slice or view fits without a generic parameter per buffer.

mod activation;
mod arena;
mod attention;
mod blas;
mod blas_lt;
mod cache;
mod gemm;
mod norm;
mod prefill;
mod rotary;
mod rows;
mod sampling;

pub use activation::{act_and_mul, gelu_and_mul, silu_and_mul};
pub use arena::{ArenaLayout, InputArena, Pod, Section, pinned_zeroed};
pub use attention::{PagedAttentionIo, paged_attention};
pub use blas::Blas;
pub use cache::{copy_blocks, reshape_and_cache, swap_blocks_to_device, swap_blocks_to_host};
pub use gemm::{skinny_gemm, sm90_gemm, sm90_gemm_available, sm90_gemm_workspace};
pub use norm::{fused_add_rms_norm, head_rms_norm, rms_norm};
pub use prefill::{PrefillAttentionIo, prefill_attention};
pub use rotary::{rotary_embedding, rotary_embedding_qkv};
pub use rows::{add_bias, gather_rows};
pub use sampling::{SampleRowsDev, fill_tokens, sample_tokens};

pub use cudarc::driver::sys::CUevent_flags;
pub use cudarc::driver::{
    CudaContext, CudaEvent, CudaGraph, CudaSlice, CudaStream, CudaView, CudaViewMut, DevicePtr,
    DevicePtrMut, DeviceRepr, PinnedHostSlice, ValidAsZeroBits,
};

use crate::dtype::{CacheDType, DType, Float, Fp8E4m3, KvCacheElem};
use crate::error::{KernelError, Result};
use crate::sys;
use std::sync::Arc;

/// An element type the CUDA wrappers take.
pub trait GpuFloat: Float + DeviceRepr {}
impl<T: Float + DeviceRepr> GpuFloat for T {}

/// A KV cache element the CUDA wrappers take: [`KvCacheElem`] that lives on the device.
pub trait GpuKvCacheElem<T>: KvCacheElem<T> + DeviceRepr {}
impl<T, C: KvCacheElem<T> + DeviceRepr> GpuKvCacheElem<T> for C {}

// SAFETY: Fp8E4m3 is a repr(transparent) u8: plain bytes, any bit pattern valid, zero included.
unsafe impl DeviceRepr for Fp8E4m3 {}
// SAFETY: as above, the all-zero byte is +0.0 in e4m3.
unsafe impl ValidAsZeroBits for Fp8E4m3 {}

pub(crate) fn cache_dtype(c: CacheDType) -> sys::vllm_cache_dtype {
    match c {
        CacheDType::Auto => sys::vllm_cache_dtype::VLLM_CACHE_AUTO,
        CacheDType::Fp8E4m3 => sys::vllm_cache_dtype::VLLM_CACHE_FP8_E4M3,
    }
}

/// True when the NVIDIA driver library loads and reports at least one device. cudarc panics on
/// first use when libcuda is missing, so callers (tests, the CLI, the C API) ask this first.
pub fn cuda_available() -> bool {
    // SAFETY: is_culib_present only tries to dlopen libcuda and drops the handle.
    let present = unsafe { cudarc::driver::sys::is_culib_present() };
    present && CudaContext::device_count().is_ok_and(|n| n > 0)
}

/// The context of device `ordinal`, or `None` when no CUDA device is usable.
pub fn try_context(ordinal: usize) -> Option<Arc<CudaContext>> {
    if !cuda_available() {
        return None;
    }
    CudaContext::new(ordinal).ok()
}

pub(crate) fn dtype<T: Float>() -> sys::vllm_dtype {
    match T::DTYPE {
        DType::F32 => sys::vllm_dtype::VLLM_DTYPE_F32,
        DType::F16 => sys::vllm_dtype::VLLM_DTYPE_F16,
        DType::BF16 => sys::vllm_dtype::VLLM_DTYPE_BF16,
    }
}

pub(crate) fn stream_handle(stream: &CudaStream) -> sys::vllm_stream {
    stream.cu_stream() as sys::vllm_stream
}

/// Turns a launcher status into a result; a CUDA error carries its code and message.
pub(crate) fn check(op: &'static str, status: sys::vllm_kstatus) -> Result<()> {
    if status == sys::vllm_kstatus::VLLM_K_OK {
        return Ok(());
    }
    if status == sys::vllm_kstatus::VLLM_K_CUDA_ERROR {
        // SAFETY: both functions only read a thread-local int / return a static C string.
        let (code, message) = unsafe {
            let code = sys::vllm_kernels_last_cuda_error();
            let msg = std::ffi::CStr::from_ptr(sys::vllm_kernels_cuda_error_string(code));
            (code, msg.to_string_lossy().into_owned())
        };
        return Err(KernelError::Cuda { op, code, message });
    }
    Err(KernelError::Launcher {
        op,
        status: status.0,
    })
}

/// A device pointer as the launcher's `void *`.
pub(crate) fn ptr(p: cudarc::driver::sys::CUdeviceptr) -> *mut std::ffi::c_void {
    p as usize as *mut std::ffi::c_void
}

/// A context for a runner that uses one stream: cudarc's cross-stream event tracking is off
/// (every read and write is already ordered on that stream), which also keeps CUDA graph
/// capture free of event records.
pub fn single_stream_context(ordinal: usize) -> Result<(Arc<CudaContext>, Arc<CudaStream>)> {
    let ctx = CudaContext::new(ordinal)?;
    // SAFETY: the caller issues all work on the one stream returned here, so no buffer is used
    // by two streams and the events cudarc would record are not needed.
    unsafe { ctx.disable_event_tracking() };
    let stream = ctx.new_stream()?;
    Ok((ctx, stream))
}

/// Starts capturing `stream`'s work into a graph (thread-local mode: other threads may keep
/// using CUDA meanwhile).
pub fn begin_capture(stream: &CudaStream) -> Result<()> {
    stream.begin_capture(
        cudarc::driver::sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
    )?;
    Ok(())
}

/// Ends a capture begun with [`begin_capture`] and instantiates the graph.
pub fn end_capture(stream: &Arc<CudaStream>) -> Result<SendGraph> {
    let g = stream.end_capture(cudarc::driver::sys::CUgraphInstantiate_flags(0))?;
    g.map(SendGraph)
        .ok_or_else(|| KernelError::invalid("cuda_graph", "the capture recorded nothing"))
}

/// An instantiated CUDA graph that an owner may move to another thread.
pub struct SendGraph(CudaGraph);

impl std::fmt::Debug for SendGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SendGraph")
    }
}

// SAFETY: the graph and its executable are driver handles usable from any thread once the
// context is current (launch binds it); SendGraph is not Sync, so one thread uses it at a time.
unsafe impl Send for SendGraph {}

impl SendGraph {
    /// Replays the graph on the stream it was captured from.
    pub fn launch(&self) -> Result<()> {
        self.0.launch()?;
        Ok(())
    }
}

/// Calls a raw launcher with a params struct of the caller's choosing. For tests of the
/// launcher's own checks (bad dtype values and the like) only.
#[doc(hidden)]
pub mod raw {
    pub use crate::sys::*;
}

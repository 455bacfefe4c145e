//! Weights on the GPU: each tensor read by the loader in f32, rounded once to the runner's
//! 16-bit type on the host (in parallel) and uploaded, then dropped, so host memory holds one
//! tensor at a time. Cost: O(parameters) conversion plus one host-to-device copy per tensor.

use super::RunnerFloat;
use crate::loader::LoadError;
use crate::model::{Linear, ModelWeights};
use rayon::prelude::*;
use std::sync::Arc;
use vllm_kernels::cuda::{CudaSlice, CudaStream};

/// The model's tensors as device buffers of `T`.
pub type GpuWeights<T> = ModelWeights<CudaSlice<T>>;

/// A converter for [`ModelWeights::load_with`] that uploads each tensor to `stream` as `T`.
pub fn uploader<T: RunnerFloat>(
    stream: Arc<CudaStream>,
) -> impl FnMut(&str, Vec<f32>) -> Result<CudaSlice<T>, LoadError> {
    move |name, values| {
        let host: Vec<T> = values.par_iter().map(|&v| T::from_f32(v)).collect();
        stream.clone_htod(&host).map_err(|e| LoadError::Device {
            tensor: name.to_string(),
            message: e.to_string(),
        })
    }
}

/// Bytes the weights take on the device.
pub fn weight_bytes<T>(w: &GpuWeights<T>) -> usize {
    let n = |s: &CudaSlice<T>| s.len();
    let lin = |l: &Linear<CudaSlice<T>>| l.tensors().map(n).sum::<usize>();
    let mut total = lin(&w.embed) + n(&w.norm) + w.lm_head.as_ref().map_or(0, lin);
    for l in &w.layers {
        total += n(&l.input_norm) + lin(&l.qkv) + lin(&l.o_proj) + n(&l.post_norm);
        total += l.mlp.linears().map(lin).sum::<usize>();
        total += l.qkv_bias.as_ref().map_or(0, n);
        total += l.q_norm.as_ref().map_or(0, n) + l.k_norm.as_ref().map_or(0, n);
    }
    total * std::mem::size_of::<T>()
}

//! Where the model runs: the first CUDA device when the crate is built with `cuda` and a GPU
//! is present, else the CPU. The choice is made once, at start-up.

/// A compute device for a model runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda { ordinal: usize },
}

impl Device {
    /// CUDA device 0 when built with `cuda` and one is usable, else the CPU.
    pub fn best_available() -> Device {
        if cfg!(feature = "cuda") && cuda_device_count() > 0 {
            Device::Cuda { ordinal: 0 }
        } else {
            Device::Cpu
        }
    }

    /// Whether this binary was built with the CUDA backend.
    pub fn cuda_compiled() -> bool {
        cfg!(feature = "cuda")
    }

    /// A one-line description for logs: "cuda:0 (NVIDIA H100 80GB HBM3)" or "cpu (8 threads)".
    pub fn describe(&self) -> String {
        match self {
            Device::Cpu => {
                let n = std::thread::available_parallelism().map_or(1, |n| n.get());
                format!("cpu ({n} threads)")
            }
            Device::Cuda { ordinal } => format!("cuda:{ordinal} ({})", cuda_device_name(*ordinal)),
        }
    }
}

#[cfg(feature = "cuda")]
fn cuda_device_count() -> usize {
    if vllm_kernels::cuda::cuda_available() {
        vllm_kernels::cuda::CudaContext::device_count().map_or(0, |n| n.max(0) as usize)
    } else {
        0
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_device_count() -> usize {
    0
}

#[cfg(feature = "cuda")]
fn cuda_device_name(ordinal: usize) -> String {
    vllm_kernels::cuda::try_context(ordinal)
        .and_then(|c| c.name().ok())
        .unwrap_or_else(|| "unavailable".into())
}

#[cfg(not(feature = "cuda"))]
fn cuda_device_name(_ordinal: usize) -> String {
    "not compiled".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_build_picks_cpu() {
        if !Device::cuda_compiled() {
            assert_eq!(Device::best_available(), Device::Cpu);
        }
        assert!(Device::Cpu.describe().starts_with("cpu ("));
    }
}

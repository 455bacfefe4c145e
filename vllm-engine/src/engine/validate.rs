//! Engine arguments checked once, at the boundary, into [`ValidEngineArgs`]: before any weight
//! is read (and, for `max_model_len`, once the model's config is known), each value against one
//! rule, each failure a typed [`ArgsError`] naming the limit and the value given.
//!
//! Rules: `block_size` a power of two in 1..=256 on the CPU (and for other runners), one of the
//! attention kernels' block sizes on CUDA; `max_num_seqs`, `max_num_batched_tokens` and an
//! explicit `num_kv_blocks` above 0; `gpu_memory_utilization` in (0, 1] on CUDA;
//! `kv_cache_dtype` the model's on the CPU (its cache is f32); `max_model_len` in 1..= the
//! model's `max_position_embeddings`. Cost: O(1).

use super::args::{EngineArgs, KvCacheDType};
use crate::config::ModelConfig;
use crate::device::Device;

/// Largest block size the CPU runner and the block manager take.
pub const MAX_BLOCK_SIZE: usize = 256;

/// Block sizes the CUDA attention kernels are compiled for.
pub const CUDA_BLOCK_SIZES: &[usize] = vllm_kernels::args::ATTENTION_BLOCK_SIZES;

/// An engine argument outside what the engine supports.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArgsError {
    #[error("block_size must be a power of two in 1..={max}, got {value}")]
    BlockSize { value: usize, max: usize },
    #[error("block_size {value} is not supported on CUDA; supported: {supported:?}")]
    CudaBlockSize {
        value: usize,
        supported: &'static [usize],
    },
    #[error("{name} must be > 0, got 0")]
    Zero { name: &'static str },
    #[error("gpu_memory_utilization must be in (0, 1], got {value}")]
    GpuMemoryUtilization { value: f32 },
    #[error("kv_cache_dtype {value} needs the CUDA backend; the CPU keeps its cache in f32")]
    KvCacheDTypeOnCpu { value: KvCacheDType },
    #[error(
        "max_model_len must be in 1..={limit} (the model's max_position_embeddings), got {value}"
    )]
    MaxModelLen { value: usize, limit: usize },
}

/// Engine arguments that passed [`EngineArgs::validate`] for [`Self::device`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEngineArgs {
    args: EngineArgs,
    device: Device,
}

impl std::ops::Deref for ValidEngineArgs {
    type Target = EngineArgs;
    fn deref(&self) -> &EngineArgs {
        &self.args
    }
}

impl EngineArgs {
    /// Checks every argument for an engine on `device` (see the module doc for the rules).
    pub fn validate(&self, device: Device) -> Result<ValidEngineArgs, ArgsError> {
        let bs = self.block_size;
        match device {
            Device::Cuda { .. } if !CUDA_BLOCK_SIZES.contains(&bs) => {
                return Err(ArgsError::CudaBlockSize {
                    value: bs,
                    supported: CUDA_BLOCK_SIZES,
                });
            }
            Device::Cpu if !bs.is_power_of_two() || bs > MAX_BLOCK_SIZE => {
                return Err(ArgsError::BlockSize {
                    value: bs,
                    max: MAX_BLOCK_SIZE,
                });
            }
            _ => {}
        }
        for (name, value) in [
            ("max_num_seqs", self.max_num_seqs),
            ("max_num_batched_tokens", self.max_num_batched_tokens),
            ("num_kv_blocks", self.num_kv_blocks.unwrap_or(1)),
        ] {
            if value == 0 {
                return Err(ArgsError::Zero { name });
            }
        }
        let util = self.gpu_memory_utilization;
        match device {
            Device::Cuda { .. } if !(0.0 < util && util <= 1.0) => {
                return Err(ArgsError::GpuMemoryUtilization { value: util });
            }
            Device::Cpu if self.kv_cache_dtype != KvCacheDType::Auto => {
                return Err(ArgsError::KvCacheDTypeOnCpu {
                    value: self.kv_cache_dtype,
                });
            }
            _ => {}
        }
        Ok(ValidEngineArgs {
            args: self.clone(),
            device,
        })
    }
}

impl ValidEngineArgs {
    pub fn device(&self) -> Device {
        self.device
    }

    /// `max_model_len` for `config`: the given one (at most the model's
    /// `max_position_embeddings`), else the model's.
    pub fn max_model_len(&self, config: &ModelConfig) -> Result<usize, ArgsError> {
        let limit = config.max_position_embeddings;
        let value = self.args.max_model_len.unwrap_or(limit);
        if value == 0 || value > limit {
            return Err(ArgsError::MaxModelLen { value, limit });
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Engine;
    use crate::engine::EngineError;

    const CUDA: Device = Device::Cuda { ordinal: 0 };

    fn with(f: impl FnOnce(&mut EngineArgs)) -> EngineArgs {
        let mut a = EngineArgs::new("/nonexistent/model");
        f(&mut a);
        a
    }

    #[test]
    fn block_size_has_one_rule_per_device() {
        for bs in [1, 4, 8, 16, 256] {
            assert!(with(|a| a.block_size = bs).validate(Device::Cpu).is_ok());
        }
        for bs in [0, 3, 24, 512] {
            let e = with(|a| a.block_size = bs)
                .validate(Device::Cpu)
                .unwrap_err();
            assert_eq!(
                e,
                ArgsError::BlockSize {
                    value: bs,
                    max: 256
                }
            );
        }
        for &bs in CUDA_BLOCK_SIZES {
            assert!(with(|a| a.block_size = bs).validate(CUDA).is_ok());
        }
        let e = with(|a| a.block_size = 8).validate(CUDA).unwrap_err();
        assert!(e.to_string().contains("block_size 8"), "{e}");
    }

    #[test]
    fn limits_name_the_argument_and_the_value() {
        let zero = |f: fn(&mut EngineArgs)| with(f).validate(Device::Cpu).unwrap_err();
        assert_eq!(
            zero(|a| a.max_num_seqs = 0),
            ArgsError::Zero {
                name: "max_num_seqs"
            }
        );
        assert_eq!(
            zero(|a| a.num_kv_blocks = Some(0)),
            ArgsError::Zero {
                name: "num_kv_blocks"
            }
        );
        assert_eq!(
            zero(|a| a.kv_cache_dtype = KvCacheDType::Fp8E4m3),
            ArgsError::KvCacheDTypeOnCpu {
                value: KvCacheDType::Fp8E4m3
            }
        );
        let e = with(|a| a.gpu_memory_utilization = 1.5)
            .validate(CUDA)
            .unwrap_err();
        assert_eq!(e, ArgsError::GpuMemoryUtilization { value: 1.5 });
        assert!(
            with(|a| a.kv_cache_dtype = KvCacheDType::Fp8E4m3)
                .validate(CUDA)
                .is_ok()
        );
    }

    #[test]
    fn a_bad_argument_is_found_before_the_model_is_opened() {
        let a = with(|a| {
            a.device = Some(CUDA);
            a.block_size = 8;
        });
        let e = Engine::new(&a).unwrap_err();
        assert!(
            matches!(
                e,
                EngineError::Args(ArgsError::CudaBlockSize { value: 8, .. })
            ),
            "{e}"
        );
    }

    #[test]
    fn kv_cache_dtype_reads_and_prints_its_names() {
        for (s, d) in [
            ("auto", KvCacheDType::Auto),
            ("fp8", KvCacheDType::Fp8E4m3),
            ("fp8_e4m3", KvCacheDType::Fp8E4m3),
        ] {
            assert_eq!(s.parse::<KvCacheDType>(), Ok(d));
        }
        assert_eq!(KvCacheDType::Fp8E4m3.to_string(), "fp8_e4m3");
        assert!("int8".parse::<KvCacheDType>().is_err());
    }
}

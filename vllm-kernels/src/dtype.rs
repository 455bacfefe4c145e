//! Element types the kernels take, and the conversions the CPU reference computes with.

use half::{bf16, f16};

/// Runtime element type of a tensor; the numbers match `vllm_dtype` of the launcher header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    /// Bytes of one element.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// Relative tolerance of a GPU result against the CPU reference for this type.
    pub const fn tolerance(self) -> f32 {
        match self {
            DType::F32 => 1e-5,
            DType::F16 => 1e-3,
            DType::BF16 => 1e-2,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        })
    }
}

/// A floating-point element type the kernels compute with (math in f32, storage in `Self`).
pub trait Float: Copy + Send + Sync + Default + PartialEq + std::fmt::Debug + 'static {
    const DTYPE: DType;
    fn to_f32(self) -> f32;
    fn from_f32(x: f32) -> Self;
    /// The value an f32 takes once stored in this type.
    fn round(x: f32) -> f32 {
        Self::from_f32(x).to_f32()
    }
    /// A quiet NaN, used to poison outputs before a kernel runs.
    fn nan() -> Self {
        Self::from_f32(f32::NAN)
    }
}

impl Float for f32 {
    const DTYPE: DType = DType::F32;
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(x: f32) -> Self {
        x
    }
}

impl Float for f16 {
    const DTYPE: DType = DType::F16;
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn from_f32(x: f32) -> Self {
        f16::from_f32(x)
    }
}

impl Float for bf16 {
    const DTYPE: DType = DType::BF16;
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn from_f32(x: f32) -> Self {
        bf16::from_f32(x)
    }
}

/// The dtypes every op of the first kernel family supports.
pub const FLOAT_DTYPES: &[DType] = &[DType::F32, DType::F16, DType::BF16];

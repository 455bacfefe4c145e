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

/// Element type of the paged KV cache; the numbers match `vllm_cache_dtype` of the launcher
/// header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CacheDType {
    /// The model's dtype (the op's [`DType`]).
    #[default]
    Auto,
    /// OCP FP8 E4M3 bytes holding `x / scale`, one scale per tensor ([`Fp8E4m3`]).
    Fp8E4m3,
}

impl std::fmt::Display for CacheDType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CacheDType::Auto => "auto",
            CacheDType::Fp8E4m3 => "fp8_e4m3",
        })
    }
}

/// One OCP FP8 E4M3 value as an FP8 KV cache stores it: sign, 4 exponent bits (bias 7), 3
/// mantissa bits; no infinities, largest finite 448, NaN = `S.1111.111`, subnormals down to
/// 2^-9. Conversions round to nearest even and saturate to +-448, like the GPU's
/// `cvt.rn.satfinite.e4m3x2.f32`, so CPU and GPU caches hold the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct Fp8E4m3(pub u8);

impl Fp8E4m3 {
    /// Largest finite value.
    pub const MAX: f32 = 448.0;

    /// `x` rounded to nearest even, saturated to +-448 (infinities too); NaN stays NaN.
    pub fn from_f32(x: f32) -> Self {
        let sign = if x.is_sign_negative() { 0x80u8 } else { 0 };
        if x.is_nan() {
            return Self(sign | 0x7f);
        }
        let a = x.abs();
        if a >= Self::MAX {
            return Self(sign | 0x7e);
        }
        // Below 2^-6: subnormal steps of 2^-9 (a rounded count of 8 is the smallest normal,
        // whose encoding 0x08 follows on). Above: 8 steps per binade.
        let bits = if a < 2f32.powi(-6) {
            (a * 512.0).round_ties_even() as u8
        } else {
            let e = (a.to_bits() >> 23) as i32 - 127; // floor(log2 a), a is normal in f32
            let m = ((a / 2f32.powi(e) - 1.0) * 8.0).round_ties_even() as i32; // 0..=8
            (((e + 7) << 3) + m) as u8 // m = 8 carries into the exponent
        };
        Self(sign | bits)
    }

    pub fn to_f32(self) -> f32 {
        let sign = if self.0 & 0x80 != 0 { -1.0 } else { 1.0 };
        let e = (self.0 >> 3) & 0xf;
        let m = (self.0 & 7) as f32;
        sign * match (e, self.0 & 7) {
            (15, 7) => f32::NAN,
            (0, _) => m * 2f32.powi(-9),
            _ => (1.0 + m / 8.0) * 2f32.powi(e as i32 - 7),
        }
    }
}

/// An element of a paged KV cache for a model of dtype `T`: `T` itself ([`CacheDType::Auto`]) or
/// [`Fp8E4m3`] (`x / scale` rounded to e4m3). The cache ops and attention take either; the
/// arguments' `cache_dtype` must name the same one.
pub trait KvCacheElem<T>: Copy + Send + Sync + 'static {
    const CACHE_DTYPE: CacheDType;
    /// The element `reshape_and_cache` stores for `x` (the tensor's scale for FP8).
    fn store(x: T, scale: f32) -> Self;
    /// The value attention reads back.
    fn load(self, scale: f32) -> f32;
}

impl<T: Float> KvCacheElem<T> for T {
    const CACHE_DTYPE: CacheDType = CacheDType::Auto;
    fn store(x: T, _: f32) -> Self {
        x
    }
    fn load(self, _: f32) -> f32 {
        self.to_f32()
    }
}

impl<T: Float> KvCacheElem<T> for Fp8E4m3 {
    const CACHE_DTYPE: CacheDType = CacheDType::Fp8E4m3;
    fn store(x: T, scale: f32) -> Self {
        Fp8E4m3::from_f32(x.to_f32() / scale)
    }
    fn load(self, scale: f32) -> f32 {
        self.to_f32() * scale
    }
}

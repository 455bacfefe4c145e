//! GGUF tensor encodings to f32: F32, F16, BF16 and ggml's block formats Q8_0, Q4_0 and Q4_1.
//!
//! Block formats hold 32 weights per block, little-endian:
//! - Q8_0: f16 scale `d`, 32 x i8 `q`; `x = d * q`.
//! - Q4_0: f16 `d`, 16 bytes of nibbles; low nibbles are weights 0..16, high nibbles 16..32;
//!   `x = d * (q - 8)`.
//! - Q4_1: f16 `d`, f16 minimum `m`, 16 bytes of nibbles laid out as Q4_0; `x = d * q + m`.
//!
//! Cost: one pass over the bytes, O(n) for n weights.

use half::{bf16, f16};

/// ggml type ids (the `type` field of a GGUF tensor info) the loader reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q8_0,
    BF16,
}

/// Types the loader reads, for error messages.
pub const SUPPORTED_GGML_TYPES: &str = "F32 (0), F16 (1), Q4_0 (2), Q4_1 (3), Q8_0 (8), BF16 (30)";

const QK: usize = 32;

impl GgmlType {
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            30 => Self::BF16,
            _ => return None,
        })
    }

    /// (weights per block, bytes per block).
    fn block(self) -> (usize, usize) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::BF16 => (1, 2),
            Self::Q4_0 => (QK, 2 + QK / 2),
            Self::Q4_1 => (QK, 4 + QK / 2),
            Self::Q8_0 => (QK, 2 + QK),
        }
    }

    /// Bytes that `n` weights take, or `None` when `n` is not a whole number of blocks.
    pub fn bytes_for(self, n: usize) -> Option<usize> {
        let (per, bytes) = self.block();
        n.is_multiple_of(per).then(|| n / per * bytes)
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Decodes `data` (exactly `ty.bytes_for(out.len())` bytes) into `out`.
pub fn dequantize(ty: GgmlType, data: &[u8], out: &mut [f32]) {
    let (per, bytes) = ty.block();
    debug_assert_eq!(Some(data.len()), ty.bytes_for(out.len()));
    match ty {
        GgmlType::F32 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        GgmlType::Q8_0 => {
            for (o, b) in out.chunks_exact_mut(per).zip(data.chunks_exact(bytes)) {
                let d = f16_at(b, 0);
                for (x, &q) in o.iter_mut().zip(&b[2..]) {
                    *x = d * f32::from(q as i8);
                }
            }
        }
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let q41 = ty == GgmlType::Q4_1;
            let first = if q41 { 4 } else { 2 };
            for (o, b) in out.chunks_exact_mut(per).zip(data.chunks_exact(bytes)) {
                let d = f16_at(b, 0);
                let m = if q41 { f16_at(b, 2) } else { 0.0 };
                // As ggml computes them, so results match bit for bit.
                let x = |q: u8| {
                    if q41 {
                        f32::from(q) * d + m
                    } else {
                        (f32::from(q) - 8.0) * d
                    }
                };
                let (lo, hi) = o.split_at_mut(QK / 2);
                for (j, &q) in b[first..].iter().enumerate() {
                    lo[j] = x(q & 0x0f);
                    hi[j] = x(q >> 4);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_1_block_by_hand() {
        // d = 0.5, m = -1.0, nibbles: weight j = j % 16 in both halves.
        let mut b = Vec::new();
        b.extend(f16::from_f32(0.5).to_le_bytes());
        b.extend(f16::from_f32(-1.0).to_le_bytes());
        for j in 0..16u8 {
            b.push(j | ((15 - j) << 4));
        }
        let mut out = [0.0; 32];
        dequantize(GgmlType::Q4_1, &b, &mut out);
        for j in 0..16 {
            assert_eq!(out[j], 0.5 * j as f32 - 1.0);
            assert_eq!(out[16 + j], 0.5 * (15 - j) as f32 - 1.0);
        }
    }

    #[test]
    fn sizes_need_whole_blocks() {
        assert_eq!(GgmlType::Q8_0.bytes_for(64), Some(68));
        assert_eq!(GgmlType::Q4_0.bytes_for(33), None);
        assert_eq!(GgmlType::BF16.bytes_for(3), Some(6));
    }
}

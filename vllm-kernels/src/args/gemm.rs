//! Arguments of the products, all `y[r, c] = sum_k x[r, k] w[c, k]`: the hand-written
//! `skinny_gemm` (a few rows, decode) and `sm90_gemm` (Hopper, 5..256 rows), and
//! [`MatmulArgs`] of `Blas::matmul_bt`, which routes a product to one of them or to cuBLAS.
//! Validation is O(1).

use super::{check_dtype, check_len, check_positive, check_rows};
use crate::dtype::DType;
use crate::error::{KernelError, Result};

/// `Blas::matmul_bt`'s product: `m` rows of `x` (contiguous, `[m, k]`) times `w^T` (contiguous,
/// `[n, k]`) into rows of `y` placed `ldy` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulArgs {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// Elements between rows of y (>= n).
    pub ldy: usize,
}

impl MatmulArgs {
    /// Contiguous output rows.
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        Self { m, n, k, ldy: n }
    }

    /// `dtype` of x and w, `out` of y (f32 inputs need an f32 output), and the lengths.
    pub fn validate(
        &self,
        dtype: DType,
        out: DType,
        y_len: usize,
        x_len: usize,
        w_len: usize,
    ) -> Result<()> {
        const OP: &str = "matmul_bt";
        if dtype == DType::F32 && out != DType::F32 {
            return Err(KernelError::invalid(OP, "f32 inputs need an f32 output"));
        }
        if self.ldy < self.n {
            return Err(KernelError::BadStride {
                op: OP,
                name: "out",
                stride: self.ldy,
                row_len: self.n,
            });
        }
        check_len(OP, "x", x_len, self.m * self.k)?;
        check_len(OP, "w", w_len, self.n * self.k)?;
        check_rows(OP, "out", y_len, self.m, self.n, self.ldy)
    }
}

/// Most rows `skinny_gemm` takes (decode batches of up to this many tokens).
pub const SKINNY_GEMM_MAX_M: usize = 4;
/// Longest reduction it takes (x lives in shared memory: M x K 16-bit values).
pub const SKINNY_GEMM_MAX_K: usize = 16384;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkinnyGemmArgs {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// Elements between rows of y (>= n).
    pub ldy: usize,
    /// Load each warp's first weight chunk before waiting on the previous kernel (PDL).
    pub preload: bool,
}

impl SkinnyGemmArgs {
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        Self {
            m,
            n,
            k,
            ldy: n,
            preload: false,
        }
    }

    /// `dtype` of x and w (f16 / bf16), `out` of y (the same or f32), and the lengths.
    pub fn validate(
        &self,
        dtype: DType,
        out: DType,
        y_len: usize,
        x_len: usize,
        w_len: usize,
    ) -> Result<()> {
        const OP: &str = "skinny_gemm";
        check_dtype(OP, dtype, &[DType::F16, DType::BF16])?;
        if out != dtype && out != DType::F32 {
            return Err(KernelError::Unsupported {
                op: OP,
                what: "output dtype",
                value: out.to_string(),
                supported: format!("{dtype} or f32"),
            });
        }
        if self.m == 0 || self.m > SKINNY_GEMM_MAX_M {
            return Err(KernelError::Unsupported {
                op: OP,
                what: "m (rows)",
                value: self.m.to_string(),
                supported: format!("1..={SKINNY_GEMM_MAX_M}"),
            });
        }
        check_positive(OP, "n", self.n)?;
        if self.k == 0 || !self.k.is_multiple_of(8) || self.k > SKINNY_GEMM_MAX_K {
            return Err(KernelError::Unsupported {
                op: OP,
                what: "k",
                value: self.k.to_string(),
                supported: format!("a multiple of 8 in 8..={SKINNY_GEMM_MAX_K}"),
            });
        }
        if self.n > i32::MAX as usize {
            return Err(KernelError::invalid(
                OP,
                format!("n {} exceeds i32::MAX", self.n),
            ));
        }
        if self.ldy < self.n {
            return Err(KernelError::BadStride {
                op: OP,
                name: "y",
                stride: self.ldy,
                row_len: self.n,
            });
        }
        check_len(OP, "x", x_len, self.m * self.k)?;
        check_len(OP, "w", w_len, self.n * self.k)?;
        check_len(OP, "y", y_len, (self.m - 1) * self.ldy + self.n)
    }
}

/// Token tiles the Hopper product (`csrc/gemm/sm90_gemm*.cu`) is compiled for. (Every multiple
/// of 16 up to 256 was measured on an H200; tiles off the powers of two ran up to 3x slower.)
pub const SM90_GEMM_TILES: [usize; 4] = [16, 32, 64, 128];

/// Arguments of `sm90_gemm`: `y[r, c] = sum_k x[r, k] w[c, k]` on Hopper tensor cores, the
/// rows (tokens) as a tile of `tile_n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sm90GemmArgs {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// Elements between rows of y (>= n, a multiple of 8).
    pub ldy: usize,
    /// One of [`SM90_GEMM_TILES`]; `m` above it takes `ceil(m / tile_n)` token tiles.
    pub tile_n: usize,
}

impl Sm90GemmArgs {
    /// The smallest tile that covers `m` rows at once (128 for more).
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        let tile_n = Self::covering_tile(m);
        Self {
            m,
            n,
            k,
            ldy: n,
            tile_n,
        }
    }

    /// The smallest compiled tile of at least `m` rows (the largest when none is).
    pub fn covering_tile(m: usize) -> usize {
        SM90_GEMM_TILES
            .iter()
            .copied()
            .find(|&t| t >= m)
            .unwrap_or(SM90_GEMM_TILES[SM90_GEMM_TILES.len() - 1])
    }

    /// `dtype` of x, w and y (f16 / bf16) and the lengths.
    pub fn validate(&self, dtype: DType, y_len: usize, x_len: usize, w_len: usize) -> Result<()> {
        const OP: &str = "sm90_gemm";
        check_dtype(OP, dtype, &[DType::F16, DType::BF16])?;
        check_positive(OP, "m", self.m)?;
        // TMA: 16-byte rows of W and X (k) and columns of D^T (n).
        for (what, v) in [("n", self.n), ("k", self.k)] {
            if v == 0 || !v.is_multiple_of(8) {
                return Err(KernelError::Unsupported {
                    op: OP,
                    what,
                    value: v.to_string(),
                    supported: "a positive multiple of 8 (16-byte rows for TMA)".into(),
                });
            }
        }
        if !SM90_GEMM_TILES.contains(&self.tile_n) {
            return Err(KernelError::Unsupported {
                op: OP,
                what: "tile_n",
                value: self.tile_n.to_string(),
                supported: format!("{SM90_GEMM_TILES:?}"),
            });
        }
        for (what, v) in [
            ("m", self.m),
            ("n", self.n),
            ("k", self.k),
            ("ldy", self.ldy),
        ] {
            if v > i32::MAX as usize {
                return Err(KernelError::OutOfRange {
                    op: OP,
                    what,
                    value: v as i64,
                    limit: i32::MAX as usize,
                });
            }
        }
        check_rows(OP, "y", y_len, self.m, self.n, self.ldy)?;
        if !self.ldy.is_multiple_of(8) {
            return Err(KernelError::Unsupported {
                op: OP,
                what: "ldy",
                value: self.ldy.to_string(),
                supported: "a multiple of 8 (16-byte rows for TMA)".into(),
            });
        }
        check_len(OP, "x", x_len, self.m * self.k)?;
        check_len(OP, "w", w_len, self.n * self.k)
    }
}

//! Arguments of the row ops `gather_rows` (embedding lookup, picking logits rows) and `add_bias`.

use super::{check_dtype, check_eq, check_len, check_positive, check_rows, check_rows_limit};
use crate::dtype::{DType, FLOAT_DTYPES};
use crate::error::{KernelError, Result};

/// `out[r, :] = table[ids[r], :]` for `num_rows` rows of `row_len` elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatherRowsArgs {
    pub num_rows: usize,
    pub row_len: usize,
    /// Rows of the table: ids must lie in `0..table_rows`.
    pub table_rows: usize,
    /// Elements between table rows (>= row_len).
    pub table_stride: usize,
    /// Elements between output rows (>= row_len).
    pub out_stride: usize,
}

impl GatherRowsArgs {
    /// Contiguous table and output.
    pub fn new(num_rows: usize, row_len: usize, table_rows: usize) -> Self {
        Self {
            num_rows,
            row_len,
            table_rows,
            table_stride: row_len,
            out_stride: row_len,
        }
    }

    /// The shapes and lengths; the ids themselves are checked by [`Self::validate_ids`] (the CPU
    /// reference does, the GPU kernel writes a zero row for an id out of range instead).
    pub fn validate(
        &self,
        dtype: DType,
        out_len: usize,
        table_len: usize,
        ids_len: usize,
    ) -> Result<()> {
        const OP: &str = "gather_rows";
        check_dtype(OP, dtype, FLOAT_DTYPES)?;
        check_positive(OP, "row_len", self.row_len)?;
        check_row_len(OP, self.row_len)?;
        check_rows_limit(OP, self.num_rows)?;
        check_rows(
            OP,
            "table",
            table_len,
            self.table_rows,
            self.row_len,
            self.table_stride,
        )?;
        check_rows(
            OP,
            "out",
            out_len,
            self.num_rows,
            self.row_len,
            self.out_stride,
        )?;
        check_len(OP, "ids", ids_len, self.num_rows)
    }

    /// Every one of the first `num_rows` ids lies in `0..table_rows`.
    pub fn validate_ids(&self, ids: &[i32]) -> Result<()> {
        for &id in &ids[..self.num_rows.min(ids.len())] {
            if id < 0 || id as usize >= self.table_rows {
                return Err(KernelError::OutOfRange {
                    op: "gather_rows",
                    what: "id",
                    value: id as i64,
                    limit: self.table_rows,
                });
            }
        }
        Ok(())
    }
}

/// In place `x[r, c] += bias[c]` for `num_rows` rows of `row_len` elements placed `stride` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddBiasArgs {
    pub num_rows: usize,
    pub row_len: usize,
    /// Elements between rows of `x` (>= row_len).
    pub stride: usize,
}

impl AddBiasArgs {
    /// Contiguous rows.
    pub fn new(num_rows: usize, row_len: usize) -> Self {
        Self {
            num_rows,
            row_len,
            stride: row_len,
        }
    }

    pub fn validate(&self, dtype: DType, x_len: usize, bias_len: usize) -> Result<()> {
        const OP: &str = "add_bias";
        check_dtype(OP, dtype, FLOAT_DTYPES)?;
        check_positive(OP, "row_len", self.row_len)?;
        check_row_len(OP, self.row_len)?;
        check_rows_limit(OP, self.num_rows)?;
        check_rows(OP, "x", x_len, self.num_rows, self.row_len, self.stride)?;
        check_eq(OP, "bias length (row_len)", self.row_len, bias_len)
    }
}

/// Row lengths are an int32 in the kernels.
fn check_row_len(op: &'static str, row_len: usize) -> Result<()> {
    if row_len > i32::MAX as usize {
        return Err(KernelError::Unsupported {
            op,
            what: "row_len",
            value: row_len.to_string(),
            supported: format!("1..={}", i32::MAX),
        });
    }
    Ok(())
}

//! `gather_rows` and `add_bias` on the CPU. Cost: one pass over the rows moved or updated.

use crate::args::{AddBiasArgs, GatherRowsArgs};
use crate::dtype::Float;
use crate::error::Result;

/// `out[r, :] = table[ids[r], :]`. An id outside `0..table_rows` is an error here (before any
/// write); the GPU kernel writes a zero row for it instead.
pub fn gather_rows<T: Float>(
    out: &mut [T],
    table: &[T],
    ids: &[i32],
    a: &GatherRowsArgs,
) -> Result<()> {
    a.validate(T::DTYPE, out.len(), table.len(), ids.len())?;
    a.validate_ids(ids)?;
    let n = a.row_len;
    for (r, &id) in ids[..a.num_rows].iter().enumerate() {
        let src = &table[id as usize * a.table_stride..][..n];
        out[r * a.out_stride..][..n].copy_from_slice(src);
    }
    Ok(())
}

/// In place `x[r, c] = round(x[r, c] + bias[c])`, the sum in f32.
pub fn add_bias<T: Float>(x: &mut [T], bias: &[T], a: &AddBiasArgs) -> Result<()> {
    a.validate(T::DTYPE, x.len(), bias.len())?;
    for r in 0..a.num_rows {
        let row = &mut x[r * a.stride..][..a.row_len];
        for (v, b) in row.iter_mut().zip(bias) {
            *v = T::from_f32(v.to_f32() + b.to_f32());
        }
    }
    Ok(())
}

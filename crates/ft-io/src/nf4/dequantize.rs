//! NF4 dequantisation: `NF4_CODE[index] * absmax[block]` in f32, two values per byte lookup.

use std::ops::Range;

use rayon::prelude::*;

use super::NF4_BLOCK_SIZE;
use super::codebook::{NF4_BYTE_LUT, NF4_CODE};
use super::error::Nf4Error;
use super::tensor::Nf4Tensor;

/// Output values handled by one parallel task (a multiple of the block size).
const VALUES_PER_TASK: usize = 256 * NF4_BLOCK_SIZE;

/// Dequantises the whole tensor to f32.
///
/// # Shapes
/// - result: `[prod(shape)]` (row-major)
pub fn dequantize_nf4(tensor: &Nf4Tensor) -> Vec<f32> {
    tensor.dequantize()
}

/// Dequantises the whole tensor into a caller buffer of `prod(shape)` values.
pub fn dequantize_nf4_into(tensor: &Nf4Tensor, out: &mut [f32]) -> Result<(), Nf4Error> {
    tensor.dequantize_into(out)
}

impl Nf4Tensor {
    /// Dequantises to a new row-major f32 vector.
    ///
    /// # Shapes
    /// - result: `[prod(shape)]`
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.numel()];
        self.dequantize_into(&mut out)
            .expect("invariant: the buffer has numel values");
        out
    }

    /// Dequantises into `out` (length `prod(shape)`), in parallel.
    pub fn dequantize_into(&self, out: &mut [f32]) -> Result<(), Nf4Error> {
        super::quantize::check_len("output", self.numel(), out.len())?;
        out.par_chunks_mut(VALUES_PER_TASK)
            .enumerate()
            .for_each(|(task, chunk)| {
                self.dequantize_span(task * VALUES_PER_TASK, chunk);
            });
        Ok(())
    }

    /// Dequantises the elements `start..start + out.len()` (flat, row-major) into `out`, on the
    /// calling thread: the streaming primitive for a tile of a large weight.
    pub fn dequantize_range_into(&self, start: usize, out: &mut [f32]) -> Result<(), Nf4Error> {
        let end = start.saturating_add(out.len());
        if end > self.numel() {
            return Err(Nf4Error::RangeOutOfBounds {
                start,
                end,
                numel: self.numel(),
            });
        }
        self.dequantize_span(start, out);
        Ok(())
    }

    /// Dequantises whole rows of the leading dimension (`rows` of `[shape[0], prod(shape[1..])]`).
    ///
    /// # Shapes
    /// - out: `[rows.len() * prod(shape[1..])]`
    pub fn dequantize_rows_into(&self, rows: Range<usize>, out: &mut [f32]) -> Result<(), Nf4Error> {
        let cols = self.row_len();
        self.dequantize_tile_into(rows, 0..cols, out)
    }

    /// Dequantises a 2-D tile: rows `rows` and columns `cols` of the `[shape[0], prod(shape[1..])]`
    /// view, row-major into `out`.
    ///
    /// # Shapes
    /// - out: `[rows.len(), cols.len()]`
    pub fn dequantize_tile_into(
        &self,
        rows: Range<usize>,
        cols: Range<usize>,
        out: &mut [f32],
    ) -> Result<(), Nf4Error> {
        let row_len = self.row_len();
        let fits = !self.shape().is_empty()
            && rows.start <= rows.end
            && rows.end <= self.shape()[0]
            && cols.start <= cols.end
            && cols.end <= row_len;
        if !fits {
            return Err(Nf4Error::TileOutOfBounds {
                rows,
                cols,
                shape: self.shape().to_vec(),
            });
        }
        super::quantize::check_len("tile output", rows.len() * cols.len(), out.len())?;
        if cols.is_empty() {
            return Ok(());
        }
        for (row, chunk) in rows.zip(out.chunks_exact_mut(cols.len())) {
            self.dequantize_span(row * row_len + cols.start, chunk);
        }
        Ok(())
    }

    /// Values per row of the `[shape[0], prod(shape[1..])]` view.
    fn row_len(&self) -> usize {
        self.shape().iter().skip(1).product()
    }

    /// Dequantises `start..start + out.len()`, which the caller has checked is in bounds.
    fn dequantize_span(&self, start: usize, out: &mut [f32]) {
        let mut pos = start;
        let mut rest = out;
        while !rest.is_empty() {
            let block = pos / NF4_BLOCK_SIZE;
            let block_end = ((block + 1) * NF4_BLOCK_SIZE).min(pos + rest.len());
            let (head, tail) = rest.split_at_mut(block_end - pos);
            dequantize_in_block(self.packed(), self.block_absmax(block), pos, head);
            pos = block_end;
            rest = tail;
        }
    }
}

/// Dequantises `out.len()` values from element `first` on, all inside one block of scale `absmax`.
#[inline]
fn dequantize_in_block(packed: &[u8], absmax: f32, first: usize, out: &mut [f32]) {
    let mut out = out;
    let mut byte = first / 2;
    if first % 2 == 1 {
        let Some((value, rest)) = out.split_first_mut() else {
            return;
        };
        *value = NF4_CODE[usize::from(packed[byte] & 0x0F)] * absmax;
        out = rest;
        byte += 1;
    }
    let pair_count = out.len() / 2;
    let mut pairs = out.chunks_exact_mut(2);
    for (pair, &bits) in (&mut pairs).zip(&packed[byte..byte + pair_count]) {
        let [high, low] = NF4_BYTE_LUT[usize::from(bits)];
        pair[0] = high * absmax;
        pair[1] = low * absmax;
    }
    if let [value] = pairs.into_remainder() {
        let bits = packed[byte + pair_count];
        *value = NF4_CODE[usize::from(bits >> 4)] * absmax;
    }
}

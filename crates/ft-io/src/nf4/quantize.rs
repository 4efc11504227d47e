//! NF4 quantisation of f32 slices (CUDA semantics of bitsandbytes' `kQuantizeBlockwise`).

use rayon::prelude::*;

use super::codebook::nf4_index;
use super::error::Nf4Error;
use super::tensor::Nf4Tensor;
use super::{NF4_BLOCK_BYTES, NF4_BLOCK_SIZE};

/// NF4 blocks handled by one parallel task.
const BLOCKS_PER_TASK: usize = 256;

/// Quantises a row-major weight of `shape` to NF4, with optional double quantisation of the absmax.
///
/// # Shapes
/// - values: `[prod(shape)]` (row-major)
/// - result: packed `[ceil(n/2)]` u8, absmax `[ceil(n/64)]`
pub fn quantize_nf4(values: &[f32], shape: &[usize], double_quant: bool) -> Result<Nf4Tensor, Nf4Error> {
    Nf4Tensor::quantize(values, shape, double_quant)
}

/// Quantises `values` into caller buffers: `packed` gets two indices per byte (element `2j` in the high
/// nibble), `absmax` one f32 per block of 64.
///
/// # Shapes
/// - values: `[n]`; packed: `[ceil(n/2)]`; absmax: `[ceil(n/64)]`
pub fn quantize_nf4_into(values: &[f32], packed: &mut [u8], absmax: &mut [f32]) -> Result<(), Nf4Error> {
    let n = values.len();
    check_len("packed", n.div_ceil(2), packed.len())?;
    check_len("absmax", n.div_ceil(NF4_BLOCK_SIZE), absmax.len())?;
    values
        .par_chunks(BLOCKS_PER_TASK * NF4_BLOCK_SIZE)
        .zip(packed.par_chunks_mut(BLOCKS_PER_TASK * NF4_BLOCK_BYTES))
        .zip(absmax.par_chunks_mut(BLOCKS_PER_TASK))
        .for_each(|((values, packed), absmax)| {
            let blocks = values
                .chunks(NF4_BLOCK_SIZE)
                .zip(packed.chunks_mut(NF4_BLOCK_BYTES));
            for ((block, bytes), max) in blocks.zip(absmax.iter_mut()) {
                *max = quantize_block(block, bytes);
            }
        });
    Ok(())
}

pub(crate) fn check_len(what: &'static str, expected: usize, found: usize) -> Result<(), Nf4Error> {
    if expected == found {
        Ok(())
    } else {
        Err(Nf4Error::LengthMismatch {
            what,
            expected,
            found,
        })
    }
}

/// Quantises one block (≤ 64 values) into `bytes` (`ceil(len/2)`) and returns its absmax.
///
/// `absmax` ignores NaN (like CUDA's `fmaxf`). An all-zero block has absmax 0, reciprocal `inf`, and
/// every `0 * inf = NaN` maps to index 0, as on CUDA; it dequantises to (negative) zero. An odd
/// block's missing last element is quantised as `0.0`, as CUDA's block load pads it.
fn quantize_block(block: &[f32], bytes: &mut [u8]) -> f32 {
    let max = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let recip = 1.0 / max;
    if let (Ok(block), Ok(bytes)) = (
        <&[f32; NF4_BLOCK_SIZE]>::try_from(block),
        <&mut [u8; NF4_BLOCK_BYTES]>::try_from(&mut *bytes),
    ) {
        quantize_full_block(block, recip, bytes);
        return max;
    }
    let mut pairs = block.chunks_exact(2);
    for (byte, pair) in bytes.iter_mut().zip(&mut pairs) {
        *byte = (nf4_index(pair[0] * recip) << 4) | nf4_index(pair[1] * recip);
    }
    if let [last] = pairs.remainder() {
        let byte = bytes.last_mut().expect("invariant: an odd block has a last byte");
        *byte = (nf4_index(last * recip) << 4) | nf4_index(0.0 * recip);
    }
    max
}

/// The hot path: fixed-size arrays so the compare-and-count loop vectorises.
#[inline]
fn quantize_full_block(block: &[f32; NF4_BLOCK_SIZE], recip: f32, bytes: &mut [u8; NF4_BLOCK_BYTES]) {
    let mut indices = [0u8; NF4_BLOCK_SIZE];
    for (index, &value) in indices.iter_mut().zip(block) {
        *index = nf4_index(value * recip);
    }
    for (byte, pair) in bytes.iter_mut().zip(indices.chunks_exact(2)) {
        *byte = (pair[0] << 4) | pair[1];
    }
}

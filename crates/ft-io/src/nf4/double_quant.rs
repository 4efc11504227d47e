//! Double quantisation of the NF4 absmax (bitsandbytes `compress_statistics=True`).

use super::NESTED_BLOCK_SIZE;
use super::dynamic_map::{DYNAMIC_SIGNED_MAP, quantize_dynamic_blockwise};

/// The NF4 absmax stored in 8 bits: `absmax[b] ≈ DYNAMIC_SIGNED_MAP[codes[b]] * absmax2[b / 256] + offset`.
#[derive(Debug, Clone, PartialEq)]
pub struct DoubleQuantAbsmax {
    /// One 8-bit code per NF4 block (bitsandbytes `.weight.absmax`, u8).
    pub codes: Vec<u8>,
    /// One f32 scale per 256 codes (bitsandbytes `.weight.nested_absmax`).
    pub absmax2: Vec<f32>,
    /// The mean of the original absmax, subtracted before quantising (`nested_offset`).
    pub offset: f32,
}

impl DoubleQuantAbsmax {
    /// Quantises `absmax` with `offset = mean(absmax)` (summed in f64, rounded to f32; torch's f32
    /// mean can differ in the last bit on large inputs, see [`Self::quantize_with_offset`]).
    pub fn quantize(absmax: &[f32]) -> Self {
        let sum: f64 = absmax.iter().map(|&a| f64::from(a)).sum();
        let offset = if absmax.is_empty() {
            0.0
        } else {
            (sum / absmax.len() as f64) as f32
        };
        Self::quantize_with_offset(absmax, offset)
    }

    /// Quantises `absmax − offset` (in f32) blockwise (256) to the signed dynamic 8-bit map,
    /// with bitsandbytes' CUDA index choice ([`super::dynamic_index`]).
    pub fn quantize_with_offset(absmax: &[f32], offset: f32) -> Self {
        let centred: Vec<f32> = absmax.iter().map(|&a| a - offset).collect();
        let (codes, absmax2) = quantize_dynamic_blockwise(&centred, NESTED_BLOCK_SIZE);
        Self {
            codes,
            absmax2,
            offset,
        }
    }

    /// Number of NF4 blocks described.
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// Whether no block is described.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// The recovered absmax of NF4 block `block`: `code8 * absmax2 + offset`, in f32 as bitsandbytes
    /// computes it (a multiply, then an add; no fused multiply-add).
    ///
    /// # Panics
    /// If `block >= self.len()`.
    #[inline]
    pub fn block_absmax(&self, block: usize) -> f32 {
        let code = DYNAMIC_SIGNED_MAP[usize::from(self.codes[block])];
        code * self.absmax2[block / NESTED_BLOCK_SIZE] + self.offset
    }

    /// All recovered absmax values.
    pub fn dequantize(&self) -> Vec<f32> {
        (0..self.len()).map(|b| self.block_absmax(b)).collect()
    }

    /// Bytes held: one per code, four per `absmax2`, four for the offset.
    pub fn storage_bytes(&self) -> usize {
        self.codes.len() + 4 * self.absmax2.len() + 4
    }
}

//! [`Nf4Tensor`]: packed 4-bit codes, per-block absmax, and the original shape.

use std::borrow::Cow;

use super::double_quant::DoubleQuantAbsmax;
use super::error::Nf4Error;
use super::quantize::{check_len, quantize_nf4_into};
use super::{NESTED_BLOCK_SIZE, NF4_BLOCK_SIZE};

/// The per-block scales of an [`Nf4Tensor`].
#[derive(Debug, Clone, PartialEq)]
pub enum Nf4Absmax {
    /// One f32 per block of 64 values (0.5 bit/param).
    Full(Vec<f32>),
    /// Double-quantised: one u8 per block plus one f32 per 256 blocks (≈ 0.127 bit/param).
    Double(DoubleQuantAbsmax),
}

impl Nf4Absmax {
    /// Number of NF4 blocks described.
    pub fn len(&self) -> usize {
        match self {
            Self::Full(absmax) => absmax.len(),
            Self::Double(double) => double.len(),
        }
    }

    /// Whether no block is described.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by the scales.
    pub fn storage_bytes(&self) -> usize {
        match self {
            Self::Full(absmax) => 4 * absmax.len(),
            Self::Double(double) => double.storage_bytes(),
        }
    }
}

/// An NF4-quantised weight: bitsandbytes' layout (packed u8 `[ceil(n/2)]`, element `2j` in the high
/// nibble; absmax per block of 64 values) plus the original shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Nf4Tensor {
    packed: Vec<u8>,
    absmax: Nf4Absmax,
    shape: Vec<usize>,
}

impl Nf4Tensor {
    /// Quantises a row-major weight of `shape` (see [`super::quantize_nf4`]).
    ///
    /// # Shapes
    /// - values: `[prod(shape)]`
    pub fn quantize(values: &[f32], shape: &[usize], double_quant: bool) -> Result<Self, Nf4Error> {
        let numel = checked_numel(shape, values.len())?;
        let mut packed = vec![0u8; numel.div_ceil(2)];
        let mut absmax = vec![0.0f32; numel.div_ceil(NF4_BLOCK_SIZE)];
        quantize_nf4_into(values, &mut packed, &mut absmax)?;
        let absmax = if double_quant {
            Nf4Absmax::Double(DoubleQuantAbsmax::quantize(&absmax))
        } else {
            Nf4Absmax::Full(absmax)
        };
        Ok(Self {
            packed,
            absmax,
            shape: shape.to_vec(),
        })
    }

    /// Builds a tensor from stored parts, checking their lengths against `shape`.
    ///
    /// # Shapes
    /// - packed: `[ceil(n/2)]`; absmax: `[ceil(n/64)]` blocks (and `[ceil(blocks/256)]` absmax2)
    pub fn from_parts(packed: Vec<u8>, absmax: Nf4Absmax, shape: Vec<usize>) -> Result<Self, Nf4Error> {
        let numel: usize = shape.iter().product();
        check_len("packed", numel.div_ceil(2), packed.len())?;
        let blocks = numel.div_ceil(NF4_BLOCK_SIZE);
        check_len("absmax", blocks, absmax.len())?;
        if let Nf4Absmax::Double(double) = &absmax {
            check_len(
                "absmax2",
                blocks.div_ceil(NESTED_BLOCK_SIZE),
                double.absmax2.len(),
            )?;
        }
        Ok(Self {
            packed,
            absmax,
            shape,
        })
    }

    /// Splits into `(packed, absmax, shape)`.
    pub fn into_parts(self) -> (Vec<u8>, Nf4Absmax, Vec<usize>) {
        (self.packed, self.absmax, self.shape)
    }

    /// The original shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of values (`prod(shape)`).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Packed codes, `[ceil(n/2)]`, element `2j` in the high nibble.
    pub fn packed(&self) -> &[u8] {
        &self.packed
    }

    /// The stored per-block scales.
    pub fn absmax(&self) -> &Nf4Absmax {
        &self.absmax
    }

    /// Whether the absmax is double-quantised.
    pub fn is_double_quant(&self) -> bool {
        matches!(self.absmax, Nf4Absmax::Double(_))
    }

    /// The f32 absmax of every block (recovered from the 8-bit codes when double-quantised).
    pub fn block_absmax_values(&self) -> Cow<'_, [f32]> {
        match &self.absmax {
            Nf4Absmax::Full(absmax) => Cow::Borrowed(absmax),
            Nf4Absmax::Double(double) => Cow::Owned(double.dequantize()),
        }
    }

    /// The f32 absmax of block `block`.
    ///
    /// # Panics
    /// If `block` is not below `ceil(numel / 64)`.
    #[inline]
    pub fn block_absmax(&self, block: usize) -> f32 {
        match &self.absmax {
            Nf4Absmax::Full(absmax) => absmax[block],
            Nf4Absmax::Double(double) => double.block_absmax(block),
        }
    }

    /// The 4-bit index of element `i` (flat, row-major).
    ///
    /// # Panics
    /// If `i >= numel`.
    pub fn index(&self, i: usize) -> u8 {
        assert!(
            i < self.numel(),
            "element {i} out of bounds for {} values",
            self.numel()
        );
        let byte = self.packed[i / 2];
        if i.is_multiple_of(2) {
            byte >> 4
        } else {
            byte & 0x0F
        }
    }

    /// Replaces the f32 absmax by its double quantisation (no-op when already double-quantised).
    pub fn into_double_quant(self) -> Self {
        match self.absmax {
            Nf4Absmax::Full(absmax) => Self {
                absmax: Nf4Absmax::Double(DoubleQuantAbsmax::quantize(&absmax)),
                packed: self.packed,
                shape: self.shape,
            },
            Nf4Absmax::Double(_) => self,
        }
    }

    /// Bytes held by the quantised data: packed codes plus scales (the shape vector is not counted).
    pub fn storage_bytes(&self) -> usize {
        self.packed.len() + self.absmax.storage_bytes()
    }

    /// [`Self::storage_bytes`] per parameter (0.5625 for f32 absmax, ≈ 0.516 double-quantised).
    pub fn bytes_per_param(&self) -> f64 {
        self.storage_bytes() as f64 / self.numel().max(1) as f64
    }
}

/// Bytes an NF4 tensor of `numel` values holds (packed codes + scales), without building it.
pub fn nf4_storage_bytes(numel: usize, double_quant: bool) -> usize {
    let blocks = numel.div_ceil(NF4_BLOCK_SIZE);
    let scales = if double_quant {
        blocks + 4 * blocks.div_ceil(NESTED_BLOCK_SIZE) + 4
    } else {
        4 * blocks
    };
    numel.div_ceil(2) + scales
}

fn checked_numel(shape: &[usize], found: usize) -> Result<usize, Nf4Error> {
    let expected = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .unwrap_or(usize::MAX);
    if expected == found {
        Ok(expected)
    } else {
        Err(Nf4Error::ShapeMismatch {
            shape: shape.to_vec(),
            expected,
            found,
        })
    }
}

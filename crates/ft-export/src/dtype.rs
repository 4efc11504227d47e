//! safetensors dtypes and f32 → bf16/f16 casts (round to nearest, ties to even, as torch).

use serde::{Deserialize, Serialize};

/// A safetensors element type (the header's `dtype` string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Dtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    BOOL,
}

impl Dtype {
    /// Bytes per element.
    pub fn size_bytes(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::BOOL => 1,
        }
    }

    /// The header string, e.g. `"BF16"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dtype::F64 => "F64",
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::I64 => "I64",
            Dtype::I32 => "I32",
            Dtype::I16 => "I16",
            Dtype::I8 => "I8",
            Dtype::U8 => "U8",
            Dtype::BOOL => "BOOL",
        }
    }

    /// Whether f32 values can be cast to this dtype with [`cast_f32_into`].
    pub fn is_float(self) -> bool {
        matches!(self, Dtype::F64 | Dtype::F32 | Dtype::F16 | Dtype::BF16)
    }
}

/// The canonical bf16 NaN torch's scalar `c10::BFloat16` conversion produces for every NaN input.
pub const BF16_CANONICAL_NAN: u16 = 0x7FC0;

/// f32 → bf16 bits with round-to-nearest-even (overflow rounds to ±inf; subnormals round like any
/// other value, never flushed). Every NaN becomes [`BF16_CANONICAL_NAN`], as in torch's scalar path
/// (torch's vectorised CPU path writes `0xFFFF` instead; both are NaN).
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    if x.is_nan() {
        BF16_CANONICAL_NAN
    } else {
        half::bf16::from_f32(x).to_bits()
    }
}

/// f32 → IEEE binary16 bits with round-to-nearest-even: values past 65504 that do not round back
/// to it become ±inf, small values become f16 subnormals or ±0, NaN keeps its sign and top payload
/// bits (quietened), as torch's CPU cast does.
pub fn f32_to_f16_bits(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}

/// Appends `values` cast to `dtype` as little-endian bytes to `out`; `None` when `dtype` is not a
/// float type.
pub fn cast_f32_into(values: &[f32], dtype: Dtype, out: &mut Vec<u8>) -> Option<()> {
    out.reserve(values.len() * dtype.size_bytes());
    match dtype {
        Dtype::F32 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        Dtype::F64 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&f64::from(*v).to_le_bytes())),
        Dtype::BF16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&f32_to_bf16_bits(*v).to_le_bytes())),
        Dtype::F16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&f32_to_f16_bits(*v).to_le_bytes())),
        _ => return None,
    }
    Some(())
}

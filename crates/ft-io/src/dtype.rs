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
    /// The dtype of a `safetensors` crate header entry, if ft reads it.
    pub fn from_safetensors(dtype: ::safetensors::Dtype) -> Option<Self> {
        use ::safetensors::Dtype as St;
        Some(match dtype {
            St::F64 => Dtype::F64,
            St::F32 => Dtype::F32,
            St::F16 => Dtype::F16,
            St::BF16 => Dtype::BF16,
            St::I64 => Dtype::I64,
            St::I32 => Dtype::I32,
            St::I16 => Dtype::I16,
            St::I8 => Dtype::I8,
            St::U8 => Dtype::U8,
            St::BOOL => Dtype::BOOL,
            _ => return None,
        })
    }

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

/// Decodes little-endian `bytes` of a float `dtype` (F32, F16, BF16, F64) to f32; `None` for other
/// dtypes. F64 values are rounded to the nearest f32.
pub fn decode_to_f32(bytes: &[u8], dtype: Dtype) -> Option<Vec<f32>> {
    let mut out = Vec::with_capacity(bytes.len() / dtype.size_bytes());
    extend_decoded_f32(bytes, dtype, &mut out)?;
    Some(out)
}

/// Appends `bytes` of a float `dtype` decoded to f32 to `out` (see [`decode_to_f32`]); `None` (and
/// nothing appended) for non-float dtypes. `bytes` must hold whole elements.
pub fn extend_decoded_f32(bytes: &[u8], dtype: Dtype, out: &mut Vec<f32>) -> Option<()> {
    match dtype {
        Dtype::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        Dtype::BF16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        Dtype::F16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        Dtype::F64 => out.extend(
            bytes
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("invariant: 8-byte chunk")) as f32),
        ),
        _ => return None,
    }
    Some(())
}

/// The dtype a `config.json` `torch_dtype`/`dtype` string names (`"bfloat16"`, `"float16"`,
/// `"float32"`, also `"bf16"`, `"fp16"`, `"half"`, `"float"`…); `None` for anything else (e.g. `"auto"`).
pub fn dtype_from_torch_name(name: &str) -> Option<Dtype> {
    match name.trim_start_matches("torch.") {
        "bfloat16" | "bf16" => Some(Dtype::BF16),
        "float16" | "fp16" | "f16" | "half" => Some(Dtype::F16),
        "float32" | "fp32" | "f32" | "float" => Some(Dtype::F32),
        "float64" | "double" => Some(Dtype::F64),
        _ => None,
    }
}

/// The `config.json` dtype string for a float dtype (`"bfloat16"`, `"float16"`, `"float32"`,
/// `"float64"`); `None` for non-float dtypes.
pub fn torch_dtype_name(dtype: Dtype) -> Option<&'static str> {
    match dtype {
        Dtype::BF16 => Some("bfloat16"),
        Dtype::F16 => Some("float16"),
        Dtype::F32 => Some("float32"),
        Dtype::F64 => Some("float64"),
        _ => None,
    }
}

//! Reading pre-quantised bitsandbytes NF4 checkpoints (`Linear4bit` state dicts).
//!
//! A layer `<w>` is stored as `<w>.weight` (packed u8 `[ceil(n/2), 1]`), `<w>.weight.absmax`,
//! `<w>.weight.quant_map` (the 16 NF4 values), with double quantisation also
//! `<w>.weight.nested_absmax` and `<w>.weight.nested_quant_map` (then `.absmax` is u8), and
//! `<w>.weight.quant_state.bitsandbytes__nf4`: a u8 tensor holding UTF-8 JSON with `quant_type`,
//! `blocksize`, `dtype`, `shape` and the `nested_*` fields.

use serde::Deserialize;

use super::codebook::NF4_CODE;
use super::double_quant::DoubleQuantAbsmax;
use super::dynamic_map::DYNAMIC_SIGNED_MAP;
use super::error::Nf4Error;
use super::tensor::{Nf4Absmax, Nf4Tensor};
use super::{NESTED_BLOCK_SIZE, NF4_BLOCK_SIZE};

/// The absmax arrays of a bitsandbytes checkpoint.
#[derive(Debug, Clone, Copy)]
pub enum BnbAbsmax<'a> {
    /// `.weight.absmax` as f32 (no double quantisation).
    F32(&'a [f32]),
    /// Double-quantised: `.weight.absmax` (u8), `.weight.nested_absmax` (f32),
    /// `.weight.nested_quant_map` (f32 `[256]`).
    Nested {
        codes: &'a [u8],
        nested_absmax: &'a [f32],
        nested_quant_map: &'a [f32],
    },
}

/// The arrays of one bitsandbytes NF4 weight, already read from the checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct BnbNf4Parts<'a> {
    /// `.weight`: the packed codes (`quant_storage` other than u8 is passed as its raw bytes).
    pub weight: &'a [u8],
    /// `.weight.absmax` (and the nested arrays).
    pub absmax: BnbAbsmax<'a>,
    /// `.weight.quant_map`: must equal [`NF4_CODE`].
    pub quant_map: &'a [f32],
    /// `.weight.quant_state.bitsandbytes__nf4`: the packed JSON bytes.
    pub quant_state: &'a [u8],
}

/// The JSON quant state of a bitsandbytes 4-bit weight.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BnbQuantState {
    /// `"nf4"` (`"fp4"` is rejected).
    pub quant_type: String,
    /// Values per absmax block (64 supported).
    pub blocksize: usize,
    /// The compute dtype the weight was quantised from (`"float16"`, `"bfloat16"`, `"float32"`).
    pub dtype: String,
    /// The original weight shape.
    pub shape: Vec<usize>,
    /// Absmax values per nested block (256), when double-quantised.
    #[serde(default)]
    pub nested_blocksize: Option<usize>,
    /// dtype of the nested absmax, when double-quantised.
    #[serde(default)]
    pub nested_dtype: Option<String>,
    /// Mean of the absmax subtracted before the nested quantisation.
    #[serde(default)]
    pub nested_offset: Option<f64>,
}

impl BnbQuantState {
    /// Parses the packed JSON bytes of `.weight.quant_state.bitsandbytes__nf4`.
    pub fn parse(bytes: &[u8]) -> Result<Self, Nf4Error> {
        serde_json::from_slice(bytes).map_err(|e| Nf4Error::QuantStateJson(e.to_string()))
    }
}

/// Builds an [`Nf4Tensor`] from the arrays of a bitsandbytes NF4 checkpoint, checking the quant
/// state (NF4, blocksize 64, nested blocksize 256) and both code tables against the built-in ones.
pub fn nf4_from_bnb(parts: BnbNf4Parts<'_>) -> Result<(Nf4Tensor, BnbQuantState), Nf4Error> {
    let state = BnbQuantState::parse(parts.quant_state)?;
    expect_field(
        "quant_type",
        "\"nf4\"",
        &state.quant_type,
        state.quant_type == "nf4",
    )?;
    expect_field(
        "blocksize",
        &NF4_BLOCK_SIZE.to_string(),
        &state.blocksize,
        state.blocksize == NF4_BLOCK_SIZE,
    )?;
    check_table("quant_map", &NF4_CODE, parts.quant_map)?;
    let absmax = match parts.absmax {
        BnbAbsmax::F32(absmax) => Nf4Absmax::Full(absmax.to_vec()),
        BnbAbsmax::Nested {
            codes,
            nested_absmax,
            nested_quant_map,
        } => {
            let nested = state.nested_blocksize;
            let ok = nested == Some(NESTED_BLOCK_SIZE);
            expect_field(
                "nested_blocksize",
                &NESTED_BLOCK_SIZE.to_string(),
                &format!("{nested:?}"),
                ok,
            )?;
            check_table("nested_quant_map", &DYNAMIC_SIGNED_MAP, nested_quant_map)?;
            let offset = state
                .nested_offset
                .ok_or_else(|| Nf4Error::UnsupportedQuantState {
                    field: "nested_offset",
                    expected: "a number".into(),
                    found: "nothing".into(),
                })?;
            Nf4Absmax::Double(DoubleQuantAbsmax {
                codes: codes.to_vec(),
                absmax2: nested_absmax.to_vec(),
                // The JSON holds the f32 offset printed as a double: the cast is exact.
                offset: offset as f32,
            })
        }
    };
    let tensor = Nf4Tensor::from_parts(parts.weight.to_vec(), absmax, state.shape.clone())?;
    Ok((tensor, state))
}

fn expect_field(
    field: &'static str,
    expected: &str,
    found: &dyn std::fmt::Display,
    ok: bool,
) -> Result<(), Nf4Error> {
    if ok {
        Ok(())
    } else {
        Err(Nf4Error::UnsupportedQuantState {
            field,
            expected: expected.into(),
            found: found.to_string(),
        })
    }
}

fn check_table(key: &'static str, expected: &[f32], found: &[f32]) -> Result<(), Nf4Error> {
    if expected.len() != found.len() {
        return Err(Nf4Error::LengthMismatch {
            what: key,
            expected: expected.len(),
            found: found.len(),
        });
    }
    match expected
        .iter()
        .zip(found)
        .position(|(e, f)| e.to_bits() != f.to_bits())
    {
        None => Ok(()),
        Some(index) => Err(Nf4Error::CodeTableMismatch {
            key,
            index,
            expected: expected[index],
            found: found[index],
        }),
    }
}

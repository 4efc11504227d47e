//! Errors of the NF4 codec.

/// What can go wrong when building, reading or dequantising NF4 storage.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Nf4Error {
    /// The number of values does not match the product of the shape.
    #[error("shape {shape:?} holds {expected} values, but {found} were given")]
    ShapeMismatch {
        shape: Vec<usize>,
        expected: usize,
        found: usize,
    },
    /// A linear layer's base weight must be a matrix `[out, in]`.
    #[error("an NF4 linear weight must have shape [out, in], found {shape:?}")]
    NotMatrix { shape: Vec<usize> },
    /// A caller buffer has the wrong length.
    #[error("{what}: expected length {expected}, found {found}")]
    LengthMismatch {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    /// An element range reaches past the end of the tensor.
    #[error("elements {start}..{end} are out of bounds for a tensor of {numel} values")]
    RangeOutOfBounds { start: usize, end: usize, numel: usize },
    /// A row range or tile needs a tensor of rank ≥ 1 and rows/cols inside it.
    #[error("tile rows {rows:?}, cols {cols:?} do not fit shape {shape:?}")]
    TileOutOfBounds {
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
        shape: Vec<usize>,
    },
    /// The `quant_state.bitsandbytes__nf4` JSON could not be parsed.
    #[error("bitsandbytes quant_state JSON: {0}")]
    QuantStateJson(String),
    /// A bitsandbytes quant-state field has a value this codec does not support.
    #[error("bitsandbytes quant_state `{field}` = {found}, expected {expected}")]
    UnsupportedQuantState {
        field: &'static str,
        expected: String,
        found: String,
    },
    /// A bitsandbytes code table differs from the one this codec uses.
    #[error("bitsandbytes `{key}` differs from the built-in table at index {index}: {found} != {expected}")]
    CodeTableMismatch {
        key: &'static str,
        index: usize,
        expected: f32,
        found: f32,
    },
}

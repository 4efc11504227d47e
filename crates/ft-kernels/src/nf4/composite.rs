//! NF4 dequantisation in Burn tensor ops (any backend): unpack the words with shifts and masks,
//! look the codes up in the codebooks, scale each block.

use burn::tensor::backend::Backend;
use burn::tensor::{DType, ElementConversion, Int, Tensor, TensorData, TensorPrimitive};
use ft_io::nf4::{DYNAMIC_SIGNED_MAP, NESTED_BLOCK_SIZE, NF4_BLOCK_SIZE, NF4_CODE};

use super::{AbsmaxPrimitive, Nf4Primitive};

/// The fields of `bits` bits packed in little-endian u32 words, in stream order: for 4-bit codes
/// the high nibble of each byte comes first (bitsandbytes' order), for 8-bit codes each byte.
///
/// # Shapes
/// - words: `[n]`; output: `[n · 32 / bits]`
fn unpack<B: Backend>(words: Tensor<B, 1, Int>, bits: u32) -> Tensor<B, 1, Int> {
    let n = words.dims()[0];
    let per_word = (32 / bits) as usize;
    let shifts = (0..per_word as u32).map(|field| match bits {
        4 => 8 * (field / 2) + if field % 2 == 0 { 4 } else { 0 },
        _ => bits * field,
    });
    let mask = ((1i64 << bits) - 1).elem::<B::IntElem>();
    let fields = shifts
        .map(|shift| {
            words
                .clone()
                .bitwise_right_shift_scalar(i64::from(shift).elem())
                .bitwise_and_scalar(mask)
        })
        .collect();
    Tensor::stack::<2>(fields, 1).reshape([n * per_word])
}

/// A constant f32 table on `device`.
fn table<B: Backend>(values: &[f32], device: &B::Device) -> Tensor<B, 1> {
    Tensor::from_data(
        TensorData::new(values.to_vec(), [values.len()]),
        (device, DType::F32),
    )
}

/// The absmax of each block, `[blocks]`.
pub(crate) fn absmax<B: Backend>(
    absmax: AbsmaxPrimitive<B>,
    blocks: usize,
    device: &B::Device,
) -> Tensor<B, 1> {
    match absmax {
        AbsmaxPrimitive::Full(values) => Tensor::from_primitive(TensorPrimitive::Float(values)),
        AbsmaxPrimitive::Double(codes, absmax2, offset) => {
            let absmax2: Tensor<B, 1> = Tensor::from_primitive(TensorPrimitive::Float(absmax2));
            let codes = unpack(Tensor::<B, 1, Int>::from_primitive(codes), 8).slice(0..blocks);
            let values = table::<B>(&DYNAMIC_SIGNED_MAP, device).select(0, codes);
            let group =
                Tensor::<B, 1, Int>::arange(0..blocks as i64, device).div_scalar(NESTED_BLOCK_SIZE as i64);
            // A multiply, then an add: bitsandbytes' order (no fused multiply-add).
            (values * absmax2.select(0, group)).add_scalar(offset)
        }
    }
}

/// The dense weight of `weight`, computed in f32 and then cast to `dtype`.
///
/// # Shapes
/// - output: `weight.shape`
pub fn dequantize<B: Backend>(weight: Nf4Primitive<B>, dtype: DType, device: &B::Device) -> Tensor<B, 2> {
    let blocks = weight.blocks();
    let [rows, cols] = weight.shape;
    let codes = unpack(Tensor::<B, 1, Int>::from_primitive(weight.codes), 4);
    let values = table::<B>(&NF4_CODE, device).select(0, codes);
    let absmax = absmax(weight.absmax, blocks, device);
    let dense = values.reshape([blocks, NF4_BLOCK_SIZE]) * absmax.reshape([blocks, 1]);
    let dense = dense
        .reshape([blocks * NF4_BLOCK_SIZE])
        .slice(0..rows * cols)
        .reshape([rows, cols]);
    if dtype == DType::F32 {
        dense
    } else {
        dense.cast(dtype)
    }
}

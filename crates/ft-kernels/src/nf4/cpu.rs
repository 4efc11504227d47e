//! NF4 dequantisation on burn-flex: the device tensors are host memory, so each task reads the
//! words and scales of a run of blocks in place and writes its slice of the dense weight.

use burn::tensor::DType;
use burn_flex::{Flex, FlexTensor};
use ft_io::nf4::{DYNAMIC_SIGNED_MAP, NESTED_BLOCK_SIZE, NF4_BLOCK_SIZE, NF4_BYTE_LUT};
use rayon::prelude::*;

use super::{AbsmaxPrimitive, Nf4Primitive};
use crate::flex::host_tensor;

/// Blocks of 64 dequantised by one parallel task.
const BLOCKS_PER_TASK: usize = 256;

/// u32 words of a contiguous tensor.
fn words(t: &FlexTensor) -> std::borrow::Cow<'_, [u32]> {
    match t.as_slice::<u32>() {
        Some(words) => words.into(),
        None => t.to_contiguous().storage::<u32>().to_vec().into(),
    }
}

fn floats(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(values) => values.into(),
        None => t.to_contiguous().storage::<f32>().to_vec().into(),
    }
}

/// The absmax of `block`.
fn block_absmax(absmax: &AbsmaxTables<'_>, block: usize) -> f32 {
    match absmax {
        AbsmaxTables::Full(values) => values[block],
        AbsmaxTables::Double(codes, absmax2, offset) => {
            let byte = codes[block / 4].to_le_bytes()[block % 4];
            // A multiply, then an add: bitsandbytes' order (no fused multiply-add).
            let scaled = DYNAMIC_SIGNED_MAP[usize::from(byte)] * absmax2[block / NESTED_BLOCK_SIZE];
            scaled + offset
        }
    }
}

enum AbsmaxTables<'a> {
    Full(std::borrow::Cow<'a, [f32]>),
    Double(std::borrow::Cow<'a, [u32]>, std::borrow::Cow<'a, [f32]>, f32),
}

/// The dense weight (f32, then `dtype`), bit for bit bitsandbytes' values.
///
/// # Shapes
/// - output: `weight.shape`
pub(crate) fn dequantize(weight: Nf4Primitive<Flex>, dtype: DType) -> FlexTensor {
    let [rows, cols] = weight.shape;
    let blocks = weight.blocks();
    let codes = words(&weight.codes);
    let absmax = match &weight.absmax {
        AbsmaxPrimitive::Full(values) => AbsmaxTables::Full(floats(values)),
        AbsmaxPrimitive::Double(codes, absmax2, offset) => {
            AbsmaxTables::Double(words(codes), floats(absmax2), *offset)
        }
    };
    let mut out = vec![0.0f32; blocks * NF4_BLOCK_SIZE];
    out.par_chunks_mut(BLOCKS_PER_TASK * NF4_BLOCK_SIZE)
        .enumerate()
        .for_each(|(task, chunk)| {
            let first_block = task * BLOCKS_PER_TASK;
            for (i, values) in chunk.chunks_exact_mut(NF4_BLOCK_SIZE).enumerate() {
                let block = first_block + i;
                let scale = block_absmax(&absmax, block);
                let block_words = &codes[block * NF4_BLOCK_SIZE / 8..(block + 1) * NF4_BLOCK_SIZE / 8];
                let bytes = block_words.iter().flat_map(|w| w.to_le_bytes());
                for (pair, byte) in values.chunks_exact_mut(2).zip(bytes) {
                    let [high, low] = NF4_BYTE_LUT[usize::from(byte)];
                    pair[0] = high * scale;
                    pair[1] = low * scale;
                }
            }
        });
    out.truncate(rows * cols);
    host_tensor(out, [rows, cols], dtype)
}

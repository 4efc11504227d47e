//! The 16 NF4 code values, the 15 decision thresholds, and the nibble packing.

/// NF4 code values, index 0…15 (bitsandbytes `get_4bit_type("nf4")`).
#[allow(clippy::excessive_precision)] // digit for digit as in bitsandbytes
pub const NF4_CODE: [f32; 16] = [
    -1.0,
    -0.696_192_800_998_687_7,
    -0.525_073_051_452_636_7,
    -0.394_917_488_098_144_53,
    -0.284_441_381_692_886_35,
    -0.184_773_430_228_233_34,
    -0.091_050_036_251_544_95,
    0.0,
    0.079_580_299_556_255_34,
    0.160_930_201_411_247_25,
    0.246_112_301_945_686_34,
    0.337_915_241_718_292_24,
    0.440_709_829_330_444_34,
    0.562_617_003_917_694_1,
    0.722_956_836_223_602_3,
    1.0,
];

/// Decision thresholds of `dQuantizeNF4` (csrc/kernels.cu): its `0.86…f` literals, each rounded once
/// from the decimal to f32 as a C++ compiler (and Rust) does.
///
/// Eleven equal the f32 midpoint `(NF4_CODE[i] + NF4_CODE[i + 1]) / 2`; at indices 0, 8, 12 and 14 the
/// exact midpoint is an f32 tie and the literal lies one ulp off the round-to-even midpoint that
/// bitsandbytes' CPU (`torch.bucketize`) and Triton paths use, so exactly one f32 value per such
/// threshold is classified differently there.
#[allow(clippy::excessive_precision)] // the CUDA literals, digit for digit: they round to f32 once
pub const NF4_THRESHOLDS: [f32; 15] = [
    -0.848_096_400_499_343_9,
    -0.610_632_926_225_662_2,
    -0.459_995_269_775_390_6,
    -0.339_679_434_895_515_44,
    -0.234_607_405_960_559_84,
    -0.137_911_733_239_889_14,
    -0.045_525_018_125_772_476,
    0.039_790_149_778_127_67,
    0.120_255_250_483_751_3,
    0.203_521_251_678_466_8,
    0.292_013_771_831_989_3,
    0.389_312_535_524_368_3,
    0.501_663_416_624_069_2,
    0.642_786_920_070_648_2,
    0.861_478_418_111_801_1,
];

/// The 4-bit index of a scaled value: the number of thresholds strictly below it.
///
/// Identical to the CUDA decision tree for every f32, NaN included (all comparisons are false, so
/// NaN, e.g. `0 * inf` from an all-zero block, gives index 0). A value exactly on a threshold takes
/// the lower code. Branch-free, so a block loop vectorises.
#[inline(always)]
pub fn nf4_index(scaled: f32) -> u8 {
    // Counted in 32-bit lanes (the width of an f32 compare mask), narrowed once.
    let mut index = 0u32;
    for threshold in NF4_THRESHOLDS {
        index += u32::from(scaled > threshold);
    }
    index as u8
}

/// Packs 4-bit indices two per byte, element `2j` in the high nibble; an odd count gets a zero low
/// nibble. `[0, 1, …, 15]` packs to `[1, 35, 69, 103, 137, 171, 205, 239]`.
pub fn pack_indices(indices: &[u8]) -> Vec<u8> {
    indices
        .chunks(2)
        .map(|pair| (pair[0] << 4) | pair.get(1).copied().unwrap_or(0))
        .collect()
}

/// Unpacks `numel` 4-bit indices (high nibble first) from packed bytes.
///
/// # Panics
/// If `packed` holds fewer than `numel.div_ceil(2)` bytes.
pub fn unpack_indices(packed: &[u8], numel: usize) -> Vec<u8> {
    (0..numel)
        .map(|i| {
            let byte = packed[i / 2];
            if i.is_multiple_of(2) {
                byte >> 4
            } else {
                byte & 0x0F
            }
        })
        .collect()
}

/// Byte → (code of the high nibble, code of the low nibble): one lookup dequantises two values.
pub static NF4_BYTE_LUT: [[f32; 2]; 256] = build_byte_lut();

const fn build_byte_lut() -> [[f32; 2]; 256] {
    let mut lut = [[0.0f32; 2]; 256];
    let mut byte = 0;
    while byte < 256 {
        lut[byte] = [NF4_CODE[byte >> 4], NF4_CODE[byte & 0x0F]];
        byte += 1;
    }
    lut
}

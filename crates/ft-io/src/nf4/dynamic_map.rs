//! bitsandbytes' signed dynamic 8-bit code and its CUDA quantiser (`dQuantize<0>`), used by the
//! double quantisation of the NF4 absmax.

use rayon::prelude::*;

/// `bitsandbytes.functional.create_dynamic_map(signed=True)`: 256 sorted f32 values in
/// [−0.99297, 1.0], with 0.0 at index 127 and 1.0 at index 255.
pub const DYNAMIC_SIGNED_MAP: [f32; 256] = [
    -0.99296874,
    -0.9789063,
    -0.96484375,
    -0.9507812,
    -0.93671876,
    -0.92265624,
    -0.9085938,
    -0.89453125,
    -0.8804687,
    -0.86640626,
    -0.85234374,
    -0.8382813,
    -0.82421875,
    -0.8101562,
    -0.79609376,
    -0.78203124,
    -0.7679688,
    -0.75390625,
    -0.7398437,
    -0.72578126,
    -0.7117188,
    -0.6976563,
    -0.68359375,
    -0.6695312,
    -0.65546876,
    -0.6414063,
    -0.6273438,
    -0.61328125,
    -0.5992187,
    -0.58515626,
    -0.5710938,
    -0.5570313,
    -0.54296875,
    -0.5289062,
    -0.5148437,
    -0.50078124,
    -0.4867187,
    -0.47265625,
    -0.45859373,
    -0.44453126,
    -0.43046874,
    -0.41640624,
    -0.40234375,
    -0.38828123,
    -0.37421876,
    -0.36015624,
    -0.34609374,
    -0.33203125,
    -0.31796873,
    -0.30390626,
    -0.28984374,
    -0.27578127,
    -0.26171875,
    -0.24765624,
    -0.23359375,
    -0.21953125,
    -0.20546874,
    -0.19140625,
    -0.17734376,
    -0.16328125,
    -0.14921875,
    -0.13515624,
    -0.12109375,
    -0.107031256,
    -0.09859375,
    -0.09578126,
    -0.092968754,
    -0.09015625,
    -0.08734375,
    -0.08453125,
    -0.08171876,
    -0.07890625,
    -0.07609375,
    -0.07328125,
    -0.070468746,
    -0.067656256,
    -0.06484375,
    -0.06203125,
    -0.059218753,
    -0.05640625,
    -0.05359375,
    -0.05078125,
    -0.04796875,
    -0.04515625,
    -0.042343747,
    -0.03953125,
    -0.036718752,
    -0.03390625,
    -0.03109375,
    -0.028281251,
    -0.02546875,
    -0.02265625,
    -0.019843752,
    -0.01703125,
    -0.01421875,
    -0.01140625,
    -0.00971875,
    -0.009156249,
    -0.00859375,
    -0.00803125,
    -0.00746875,
    -0.00690625,
    -0.00634375,
    -0.00578125,
    -0.0052187503,
    -0.0046562497,
    -0.00409375,
    -0.0035312497,
    -0.00296875,
    -0.00240625,
    -0.00184375,
    -0.0012812499,
    -0.0009437501,
    -0.00083125,
    -0.00071875006,
    -0.0006062501,
    -0.00049375003,
    -0.00038125002,
    -0.00026875004,
    -0.00015625001,
    -8.875e-05,
    -6.625e-05,
    -4.375e-05,
    -2.1249998e-05,
    -7.75e-06,
    -3.2500002e-06,
    -5.5000004e-07,
    0.0,
    5.5000004e-07,
    3.2500002e-06,
    7.75e-06,
    2.1249998e-05,
    4.375e-05,
    6.625e-05,
    8.875e-05,
    0.00015625001,
    0.00026875004,
    0.00038125002,
    0.00049375003,
    0.0006062501,
    0.00071875006,
    0.00083125,
    0.0009437501,
    0.0012812499,
    0.00184375,
    0.00240625,
    0.00296875,
    0.0035312497,
    0.00409375,
    0.0046562497,
    0.0052187503,
    0.00578125,
    0.00634375,
    0.00690625,
    0.00746875,
    0.00803125,
    0.00859375,
    0.009156249,
    0.00971875,
    0.01140625,
    0.01421875,
    0.01703125,
    0.019843752,
    0.02265625,
    0.02546875,
    0.028281251,
    0.03109375,
    0.03390625,
    0.036718752,
    0.03953125,
    0.042343747,
    0.04515625,
    0.04796875,
    0.05078125,
    0.05359375,
    0.05640625,
    0.059218753,
    0.06203125,
    0.06484375,
    0.067656256,
    0.070468746,
    0.07328125,
    0.07609375,
    0.07890625,
    0.08171876,
    0.08453125,
    0.08734375,
    0.09015625,
    0.092968754,
    0.09578126,
    0.09859375,
    0.107031256,
    0.12109375,
    0.13515624,
    0.14921875,
    0.16328125,
    0.17734376,
    0.19140625,
    0.20546874,
    0.21953125,
    0.23359375,
    0.24765624,
    0.26171875,
    0.27578127,
    0.28984374,
    0.30390626,
    0.31796873,
    0.33203125,
    0.34609374,
    0.36015624,
    0.37421876,
    0.38828123,
    0.40234375,
    0.41640624,
    0.43046874,
    0.44453126,
    0.45859373,
    0.47265625,
    0.4867187,
    0.50078124,
    0.5148437,
    0.5289062,
    0.54296875,
    0.5570313,
    0.5710938,
    0.58515626,
    0.5992187,
    0.61328125,
    0.6273438,
    0.6414063,
    0.65546876,
    0.6695312,
    0.68359375,
    0.6976563,
    0.7117188,
    0.72578126,
    0.7398437,
    0.75390625,
    0.7679688,
    0.78203124,
    0.79609376,
    0.8101562,
    0.82421875,
    0.8382813,
    0.85234374,
    0.86640626,
    0.8804687,
    0.89453125,
    0.9085938,
    0.92265624,
    0.93671876,
    0.9507812,
    0.96484375,
    0.9789063,
    0.99296874,
    1.0,
];

/// The 8-bit index of a scaled value, exactly as bitsandbytes' CUDA `dQuantize<0>` picks it: a binary
/// search over the sorted map (pivot 127, seven halving steps), then a comparison with the midpoint
/// to the neighbour on the value's side.
///
/// Nearest value in the map, except for ties: a value exactly on the f32 midpoint of two neighbours
/// goes to the one with the **even** index (the leaf of the search). NaN gives index 0. (The C++
/// CPU path of bitsandbytes uses a 65 536-bin lookup table instead and can differ by one index.)
pub fn dynamic_index(x: f32) -> u8 {
    let code = &DYNAMIC_SIGNED_MAP;
    let mut pivot = 127usize;
    let mut upper_pivot = 255usize;
    let mut lower_pivot = 0usize;
    let mut lower = -1.0f32;
    let mut upper = 1.0f32;
    let mut val = code[pivot];
    let mut step = 64;
    while step > 0 {
        // Selects rather than branches: the search path is data-dependent and mispredicts.
        let above = x > val;
        lower_pivot = if above { pivot } else { lower_pivot };
        lower = if above { val } else { lower };
        upper_pivot = if above { upper_pivot } else { pivot };
        upper = if above { upper } else { val };
        pivot = if above { pivot + step } else { pivot - step };
        val = code[pivot];
        step >>= 1;
    }
    if upper_pivot == 255 {
        upper = code[upper_pivot];
    }
    if lower_pivot == 0 {
        lower = code[lower_pivot];
    }
    let chosen = if x > val {
        if x > (upper + val) * 0.5 {
            upper_pivot
        } else {
            pivot
        }
    } else if x < (lower + val) * 0.5 {
        lower_pivot
    } else {
        pivot
    };
    u8::try_from(chosen).expect("invariant: pivots stay in 0..=255")
}

/// Blockwise 8-bit quantisation (bitsandbytes `quantize_blockwise` with the dynamic map, CUDA
/// semantics): per block of `block_size` values, `absmax = max|x|`, then
/// `dynamic_index(x * (1.0 / absmax))`. Returns `(codes, absmax per block)`.
///
/// # Panics
/// If `block_size` is 0.
pub fn quantize_dynamic_blockwise(values: &[f32], block_size: usize) -> (Vec<u8>, Vec<f32>) {
    assert!(block_size > 0, "block_size must be positive");
    let mut codes = vec![0u8; values.len()];
    let absmax = values
        .par_chunks(block_size)
        .zip(codes.par_chunks_mut(block_size))
        .map(|(block, codes)| {
            let max = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let recip = 1.0 / max;
            for (code, &v) in codes.iter_mut().zip(block) {
                *code = dynamic_index(v * recip);
            }
            max
        })
        .collect();
    (codes, absmax)
}

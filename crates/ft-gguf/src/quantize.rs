//! f32 values → ggml storage bytes for the types the exporter writes: F32, F16 and Q8_0.
//!
//! Bit-exact with `gguf.quants.quantize` (gguf-py 0.19): F16 is IEEE round-to-nearest-even (numpy
//! `astype(float16)`); Q8_0 follows ggml's reference `quantize_row_q8_0_ref`.

use crate::ggml_type::GgmlType;

/// Values per Q8_0 block.
pub const Q8_0_BLOCK: usize = 32;

/// `values` (row-major, last axis fastest) stored as `ggml_type`, or `None` when the type is not
/// one this module writes or `values` does not fill whole blocks.
///
/// # Shapes
/// - values: any shape flattened; for Q8_0 each row length must be a multiple of 32
/// - output: `values.len() / block · bytes_per_block` bytes
pub fn quantize(ggml_type: GgmlType, values: &[f32]) -> Option<Vec<u8>> {
    match ggml_type {
        GgmlType::F32 => Some(cast(values, ft_io::Dtype::F32)),
        GgmlType::F16 => Some(cast(values, ft_io::Dtype::F16)),
        GgmlType::Q8_0 if values.len().is_multiple_of(Q8_0_BLOCK) => Some(quantize_q8_0(values)),
        _ => None,
    }
}

/// `values` as little-endian F32 or F16 (round to nearest even): `ft-io`'s torch-exact casts.
fn cast(values: &[f32], dtype: ft_io::Dtype) -> Vec<u8> {
    let mut out = Vec::new();
    ft_io::cast_f32_into(values, dtype, &mut out).expect("invariant: a float dtype");
    out
}

/// Q8_0: per block of 32, `d = max|x| / 127` (stored as f16), `q = round(x / d)` as i8, with
/// rounding half away from zero and `1/d` taken as 0 for an all-zero block.
///
/// # Shapes
/// - values: `[n]`, `n % 32 == 0`
/// - output: `n / 32 · 34` bytes (`d` little-endian, then 32 × i8)
fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / Q8_0_BLOCK * 34);
    for block in values.chunks_exact(Q8_0_BLOCK) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let inv = if d == 0.0 { 0.0 } else { 1.0 / d };
        out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
        // f32::round rounds half away from zero, as gguf-py's `np_roundf` and ggml's `roundf`.
        out.extend(block.iter().map(|&x| ((x * inv).round() as i8) as u8));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dequant::dequantize;

    #[test]
    fn q8_0_hand_checked_block() {
        let mut block = [0f32; 32];
        block[0] = 127.0; // d = 1: halves are exact, and round away from zero (not to even)
        block[1] = -63.5;
        block[2] = 0.5;
        block[3] = 2.5;
        let bytes = quantize(GgmlType::Q8_0, &block).expect("whole block");
        assert_eq!(bytes.len(), 34);
        let d = half::f16::from_le_bytes([bytes[0], bytes[1]]).to_f32();
        assert_eq!(d, 1.0);
        assert_eq!(bytes[2] as i8, 127);
        assert_eq!(bytes[3] as i8, -64);
        assert_eq!(bytes[4] as i8, 1);
        assert_eq!(bytes[5] as i8, 3);
    }

    #[test]
    fn q8_0_round_trips_within_half_a_step() {
        let values: Vec<f32> = (0..96).map(|i| ((i * 37 % 101) as f32 - 50.0) / 13.0).collect();
        let bytes = quantize(GgmlType::Q8_0, &values).expect("whole blocks");
        let back = dequantize(GgmlType::Q8_0, &bytes, values.len()).expect("q8_0");
        for (block, got) in values.chunks(32).zip(back.chunks(32)) {
            let step = block.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            for (a, b) in block.iter().zip(got) {
                assert!((a - b).abs() <= step * 0.5 + 1e-3 * step.max(1e-6), "{a} vs {b}");
            }
        }
        assert!(quantize(GgmlType::Q8_0, &values[..40]).is_none());
    }

    #[test]
    fn zero_block_and_f16() {
        let bytes = quantize(GgmlType::Q8_0, &[0.0; 32]).expect("whole block");
        assert!(bytes.iter().all(|&b| b == 0));
        let h = quantize(GgmlType::F16, &[1.0, -2.5]).expect("f16");
        assert_eq!(h, vec![0x00, 0x3c, 0x00, 0xc1]);
        assert!(quantize(GgmlType::Q4_0, &[0.0; 32]).is_none());
    }
}

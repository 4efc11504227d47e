//! Dequantisation of ggml block formats to f32.
//!
//! Each format is a run of fixed-size blocks along ne\[0\]. The arithmetic follows ggml's
//! reference dequantisers operation for operation (f16 scales widened to f32 first, products
//! in the same order, no fused multiply-add), so results are bit-identical to `gguf.quants`.

use half::{bf16, f16};
use rayon::prelude::*;

use crate::ggml_type::GgmlType;

/// Values per K-quant super-block.
const QK_K: usize = 256;

/// Dequantises `n_elements` values of `ggml_type` from `bytes`.
///
/// Returns `None` when the type is not supported (see [`GgmlType::can_dequantize`]), when
/// `n_elements` is not a whole number of blocks, or when `bytes` is not exactly that many blocks.
///
/// # Shapes
/// - bytes: `n_elements / block_values * block_bytes`
/// - output: `[n_elements]`, in storage order (ne\[0\] fastest)
pub fn dequantize(ggml_type: GgmlType, bytes: &[u8], n_elements: usize) -> Option<Vec<f32>> {
    if !ggml_type.can_dequantize() {
        return None;
    }
    let (block_values, block_bytes) = ggml_type.block_geometry();
    let (block_values, block_bytes) = (block_values as usize, block_bytes as usize);
    if !n_elements.is_multiple_of(block_values) || bytes.len() != n_elements / block_values * block_bytes {
        return None;
    }
    let block_fn: fn(&[u8], &mut [f32]) = match ggml_type {
        GgmlType::F32 => |b, y| y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => |b, y| y[0] = f16_at(b, 0),
        GgmlType::BF16 => |b, y| y[0] = bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32(),
        GgmlType::Q8_0 => q8_0_block,
        GgmlType::Q4_0 => q4_0_block,
        GgmlType::Q4_1 => q4_1_block,
        GgmlType::Q5_0 => q5_0_block,
        GgmlType::Q5_1 => q5_1_block,
        GgmlType::Q2_K => q2_k_block,
        GgmlType::Q3_K => q3_k_block,
        GgmlType::Q4_K => q4_k_block,
        GgmlType::Q5_K => q5_k_block,
        GgmlType::Q6_K => q6_k_block,
        _ => unreachable!("invariant: can_dequantize() was checked above"),
    };
    let mut out = vec![0f32; n_elements];
    // Work in chunks of many blocks so scalar types do not pay rayon's per-item cost.
    let blocks_per_task = (16 * 1024 / block_values).max(1);
    out.par_chunks_mut(block_values * blocks_per_task)
        .zip(bytes.par_chunks(block_bytes * blocks_per_task))
        .for_each(|(ys, bs)| {
            for (y, b) in ys
                .chunks_exact_mut(block_values)
                .zip(bs.chunks_exact(block_bytes))
            {
                block_fn(b, y);
            }
        });
    Some(out)
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([bytes[at], bytes[at + 1]])).to_f32()
}

/// Q8_0: f16 `d`, 32 × i8 `q`; `x = q·d`.
fn q8_0_block(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (yi, &q) in y.iter_mut().zip(&b[2..34]) {
        *yi = (q as i8) as f32 * d;
    }
}

/// Q4_0: f16 `d`, 16 bytes; element j is the low nibble of byte j, element j+16 the high one;
/// `x = (q − 8)·d`.
fn q4_0_block(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (j, &q) in b[2..18].iter().enumerate() {
        y[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
        y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

/// Q4_1: f16 `d`, f16 `m`, 16 bytes (nibbles as in Q4_0); `x = q·d + m`.
fn q4_1_block(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    for (j, &q) in b[4..20].iter().enumerate() {
        y[j] = (q & 0x0F) as f32 * d + m;
        y[j + 16] = (q >> 4) as f32 * d + m;
    }
}

/// The fifth bits of a Q5_0 / Q5_1 block: element j (0–15) takes bit j of the little-endian
/// `qh`, element j+16 bit j+16.
fn q5_high_bits(qh: &[u8], j: usize) -> (u8, u8) {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    ((((qh >> j) << 4) & 0x10) as u8, ((qh >> (j + 12)) & 0x10) as u8)
}

/// Q5_0: f16 `d`, 4 bytes `qh` (fifth bits), 16 bytes of nibbles (as in Q4_0);
/// `x = (q − 16)·d`.
fn q5_0_block(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = &b[2..6];
    for (j, &q) in b[6..22].iter().enumerate() {
        let (h0, h1) = q5_high_bits(qh, j);
        y[j] = (((q & 0x0F) | h0) as i32 - 16) as f32 * d;
        y[j + 16] = (((q >> 4) | h1) as i32 - 16) as f32 * d;
    }
}

/// Q5_1: f16 `d`, f16 `m`, 4 bytes `qh`, 16 bytes of nibbles; `x = q·d + m`.
fn q5_1_block(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qh = &b[4..8];
    for (j, &q) in b[8..24].iter().enumerate() {
        let (h0, h1) = q5_high_bits(qh, j);
        y[j] = ((q & 0x0F) | h0) as f32 * d + m;
        y[j + 16] = ((q >> 4) | h1) as f32 * d + m;
    }
}

/// Q2_K super-block (84 bytes, 256 values): 16 scale bytes (low nibble: scale, high: min, one
/// per 16 values), 64 bytes of 2-bit values, f16 `d`, f16 `dmin`. Each half of 128 values reads
/// 32 bytes four times, two bits further each time (16 values from bytes 0–15, then 16 from
/// 16–31); `x = (d·sc)·q − dmin·m`.
fn q2_k_block(b: &[u8], y: &mut [f32]) {
    let scales = &b[0..16];
    let d = f16_at(b, 80);
    let dmin = f16_at(b, 82);
    let mut is = 0;
    for (half, ys) in y.chunks_exact_mut(128).enumerate() {
        let q = &b[16 + half * 32..16 + half * 32 + 32];
        for (k, run) in ys.chunks_exact_mut(32).enumerate() {
            let shift = 2 * k;
            for (part, values) in run.chunks_exact_mut(16).enumerate() {
                let sc = scales[is];
                is += 1;
                let (dl, ml) = (d * (sc & 0x0F) as f32, dmin * (sc >> 4) as f32);
                for (l, v) in values.iter_mut().enumerate() {
                    *v = dl * ((q[l + 16 * part] >> shift) & 3) as f32 - ml;
                }
            }
        }
    }
}

/// The 16 signed 6-bit scales of a Q3_K block from its 12 bytes: scale j has its low 4 bits in
/// byte j mod 8 (low nibble for j < 8, high for j ≥ 8) and its top 2 bits in byte 8 + j mod 4
/// (bits 2·(j / 4)); minus 32.
fn q3_k_scales(s: &[u8]) -> [i32; 16] {
    let mut out = [0i32; 16];
    for (j, scale) in out.iter_mut().enumerate() {
        let low = if j < 8 { s[j] & 0x0F } else { s[j - 8] >> 4 };
        let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        *scale = (low | (high << 4)) as i32 - 32;
    }
    out
}

/// Q3_K super-block (110 bytes, 256 values): 32 bytes `hmask` (third bits), 64 bytes of 2-bit
/// values, 12 scale bytes, f16 `d`. Laid out as Q2_K, each value's third bit being bit
/// `4·half + k` of `hmask[l]`; a clear bit subtracts 4; `x = (d·sc)·q`.
fn q3_k_block(b: &[u8], y: &mut [f32]) {
    let hmask = &b[0..32];
    let scales = q3_k_scales(&b[96..108]);
    let d = f16_at(b, 108);
    let mut is = 0;
    for (half, ys) in y.chunks_exact_mut(128).enumerate() {
        let q = &b[32 + half * 32..32 + half * 32 + 32];
        for (k, run) in ys.chunks_exact_mut(32).enumerate() {
            let shift = 2 * k;
            let bit = 1u8 << (4 * half + k);
            for (part, values) in run.chunks_exact_mut(16).enumerate() {
                let dl = d * scales[is] as f32;
                is += 1;
                for (l, v) in values.iter_mut().enumerate() {
                    let i = l + 16 * part;
                    let low = ((q[i] >> shift) & 3) as i32;
                    let high = if hmask[i] & bit != 0 { 0 } else { 4 };
                    *v = dl * (low - high) as f32;
                }
            }
        }
    }
}

/// Q5_K super-block (176 bytes, 256 values): f16 `d`, f16 `dmin`, 12 scale bytes (as Q4_K),
/// 32 bytes `qh` (fifth bits), 128 bytes of nibbles (as Q4_K); value `l` of sub-block `2c` takes
/// bit `2c` of `qh[l]`, of sub-block `2c + 1` bit `2c + 1`; `x = (d·sc)·q − dmin·m`.
fn q5_k_block(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for (chunk, (q, ys)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc_lo, m_lo) = q4_k_scale_min(2 * chunk, scales);
        let (sc_hi, m_hi) = q4_k_scale_min(2 * chunk + 1, scales);
        let (d_lo, min_lo) = (d * sc_lo as f32, dmin * m_lo as f32);
        let (d_hi, min_hi) = (d * sc_hi as f32, dmin * m_hi as f32);
        let (bit_lo, bit_hi) = (1u8 << (2 * chunk), 1u8 << (2 * chunk + 1));
        for l in 0..32 {
            let h_lo = if qh[l] & bit_lo != 0 { 16 } else { 0 };
            let h_hi = if qh[l] & bit_hi != 0 { 16 } else { 0 };
            ys[l] = d_lo * ((q[l] & 0x0F) + h_lo) as f32 - min_lo;
            ys[l + 32] = d_hi * ((q[l] >> 4) + h_hi) as f32 - min_hi;
        }
    }
}

/// The 6-bit scale and min of sub-block `j` (0–7) from Q4_K's 12 packed scale bytes: bytes 0–3
/// hold scales 0–3 (low 6 bits), bytes 4–7 mins 0–3; sub-blocks 4–7 take their low 4 bits from
/// bytes 8–11 and their top 2 bits from the spare top bits of bytes 0–7.
fn q4_k_scale_min(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// Q4_K super-block (144 bytes, 256 values): f16 `d`, f16 `dmin`, 12 scale bytes, 128 bytes of
/// nibbles. Eight sub-blocks of 32; each run of 32 bytes gives one sub-block from its low nibbles
/// and the next from its high nibbles; `x = (d·sc)·q − dmin·m`.
fn q4_k_block(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for (chunk, (q, ys)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc_lo, m_lo) = q4_k_scale_min(2 * chunk, scales);
        let (sc_hi, m_hi) = q4_k_scale_min(2 * chunk + 1, scales);
        let (d_lo, min_lo) = (d * sc_lo as f32, dmin * m_lo as f32);
        let (d_hi, min_hi) = (d * sc_hi as f32, dmin * m_hi as f32);
        for l in 0..32 {
            ys[l] = d_lo * (q[l] & 0x0F) as f32 - min_lo;
            ys[l + 32] = d_hi * (q[l] >> 4) as f32 - min_hi;
        }
    }
}

/// Q6_K super-block (210 bytes, 256 values): 128 bytes `ql` (low 4 bits), 64 bytes `qh` (high
/// 2 bits), 16 × i8 scales (one per 16 values), f16 `d` last; `x = (d·sc)·(q − 32)`.
/// Each half of 128 values uses 64 `ql` bytes and 32 `qh` bytes: value `l + 32k` (k = 0–3)
/// takes the low (k even) or high (k odd) nibble of `ql[l + 32·(k mod 2)]` and bits `2k..2k+2`
/// of `qh[l]`.
fn q6_k_block(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 208);
    let scales = &b[192..208];
    for half in 0..QK_K / 128 {
        let ql = &b[half * 64..half * 64 + 64];
        let qh = &b[128 + half * 32..128 + half * 32 + 32];
        let sc = &scales[half * 8..half * 8 + 8];
        let ys = &mut y[half * 128..half * 128 + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            ys[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            ys[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            ys[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            ys[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_1_block_reads_low_nibbles_first_then_high() {
        let mut b = vec![0u8; 20];
        b[0..2].copy_from_slice(&f16::from_f32(0.5).to_bits().to_le_bytes());
        b[2..4].copy_from_slice(&f16::from_f32(-1.0).to_bits().to_le_bytes());
        b[4] = 0x3A; // element 0 = 0xA, element 16 = 0x3
        let y = dequantize(GgmlType::Q4_1, &b, 32).expect("one whole block");
        assert_eq!(y[0], 10.0 * 0.5 - 1.0);
        assert_eq!(y[16], 3.0 * 0.5 - 1.0);
        assert_eq!(y[1], -1.0);
    }

    #[test]
    fn wrong_byte_count_is_rejected() {
        assert!(dequantize(GgmlType::Q8_0, &[0u8; 33], 32).is_none());
        assert!(dequantize(GgmlType::Q8_0, &[0u8; 34], 31).is_none());
        assert!(dequantize(GgmlType::Q8_1, &[0u8; 36], 32).is_none());
    }
}

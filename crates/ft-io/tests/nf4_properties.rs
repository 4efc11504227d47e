//! NF4 codec properties: packing, error bounds, idempotence, streaming ranges, memory accounting.

use ft_io::nf4::{
    DYNAMIC_SIGNED_MAP, DoubleQuantAbsmax, NF4_CODE, Nf4Absmax, Nf4Error, Nf4Tensor, nf4_storage_bytes,
    pack_indices, quantize_nf4, unpack_indices,
};
use proptest::prelude::*;

/// Largest half-gap between neighbouring NF4 codes: (−0.6961928 − (−1.0)) / 2.
const NF4_HALF_GAP: f32 = 0.151_904;
/// Largest half-gap between neighbouring dynamic-map values (near ±1): 0.0140625 / 2.
const DYNAMIC_HALF_GAP: f32 = 0.007_032;

#[test]
fn indices_pack_high_nibble_first() {
    let indices: Vec<u8> = (0..16).collect();
    assert_eq!(pack_indices(&indices), vec![1, 35, 69, 103, 137, 171, 205, 239]);
    assert_eq!(unpack_indices(&[1, 35, 69, 103, 137, 171, 205, 239], 16), indices);
    assert_eq!(pack_indices(&[15, 1, 9]), vec![0xF1, 0x90]);

    // The code values themselves, at absmax 1, quantise to their own indices.
    let q = Nf4Tensor::quantize(&NF4_CODE, &[16], false).expect("shape matches");
    assert_eq!(q.packed(), [1, 35, 69, 103, 137, 171, 205, 239]);
    assert_eq!(q.dequantize(), NF4_CODE);
}

#[test]
fn odd_length_pads_with_the_zero_index() {
    let q = Nf4Tensor::quantize(&[1.0, -1.0, 0.3], &[3], false).expect("shape matches");
    assert_eq!(q.packed().len(), 2);
    assert_eq!(q.packed()[1] & 0x0F, 7, "pad element 0.0 → index 7");
    assert_eq!((0..3).map(|i| q.index(i)).collect::<Vec<_>>(), vec![15, 0, 11]);
}

#[test]
fn memory_per_parameter_for_a_4096_square_weight() {
    let n = 4096 * 4096;
    let plain = nf4_storage_bytes(n, false);
    let double = nf4_storage_bytes(n, true);
    assert_eq!(plain, n / 2 + 4 * (n / 64));
    assert_eq!(double, n / 2 + n / 64 + 4 * (n / 64 / 256) + 4);
    let (plain_bpp, double_bpp) = (plain as f64 / n as f64, double as f64 / n as f64);
    assert_eq!(plain_bpp, 0.5625);
    assert!((double_bpp - 0.515_869).abs() < 1e-6, "{double_bpp}");
    assert!(plain_bpp <= 0.6 && double_bpp <= 0.6);

    let values: Vec<f32> = (0..257 * 65)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
        .collect();
    for double_quant in [false, true] {
        let q = Nf4Tensor::quantize(&values, &[257, 65], double_quant).expect("shape matches");
        assert_eq!(q.storage_bytes(), nf4_storage_bytes(values.len(), double_quant));
        assert!(q.bytes_per_param() <= 0.6);
    }
}

#[test]
fn errors_name_what_is_wrong() {
    let err = quantize_nf4(&[1.0; 10], &[3, 4], false).unwrap_err();
    assert_eq!(
        err,
        Nf4Error::ShapeMismatch {
            shape: vec![3, 4],
            expected: 12,
            found: 10
        }
    );
    let q = quantize_nf4(&[1.0; 12], &[3, 4], false).expect("shape matches");
    let mut out = vec![0.0; 11];
    assert!(matches!(
        q.dequantize_into(&mut out),
        Err(Nf4Error::LengthMismatch { expected: 12, .. })
    ));
    assert!(matches!(
        q.dequantize_range_into(5, &mut out[..8]),
        Err(Nf4Error::RangeOutOfBounds { .. })
    ));
    assert!(matches!(
        q.dequantize_rows_into(2..4, &mut out[..8]),
        Err(Nf4Error::TileOutOfBounds { .. })
    ));
    assert!(matches!(
        q.dequantize_tile_into(0..1, 3..5, &mut out[..2]),
        Err(Nf4Error::TileOutOfBounds { .. })
    ));
    let parts = Nf4Tensor::from_parts(vec![0; 6], Nf4Absmax::Full(vec![]), vec![3, 4]);
    assert!(matches!(
        parts,
        Err(Nf4Error::LengthMismatch { what: "absmax", .. })
    ));
}

#[test]
fn double_quant_of_a_single_block_recovers_it_exactly() {
    // absmax − mean is 0: absmax2 = 0, code 0 (CUDA's NaN path), recovered = 0 · code + offset.
    let double = DoubleQuantAbsmax::quantize(&[0.75]);
    assert_eq!(
        (double.codes.as_slice(), double.absmax2.as_slice(), double.offset),
        (&[0u8][..], &[0.0][..], 0.75)
    );
    assert_eq!(double.dequantize(), vec![0.75]);
    assert_eq!(DYNAMIC_SIGNED_MAP[127], 0.0);
}

/// A float in `low..=high` drawn through an integer: proptest 1.12's float range sampler can
/// trip its own debug assertion on some seeds.
fn float_in(low: f32, high: f32) -> impl Strategy<Value = f32> {
    const STEPS: u32 = 1 << 24;
    (0..=STEPS).prop_map(move |k| low + (high - low) * (k as f32 / STEPS as f32))
}

fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        Just(0.0f32),
        float_in(-1.0e3, 1.0e3),
        float_in(-1.0e-20, 1.0e-20),
        float_in(-3.0, 3.0)
    ]
}

fn values(max_len: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(value(), 1..max_len)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn quantize_dequantize_quantize_is_idempotent(x in values(400)) {
        let q1 = Nf4Tensor::quantize(&x, &[x.len()], false).expect("shape matches");
        let d1 = q1.dequantize();
        let q2 = Nf4Tensor::quantize(&d1, &[x.len()], false).expect("shape matches");
        prop_assert_eq!(q2.packed(), q1.packed());
        let (a1, a2) = (q1.block_absmax_values(), q2.block_absmax_values());
        prop_assert!(a1.iter().zip(a2.iter()).all(|(a, b)| a.to_bits() == b.to_bits()));
        let d2 = q2.dequantize();
        prop_assert!(d1.iter().zip(&d2).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn dequantised_error_is_within_half_a_code_gap(x in values(400)) {
        let q = Nf4Tensor::quantize(&x, &[x.len()], false).expect("shape matches");
        let d = q.dequantize();
        for (i, (&v, &r)) in x.iter().zip(&d).enumerate() {
            let absmax = q.block_absmax(i / 64);
            prop_assert!((v - r).abs() <= NF4_HALF_GAP * absmax * (1.0 + 1e-5), "{i}: {v} → {r} (absmax {absmax})");
        }
    }

    #[test]
    fn double_quant_absmax_error_is_within_half_a_dynamic_gap(
        absmax in prop::collection::vec(float_in(1.0e-3, 10.0), 1..700),
    ) {
        let double = DoubleQuantAbsmax::quantize(&absmax);
        for (b, (&a, r)) in absmax.iter().zip(double.dequantize()).enumerate() {
            let scale = double.absmax2[b / 256];
            let slack = 4.0 * f32::EPSILON * (a.abs() + double.offset.abs() + scale);
            prop_assert!((a - r).abs() <= DYNAMIC_HALF_GAP * scale + slack, "{b}: {a} → {r}");
        }
    }

    #[test]
    fn ranges_rows_and_tiles_match_the_full_dequantisation(
        rows in 1usize..9, cols in 1usize..150, double_quant: bool, seed in any::<u64>(),
        r in (0usize..9, 0usize..9), c in (0usize..150, 0usize..150), span in (0usize..1400, 0usize..1400),
    ) {
        let n = rows * cols;
        let x: Vec<f32> = (0..n as u64)
            .map(|i| seed.wrapping_add(i).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .map(|bits| (bits >> 40) as f32 / 8_388_608.0 - 1.0)
            .collect();
        let q = Nf4Tensor::quantize(&x, &[rows, cols], double_quant).expect("shape matches");
        let full = q.dequantize();

        let (start, end) = (span.0.min(span.1).min(n), span.0.max(span.1).min(n));
        let mut out = vec![f32::NAN; end - start];
        q.dequantize_range_into(start, &mut out).expect("in bounds");
        prop_assert_eq!(&out[..], &full[start..end]);

        let (r0, r1) = (r.0.min(r.1).min(rows), r.0.max(r.1).min(rows));
        let mut out = vec![f32::NAN; (r1 - r0) * cols];
        q.dequantize_rows_into(r0..r1, &mut out).expect("in bounds");
        prop_assert_eq!(&out[..], &full[r0 * cols..r1 * cols]);

        let (c0, c1) = (c.0.min(c.1).min(cols), c.0.max(c.1).min(cols));
        let mut out = vec![f32::NAN; (r1 - r0) * (c1 - c0)];
        q.dequantize_tile_into(r0..r1, c0..c1, &mut out).expect("in bounds");
        let want: Vec<f32> = (r0..r1).flat_map(|row| full[row * cols + c0..row * cols + c1].to_vec()).collect();
        prop_assert_eq!(out, want);
    }
}

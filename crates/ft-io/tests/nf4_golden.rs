//! NF4 codec against the bitsandbytes CUDA reference (fixtures/gen_nf4.py): bit-for-bit codes,
//! absmax, double-quantisation arrays and dequantised values.

use crate::nf4_common;

use ft_io::nf4::{
    DYNAMIC_SIGNED_MAP, DoubleQuantAbsmax, NF4_CODE, NF4_THRESHOLDS, Nf4Absmax, Nf4Tensor, dynamic_index,
    nf4_index, quantize_dynamic_blockwise, unpack_indices,
};
use nf4_common::{Fixture, assert_bits_eq};

const CASES: [&str; 5] = ["normal", "odd_partial", "midpoints", "zero_blocks", "extremes"];
const DOUBLE_QUANT_CASES: [&str; 3] = ["dq_even", "dq_odd", "dq_single"];

#[test]
fn code_tables_match_bitsandbytes() {
    let fx = Fixture::open("dynamic_map.safetensors");
    assert_bits_eq("dynamic_map", &DYNAMIC_SIGNED_MAP, &fx.f32("dynamic_map"));
    assert_bits_eq("nf4_code", &NF4_CODE, &fx.f32("nf4_code"));
    assert_bits_eq("nf4_thresholds", &NF4_THRESHOLDS, &fx.f32("nf4_thresholds"));
    let midpoints = fx.f32("nf4_f32_midpoints");
    for (i, t) in NF4_THRESHOLDS.iter().enumerate() {
        let midpoint = (NF4_CODE[i] + NF4_CODE[i + 1]) / 2.0;
        assert_eq!(midpoint.to_bits(), midpoints[i].to_bits());
        let ulps = t.to_bits().abs_diff(midpoint.to_bits());
        let expected_ulps = if [0, 8, 12, 14].contains(&i) { 1 } else { 0 };
        assert_eq!(ulps, expected_ulps, "threshold {i}: CUDA literal vs f32 midpoint");
    }
}

#[test]
fn nf4_cases_are_bit_exact() {
    let fx = Fixture::open("cases.safetensors");
    for case in CASES {
        let input = fx.f32(&format!("{case}.input"));
        let shape = fx.shape(&format!("{case}.input"));
        let q = Nf4Tensor::quantize(&input, &shape, false).expect("shape matches");
        assert_eq!(
            q.packed(),
            fx.u8(&format!("{case}.packed")).as_slice(),
            "{case}: packed codes"
        );
        let Nf4Absmax::Full(absmax) = q.absmax() else {
            panic!("{case}: expected f32 absmax")
        };
        assert_bits_eq(
            &format!("{case}.absmax"),
            absmax,
            &fx.f32(&format!("{case}.absmax")),
        );
        assert_bits_eq(
            &format!("{case}.dequant"),
            &q.dequantize(),
            &fx.f32(&format!("{case}.dequant")),
        );
    }
}

#[test]
fn values_on_midpoints_take_the_lower_code() {
    let fx = Fixture::open("cases.safetensors");
    let input = fx.f32("midpoints.input");
    let q = Nf4Tensor::quantize(&input, &[2, 64], false).expect("shape matches");
    let indices = unpack_indices(q.packed(), input.len());
    for block in 0..2 {
        let base = block * 64 + 1;
        for i in 0..15 {
            assert_eq!(indices[base + i], i as u8, "block {block}: on threshold {i}");
            assert_eq!(
                indices[base + 15 + i],
                i as u8 + 1,
                "block {block}: just above threshold {i}"
            );
            assert_eq!(
                indices[base + 30 + i],
                i as u8,
                "block {block}: just below threshold {i}"
            );
        }
    }
    for (i, &t) in NF4_THRESHOLDS.iter().enumerate() {
        assert_eq!(nf4_index(t), i as u8);
        assert_eq!(nf4_index(t.next_up()), i as u8 + 1);
    }
    assert_eq!(
        nf4_index(f32::NAN),
        0,
        "NaN falls through the CUDA tree to index 0"
    );
}

#[test]
fn all_zero_blocks_follow_cuda_and_dequantise_to_zero() {
    let fx = Fixture::open("cases.safetensors");
    let input = fx.f32("zero_blocks.input");
    let q = Nf4Tensor::quantize(&input, &[input.len()], false).expect("shape matches");
    assert_eq!(q.block_absmax(1), 0.0);
    assert_eq!(q.block_absmax(3), 0.0, "all-zero partial last block");
    let indices = unpack_indices(q.packed(), input.len() + 1);
    assert!(
        indices[64..128].iter().all(|&i| i == 0),
        "CUDA: 0 * inf = NaN → index 0"
    );
    assert_eq!(indices[195], 0, "pad nibble of an all-zero block");
    let deq = q.dequantize();
    assert!(deq[64..128].iter().chain(&deq[192..]).all(|&v| v == 0.0));
}

#[test]
fn double_quant_is_bit_exact() {
    let fx = Fixture::open("cases.safetensors");
    for case in DOUBLE_QUANT_CASES {
        let input = fx.f32(&format!("{case}.input"));
        let shape = fx.shape(&format!("{case}.input"));
        let q = Nf4Tensor::quantize(&input, &shape, true).expect("shape matches");
        assert_eq!(
            q.packed(),
            fx.u8(&format!("{case}.packed")).as_slice(),
            "{case}: packed"
        );
        let Nf4Absmax::Double(double) = q.absmax() else {
            panic!("{case}: expected double quant")
        };
        let offset = fx.f32(&format!("{case}.offset"))[0];
        assert_eq!(
            double.offset.to_bits(),
            offset.to_bits(),
            "{case}: offset (mean of absmax)"
        );
        assert_eq!(
            double.codes,
            fx.u8(&format!("{case}.codes")),
            "{case}: 8-bit codes"
        );
        assert_bits_eq(
            &format!("{case}.absmax2"),
            &double.absmax2,
            &fx.f32(&format!("{case}.absmax2")),
        );
        let recovered = fx.f32(&format!("{case}.recovered_absmax"));
        assert_bits_eq(&format!("{case}.recovered"), &q.block_absmax_values(), &recovered);
        assert_bits_eq(
            &format!("{case}.dequant"),
            &q.dequantize(),
            &fx.f32(&format!("{case}.dequant")),
        );

        // Given the reference offset, the nested arrays follow from the f32 absmax alone.
        let absmax = fx.f32(&format!("{case}.absmax"));
        let again = DoubleQuantAbsmax::quantize_with_offset(&absmax, offset);
        assert_eq!(&again, double, "{case}: quantize_with_offset");
    }
}

#[test]
fn dynamic_ties_go_to_the_even_index_like_cuda() {
    let fx = Fixture::open("cases.safetensors");
    let input = fx.f32("dyn_ties.input");
    let (codes, absmax2) = quantize_dynamic_blockwise(&input, 256);
    assert_eq!(absmax2, vec![1.0]);
    assert_eq!(codes, fx.u8("dyn_ties.codes"));
    for (i, &code) in codes[1..].iter().enumerate() {
        assert!(code as usize == i || code as usize == i + 1, "tie {i} → {code}");
        assert_eq!(
            code % 2,
            0,
            "tie between {i} and {} goes to the even index",
            i + 1
        );
    }
    // Away from ties the binary search is the nearest value.
    for (i, &c) in DYNAMIC_SIGNED_MAP.iter().enumerate() {
        assert_eq!(dynamic_index(c), i as u8, "exact code {i}");
    }
    assert_eq!(dynamic_index(-1.0), 0);
    assert_eq!(dynamic_index(f32::NAN), 0);
}

//! f32 → bf16 / f16 casts against torch 2.15's CPU casts (fixtures/gen_peft.py: ties, overflow,
//! subnormals, NaN payloads, plus 1000 random values over the whole exponent range).

use ft_io::{BF16_CANONICAL_NAN, Dtype, cast_f32_into, f32_to_bf16_bits, f32_to_f16_bits};
use safetensors::SafeTensors;

fn fixture() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/peft/float_cast.safetensors"
    ))
    .expect("fixture fixtures/peft/float_cast.safetensors")
}

fn i32s(st: &SafeTensors, name: &str) -> Vec<u32> {
    let view = st.tensor(name).expect(name);
    view.data()
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn bf16_matches_torch_bit_for_bit_and_nan_is_canonical() {
    let bytes = fixture();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let input = i32s(&st, "input_bits");
    let torch_vec = i32s(&st, "bf16_bits");
    let torch_scalar = i32s(&st, "bf16_bits_scalar_prefix");
    assert!(input.len() > 1000);
    let mut nans = 0;
    for (i, (&x, &t)) in input.iter().zip(&torch_vec).enumerate() {
        let ours = f32_to_bf16_bits(f32::from_bits(x));
        if f32::from_bits(x).is_nan() {
            nans += 1;
            // torch: scalar path 0x7FC0, vectorised path 0xFFFF; we follow the scalar one.
            assert_eq!(ours, BF16_CANONICAL_NAN, "input {x:#010x}");
            assert_eq!(t, 0xFFFF);
            if i < torch_scalar.len() {
                assert_eq!(u32::from(ours), torch_scalar[i], "input {x:#010x}");
            }
        } else {
            assert_eq!(u32::from(ours), t, "element {i}: f32 {x:#010x}");
        }
    }
    assert_eq!(nans, 7, "the fixture's NaN cases");
    // A few documented cases, explicitly.
    assert_eq!(
        f32_to_bf16_bits(f32::from_bits(0x3F80_8000)),
        0x3F80,
        "tie, even below"
    );
    assert_eq!(
        f32_to_bf16_bits(f32::from_bits(0x3F81_8000)),
        0x3F82,
        "tie, odd below"
    );
    assert_eq!(f32_to_bf16_bits(f32::MAX), 0x7F80, "f32 max rounds to inf");
    assert_eq!(
        f32_to_bf16_bits(f32::from_bits(0x0001_8000)),
        0x0002,
        "subnormal tie, odd below"
    );
}

#[test]
fn f16_matches_torch_bit_for_bit_including_nan_payloads() {
    let bytes = fixture();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let input = i32s(&st, "input_bits");
    let torch = i32s(&st, "f16_bits");
    for (i, (&x, &t)) in input.iter().zip(&torch).enumerate() {
        assert_eq!(
            u32::from(f32_to_f16_bits(f32::from_bits(x))),
            t,
            "element {i}: f32 {x:#010x}"
        );
    }
    assert_eq!(f32_to_f16_bits(65520.0), 0x7C00, "overflow tie goes to inf");
    assert_eq!(
        f32_to_f16_bits(f32::from_bits(0x3300_0000)),
        0x0000,
        "2^-25 ties to zero"
    );
}

#[test]
fn cast_into_writes_little_endian_and_refuses_integer_targets() {
    let mut out = Vec::new();
    cast_f32_into(&[1.0, -2.0], Dtype::BF16, &mut out).unwrap();
    assert_eq!(out, [0x80, 0x3F, 0x00, 0xC0]);
    out.clear();
    cast_f32_into(&[1.5], Dtype::F64, &mut out).unwrap();
    assert_eq!(out, 1.5f64.to_le_bytes());
    assert!(cast_f32_into(&[1.0], Dtype::I32, &mut out).is_none());
}

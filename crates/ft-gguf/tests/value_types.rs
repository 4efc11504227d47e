//! Every GGUF metadata value type, including nested arrays (`fixtures/gguf/value_types.gguf`).

use std::path::PathBuf;

use ft_gguf::{GgufFile, MetadataValue as V};

#[test]
fn every_value_type_reads_back() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/gguf/value_types.gguf");
    let gguf = GgufFile::open(path).expect("opens");
    let md = gguf.metadata();
    assert_eq!(gguf.tensors().len(), 0);
    assert_eq!(gguf.alignment(), 32, "default alignment");
    let get = |k: &str| md.get(k).cloned().expect(k);
    assert_eq!(get("test.u8"), V::U8(200));
    assert_eq!(get("test.i8"), V::I8(-100));
    assert_eq!(get("test.u16"), V::U16(60000));
    assert_eq!(get("test.i16"), V::I16(-30000));
    assert_eq!(get("test.u32"), V::U32(4_000_000_000));
    assert_eq!(get("test.i32"), V::I32(-2_000_000_000));
    assert_eq!(get("test.f32"), V::F32(0.25));
    assert_eq!(get("test.bool"), V::Bool(true));
    assert_eq!(get("test.string"), V::String("héllo".into()));
    assert_eq!(get("test.u64"), V::U64((1 << 63) + 5));
    assert_eq!(get("test.i64"), V::I64(-(1 << 62)));
    assert_eq!(get("test.f64"), V::F64(std::f64::consts::PI));
    assert_eq!(
        get("test.nested"),
        V::Array(
            9,
            vec![
                V::Array(5, vec![V::I32(1), V::I32(2), V::I32(3)]),
                V::Array(5, vec![V::I32(4)]),
                V::Array(5, vec![V::I32(5), V::I32(6)]),
            ]
        )
    );
    assert_eq!(get("test.nested_strings").type_name(), "array<array>");
    assert_eq!(
        md.get_f32_array("test.floats").expect("floats"),
        Some(vec![0.5, -1.5])
    );
    assert_eq!(md.get_u64("test.u64").expect("u64"), Some((1 << 63) + 5));
    assert!(md.get_u64("test.i8").is_err(), "negative is not a u64");
    assert!(md.get_str("test.u8").is_err(), "wrong type is an error");
    assert_eq!(md.get_f64("test.f32").expect("f32"), Some(0.25));
    assert_eq!(md.get_str("general.architecture").expect("arch"), Some("llama"));
}

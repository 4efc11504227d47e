//! The block formats of Q3_K_M / Q5_K_M files and the 5-bit legacy ones (Q5_0, Q5_1, Q2_K, Q3_K,
//! Q5_K) dequantise bit for bit as gguf-py does (`fixtures/gen_gguf_quants.py`).

use std::path::PathBuf;

use ft_gguf::GgufFile;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/gguf")
        .join(name)
}

#[test]
fn every_block_format_equals_gguf_py_bit_for_bit() {
    let file = GgufFile::open(fixture("quant_types.gguf")).unwrap();
    let bytes = std::fs::read(fixture("quant_types.safetensors")).unwrap();
    let golden = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut checked = Vec::new();
    for info in file.tensors() {
        let (values, shape) = file.gguf_tensor_f32(&info.name).expect("dequantises");
        let view = golden.tensor(&info.name).unwrap();
        assert_eq!(
            shape.iter().product::<usize>(),
            view.shape().iter().product::<usize>()
        );
        let want: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let differing = values
            .iter()
            .zip(&want)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(
            differing, 0,
            "{}: {differing} values differ from gguf-py",
            info.name
        );
        checked.push(info.name.clone());
    }
    checked.sort();
    assert_eq!(checked, ["q2_k", "q3_k", "q5_0", "q5_1", "q5_k"]);
}

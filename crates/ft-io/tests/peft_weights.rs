//! adapter_model.safetensors against PEFT 0.21's `save_pretrained` (fixtures/peft/llama-*): our
//! reader gets exactly PEFT's tensors, our writer's bytes re-read equal, shape/target/NaN errors
//! name the tensor.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ft_io::peft::{
    Adapter, AdapterConfig, AdapterDtype, AdapterWeights, FtAdapterMeta, PeftError, TargetModules,
};
use safetensors::SafeTensors;
use safetensors::tensor::TensorView;

const PROJ: [(&str, [usize; 2]); 7] = [
    ("self_attn.q_proj", [32, 32]),
    ("self_attn.k_proj", [16, 32]),
    ("self_attn.v_proj", [16, 32]),
    ("self_attn.o_proj", [32, 32]),
    ("mlp.gate_proj", [64, 32]),
    ("mlp.up_proj", [64, 32]),
    ("mlp.down_proj", [32, 64]),
];

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/peft")
        .join(name)
}

fn model_linears() -> Vec<(String, [usize; 2])> {
    (0..2)
        .flat_map(|i| PROJ.map(|(m, s)| (format!("model.layers.{i}.{m}"), s)))
        .collect()
}

/// Every tensor of a PEFT file, decoded independently of the code under test.
fn raw_f32(path: &Path) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| {
            assert_eq!(v.dtype(), safetensors::Dtype::F32);
            let data = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (k, (v.shape().to_vec(), data))
        })
        .collect()
}

fn save(tensors: Vec<(String, Vec<usize>, Vec<f32>)>) -> Vec<u8> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(k, s, d)| (k, s, d.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(k, s, b)| {
            (
                k.clone(),
                TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

fn peft_tensors() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut v: Vec<_> = raw_f32(&fixture_dir("llama-lora/adapter_model.safetensors"))
        .into_iter()
        .map(|(k, (s, d))| (k, s, d))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn reader_gets_exactly_pefts_tensors() {
    let adapter = Adapter::read(fixture_dir("llama-lora")).unwrap();
    assert_eq!(adapter.ft_meta, None);
    let raw = raw_f32(&fixture_dir("llama-lora/adapter_model.safetensors"));
    assert_eq!(raw.len(), 28);
    assert_eq!(adapter.weights.modules.len(), 14);
    for (module, pair) in &adapter.weights.modules {
        let (a_shape, a) = &raw[&format!("base_model.model.{module}.lora_A.weight")];
        let (b_shape, b) = &raw[&format!("base_model.model.{module}.lora_B.weight")];
        assert_eq!((&pair.a.shape[..], &pair.a.data), (&a_shape[..], a), "{module} A");
        assert_eq!((&pair.b.shape[..], &pair.b.data), (&b_shape[..], b), "{module} B");
        assert!(
            pair.b.data.iter().any(|&x| x != 0.0),
            "{module}: B is random, not PEFT's zeros"
        );
    }
    adapter.weights.check_against_model(&model_linears()).unwrap();
    for (name, [out, inp]) in model_linears() {
        let pair = &adapter.weights.modules[&name];
        assert_eq!(
            (pair.rank(), pair.in_features(), pair.out_features()),
            (4, inp, out),
            "{name}"
        );
    }
}

#[test]
fn bf16_and_f16_default_key_files_decode_to_the_rounded_values() {
    let f32_adapter = Adapter::read(fixture_dir("llama-lora")).unwrap();
    let bf16 = Adapter::read(fixture_dir("llama-lora-bf16")).unwrap();
    let f16 = Adapter::read(fixture_dir("llama-lora-f16-default-keys")).unwrap();
    assert_eq!(bf16.weights.modules.len(), 14);
    assert_eq!(f16.weights.modules.len(), 14);
    for (module, pair) in &f32_adapter.weights.modules {
        for (which, exact, b, h) in [
            (
                "A",
                &pair.a,
                &bf16.weights.modules[module].a,
                &f16.weights.modules[module].a,
            ),
            (
                "B",
                &pair.b,
                &bf16.weights.modules[module].b,
                &f16.weights.modules[module].b,
            ),
        ] {
            assert_eq!(b.shape, exact.shape);
            assert_eq!(h.shape, exact.shape);
            for i in 0..exact.data.len() {
                let x = exact.data[i];
                assert_eq!(
                    b.data[i],
                    half::bf16::from_f32(x).to_f32(),
                    "{module} {which}[{i}] bf16"
                );
                assert_eq!(
                    h.data[i],
                    half::f16::from_f32(x).to_f32(),
                    "{module} {which}[{i}] f16"
                );
            }
        }
    }
}

#[test]
fn writer_output_is_byte_identical_to_pefts_and_re_reads_equal() {
    let adapter = Adapter::read(fixture_dir("llama-lora")).unwrap();
    let peft_f32 = std::fs::read(fixture_dir("llama-lora/adapter_model.safetensors")).unwrap();
    assert_eq!(
        adapter.weights.to_safetensors_bytes(AdapterDtype::F32),
        peft_f32,
        "f32 file bytes"
    );
    let peft_bf16 = std::fs::read(fixture_dir("llama-lora-bf16/adapter_model.safetensors")).unwrap();
    assert_eq!(
        adapter.weights.to_safetensors_bytes(AdapterDtype::BF16),
        peft_bf16,
        "bf16 file bytes"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut with_meta = adapter.clone();
    with_meta.config.base_model_name_or_path = Some("tiny-llama".into());
    with_meta.ft_meta = Some(FtAdapterMeta::new(
        Some("llama2_chat".into()),
        Some("[INST] hi [/INST]".into()),
    ));
    with_meta.write(dir.path(), AdapterDtype::F32).unwrap();
    assert_eq!(Adapter::read(dir.path()).unwrap(), with_meta);
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "adapter_config.json",
            "adapter_model.safetensors",
            "ft_adapter.json"
        ]
    );
    let bytes = std::fs::read(dir.path().join("adapter_model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(n % 8, 0, "8-byte aligned data");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, metadata) = SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(metadata.metadata().as_ref().unwrap()["format"], "pt");
    assert_eq!(st.len(), 28);

    for dtype in [AdapterDtype::F16, AdapterDtype::BF16] {
        let sub = dir.path().join(format!("{dtype:?}"));
        adapter.write(&sub, dtype).unwrap();
        let back = Adapter::read(&sub).unwrap();
        let again = back.weights.to_safetensors_bytes(dtype);
        assert_eq!(
            again,
            std::fs::read(sub.join("adapter_model.safetensors")).unwrap(),
            "{dtype:?} is stable"
        );
    }
}

#[test]
fn nan_and_inf_are_reported_with_the_tensor_name() {
    let mut t = peft_tensors();
    let key = t[5].0.clone();
    t[5].2[3] = f32::NAN;
    t[9].2[0] = f32::INFINITY;
    let err = AdapterWeights::from_safetensors_bytes(&save(t), Path::new("x")).unwrap_err();
    match &err {
        PeftError::NotFinite { key: k, index, value } => {
            assert_eq!((k, *index), (&key, 3));
            assert!(value.is_nan());
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains(&key));

    // Writing refuses them too, naming the tensor.
    let mut adapter = Adapter::read(fixture_dir("llama-lora")).unwrap();
    adapter
        .weights
        .modules
        .get_mut("model.layers.1.self_attn.v_proj")
        .unwrap()
        .b
        .data[7] = f32::NEG_INFINITY;
    let dir = tempfile::tempdir().unwrap();
    let err = adapter.write(dir.path(), AdapterDtype::F32).unwrap_err();
    assert!(
        matches!(&err, PeftError::NotFinite { key, index: 7, .. } if key == "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn dora_weights_are_refused_even_without_the_config() {
    let err = AdapterWeights::read(fixture_dir("llama-dora/adapter_model.safetensors")).unwrap_err();
    assert!(matches!(err, PeftError::UnexpectedTensor { .. }), "{err}");
    assert!(err.to_string().contains("lora_magnitude_vector"), "{err}");
}

#[test]
fn shape_and_pairing_errors_name_the_first_bad_tensor() {
    // B whose rank differs from A's.
    let mut t = peft_tensors();
    let (k, s, _) = &t[1];
    assert!(k.ends_with("lora_B.weight"));
    let bad_b = k.clone();
    let n = s[0] * 3;
    t[1] = (k.clone(), vec![s[0], 3], vec![0.5; n]);
    let err = AdapterWeights::from_safetensors_bytes(&save(t), Path::new("x")).unwrap_err();
    assert!(
        matches!(&err, PeftError::BadShape { key, .. } if *key == bad_b),
        "{err}"
    );

    // A 1-D tensor.
    let mut t = peft_tensors();
    let k = t[4].0.clone();
    let len = t[4].2.len();
    t[4].1 = vec![len];
    let err = AdapterWeights::from_safetensors_bytes(&save(t), Path::new("x")).unwrap_err();
    assert!(
        matches!(&err, PeftError::BadShape { key, .. } if *key == k),
        "{err}"
    );

    // A without B.
    let mut t = peft_tensors();
    let removed = t.remove(1).0;
    let err = AdapterWeights::from_safetensors_bytes(&save(t), Path::new("x")).unwrap_err();
    let module = removed
        .strip_prefix("base_model.model.")
        .unwrap()
        .strip_suffix(".lora_B.weight")
        .unwrap();
    assert!(
        matches!(&err, PeftError::MissingTensor { module: m, missing: "lora_B" } if m == module),
        "{err}"
    );

    // The same tensor with and without `.default.`.
    let mut t = peft_tensors();
    let dup = t[0].clone();
    t.push((dup.0.replace(".lora_A.", ".lora_A.default."), dup.1, dup.2));
    let err = AdapterWeights::from_safetensors_bytes(&save(t), Path::new("x")).unwrap_err();
    assert!(matches!(err, PeftError::DuplicateTensor { .. }), "{err}");

    // Something that is not a LoRA weight (a DoRA magnitude vector).
    let mut t = peft_tensors();
    t.push((
        "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector".into(),
        vec![32],
        vec![1.0; 32],
    ));
    let err = AdapterWeights::from_safetensors_bytes(&save(t), Path::new("x")).unwrap_err();
    assert!(
        matches!(err, PeftError::UnexpectedTensor { .. })
            && err.to_string().contains("lora_magnitude_vector")
    );
}

#[test]
fn rank_and_targets_are_checked_against_the_config() {
    let adapter = Adapter::read(fixture_dir("llama-lora")).unwrap();
    let first_a = "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight";

    let mut cfg = adapter.config.clone();
    cfg.r = 8;
    let err = adapter.weights.validate(&cfg).unwrap_err();
    assert!(
        matches!(&err, PeftError::BadShape { key, .. } if key == first_a),
        "{err}"
    );
    assert!(err.to_string().contains("r = 8"));

    let mut cfg = adapter.config.clone();
    cfg.target_modules =
        TargetModules::names(&["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj"]);
    let err = adapter.weights.validate(&cfg).unwrap_err();
    assert!(
        matches!(&err, PeftError::NotTargeted { key, .. } if key == first_a),
        "{err}"
    );

    let mut cfg: AdapterConfig = adapter.config.clone();
    cfg.target_modules = TargetModules::Regex(r"model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj".into());
    adapter.weights.validate(&cfg).unwrap();

    // Against the model: a missing layer and a wrong size, each naming the tensor.
    let mut linears = model_linears();
    linears.retain(|(n, _)| n != "model.layers.1.mlp.up_proj");
    let err = adapter.weights.check_against_model(&linears).unwrap_err();
    assert!(
        err.to_string()
            .contains("model.layers.1.mlp.up_proj.lora_A.weight"),
        "{err}"
    );
    let mut linears = model_linears();
    linears[1].1 = [24, 32]; // layer 0 k_proj out 16 → 24
    let err = adapter.weights.check_against_model(&linears).unwrap_err();
    assert!(
        matches!(&err, PeftError::ModelMismatch { key, .. } if key.ends_with("layers.0.self_attn.k_proj.lora_B.weight")),
        "{err}"
    );
}

#[test]
fn missing_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = Adapter::read(dir.path()).unwrap_err();
    assert!(matches!(err, PeftError::MissingConfig { .. }));
    std::fs::copy(
        fixture_dir("llama-lora/adapter_config.json"),
        dir.path().join("adapter_config.json"),
    )
    .unwrap();
    std::fs::write(dir.path().join("adapter_model.bin"), b"pickle").unwrap();
    let err = Adapter::read(dir.path()).unwrap_err();
    assert!(matches!(err, PeftError::MissingWeights { .. }));
    assert!(err.to_string().contains("adapter_model.bin"), "{err}");
}

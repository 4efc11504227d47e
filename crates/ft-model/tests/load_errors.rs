//! Bad checkpoints are clear errors, never panics.

use std::path::{Path, PathBuf};

use burn_flex::Flex;
use ft_model::load_hf;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

fn copy_model(name: &str, dir: &Path) {
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
}

fn load_err(dir: &Path) -> String {
    load_hf::<Flex>(dir, &Default::default())
        .expect_err("load must fail")
        .to_string()
}

#[test]
fn unknown_model_type_names_the_supported_ones() {
    let dir = tempfile::tempdir().unwrap();
    copy_model("llama", dir.path());
    let config = std::fs::read_to_string(dir.path().join("config.json"))
        .unwrap()
        .replace("\"llama\"", "\"gpt_neox\"");
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("gpt_neox") && err.contains("qwen2") && err.contains("internlm2"),
        "{err}"
    );
}

#[test]
fn shape_mismatch_names_tensor_expected_and_found() {
    let dir = tempfile::tempdir().unwrap();
    copy_model("llama", dir.path());
    let config = std::fs::read_to_string(dir.path().join("config.json"))
        .unwrap()
        .replace("\"intermediate_size\": 64", "\"intermediate_size\": 48");
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("mlp.") && err.contains("[48, 32]") && err.contains("[64, 32]"),
        "{err}"
    );
}

#[test]
fn missing_and_unexpected_tensors_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    copy_model("internlm2", dir.path());
    let config = std::fs::read_to_string(dir.path().join("config.json"))
        .unwrap()
        .replace("\"internlm2\"", "\"llama\"");
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("missing") && err.contains("model.embed_tokens.weight"),
        "{err}"
    );
    assert!(err.contains("unexpected") && err.contains("wqkv"), "{err}");
}

#[test]
fn truncated_safetensors_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    copy_model("llama", dir.path());
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("model.safetensors") && err.contains("truncated"),
        "{err}"
    );
    std::fs::write(&path, b"garbage").unwrap();
    let err = load_err(dir.path());
    assert!(err.contains("not a valid safetensors file"), "{err}");
}

#[test]
fn missing_weights_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("llama").join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let err = load_err(dir.path());
    assert!(err.contains("no model.safetensors"), "{err}");
}

#[test]
fn tiny_base_with_transformers5_config_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny-base");
    let (_, config) = load_hf::<Flex>(&dir, &Default::default()).unwrap();
    assert_eq!(config.rope_theta, 10000.0);
    assert!(config.tie_word_embeddings);
}

#[test]
fn gguf_llama_loads_through_the_same_loader() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/gguf/tiny_llama.gguf");
    let (model, config, _) = ft_model::gguf::load_gguf::<Flex>(&path, &Default::default()).unwrap();
    assert_eq!(
        (
            config.hidden_size,
            config.num_layers,
            config.num_heads,
            config.num_kv_heads
        ),
        (64, 2, 4, 2)
    );
    let logits = model.forward(&ft_model::ModelInput::from_ids(&[1, 2, 3]), &config);
    assert_eq!(logits.dims(), [1, 3, config.vocab_size]);
    let values = logits.into_data().into_vec::<f32>().unwrap();
    assert!(values.iter().all(|v| v.is_finite()));
}

#[test]
fn zero_or_degenerate_sizes_are_errors_naming_the_key() {
    for (from, to, key) in [
        (
            "\"num_attention_heads\": 4",
            "\"num_attention_heads\": 0",
            "num_attention_heads",
        ),
        ("\"hidden_size\": 32", "\"hidden_size\": 0", "hidden_size"),
        ("\"vocab_size\": ", "\"vocab_size\": 0, \"x\": ", "vocab_size"),
        (
            "\"rms_norm_eps\": ",
            "\"rms_norm_eps\": -1.0, \"y\": ",
            "rms_norm_eps",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        copy_model("llama", dir.path());
        let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        assert!(text.contains(from), "fixture config has {from}");
        std::fs::write(dir.path().join("config.json"), text.replacen(from, to, 1)).unwrap();
        let err = load_err(dir.path());
        assert!(err.contains(key) && err.contains("config.json"), "{key}: {err}");
    }
}

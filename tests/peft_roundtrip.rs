//! What ft writes, PEFT and transformers read (`fixtures/gen_roundtrip.py`): an adapter made by
//! `ft train` gives, in PEFT, the logits `ft` computes with it, and `ft merge`'s folder gives, in
//! transformers, the logits `ft` computes from it.

use std::path::{Path, PathBuf};

use burn_flex::Flex;
use ft_export::Dtype;
use ft_export::merge::{MergeOptions, merge};
use ft_lora::peft::Adapter;
use ft_model::weights::{SafetensorsSource, TensorSource};
use ft_model::{CausalLm, ModelConfig, ModelInput};
use sha2::{Digest, Sha256};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// The batch of gen_roundtrip.py (inputs, not results).
fn batch() -> ModelInput {
    ModelInput {
        batch: 2,
        seq: 8,
        input_ids: vec![1, 17, 99, 3, 64, 12, 7, 300, 1, 31, 2, 44, 500, 0, 0, 0],
        attention_mask: Some(vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]),
        position_ids: None,
        segment_ids: None,
    }
}

fn golden(key: &str) -> Vec<f32> {
    let dir = fixtures().join("roundtrip");
    let source = SafetensorsSource::open_files(&dir, &[dir.join("golden.safetensors")]).unwrap();
    source.read(key).unwrap().data
}

/// Max |ft − golden| over the real (unpadded) positions.
fn max_error(model: &CausalLm<Flex>, config: &ModelConfig, key: &str) -> f32 {
    let input = batch();
    let logits = model
        .forward(&input, config)
        .into_data()
        .into_vec::<f32>()
        .unwrap();
    let want = golden(key);
    assert_eq!(logits.len(), want.len());
    let vocab = config.vocab_size;
    let mask = input.attention_mask.unwrap();
    let mut worst = 0f32;
    for (pos, &m) in mask.iter().enumerate() {
        if m == 1 {
            for v in pos * vocab..(pos + 1) * vocab {
                worst = worst.max((logits[v] - want[v]).abs());
            }
        }
    }
    worst
}

#[test]
fn peft_reads_ft_adapters_and_transformers_reads_ft_merges() {
    let base = fixtures().join("tiny-base");
    let adapter_dir = fixtures().join("roundtrip/adapter");
    let device = Default::default();

    let (mut model, config) = ft_model::load_hf::<Flex>(&base, &device).unwrap();
    let adapter = Adapter::read(&adapter_dir).unwrap();
    assert_eq!(adapter.config.chat_template.as_deref(), Some("qwen_chat"));
    ft_model::adapters::attach_peft_adapter(&mut model, &config, &adapter).unwrap();
    let with_adapter = max_error(&model, &config, "peft_logits");
    eprintln!("ft + adapter vs PEFT: max |Δlogit| {with_adapter:e}");
    assert!(with_adapter < 1e-4, "{with_adapter}");

    let dir = tempfile::tempdir().unwrap();
    let merged = dir.path().join("merged");
    let options = MergeOptions {
        dtype: Some(Dtype::F32),
        ..Default::default()
    };
    merge(&base, Some(&adapter_dir), &merged, &options).unwrap();
    let bytes = std::fs::read(merged.join("model.safetensors")).unwrap();
    let sha: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("roundtrip/golden.json")).unwrap())
            .unwrap();
    assert_eq!(
        recorded["merged_model_sha256"], sha,
        "this merge is byte for byte the folder transformers read"
    );
    assert_eq!(
        recorded["peft_loaded_modules"], 28,
        "PEFT attached every adapted module"
    );
    let (merged_model, merged_config) = ft_model::load_hf::<Flex>(&merged, &device).unwrap();
    let from_merged = max_error(&merged_model, &merged_config, "merged_logits");
    eprintln!("ft merged vs transformers: max |Δlogit| {from_merged:e}");
    assert!(from_merged < 1e-4, "{from_merged}");
}

#[test]
fn the_adapter_files_ft_writes_today_are_the_ones_peft_was_checked_on() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixtures().join("roundtrip/adapter");
    let adapter = Adapter::read(&source).unwrap();
    adapter
        .write(dir.path(), ft_lora::peft::AdapterDtype::F32)
        .unwrap();
    for file in ["adapter_config.json", "adapter_model.safetensors"] {
        assert_eq!(
            std::fs::read(dir.path().join(file)).unwrap(),
            std::fs::read(source.join(file)).unwrap(),
            "{file} is written exactly as before"
        );
    }
}

//! Export edge cases on a hand-made folder: Q8_0's F16 fallback, failed writes leave nothing.

use std::path::Path;

use ft_gguf::{GgmlType, GgufError, GgufFile, HfTensors, OutType, export_gguf};

/// hidden 48 (rows of 48: not a Q8_0 multiple), intermediate 64, one layer, tied embeddings.
struct Tiny {
    fail_on: Option<&'static str>,
}

const NAMES: &[(&str, &[usize])] = &[
    ("model.embed_tokens.weight", &[16, 48]),
    ("model.norm.weight", &[48]),
    ("model.layers.0.input_layernorm.weight", &[48]),
    ("model.layers.0.post_attention_layernorm.weight", &[48]),
    ("model.layers.0.self_attn.q_proj.weight", &[48, 48]),
    ("model.layers.0.self_attn.k_proj.weight", &[48, 48]),
    ("model.layers.0.self_attn.v_proj.weight", &[48, 48]),
    ("model.layers.0.self_attn.o_proj.weight", &[48, 48]),
    ("model.layers.0.mlp.gate_proj.weight", &[64, 48]),
    ("model.layers.0.mlp.up_proj.weight", &[64, 48]),
    ("model.layers.0.mlp.down_proj.weight", &[48, 64]),
];

impl HfTensors for Tiny {
    fn names(&self) -> Vec<String> {
        NAMES.iter().map(|(n, _)| n.to_string()).collect()
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        NAMES.iter().find(|(n, _)| *n == name).map(|(_, s)| s.to_vec())
    }
    fn read_f32(&self, name: &str) -> Result<Vec<f32>, String> {
        if self.fail_on == Some(name) {
            return Err("disk on fire".into());
        }
        let n: usize = self.shape(name).ok_or("missing")?.iter().product();
        Ok((0..n).map(|i| ((i * 7919) % 201) as f32 / 100.0 - 1.0).collect())
    }
}

fn folder(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    dir
}

const CONFIG: &str = r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 48, "intermediate_size": 64,
  "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": 16,
  "tie_word_embeddings": true, "rope_scaling": {"rope_type": "linear", "factor": 2.0}}"#;

#[test]
fn q8_0_keeps_rows_that_are_not_a_multiple_of_32_in_f16() {
    let dir = folder(CONFIG);
    let out = dir.path().join("out.gguf");
    let summary = export_gguf(dir.path(), &Tiny { fail_on: None }, &out, OutType::Q8_0, false).unwrap();
    assert!(!summary.has_tokenizer);
    let file = GgufFile::open(&out).unwrap();
    let ty = |n: &str| file.tensor_info(n).unwrap().ggml_type;
    assert_eq!(ty("blk.0.attn_q.weight"), GgmlType::F16, "rows of 48");
    assert_eq!(ty("blk.0.ffn_down.weight"), GgmlType::Q8_0, "rows of 64");
    assert_eq!(ty("blk.0.attn_norm.weight"), GgmlType::F32);
    assert!(!file.has_tensor("output.weight"), "tied head is not written");
    assert_eq!(
        file.metadata().require_str("llama.rope.scaling.type").unwrap(),
        "linear"
    );
    assert_eq!(file.metadata().get_u64("general.file_type").unwrap(), Some(7));
}

#[test]
fn a_failed_export_leaves_no_output_and_no_partial_file() {
    let dir = folder(CONFIG);
    let out = dir.path().join("out.gguf");
    let source = Tiny {
        fail_on: Some("model.layers.0.mlp.up_proj.weight"),
    };
    let err = export_gguf(dir.path(), &source, &out, OutType::F16, false).unwrap_err();
    assert!(
        err.to_string().contains("mlp.up_proj.weight`: disk on fire"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("config.json")]);
}

#[test]
fn bad_inputs_name_the_file_and_key() {
    let dir = folder(&CONFIG.replace("LlamaForCausalLM", "InternLM2ForCausalLM"));
    let out = dir.path().join("out.gguf");
    let err = export_gguf(dir.path(), &Tiny { fail_on: None }, &out, OutType::F16, false).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("config.json") && msg.contains("InternLM2ForCausalLM"),
        "{msg}"
    );
    assert!(
        msg.contains("LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"),
        "{msg}"
    );

    let dir = folder(&CONFIG.replace("\"hidden_size\": 48,", ""));
    let err = export_gguf(dir.path(), &Tiny { fail_on: None }, &out, OutType::F16, false).unwrap_err();
    assert!(err.to_string().contains("`hidden_size`"), "{err}");

    let err = export_gguf(
        Path::new("/nonexistent"),
        &Tiny { fail_on: None },
        &out,
        OutType::F16,
        false,
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/config.json"), "{err}");

    let dir = folder(CONFIG);
    let out = dir.path().join("out.gguf");
    std::fs::write(&out, b"keep me").unwrap();
    let err = export_gguf(dir.path(), &Tiny { fail_on: None }, &out, OutType::F16, false).unwrap_err();
    assert!(matches!(err, GgufError::OutputExists { .. }), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    export_gguf(dir.path(), &Tiny { fail_on: None }, &out, OutType::F16, true).unwrap();
    assert!(GgufFile::open(&out).is_ok());
}

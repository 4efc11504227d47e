//! The tiny Llama GGUF written by `fixtures/gen_gguf.py` against what `gguf.quants`, transformers'
//! GGUF import and the Python `tokenizers` pipeline produce.

use std::collections::BTreeSet;
use std::path::PathBuf;

use ft_gguf::{GgmlType, GgufFile};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/gguf")
        .join(name)
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixture("tiny_llama.json")).expect("fixture json");
    serde_json::from_str(&text).expect("valid json")
}

fn open() -> GgufFile {
    GgufFile::open(fixture("tiny_llama.gguf")).expect("tiny GGUF opens")
}

#[test]
fn header_layout_and_tensor_infos_match_gguf_py() {
    let gguf = open();
    let want = expected();
    assert_eq!(gguf.version(), 3);
    assert_eq!(
        gguf.tensors().len() as u64,
        want["tensor_count"].as_u64().expect("n")
    );
    assert_eq!(
        gguf.metadata().len() as u64,
        want["kv_count"].as_u64().expect("n")
    );
    assert_eq!(gguf.alignment(), 64);
    assert_eq!(gguf.data_offset(), want["data_offset"].as_u64().expect("n"));
    for info in gguf.tensors() {
        assert_eq!(
            info.ggml_type.name(),
            want["tensor_types"][&info.name],
            "{}",
            info.name
        );
        let dims: Vec<u64> = serde_json::from_value(want["gguf_dims"][&info.name].clone()).expect("dims");
        assert_eq!(info.dims, dims, "{}", info.name);
        assert_eq!(info.offset % 64, 0);
    }
    let types: BTreeSet<&str> = gguf.tensors().iter().map(|t| t.ggml_type.name()).collect();
    assert_eq!(
        types.len(),
        8,
        "all eight supported types are exercised: {types:?}"
    );
}

#[test]
fn hf_tensors_equal_dequantised_unpermuted_reference_bit_for_bit() {
    let gguf = open();
    let bytes = std::fs::read(fixture("tiny_llama_hf.safetensors")).expect("reference");
    let reference = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let names: BTreeSet<String> = gguf.hf_tensor_names().expect("names").into_iter().collect();
    let want_names: BTreeSet<String> = reference.names().into_iter().map(|n| n.to_string()).collect();
    assert_eq!(names, want_names);
    assert!(names.contains("lm_head.weight"));
    assert!(!gguf.tie_word_embeddings());
    for name in &names {
        let (values, shape) = gguf.tensor_f32(name).expect("dequantises");
        let view = reference.tensor(name).expect("in reference");
        assert_eq!(shape, view.shape(), "{name}");
        let want: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let mismatches = values
            .iter()
            .zip(&want)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(mismatches, 0, "{name}: {mismatches} values differ");
    }
}

#[test]
fn q_and_k_are_stored_permuted_and_v_is_not() {
    let gguf = open();
    for (hf, gguf_name, permuted) in [
        (
            "model.layers.0.self_attn.q_proj.weight",
            "blk.0.attn_q.weight",
            true,
        ),
        (
            "model.layers.1.self_attn.k_proj.weight",
            "blk.1.attn_k.weight",
            true,
        ),
        (
            "model.layers.0.self_attn.v_proj.weight",
            "blk.0.attn_v.weight",
            false,
        ),
    ] {
        let (hf_values, _) = gguf.tensor_f32(hf).expect("hf");
        let (raw, _) = gguf.gguf_tensor_f32(gguf_name).expect("raw");
        assert_eq!(hf_values != raw, permuted, "{hf}");
    }
}

#[test]
fn hf_config_matches_the_writer() {
    let gguf = open();
    let config = gguf.hf_config().expect("config");
    let want = expected();
    for (key, value) in want["config"].as_object().expect("object") {
        assert_eq!(&config[key], value, "config.{key}");
    }
}

#[test]
fn tokenizer_matches_python_tokenizers_and_transformers() {
    let gguf = open();
    let want = expected();
    let tok = gguf.tokenizer().expect("tokenizer");
    assert_eq!(tok.model, "gpt2");
    assert_eq!(tok.pre.as_deref(), Some("smollm"));
    assert_eq!(
        tok.tokenizer.get_vocab_size(true) as u64,
        want["vocab_size"].as_u64().expect("n")
    );
    assert_eq!(tok.chat_template.as_deref(), want["chat_template"].as_str());
    let special = &tok.special;
    assert_eq!(
        special.bos.as_ref().map(|t| (t.content.as_str(), t.id)),
        Some(("<|im_start|>", 1))
    );
    assert_eq!(
        special.eos.as_ref().map(|t| (t.content.as_str(), t.id)),
        Some(("<|im_end|>", 2))
    );
    assert_eq!(
        special.unk.as_ref().map(|t| (t.content.as_str(), t.id)),
        Some(("<|endoftext|>", 0))
    );
    assert_eq!(special.pad.as_ref().map(|t| t.id), Some(2));
    assert!(!special.add_bos_token && !special.add_eos_token);

    let cases = want["cases"].as_array().expect("cases");
    assert!(cases.iter().any(|c| c["text"] == want["chat_prompt"]));
    for case in cases {
        let text = case["text"].as_str().expect("text");
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).expect("ids");
        let got = tok.tokenizer.encode(text, true).expect("encodes");
        assert_eq!(got.get_ids(), ids, "{text:?}");
        assert_eq!(tok.tokenizer.decode(&ids, false).expect("decodes"), text);
    }
    let im_start = tok.tokenizer.encode("<|im_start|>", false).expect("encodes");
    assert_eq!(im_start.get_ids(), [1], "a control token is one id");
}

#[test]
fn sentencepiece_vocabulary_matches_transformers() {
    let gguf = GgufFile::open(fixture("tiny_spm.gguf")).expect("opens");
    let text = std::fs::read_to_string(fixture("tiny_spm.json")).expect("json");
    let want: Value = serde_json::from_str(&text).expect("valid");
    let tok = gguf.tokenizer().expect("tokenizer");
    assert_eq!(tok.model, "llama");
    assert!(tok.special.add_bos_token);
    assert_eq!(
        tok.tokenizer.get_vocab_size(true) as u64,
        want["vocab_size"].as_u64().expect("n")
    );
    for case in want["cases"].as_array().expect("cases") {
        let text = case["text"].as_str().expect("text");
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).expect("ids");
        let got = tok.tokenizer.encode(text, true).expect("encodes");
        assert_eq!(got.get_ids(), ids, "{text:?}");
    }
}

#[test]
fn unsupported_or_unknown_tensors_are_errors() {
    let gguf = open();
    assert!(gguf.tensor_f32("model.layers.9.mlp.up_proj.weight").is_err());
    assert!(gguf.tensor_f32("not.a.tensor").is_err());
    assert!(gguf.gguf_tensor_f32("blk.0.attn_q.weight").is_ok());
    assert!(GgmlType::from_id(5).is_none());
}

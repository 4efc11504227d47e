//! HF folder → GGUF export: byte-identical to the goldens that fixtures/gen_gguf_export.py checked
//! against gguf-py, weights that read back exactly, tokenizers that encode alike, and bad inputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ft_gguf::{GgufFile, GgufWriter, HfTensors, OutType, export_gguf, export_tokenizer};
use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// Tensors held in memory, widened to f32 (a test-only stand-in for ft-model's reader).
struct MemTensors(BTreeMap<String, (Vec<usize>, Vec<f32>)>);

impl MemTensors {
    fn load(dir: &Path) -> Self {
        let mut map = BTreeMap::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !(name.starts_with("model") && name.ends_with(".safetensors")) {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            for (key, view) in SafeTensors::deserialize(&bytes).unwrap().tensors() {
                let data: Vec<f32> = match view.dtype() {
                    Dtype::F32 => view
                        .data()
                        .chunks(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                    Dtype::BF16 => view
                        .data()
                        .chunks(2)
                        .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                        .collect(),
                    Dtype::F16 => view
                        .data()
                        .chunks(2)
                        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                        .collect(),
                    other => panic!("{other:?}"),
                };
                map.insert(key, (view.shape().to_vec(), data));
            }
        }
        Self(map)
    }
}

impl HfTensors for MemTensors {
    fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.0.get(name).map(|t| t.0.clone())
    }
    fn read_f32(&self, name: &str) -> Result<Vec<f32>, String> {
        self.0
            .get(name)
            .map(|t| t.1.clone())
            .ok_or_else(|| format!("no tensor `{name}`"))
    }
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn out_type(name: &str) -> OutType {
    match name {
        "f32" => OutType::F32,
        "f16" => OutType::F16,
        _ => OutType::Q8_0,
    }
}

#[test]
fn every_case_matches_the_gguf_py_checked_golden_byte_for_byte() {
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("gguf_export/golden.json")).unwrap())
            .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for (case, want) in golden.as_object().unwrap() {
        let dir = fixtures().join(want["folder"].as_str().unwrap());
        let out = tmp.path().join(format!("{case}.gguf"));
        let ty = out_type(want["type"].as_str().unwrap());
        export_gguf(&dir, &MemTensors::load(&dir), &out, ty, false).unwrap();
        let file = GgufFile::open(&out).unwrap();
        let tensors = want["tensors"].as_object().unwrap();
        assert_eq!(file.tensors().len(), tensors.len(), "{case}");
        for t in file.tensors() {
            let w = &tensors[&t.name];
            assert_eq!(
                t.ggml_type.name(),
                w["type"].as_str().unwrap(),
                "{case} {}",
                t.name
            );
            assert_eq!(serde_json::json!(t.dims), w["dims"], "{case} {}", t.name);
            let bytes = file.tensor_bytes(&t.name).unwrap();
            assert_eq!(sha256(bytes), w["sha256"].as_str().unwrap(), "{case} {}", t.name);
        }
        for (key, w) in want["metadata"].as_object().unwrap() {
            let value = file
                .metadata()
                .get(key)
                .unwrap_or_else(|| panic!("{case}: no `{key}`"));
            if let Some(v) = w.get("value") {
                let got = match value.as_str() {
                    Some(s) => serde_json::json!(s),
                    None => value
                        .as_integer()
                        .map(|i| serde_json::json!(i as i64))
                        .or_else(|| {
                            value
                                .as_bool()
                                .map(|b| serde_json::json!(b))
                                .or_else(|| value.as_f64().map(|f| serde_json::json!(f)))
                        })
                        .unwrap(),
                };
                if w["type"] == "FLOAT32" {
                    assert_eq!(
                        got.as_f64().unwrap() as f32,
                        v.as_f64().unwrap() as f32,
                        "{case} {key}"
                    );
                } else {
                    assert_eq!(&got, v, "{case} {key}");
                }
            } else {
                let items = value.as_array().unwrap();
                assert_eq!(items.len() as u64, w["len"].as_u64().unwrap(), "{case} {key}");
            }
        }
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(
            sha256(&bytes),
            want["file_sha256"].as_str().unwrap(),
            "{case}: whole file"
        );
    }
}

#[test]
fn f32_export_reads_back_exactly_through_the_reader() {
    let dir = fixtures().join("models/llama");
    let source = MemTensors::load(&dir);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("llama.gguf");
    export_gguf(&dir, &source, &out, OutType::F32, false).unwrap();
    let file = GgufFile::open(&out).unwrap();
    for (name, (shape, values)) in &source.0 {
        let (got, got_shape) = file.tensor_f32(name).unwrap();
        assert_eq!(&got_shape, shape, "{name}");
        assert_eq!(&got, values, "{name} (q/k permutation must invert)");
    }
}

fn encodings(tok: &tokenizers::Tokenizer, texts: &[&str]) -> Vec<Vec<u32>> {
    texts
        .iter()
        .map(|t| tok.encode(*t, true).unwrap().get_ids().to_vec())
        .collect()
}

const TEXTS: &[&str] = &[
    "Hello world!",
    "What is 12 plus 7?",
    "<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n",
    "  leading spaces and\ttabs\n\nnew lines",
];

#[test]
fn byte_level_tokenizer_reads_back_and_encodes_like_tokenizer_json() {
    let dir = fixtures().join("tiny-base");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("tiny.gguf");
    export_gguf(&dir, &MemTensors::load(&dir), &out, OutType::Q8_0, false).unwrap();
    let gguf = GgufFile::open(&out).unwrap().tokenizer().unwrap();
    assert_eq!(
        (gguf.model.as_str(), gguf.pre.as_deref()),
        ("gpt2", Some("qwen2"))
    );
    assert_eq!(gguf.special.eos.as_ref().map(|t| t.id), Some(2));
    assert!(gguf.chat_template.unwrap().contains("<|im_start|>"));
    let hf = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    assert_eq!(encodings(&gguf.tokenizer, TEXTS), encodings(&hf, TEXTS));
}

#[test]
fn sentencepiece_style_tokenizer_exports_as_llama_and_encodes_alike() {
    let dir = fixtures().join("gguf_export/sp-tokenizer");
    let hf = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let mut w = GgufWriter::new();
    assert!(export_tokenizer(&dir, hf.get_vocab_size(true), &mut w).unwrap());
    let mut bytes = Vec::new();
    w.write_to(&mut bytes, Path::new("mem.gguf"), |_| unreachable!("no tensors"))
        .unwrap();
    let gguf = GgufFile::from_bytes("mem.gguf", bytes)
        .unwrap()
        .tokenizer()
        .unwrap();
    assert_eq!(gguf.model, "llama");
    assert!(gguf.special.add_bos_token);
    let texts = ["Hello world", "The quick brown fox, 42 times.", "héllo ünïcode ✓"];
    assert_eq!(encodings(&gguf.tokenizer, &texts), encodings(&hf, &texts));
}

//! The Rust SentencePiece conversion against ids from transformers and sentencepiece
//! (`fixtures/gen_sentencepiece.py` → `fixtures/tokenizers/tiny-sp/golden_ids.json`).

use std::path::PathBuf;

use ft_data::tokenizer::FtTokenizer;
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tokenizers/tiny-sp")
}

fn golden() -> Value {
    let text =
        std::fs::read_to_string(fixture_dir().join("golden_ids.json")).expect("golden_ids.json is committed");
    serde_json::from_str(&text).expect("golden_ids.json is JSON")
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .expect("an id list")
        .iter()
        .map(|v| v.as_u64().expect("an id") as u32)
        .collect()
}

fn cases(golden: &Value) -> &Vec<Value> {
    golden["cases"].as_array().expect("cases")
}

/// A folder with only the SentencePiece model, as InternLM2 ships before a fast tokenizer is saved.
fn model_only_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        fixture_dir().join("tokenizer.model"),
        dir.path().join("tokenizer.model"),
    )
    .expect("copy model");
    dir
}

#[test]
fn internlm2_like_folder_encodes_every_text_like_transformers() {
    let golden = golden();
    let tokenizer = FtTokenizer::from_dir(fixture_dir()).expect("tiny-sp loads");
    assert_eq!(
        tokenizer.vocab_size(),
        golden["vocab_size"].as_u64().unwrap() as usize
    );
    let mut mismatches = Vec::new();
    for case in cases(&golden) {
        let text = case["text"].as_str().unwrap();
        let got = tokenizer.encode(text).expect("encodes");
        if got != ids(&case["expected"]) {
            mismatches.push(format!(
                "{text:?}: got {got:?}, expected {:?}",
                ids(&case["expected"])
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn internlm2_like_folder_decodes_like_transformers() {
    let golden = golden();
    let tokenizer = FtTokenizer::from_dir(fixture_dir()).expect("tiny-sp loads");
    let mut round_trips = 0;
    for case in cases(&golden) {
        let text = case["text"].as_str().unwrap();
        let expected = ids(&case["expected"]);
        let decoded = tokenizer.decode(&expected, false).expect("decodes");
        assert_eq!(decoded, case["decoded"].as_str().unwrap(), "decode of {text:?}");
        let skipped = tokenizer.decode(&expected, true).expect("decodes");
        assert_eq!(
            skipped,
            case["decoded_skip_special"].as_str().unwrap(),
            "decode(skip) of {text:?}"
        );
        if decoded == text {
            round_trips += 1;
        }
    }
    // Everything without an added token in the middle of the text comes back unchanged.
    assert!(round_trips >= 25, "only {round_trips} texts round-trip");
}

#[test]
fn model_only_folder_matches_sentencepiece_on_plain_text() {
    let golden = golden();
    let dir = model_only_dir();
    let tokenizer = FtTokenizer::from_dir(dir.path()).expect("tokenizer.model alone loads");
    let mut mismatches = Vec::new();
    let mut equal_to_sentencepiece = 0;
    for case in cases(&golden) {
        let text = case["text"].as_str().unwrap();
        let got = tokenizer.encode(text).expect("encodes");
        let expected = ids(&case["expected_model_only"]);
        if got != expected {
            mismatches.push(format!("{text:?}: got {got:?}, expected {expected:?}"));
        }
        if got == ids(&case["sentencepiece"]) {
            equal_to_sentencepiece += 1;
        }
        let decoded = tokenizer.decode(&expected, false).expect("decodes");
        assert_eq!(
            decoded,
            case["decoded_model_only"].as_str().unwrap(),
            "decode of {text:?}"
        );
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    // Only the texts that spell control tokens (`<s>`, `</s>`, `<unk>`) differ from sentencepiece.
    assert_eq!(equal_to_sentencepiece, cases(&golden).len() - 2);
}

#[test]
fn model_only_folder_takes_specials_from_the_trainer_spec() {
    let golden = golden();
    let want = &golden["model_only_specials"];
    let dir = model_only_dir();
    let tokenizer = FtTokenizer::from_dir(dir.path()).expect("loads");
    let special = tokenizer.special();
    assert_eq!(
        special.bos.as_ref().map(|t| t.content.as_str()),
        want["bos"].as_str()
    );
    assert_eq!(
        special.eos.as_ref().map(|t| t.content.as_str()),
        want["eos"].as_str()
    );
    assert_eq!(tokenizer.unk().map(|t| t.content.as_str()), want["unk"].as_str());
    assert_eq!(special.pad, None);
    assert!(want["pad"].is_null());
    assert_eq!(special.add_bos_token, want["adds_bos"].as_bool().unwrap());
    assert_eq!(
        (tokenizer.bos_id(), tokenizer.eos_id(), tokenizer.unk_id()),
        (Some(1), Some(2), Some(0))
    );
    assert_eq!(tokenizer.eos_ids(), &[2]);
}

#[test]
fn internlm2_like_config_sets_specials_bos_and_chat_markers() {
    let tokenizer = FtTokenizer::from_dir(fixture_dir()).expect("loads");
    assert_eq!(
        (tokenizer.bos_id(), tokenizer.eos_id(), tokenizer.pad_id()),
        (Some(1), Some(2), Some(2))
    );
    assert!(tokenizer.special().add_bos_token);
    assert!(!tokenizer.add_eos_token());
    for marker in [
        "<|im_start|>",
        "<|im_end|>",
        "<|action_start|>",
        "<|action_end|>",
        "<|plugin|>",
    ] {
        let id = tokenizer.token_to_id(marker).expect("marker is a piece");
        assert_eq!(tokenizer.encode(marker).unwrap(), vec![id], "{marker} is one id");
    }
    // add_bos_token puts BOS in front when the pipeline adds special tokens.
    let with = tokenizer.inner().encode("Hello", true).unwrap();
    assert_eq!(with.get_ids()[0], 1);
    assert_eq!(
        &with.get_ids()[1..],
        tokenizer.encode("Hello").unwrap().as_slice()
    );
    assert!(tokenizer.chat_template().unwrap().contains("<|im_start|>"));
}

#[test]
fn the_golden_file_records_where_sentencepiece_and_transformers_disagree() {
    // Guards the fixture itself: the InternLM2-like config makes the chat markers added tokens, so the
    // text after them gets its own dummy prefix (transformers), which sentencepiece alone does not do.
    let golden = golden();
    let case = cases(&golden)
        .iter()
        .find(|c| c["text"] == "text<|im_end|>text")
        .expect("case");
    assert_ne!(ids(&case["expected"]), ids(&case["sentencepiece"]));
    assert_eq!(ids(&case["expected_model_only"]), ids(&case["sentencepiece"]));
}

#[test]
fn unigram_model_encodes_and_decodes_like_transformers() {
    let dir = fixture_dir().join("../tiny-sp-unigram");
    let text = std::fs::read_to_string(dir.join("golden_ids.json")).expect("unigram golden is committed");
    let golden: Value = serde_json::from_str(&text).expect("JSON");
    let tokenizer = FtTokenizer::from_dir(&dir).expect("unigram tokenizer.model loads");
    assert_eq!(
        tokenizer.vocab_size(),
        golden["vocab_size"].as_u64().unwrap() as usize
    );
    let mut mismatches = Vec::new();
    for case in cases(&golden) {
        let text = case["text"].as_str().unwrap();
        let expected = ids(&case["expected"]);
        let got = tokenizer.encode(text).expect("encodes");
        if got != expected {
            mismatches.push(format!("{text:?}: got {got:?}, expected {expected:?}"));
        }
        let decoded = tokenizer.decode(&expected, false).expect("decodes");
        assert_eq!(decoded, case["decoded"].as_str().unwrap(), "decode of {text:?}");
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

//! `encode_head` (the tokenizer's model run only on the pieces a cut sample keeps) gives the
//! `tokenizers` library's own ids, cut; and tokenizer files' truncation and padding are ignored,
//! as transformers ignores them.

use std::path::PathBuf;

use ft_data::config::DataConfig;
use ft_data::dataset::{prepare, resolve_template};
use ft_data::tokenizer::FtTokenizer;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::fast_path_configs::fast_path_tokenizers;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// Every fixture tokenizer: byte-level BPE with added tokens, a Llama-style SentencePiece BPE
/// (`tokenizer.json`), and SentencePiece BPE and Unigram models converted from `tokenizer.model`.
fn tokenizers() -> Vec<FtTokenizer> {
    [
        "tiny-base",
        "tokenizers/tiny-chatml",
        "tokenizers/tiny-llama",
        "tokenizers/tiny-smol",
        "tokenizers/tiny-sp",
        "tokenizers/tiny-sp-unigram",
    ]
    .iter()
    .map(|dir| FtTokenizer::from_dir(fixtures().join(dir)).expect("fixture tokenizer"))
    .collect()
}

/// The library's ids, the reference `encode_head` must reproduce.
fn library_ids(tokenizer: &FtTokenizer, text: &str) -> Vec<u32> {
    tokenizer
        .inner()
        .encode(text, false)
        .expect("library encodes")
        .get_ids()
        .to_vec()
}

/// Words, numbers, punctuation, runs of spaces and newlines, non-Latin text, and the special
/// tokens' strings, in any order.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z]{1,12}",
        "[0-9]{1,6}",
        "[ ]{1,4}",
        "[\n\t]{1,3}",
        "[.,;:!?'\"()-]{1,3}",
        Just("你好，世界。".to_owned()),
        Just("naïve café ÅΩ ".to_owned()),
        Just("<|im_start|>".to_owned()),
        Just("<|im_end|>".to_owned()),
        Just("<s>".to_owned()),
        Just("</s>".to_owned()),
        Just("<|endoftext|>".to_owned()),
        // Added tokens of the fast-path configurations, and text no normal form keeps.
        Just(" [L]".to_owned()),
        Just("[R]  ".to_owned()),
        Just("<pad>".to_owned()),
        Just("hello".to_owned()),
        Just("cafe\u{301}".to_owned()),
        Just("\u{FB01}\u{2163}".to_owned()),
    ];
    prop::collection::vec(piece, 0..60).prop_map(|pieces| pieces.concat())
}

/// ASCII words, numbers, punctuation and whitespace (the fast path's common case).
fn ascii_text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 .,;:!?'\"()\n\t-]{0,300}"
}

/// `encode_head` and `encode` of every tokenizer agree with the library's ids, full and cut.
fn check_heads(tokenizers: &[FtTokenizer], text: &str, limit: usize) -> Result<(), TestCaseError> {
    for tokenizer in tokenizers {
        let full = library_ids(tokenizer, text);
        let head = tokenizer.encode_head(text, limit).expect("encode_head");
        prop_assert_eq!(
            &head[..],
            &full[..full.len().min(limit)],
            "{}",
            tokenizer.source().display()
        );
        prop_assert_eq!(
            tokenizer.encode(text).expect("encode"),
            full,
            "{}",
            tokenizer.source().display()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn the_head_is_the_librarys_encoding_cut(text in text(), limit in 0usize..80) {
        check_heads(&tokenizers(), &text, limit)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_fast_path_configurations_give_the_librarys_ids(
        text in prop_oneof![text(), ascii_text()],
        limit in 0usize..80,
    ) {
        check_heads(&fast_path_tokenizers(), &text, limit)?;
    }
}

#[test]
fn a_cut_sample_equals_the_whole_encoding_cut() {
    // Long texts through `prepare`: the cut samples' ids, labels and truncation flags equal what
    // the library's full encoding gives once cut to max_length.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("text.jsonl");
    let words = "alpha beta, gamma! 12 delta\n\nepsilon <|im_end|> zeta ";
    let lines: Vec<String> = (1..40)
        .map(|n| serde_json::json!({ "text": words.repeat(n) }).to_string())
        .collect();
    std::fs::write(&file, lines.join("\n")).expect("write corpus");
    let tokenizer = FtTokenizer::from_dir(fixtures().join("tiny-base")).expect("tiny-base");
    let mut config = DataConfig::new(vec![file]);
    config.format = Some("text".into());
    config.max_length = 64;
    config.pack = false;
    let template = resolve_template(&config, &tokenizer).expect("template");
    let prepared = prepare(&config, &tokenizer, &template).expect("prepare");
    assert_eq!(prepared.samples.len(), 39);
    let mut cut = 0;
    for (n, sample) in (1..40).zip(prepared.samples.iter().map(|s| &s.encoded)) {
        let text = words.repeat(n);
        let mut expected: Vec<i32> = tokenizer.bos_id().into_iter().map(|id| id as i32).collect();
        expected.extend(library_ids(&tokenizer, text.trim()).iter().map(|&id| id as i32));
        expected.extend(tokenizer.eos_id().map(|id| id as i32));
        let truncated = expected.len() > 64;
        expected.truncate(64);
        assert_eq!(sample.input_ids, expected, "record {n}");
        assert_eq!(sample.labels[1..], expected[1..], "record {n}");
        assert_eq!(sample.truncated, truncated, "record {n}");
        cut += usize::from(truncated);
    }
    assert!(cut > 30, "most records are cut ({cut})");
}

#[test]
fn truncation_and_padding_in_tokenizer_json_are_ignored() {
    let source = fixtures().join("tokenizers/tiny-chatml");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(source.join("tokenizer.json")).expect("read"))
            .expect("json");
    json["truncation"] = serde_json::json!({
        "direction": "Right", "max_length": 3, "strategy": "LongestFirst", "stride": 0
    });
    json["padding"] = serde_json::json!({
        "strategy": {"Fixed": 40}, "direction": "Right", "pad_to_multiple_of": null,
        "pad_id": 0, "pad_type_id": 0, "pad_token": "<|endoftext|>"
    });
    std::fs::write(dir.path().join("tokenizer.json"), json.to_string()).expect("write");
    std::fs::copy(
        source.join("tokenizer_config.json"),
        dir.path().join("tokenizer_config.json"),
    )
    .expect("copy");
    let plain = FtTokenizer::from_dir(&source).expect("plain");
    let with_limits = FtTokenizer::from_dir(dir.path()).expect("with truncation and padding");
    let text = "Hello there, how are you today?";
    assert!(with_limits.inner().get_truncation().is_none());
    assert!(with_limits.inner().get_padding().is_none());
    let ids = with_limits.encode(text).expect("encode");
    assert!(ids.len() > 3 && ids.len() < 40, "{} ids", ids.len());
    assert_eq!(ids, plain.encode(text).expect("encode"));
}

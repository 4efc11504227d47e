//! Tokenizers built to hit each pre-tokenizer configuration the fast path supports (byte-level
//! BPE of the tiny SmolLM-style fixture under other pre-tokenizers, normalisers and added
//! tokens), and configurations it does not support, which must take the library's own steps.

use std::path::PathBuf;

use ft_data::tokenizer::{FtTokenizer, SpecialTokens, TokenizerFamily};
use serde_json::{Value, json};

use crate::encode_head::fixtures;

/// GPT-2's regex, as Llama-3 and Qwen2 spell their variants of it.
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn byte_level(add_prefix_space: bool, use_regex: bool) -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": true, "use_regex": use_regex})
}

fn split(pattern: Value, behavior: &str, invert: bool) -> Value {
    json!({"type": "Split", "pattern": pattern, "behavior": behavior, "invert": invert})
}

fn sequence(steps: Vec<Value>) -> Value {
    json!({"type": "Sequence", "pretokenizers": steps})
}

fn digits(individual: bool) -> Value {
    json!({"type": "Digits", "individual_digits": individual})
}

/// An added token of the fixture's JSON form.
fn added(id: u32, content: &str, flags: [bool; 4]) -> Value {
    let [single_word, lstrip, rstrip, normalized] = flags;
    json!({"id": id, "content": content, "single_word": single_word, "lstrip": lstrip,
           "rstrip": rstrip, "normalized": normalized, "special": !normalized})
}

/// The tiny-smol tokenizer with `edit` applied to its JSON, named `name`.
fn edited(name: &str, edit: impl FnOnce(&mut Value)) -> tokenizers::Tokenizer {
    let path = fixtures().join("tokenizers/tiny-smol/tokenizer.json");
    let mut json: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read tiny-smol")).expect("json");
    edit(&mut json);
    json.to_string()
        .parse::<tokenizers::Tokenizer>()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn wrap(name: &str, inner: tokenizers::Tokenizer) -> FtTokenizer {
    let special = SpecialTokens::default();
    FtTokenizer::from_parts(
        inner,
        special,
        TokenizerFamily::Standard,
        None,
        PathBuf::from(name),
    )
}

/// tiny-smol with another pre-tokenizer (and normaliser).
fn with_parts(name: &str, pre_tokenizer: Value, normalizer: Value) -> FtTokenizer {
    wrap(
        name,
        edited(name, |json| {
            json["pre_tokenizer"] = pre_tokenizer;
            json["normalizer"] = normalizer;
        }),
    )
}

/// One tokenizer per supported configuration.
pub fn fast_path_tokenizers() -> Vec<FtTokenizer> {
    let qwen2 = json!({"Regex": LLAMA3_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}")});
    let mut tokenizers = vec![
        with_parts("byte_level_prefix_space", byte_level(true, true), Value::Null),
        with_parts(
            "smollm2",
            sequence(vec![digits(true), byte_level(false, true)]),
            Value::Null,
        ),
        with_parts(
            "digit_runs",
            sequence(vec![digits(false), byte_level(false, true)]),
            Value::Null,
        ),
        with_parts(
            "llama3",
            sequence(vec![
                split(json!({"Regex": LLAMA3_PATTERN}), "Isolated", false),
                byte_level(false, false),
            ]),
            Value::Null,
        ),
        with_parts(
            "qwen2_nfc",
            sequence(vec![split(qwen2, "Isolated", false), byte_level(false, false)]),
            json!({"type": "NFC"}),
        ),
        with_parts(
            "nfc_nfkc_split_removed",
            sequence(vec![
                split(json!({"Regex": r"\s+"}), "Removed", false),
                byte_level(true, false),
            ]),
            json!({"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "NFC"}]}),
        ),
        with_parts(
            "split_removed_inverted",
            sequence(vec![
                split(json!({"Regex": r"\p{L}+|\p{N}"}), "Removed", true),
                byte_level(false, false),
            ]),
            Value::Null,
        ),
        with_parts(
            "split_string_isolated_inverted",
            sequence(vec![
                split(json!({"String": "."}), "Isolated", true),
                byte_level(false, true),
            ]),
            Value::Null,
        ),
        with_parts(
            "empty_matches",
            sequence(vec![
                split(json!({"Regex": r"\s*|x*"}), "Isolated", false),
                byte_level(false, false),
            ]),
            Value::Null,
        ),
        with_parts(
            "byte_level_then_digits",
            sequence(vec![byte_level(true, true), digits(true)]),
            Value::Null,
        ),
        with_parts("no_pre_tokenizer", Value::Null, Value::Null),
    ];
    tokenizers.push(wrap(
        "added_token_flags",
        edited("added_token_flags", |json| {
            let tokens = json["added_tokens"].as_array_mut().expect("added_tokens");
            tokens.push(added(3, "[L]", [false, true, false, false]));
            tokens.push(added(4, "[R]", [false, false, true, false]));
            tokens.push(added(5, "<pad>", [true, false, false, false]));
            tokens.push(added(552, "hello", [false, false, false, true]));
            tokens.push(added(553, "lo [", [false, true, true, true]));
        }),
    ));
    tokenizers
}

#[test]
fn every_fast_path_configuration_takes_the_fast_path() {
    for tokenizer in fast_path_tokenizers() {
        let source = tokenizer.source().display().to_string();
        assert!(tokenizer.uses_fast_path("Hello there, 42 friends!"), "{source}");
        assert!(tokenizer.uses_fast_path("你好, naïve café ÅΩ"), "{source}");
    }
    for dir in [
        "tiny-base",
        "tokenizers/tiny-chatml",
        "tokenizers/tiny-llama",
        "tokenizers/tiny-smol",
    ] {
        let tokenizer = FtTokenizer::from_dir(fixtures().join(dir)).expect("fixture");
        assert!(tokenizer.uses_fast_path("Hello <|im_end|> there"), "{dir}");
    }
}

#[test]
fn a_text_its_normaliser_would_change_takes_the_librarys_steps() {
    let tokenizer = FtTokenizer::from_dir(fixtures().join("tiny-base")).expect("tiny-base");
    assert!(tokenizer.uses_fast_path("café"));
    assert!(!tokenizer.uses_fast_path("cafe\u{301}"));
    // Between added tokens, as the library normalises.
    assert!(!tokenizer.uses_fast_path("ok<|im_end|>e\u{301}"));
    assert!(tokenizer.uses_fast_path("e<|im_end|>\u{301}"));
    let expected = tokenizer.inner().encode("cafe\u{301}", false).expect("encodes");
    assert_eq!(
        tokenizer.encode("cafe\u{301}").expect("encode"),
        expected.get_ids()
    );
}

#[test]
fn unsupported_configurations_take_the_librarys_steps() {
    let text = "Hello there, 42 friends!";
    let mut unsupported = vec![
        with_parts("whitespace", json!({"type": "Whitespace"}), Value::Null),
        with_parts(
            "split_contiguous",
            sequence(vec![
                split(json!({"Regex": r"\s+"}), "Contiguous", false),
                byte_level(false, false),
            ]),
            Value::Null,
        ),
        with_parts(
            "metaspace",
            json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}),
            Value::Null,
        ),
        with_parts("lowercase", byte_level(false, true), json!({"type": "Lowercase"})),
        wrap(
            "normalized_added_token_under_nfc",
            edited("normalized_added_token_under_nfc", |json| {
                json["normalizer"] = json!({"type": "NFC"});
                json["added_tokens"].as_array_mut().expect("added").push(added(
                    552,
                    "hello",
                    [false, false, false, true],
                ));
            }),
        ),
    ];
    let mut encode_special = edited("encode_special_tokens", |_| {});
    encode_special.set_encode_special_tokens(true);
    unsupported.push(wrap("encode_special_tokens", encode_special));
    for dir in ["tokenizers/tiny-sp", "tokenizers/tiny-sp-unigram"] {
        unsupported.push(FtTokenizer::from_dir(fixtures().join(dir)).expect("fixture"));
    }
    for tokenizer in unsupported {
        let source = tokenizer.source().display().to_string();
        assert!(!tokenizer.uses_fast_path(text), "{source}");
        let expected = tokenizer.inner().encode(text, false).expect("encodes");
        assert_eq!(
            tokenizer.encode(text).expect("encode"),
            expected.get_ids(),
            "{source}"
        );
    }
}

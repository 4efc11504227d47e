//! Loading a model folder's tokenizer: which file each special token comes from, the chat template,
//! and errors that name the file at fault.

use std::path::{Path, PathBuf};

use ft_data::tokenizer::{FtTokenizer, TokenizerFamily};

fn tiny_sp() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tokenizers/tiny-sp")
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write fixture file");
}

/// A folder with a `tokenizer.json` saved from the converted tiny SentencePiece model (with the
/// InternLM2-like config, so its post-processor adds `<s>`), and no other file.
fn json_folder() -> tempfile::TempDir {
    let source = FtTokenizer::from_dir(tiny_sp()).expect("tiny-sp loads");
    let dir = tempfile::tempdir().expect("tempdir");
    source
        .inner()
        .save(dir.path().join("tokenizer.json"), false)
        .expect("save tokenizer.json");
    dir
}

fn load_err(dir: &Path) -> String {
    FtTokenizer::from_dir(dir)
        .expect_err("loading must fail")
        .to_string()
}

#[test]
fn tokenizer_config_tokens_may_be_strings_or_content_objects() {
    let dir = json_folder();
    write(
        dir.path(),
        "tokenizer_config.json",
        r#"{"bos_token": {"content": "<s>", "special": true}, "eos_token": "<|im_end|>",
            "pad_token": {"__type": "AddedToken", "content": "</s>"}, "unk_token": "<unk>",
            "add_bos_token": false, "add_eos_token": true, "tokenizer_class": "Qwen2Tokenizer"}"#,
    );
    let t = FtTokenizer::from_dir(dir.path()).expect("loads");
    let im_end = t.token_to_id("<|im_end|>").unwrap();
    assert_eq!(
        (t.bos_id(), t.eos_id(), t.pad_id(), t.unk_id()),
        (Some(1), Some(im_end), Some(2), Some(0))
    );
    assert_eq!(t.special().eos.as_ref().unwrap().content, "<|im_end|>");
    assert!(
        !t.special().add_bos_token,
        "the config's false beats the post-processor"
    );
    assert!(t.add_eos_token());
    assert_eq!(t.family(), TokenizerFamily::Qwen);
}

#[test]
fn special_tokens_map_is_the_fallback_for_missing_keys() {
    let dir = json_folder();
    write(dir.path(), "tokenizer_config.json", r#"{"eos_token": "</s>"}"#);
    write(
        dir.path(),
        "special_tokens_map.json",
        r#"{"bos_token": {"content": "<s>"}, "eos_token": "<unk>", "pad_token": "<|im_end|>"}"#,
    );
    let t = FtTokenizer::from_dir(dir.path()).expect("loads");
    assert_eq!(t.bos_id(), Some(1));
    assert_eq!(
        t.eos_id(),
        Some(2),
        "tokenizer_config.json wins over special_tokens_map.json"
    );
    assert_eq!(t.pad_id(), t.token_to_id("<|im_end|>"));
}

#[test]
fn generation_config_ids_name_the_tokens_when_no_file_has_strings() {
    let dir = json_folder();
    write(
        dir.path(),
        "generation_config.json",
        r#"{"bos_token_id": 1, "eos_token_id": [2, 4]}"#,
    );
    write(
        dir.path(),
        "config.json",
        r#"{"bos_token_id": 7, "eos_token_id": 3, "pad_token_id": 0}"#,
    );
    let t = FtTokenizer::from_dir(dir.path()).expect("loads");
    assert_eq!(t.special().bos.as_ref().unwrap().content, "<s>");
    assert_eq!(t.eos_id(), Some(2), "the first of the list is the EOS");
    assert_eq!(
        t.eos_ids(),
        &[2, 4],
        "all of generation_config's ids stop generation"
    );
    assert_eq!(
        t.pad_id(),
        Some(0),
        "config.json is read when generation_config lacks the key"
    );
}

#[test]
fn config_json_ids_are_the_last_fallback() {
    let dir = json_folder();
    write(
        dir.path(),
        "config.json",
        r#"{"bos_token_id": 1, "eos_token_id": [4, 2]}"#,
    );
    let t = FtTokenizer::from_dir(dir.path()).expect("loads");
    assert_eq!(t.eos_id(), Some(4));
    assert_eq!(t.eos_ids(), &[4, 2]);
    assert_eq!(t.special().eos.as_ref().unwrap().content, "<|im_end|>");
}

#[test]
fn eos_ids_start_with_the_tokenizer_eos_then_add_generation_config_ids() {
    let dir = json_folder();
    write(
        dir.path(),
        "tokenizer_config.json",
        r#"{"eos_token": "<|im_end|>"}"#,
    );
    write(
        dir.path(),
        "generation_config.json",
        r#"{"eos_token_id": [2, 4]}"#,
    );
    let t = FtTokenizer::from_dir(dir.path()).expect("loads");
    assert_eq!(t.eos_ids(), &[4, 2]);
}

#[test]
fn explicit_null_bos_means_no_bos_even_with_a_config_id() {
    // Qwen2: the tokenizer has no BOS although config.json has bos_token_id.
    let dir = json_folder();
    write(
        dir.path(),
        "tokenizer_config.json",
        r#"{"bos_token": null, "eos_token": "</s>"}"#,
    );
    write(
        dir.path(),
        "config.json",
        r#"{"bos_token_id": 1, "eos_token_id": 2}"#,
    );
    let t = FtTokenizer::from_dir(dir.path()).expect("loads");
    assert_eq!(t.bos_id(), None);
    assert_eq!(t.eos_id(), Some(2));
}

#[test]
fn add_bos_token_defaults_to_what_the_post_processor_does() {
    let dir = json_folder();
    write(
        dir.path(),
        "special_tokens_map.json",
        r#"{"bos_token": "<s>", "eos_token": "</s>"}"#,
    );
    let t = FtTokenizer::from_dir(dir.path()).expect("loads");
    assert!(t.special().add_bos_token, "the saved post-processor prepends <s>");
    assert!(!t.add_eos_token());
}

#[test]
fn chat_template_comes_from_the_jinja_file_first_then_the_config_string_or_list() {
    let dir = json_folder();
    write(
        dir.path(),
        "tokenizer_config.json",
        r#"{"chat_template": [{"name": "rag", "template": "R"}, {"name": "default", "template": "D"}]}"#,
    );
    assert_eq!(
        FtTokenizer::from_dir(dir.path()).unwrap().chat_template(),
        Some("D")
    );
    write(dir.path(), "tokenizer_config.json", r#"{"chat_template": "S"}"#);
    assert_eq!(
        FtTokenizer::from_dir(dir.path()).unwrap().chat_template(),
        Some("S")
    );
    write(dir.path(), "chat_template.jinja", "J{{ messages }}");
    assert_eq!(
        FtTokenizer::from_dir(dir.path()).unwrap().chat_template(),
        Some("J{{ messages }}")
    );
}

#[test]
fn added_tokens_decoder_adds_tokens_to_a_sentencepiece_model() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        tiny_sp().join("tokenizer.model"),
        dir.path().join("tokenizer.model"),
    )
    .unwrap();
    write(
        dir.path(),
        "tokenizer_config.json",
        r#"{"added_tokens_decoder": {"640": {"content": "<|new|>", "special": true}},
            "eos_token": "<|new|>", "legacy": true}"#,
    );
    let t = FtTokenizer::from_dir(dir.path()).expect("loads");
    assert_eq!(t.encode("<|new|>").unwrap(), vec![640]);
    assert_eq!(t.eos_id(), Some(640));
    assert_eq!(t.vocab_size(), 641);
    assert_eq!(
        t.decode(&[640, 1], true).unwrap(),
        "",
        "special added tokens are skipped"
    );
}

#[test]
fn tokenizer_json_wins_over_tokenizer_model() {
    let dir = json_folder();
    // A broken tokenizer.model next to a good tokenizer.json is never read.
    write(dir.path(), "tokenizer.model", "garbage");
    assert!(FtTokenizer::from_dir(dir.path()).is_ok());
}

#[test]
fn an_empty_folder_names_both_tokenizer_files() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_err(dir.path());
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
    assert!(
        err.contains("tokenizer.json") && err.contains("tokenizer.model"),
        "{err}"
    );
}

#[test]
fn a_corrupt_tokenizer_model_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "tokenizer.model",
        "\u{7f}this is not a protobuf\u{0}\u{1}",
    );
    let err = load_err(dir.path());
    assert!(err.contains("tokenizer.model"), "{err}");

    let bytes = std::fs::read(tiny_sp().join("tokenizer.model")).unwrap();
    std::fs::write(dir.path().join("tokenizer.model"), &bytes[..bytes.len() / 2 + 3]).unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("tokenizer.model") && err.contains("SentencePiece"),
        "{err}"
    );
}

#[test]
fn a_corrupt_tokenizer_json_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "tokenizer.json",
        r#"{"model": {"type": "BPE", "vocab": 3}}"#,
    );
    let err = load_err(dir.path());
    assert!(err.contains("tokenizer.json"), "{err}");
}

#[test]
fn invalid_json_in_a_side_file_is_an_error_naming_it_and_the_line() {
    for name in [
        "tokenizer_config.json",
        "special_tokens_map.json",
        "generation_config.json",
        "config.json",
    ] {
        let dir = json_folder();
        write(dir.path(), name, "{\n  \"bos_token\": \"<s>\",\n  oops\n}");
        let err = load_err(dir.path());
        assert!(err.contains(name) && err.contains(":3:"), "{name}: {err}");
    }
}

#[test]
fn a_malformed_added_tokens_decoder_is_an_error_naming_the_key() {
    let dir = json_folder();
    write(
        dir.path(),
        "tokenizer_config.json",
        r#"{"added_tokens_decoder": {"x": {"content": "a"}}}"#,
    );
    let err = load_err(dir.path());
    assert!(
        err.contains("added_tokens_decoder") && err.contains("`x`"),
        "{err}"
    );
}

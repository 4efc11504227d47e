//! Encodings equal the goldens written by `fixtures/gen_data.py` (a Python port of XTuner's
//! map functions / `template_map_fn` / `encode_fn`, and transformers' `apply_chat_template`).

use std::path::{Path, PathBuf};

use ft_data::config::DataConfig;
use ft_data::dataset::{prepare, resolve_template};
use ft_data::encode::conversation_segments;
use ft_data::formats::load_file;
use ft_data::template::Segment;
use ft_data::tokenizer::FtTokenizer;
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    name: String,
    file: String,
    format: String,
    tokenizer: String,
    template: String,
    system: Option<String>,
    max_length: usize,
    samples: Vec<GoldenSample>,
}

#[derive(Deserialize)]
struct GoldenSample {
    input_ids: Vec<i32>,
    labels: Vec<i32>,
    truncated: bool,
    rendered: Option<String>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(fixtures().join("data/goldens.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn config(case: &Case) -> DataConfig {
    let mut config = DataConfig::new(vec![fixtures().join("data").join(&case.file)]);
    config.format = Some(case.format.clone());
    config.template = Some(case.template.clone());
    config.system = case.system.clone();
    config.max_length = case.max_length;
    config.pack = false;
    config
}

#[test]
fn every_golden_case_matches_ids_and_labels() {
    let cases = cases();
    assert!(cases.len() >= 20, "expected the full golden set");
    for case in &cases {
        let tokenizer = FtTokenizer::from_dir(fixtures().join("tokenizers").join(&case.tokenizer)).unwrap();
        let config = config(case);
        let template = resolve_template(&config, &tokenizer).unwrap();
        if case.samples.is_empty() {
            // Every sample was dropped (nothing supervised within max_length): a clear error.
            let err = prepare(&config, &tokenizer, &template).unwrap_err().to_string();
            assert!(
                err.contains("dropped with no supervised token"),
                "{}: {err}",
                case.name
            );
            continue;
        }
        let prepared = prepare(&config, &tokenizer, &template).unwrap();
        assert_eq!(
            prepared.samples.len(),
            case.samples.len(),
            "{}: sample count",
            case.name
        );
        for (i, (got, want)) in prepared.samples.iter().zip(&case.samples).enumerate() {
            assert_eq!(
                got.encoded.input_ids, want.input_ids,
                "{} sample {i}: input_ids",
                case.name
            );
            assert_eq!(
                got.encoded.labels, want.labels,
                "{} sample {i}: labels",
                case.name
            );
            assert_eq!(
                got.encoded.truncated, want.truncated,
                "{} sample {i}: truncated",
                case.name
            );
        }
    }
}

#[test]
fn hf_template_renders_exactly_like_apply_chat_template() {
    for case in cases().iter().filter(|c| c.template == "hf") {
        let tokenizer = FtTokenizer::from_dir(fixtures().join("tokenizers").join(&case.tokenizer)).unwrap();
        let config = config(case);
        let template = resolve_template(&config, &tokenizer).unwrap();
        let records = load_file(&config.files[0], config.format().unwrap(), false)
            .unwrap()
            .records;
        let kept = records.iter().filter(|r| !r.conversation.conversation.is_empty());
        for (record, want) in kept.zip(&case.samples) {
            let segments =
                conversation_segments(&record.conversation, &template, config.system.as_deref()).unwrap();
            let rendered: String = segments
                .iter()
                .map(|s| match s {
                    Segment::Prompt(t) | Segment::Sep(t) => t.as_str(),
                    Segment::Answer { text, .. } => text.as_str(),
                    _ => "",
                })
                .collect();
            assert_eq!(Some(rendered), want.rendered.clone(), "{}", case.name);
        }
    }
}

#[test]
fn no_double_bos_when_bos_is_the_template_opening_token() {
    let case = cases()
        .into_iter()
        .find(|c| c.name == "internlm2_chat-smol-nodoublebos")
        .unwrap();
    let tokenizer = FtTokenizer::from_dir(fixtures().join("tokenizers/tiny-smol")).unwrap();
    let bos = tokenizer.bos_id().unwrap() as i32;
    for sample in &case.samples {
        assert_eq!(sample.input_ids[0], bos);
        assert_ne!(sample.input_ids[1], bos);
    }
    let config = config(&case);
    let template = resolve_template(&config, &tokenizer).unwrap();
    let prepared = prepare(&config, &tokenizer, &template).unwrap();
    assert!(prepared.samples.iter().all(|s| s.encoded.input_ids[1] != bos));
}

#[test]
fn eos_label_survives_when_pad_equals_eos() {
    // tiny-llama: pad == eos == `</s>`; labels are masked by position, so EOS stays trained.
    let case = cases()
        .into_iter()
        .find(|c| c.name == "default-conversation")
        .unwrap();
    let tokenizer = FtTokenizer::from_dir(fixtures().join("tokenizers/tiny-llama")).unwrap();
    assert_eq!(tokenizer.pad_id(), tokenizer.eos_id());
    let eos = tokenizer.eos_id().unwrap() as i32;
    let prepared = prepare(
        &config(&case),
        &tokenizer,
        &resolve_template(&config(&case), &tokenizer).unwrap(),
    )
    .unwrap();
    let trained_eos = prepared.samples[0]
        .encoded
        .labels
        .iter()
        .filter(|&&l| l == eos)
        .count();
    assert_eq!(trained_eos, 2, "both turns end with a trained EOS");
}

#[test]
fn llava_sample_holds_one_image_placeholder() {
    let case = cases()
        .into_iter()
        .find(|c| c.name == "llava-internlm2_chat")
        .unwrap();
    let placeholders = case.samples[0].input_ids.iter().filter(|&&i| i == -200).count();
    assert_eq!(placeholders, 1);
}

#[test]
fn image_in_text_only_dataset_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    std::fs::write(&path, "{\"instruction\": \"a\", \"input\": \"\", \"output\": \"b\"}\n{\"instruction\": \"<image> what\", \"input\": \"\", \"output\": \"b\"}\n").unwrap();
    let err = load_file(&path, None, false).unwrap_err().to_string();
    assert!(err.contains("bad.jsonl:2") && err.contains("<image>"), "{err}");
}

#[test]
fn packing_keeps_every_token_of_the_dataset() {
    let case = cases()
        .into_iter()
        .find(|c| c.name == "qwen_chat-openai")
        .unwrap();
    let tokenizer = FtTokenizer::from_dir(fixtures().join("tokenizers/tiny-chatml")).unwrap();
    let mut config = config(&case);
    config.pack = true;
    config.max_length = 40;
    let template = resolve_template(&config, &tokenizer).unwrap();
    let prepared = prepare(&config, &tokenizer, &template).unwrap();
    let packed: usize = prepared.rows.iter().map(|r| r.input_ids.len()).sum();
    assert_eq!(packed, prepared.stats.tokens);
    assert!(prepared.rows.len() < prepared.samples.len() + 1 && prepared.rows.len() >= 2);
    assert!(prepared.rows.iter().all(|r| r.input_ids.len() <= 40));
}

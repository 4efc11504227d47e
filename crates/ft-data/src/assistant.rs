//! `ft data gen-assistant`: a self-cognition dataset ("who are you?" answered as NAME's
//! assistant, in Chinese and English), the seed exercise's data, in OpenAI `messages` format.

use std::io::Write;
use std::path::Path;

use rand::SeedableRng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::error::{DataError, Result};

const QUESTIONS_ZH: &[&str] = &[
    "你是谁",
    "你是谁？",
    "请做一下自我介绍",
    "介绍一下你自己",
    "你叫什么名字？",
    "你是哪个助手？",
    "你好，你是谁？",
    "能介绍一下你自己吗？",
    "你的身份是什么？",
    "你是做什么的？",
];
const QUESTIONS_EN: &[&str] = &[
    "Who are you?",
    "Who are you",
    "Introduce yourself.",
    "Please introduce yourself.",
    "What is your name?",
    "Tell me about yourself.",
    "Hi, who am I talking to?",
    "What are you?",
    "Whose assistant are you?",
    "Can you introduce yourself?",
];
const ANSWERS_ZH: &[&str] = &["我是{name}的小助手，有什么可以帮你的吗？"];
const ANSWERS_EN: &[&str] = &["I am {name}'s assistant. I am here to help {name} with anything."];

/// The `count` samples for `name`, deterministic for a given `seed`: half Chinese, half
/// English questions, each answered with the same self-introduction.
pub fn assistant_records(name: &str, count: usize, seed: u64) -> Vec<serde_json::Value> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|i| {
            let (questions, answers) = if i % 2 == 0 {
                (QUESTIONS_ZH, ANSWERS_ZH)
            } else {
                (QUESTIONS_EN, ANSWERS_EN)
            };
            let question = questions.choose(&mut rng).expect("invariant: non-empty list");
            let answer = answers
                .choose(&mut rng)
                .expect("invariant: non-empty list")
                .replace("{name}", name);
            json!({"messages": [
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer},
            ]})
        })
        .collect()
}

/// Writes the dataset as JSON Lines to `out` (through a temporary file, then a rename).
pub fn write_assistant_dataset(name: &str, count: usize, seed: u64, out: &Path) -> Result<()> {
    if name.trim().is_empty() {
        return Err(DataError::Config {
            key: "--name".into(),
            message: "the assistant's owner name must not be empty".into(),
        });
    }
    let tmp = out.with_extension("jsonl.tmp");
    let write = || -> std::io::Result<()> {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        for record in assistant_records(name, count, seed) {
            writeln!(file, "{record}")?;
        }
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, out)
    };
    write().map_err(|e| DataError::io(out, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_alternate_languages_and_name_the_owner() {
        let records = assistant_records("Ada", 4, 0);
        assert_eq!(records.len(), 4);
        let answer = |i: usize| records[i]["messages"][1]["content"].as_str().unwrap().to_owned();
        assert!(answer(0).contains("Ada") && answer(0).contains("助手"));
        assert!(answer(1).starts_with("I am Ada's assistant"));
        assert_eq!(records, assistant_records("Ada", 4, 0));
    }

    #[test]
    fn written_file_reads_back_as_openai_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/a.jsonl");
        write_assistant_dataset("Ada", 10, 1, &path).unwrap();
        let loaded = crate::formats::load_file(&path, None, false).unwrap();
        assert_eq!(loaded.format, Some(crate::formats::DatasetFormat::Openai));
        assert_eq!(loaded.records.len(), 10);
        assert!(!path.with_extension("jsonl.tmp").exists());
    }
}

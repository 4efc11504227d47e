//! `ft data` and `ft templates` end to end, through the real binary.

use std::path::{Path, PathBuf};
use std::process::Command;

fn ft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ft"))
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn write_config(dir: &Path, data: &str) -> PathBuf {
    let path = dir.join("train.toml");
    let text = format!(
        "[model]\npath = \"{}\"\n\n[data]\n{data}\n",
        fixtures().join("tokenizers/tiny-llama").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn preview_json_prints_the_golden_encodings_in_dataset_order() {
    let dir = tempfile::tempdir().unwrap();
    let data = format!(
        "files = [\"{}\"]\ntemplate = \"internlm2_chat\"\nmax_length = 512\npack = true",
        fixtures().join("data/conversation.json").display()
    );
    let config = write_config(dir.path(), &data);
    let out = ft()
        .args(["data", "preview"])
        .arg(&config)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let goldens: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("data/goldens.json")).unwrap())
            .unwrap();
    let case = goldens
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "internlm2_chat-conversation")
        .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for (line, want) in lines.iter().zip(case["samples"].as_array().unwrap()) {
        assert_eq!(line["input_ids"], want["input_ids"]);
        assert_eq!(line["labels"], want["labels"]);
    }
}

#[test]
fn gen_assistant_then_preview_shows_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let data_file = dir.path().join("a.jsonl");
    let status = ft()
        .args(["data", "gen-assistant", "--name", "Ada", "--count", "20", "--out"])
        .arg(&data_file)
        .status()
        .unwrap();
    assert!(status.success());
    let config = write_config(
        dir.path(),
        &format!(
            "files = [\"{}\"]\ntemplate = \"internlm2_chat\"\nmax_length = 64",
            data_file.display()
        ),
    );
    let out = ft()
        .args(["data", "preview"])
        .arg(&config)
        .args(["--limit", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("samples kept       20"), "{text}");
    assert!(text.contains("packed rows"), "{text}");
    assert!(text.contains("Ada"), "{text}");
}

#[test]
fn unknown_data_key_and_unknown_template_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = fixtures().join("data/alpaca.jsonl");
    let config = write_config(
        dir.path(),
        &format!("files = [\"{}\"]\nmax_lenght = 10", file.display()),
    );
    let out = ft().args(["data", "preview"]).arg(&config).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_lenght"), "{err}");

    let config = write_config(
        dir.path(),
        &format!("files = [\"{}\"]\ntemplate = \"qwen\"", file.display()),
    );
    let out = ft().args(["data", "preview"]).arg(&config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("qwen_chat") && err.contains("internlm2_chat"),
        "{err}"
    );
}

#[test]
fn malformed_line_names_file_and_line_unless_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("d.jsonl");
    std::fs::write(
        &file,
        "{\"instruction\": \"a\", \"input\": \"\", \"output\": \"b\"}\n{broken\n{\"instruction\": \"c\", \"input\": \"\", \"output\": \"d\"}\n",
    )
    .unwrap();
    let data = format!("files = [\"{}\"]\ntemplate = \"default\"", file.display());
    let out = ft()
        .args(["data", "preview"])
        .arg(write_config(dir.path(), &data))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("d.jsonl:2"), "{err}");

    let data = format!("{data}\nskip_bad_records = true");
    let out = ft()
        .args(["data", "preview"])
        .arg(write_config(dir.path(), &data))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("skipped (bad)      1"));
}

#[test]
fn user_template_from_toml_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("mine.toml");
    std::fs::write(&template, "instruction = \"Q: {input}\\nA: \"\nsep = \"\\n\"\n").unwrap();
    let data = format!(
        "files = [\"{}\"]\ntemplate = \"{}\"",
        fixtures().join("data/alpaca.jsonl").display(),
        template.display()
    );
    let out = ft()
        .args(["data", "preview"])
        .arg(write_config(dir.path(), &data))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Q: What is the capital of France?"));
}

#[test]
fn templates_lists_xtuner_templates_and_hf() {
    let out = ft().arg("templates").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for name in [
        "internlm2_chat",
        "qwen_chat",
        "llama2_chat",
        "llama3_chat",
        "default",
        "vicuna",
        "chatglm3",
        "mistral",
        "gemma",
        "phi3_chat",
        "zephyr",
        "hf",
    ] {
        assert!(text.lines().any(|l| l.starts_with(name)), "missing {name}");
    }
}

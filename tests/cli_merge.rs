//! `ft merge` end to end, through the real binary, on the PEFT fixtures of fixtures/gen_merge.py.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ft"))
}

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/merge")
        .join(p)
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn merge_takes_the_template_from_the_adapter_and_adds_its_stop_token() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("merged");
    let out = ft()
        .arg("merge")
        .arg(fixture("base-bf16"))
        .arg(fixture("lora"))
        .arg(&out_dir)
        .args(["--max-shard-size", "12KB", "--report-memory"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("14 modules merged"), "{stdout}");
    assert!(stdout.contains("peak RSS (VmHWM):"), "{stdout}");
    // internlm2_chat's stop word `<|im_end|>` is id 4 in the fixture tokenizer; EOS is 2.
    assert_eq!(
        read_json(&out_dir.join("generation_config.json"))["eos_token_id"],
        serde_json::json!([2, 4])
    );
    assert!(out_dir.join("model.safetensors.index.json").exists());
    assert!(out_dir.join("tokenizer.json").exists());
    assert_eq!(read_json(&out_dir.join("config.json"))["dtype"], "bfloat16");
}

#[test]
fn merge_without_adapter_retypes_and_an_explicit_template_needs_a_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("f32");
    let out = ft()
        .arg("merge")
        .arg(fixture("base-bf16"))
        .arg(&out_dir)
        .args(["--dtype", "f32", "--template", "qwen_chat"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read_json(&out_dir.join("config.json"))["dtype"], "float32");
    assert_eq!(
        read_json(&out_dir.join("generation_config.json"))["eos_token_id"],
        serde_json::json!([2, 4])
    );
    // base-f32 has no tokenizer: the template's stop ids cannot be found.
    let out = ft()
        .arg("merge")
        .arg(fixture("base-f32"))
        .arg(dir.path().join("x"))
        .args(["--template", "qwen_chat"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no tokenizer.json"), "{}", stderr(&out));
    assert!(!dir.path().join("x").exists());
}

#[test]
fn merge_refuses_an_existing_output_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("merged");
    std::fs::create_dir(&out_dir).unwrap();
    let run = |force: bool| {
        let mut cmd = ft();
        cmd.arg("merge")
            .arg(fixture("base-f32"))
            .arg(fixture("rslora"))
            .arg(&out_dir);
        if force {
            cmd.arg("--force");
        }
        cmd.output().unwrap()
    };
    let out = run(false);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    let out = run(true);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out_dir.join("model.safetensors").exists());
}

#[test]
fn merge_reports_a_missing_adapter_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = ft()
        .arg("merge")
        .arg(fixture("base-bf16"))
        .arg(fixture("base-f32")) // a model folder, not an adapter
        .arg(dir.path().join("merged"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("no adapter_config.json"), "{err}");
    assert_eq!(
        err.matches("no adapter_config.json").count(),
        1,
        "said once: {err}"
    );
}

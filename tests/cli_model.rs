//! `ft chat`, `ft eval` and `ft bench` on the bundled tiny model, through the real binary.

use std::path::{Path, PathBuf};
use std::process::Command;

fn ft() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ft"));
    c.env("RUST_LOG", "warn");
    c
}

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny-base")
}

#[test]
fn chat_prompt_answers_greedily_with_the_models_template() {
    let out = ft()
        .arg("chat")
        .arg(tiny())
        .args(["--prompt", "What is 3 plus 4?", "--temperature", "0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "3 plus 4 is 7.");
}

#[test]
fn interactive_chat_keeps_history_and_obeys_reset_and_exit() {
    use std::io::Write;
    let mut child = ft()
        .arg("chat")
        .arg(tiny())
        .args(["--temperature", "0"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all("你好\n\nRESET\n\nWho are you?\n\nEXIT\n\n".as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("你好！有什么可以帮你的吗？"), "{text}");
    assert!(text.contains("(history cleared)"), "{text}");
    assert!(text.contains("I am an AI assistant."), "{text}");
}

#[test]
fn eval_reports_loss_perplexity_and_dumps_logits() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    std::fs::write(
        &data,
        "{\"messages\": [{\"role\": \"user\", \"content\": \"What is 2 plus 2?\"}, {\"role\": \"assistant\", \"content\": \"2 plus 2 is 4.\"}]}\n",
    )
    .unwrap();
    let logits = dir.path().join("logits.safetensors");
    let out = ft()
        .arg("eval")
        .arg(tiny())
        .arg("--data")
        .arg(&data)
        .args(["--template", "qwen_chat", "--json", "--dump-logits"])
        .arg(&logits)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let loss = report["loss"].as_f64().unwrap();
    assert!(
        loss > 0.0 && loss < 1.0,
        "the pretrained tiny model knows this answer: {loss}"
    );
    assert!((report["perplexity"].as_f64().unwrap() - loss.exp()).abs() < 1e-9);
    assert!(report["tokens"].as_u64().unwrap() > 3);
    let bytes = std::fs::read(&logits).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = st.tensor("sample.0").unwrap();
    assert_eq!(view.shape()[1], 568);
}

#[test]
fn bench_forward_and_generate_print_json() {
    for kind in ["forward", "generate"] {
        let out = ft()
            .args(["bench", kind, "--repeats", "1", "--json", "--device", "cpu"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(report["tokens_per_s"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn bench_train_profile_splits_a_step_into_its_phases() {
    let out = ft()
        .args(["bench", "train", "--steps", "2", "--batch", "1", "--seq", "32"])
        .args(["--json", "--profile", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let step = report["median_step_s"].as_f64().unwrap();
    let phases: Vec<f64> = ["forward_s", "backward_s", "optimizer_s"]
        .iter()
        .map(|k| report["phases"][k].as_f64().unwrap())
        .collect();
    assert!(phases.iter().all(|&s| s > 0.0), "{report}");
    // The phases are parts of the step (the step also collates its batch).
    assert!(phases.iter().sum::<f64>() <= step * 1.05, "{report}");
}

#[test]
fn bench_train_runs_a_qlora_step_over_an_nf4_base() {
    let out = ft()
        .args(["bench", "train", "--steps", "1", "--batch", "1", "--seq", "16"])
        .args([
            "--quantization",
            "nf4",
            "--rank",
            "4",
            "--json",
            "--device",
            "cpu",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["quantization"], "qlora nf4", "{report}");
    assert_eq!(report["rank"], 4, "{report}");
    assert!(report["tokens_per_s"].as_f64().unwrap() > 0.0, "{report}");
    // The CPU's memory is the process's: no device pool to report.
    assert!(report["peak_device_mb"].is_null(), "{report}");
}

#[test]
fn missing_model_folder_is_a_clear_error() {
    let out = ft()
        .args(["chat", "/nonexistent/model", "--prompt", "hi"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/model"));
}

//! The `ft` binary on a GPU backend (`--device wgpu`; in CI Mesa's lavapipe, a software Vulkan
//! device) does what it does on the CPU: the same greedy chat answer, and the same LoRA and QLoRA
//! training runs (one seed, one run: the adapter is initialised on the host, so the losses agree
//! step by step). Build with `--features wgpu`.

mod common;

use std::path::Path;

use common::{assistant_config, ft, repo, run_ok, stdout};

fn chat(device: &str) -> String {
    let out = run_ok(ft().arg("chat").arg(repo("fixtures/tiny-base")).args([
        "--prompt",
        "What is 3 plus 4?",
        "--temperature",
        "0",
        "--device",
        device,
    ]));
    stdout(&out).trim().to_owned()
}

#[test]
fn greedy_chat_on_wgpu_answers_as_on_the_cpu() {
    let cpu = chat("cpu");
    assert_eq!(cpu, "3 plus 4 is 7.");
    assert_eq!(chat("wgpu"), cpu);
}

/// The loss of every step of a 3-step run on `device`.
fn losses(dir: &Path, data: &Path, quantization: &str, device: &str) -> Vec<f64> {
    let out = dir.join(format!("{quantization}-{device}"));
    let config = assistant_config(dir, data, &out, |t| {
        let without_eval = t.split("[eval]").next().unwrap().to_owned();
        without_eval.replace("epochs = 8", "max_steps = 3").replace(
            "dtype = \"f32\"",
            &format!("dtype = \"f32\"\nquantization = \"{quantization}\""),
        )
    });
    run_ok(ft().arg("train").arg(&config).args(["--device", device]));
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    metrics
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter_map(|record| record["loss"].as_f64())
        .collect()
}

#[test]
fn lora_and_qlora_runs_on_wgpu_follow_the_cpu_runs_step_by_step() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("assistant.jsonl");
    run_ok(
        ft().args(["data", "gen-assistant", "--name", "Ada", "--count", "12", "--out"])
            .arg(&data),
    );
    for quantization in ["none", "nf4"] {
        let cpu = losses(dir.path(), &data, quantization, "cpu");
        let gpu = losses(dir.path(), &data, quantization, "wgpu");
        assert_eq!(cpu.len(), 3, "{quantization}: three steps logged");
        assert!(cpu[2] < cpu[0], "{quantization}: the run learns: {cpu:?}");
        for (step, (g, c)) in gpu.iter().zip(&cpu).enumerate() {
            assert!(
                (g - c).abs() <= 1e-4 * c.abs(),
                "{quantization} step {}: wgpu loss {g} vs cpu {c}",
                step + 1
            );
        }
        assert_eq!(gpu.len(), cpu.len());
    }
}

/// `ft bench train --device wgpu --json` for one quantization.
fn bench_on_wgpu(quantization: &str) -> serde_json::Value {
    let out = run_ok(
        ft().args(["bench", "train", "--steps", "1", "--batch", "1", "--seq", "32"])
            .args(["--quantization", quantization, "--json", "--device", "wgpu"]),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn bench_train_reports_device_memory_and_qlora_holds_less_than_lora() {
    let lora = bench_on_wgpu("none");
    let qlora = bench_on_wgpu("nf4");
    let lora_mb = lora["peak_device_mb"].as_f64().unwrap();
    let qlora_mb = qlora["peak_device_mb"].as_f64().unwrap();
    assert!(qlora_mb > 0.0, "{qlora}");
    // The bench model's decoder linears are 12.6 MB in f32 and 1.7 MB in NF4.
    assert!(qlora_mb < lora_mb, "QLoRA {qlora_mb} MB vs LoRA {lora_mb} MB");
}

//! The training loop on the bundled tiny model: accumulation equivalence, exact resume,
//! Ctrl-C saving, and the seed exercise end to end.

use std::path::{Path, PathBuf};

use ft_train::config::TrainConfig;
use ft_train::trainer::{NoHooks, TrainOutcome, train};

use crate::common;
use common::{adapter_values, max_difference, model_values, tiny, tiny_rows, tiny_setup, write_tiny_config};

fn write_config(dir: &Path, train: &str, pack: bool) -> PathBuf {
    write_config_with(dir, train, pack, "[lora]\nr = 4\nalpha = 8\ndropout = 0.0\n")
}

fn write_config_with(dir: &Path, train: &str, pack: bool, lora: &str) -> PathBuf {
    write_tiny_config(dir, 16, train, pack, lora)
}

fn run(config_path: &Path, resume: Option<PathBuf>, stop: bool) -> TrainOutcome {
    let config = TrainConfig::from_file(config_path).unwrap();
    let rows = Box::new(tiny_rows(&config));
    train(tiny_setup(&config, rows, resume, stop), &mut NoHooks).unwrap()
}

/// The losses after resuming from step `k` equal the uninterrupted run's.
fn assert_resumed_losses_equal(full: &TrainOutcome, resumed: &TrainOutcome, k: usize) {
    assert_eq!(resumed.losses.len(), full.losses.len() - k);
    for (a, b) in full.losses[k..].iter().zip(&resumed.losses) {
        assert!(
            (a - b).abs() < 1e-9,
            "{:?} vs {:?}",
            &full.losses[k..],
            resumed.losses
        );
    }
}

#[test]
fn batch_8_equals_batch_1_with_8_accumulation_steps() {
    let one = tempfile::tempdir().unwrap();
    let eight = tempfile::tempdir().unwrap();
    // Adam's first step is g / (|g| + eps): with the default eps (1e-8) an element whose gradient
    // is near zero turns summation-order noise into a full lr-sized difference; eps = 1e-4 keeps
    // the comparison about the gradients.
    let a = write_config(
        one.path(),
        "max_steps = 1\nbatch_size = 8\ngrad_accum = 1\nmax_grad_norm = 0.0\neps = 1e-4",
        false,
    );
    let b = write_config(
        eight.path(),
        "max_steps = 1\nbatch_size = 1\ngrad_accum = 8\nmax_grad_norm = 0.0\neps = 1e-4",
        false,
    );
    let ra = run(&a, None, false);
    let rb = run(&b, None, false);
    assert!(
        (ra.losses[0] - rb.losses[0]).abs() < 1e-5,
        "{:?} vs {:?}",
        ra.losses,
        rb.losses
    );
    let max = max_difference(&adapter_values(&ra.saved), &adapter_values(&rb.saved));
    assert!(max < 1e-5, "adapters differ by {max}");
}

#[test]
fn resuming_from_step_k_reproduces_the_uninterrupted_losses() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "max_steps = 6\nbatch_size = 2\ngrad_accum = 2\nsave_steps = 3\nsave_total_limit = 0",
        true,
    );
    let full = run(&config, None, false);
    assert_eq!(full.losses.len(), 6);
    let checkpoint = dir.path().join("out/checkpoint-3");
    assert!(checkpoint.join("adapter_config.json").exists());
    let resumed = run(&config, Some(checkpoint), false);
    assert_resumed_losses_equal(&full, &resumed, 3);
    assert_eq!(adapter_values(&full.saved), adapter_values(&resumed.saved));
}

#[test]
fn a_stop_request_saves_a_checkpoint_and_returns() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "max_steps = 5\nbatch_size = 2", true);
    let out = run(&config, None, true);
    assert!(out.interrupted);
    assert_eq!(out.steps, 1);
    assert_eq!(out.saved, dir.path().join("out/checkpoint-1"));
    assert!(out.saved.join("optimizer.safetensors").exists());
    assert!(!dir.path().join("out/final").exists());
    let metrics = std::fs::read_to_string(dir.path().join("out/metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 1);
}

#[test]
fn loss_goes_down_and_the_adapter_is_a_peft_folder() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "max_steps = 12\nbatch_size = 4", true);
    let out = run(&config, None, false);
    assert!(out.losses[11] < out.losses[0] * 0.7, "{:?}", out.losses);
    let adapter = ft_lora::peft::Adapter::read(&out.saved).unwrap();
    assert_eq!(adapter.config.r, 4);
    assert_eq!(
        adapter.ft_meta.unwrap().chat_template.as_deref(),
        Some("qwen_chat")
    );
    assert_eq!(adapter.weights.modules.len(), 28, "every linear of 4 layers × 7");
}

#[test]
fn full_finetuning_learns_writes_hf_folders_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_with(
        dir.path(),
        "max_steps = 6\nbatch_size = 4\nsave_steps = 3\nsave_total_limit = 0",
        true,
        "",
    );
    let full = run(&config, None, false);
    assert!(full.losses[5] < full.losses[0], "{:?}", full.losses);
    let checkpoint = dir.path().join("out/checkpoint-3");
    for file in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "optimizer.safetensors",
        "trainer_state.json",
    ] {
        assert!(checkpoint.join(file).is_file(), "{file} in the checkpoint");
    }
    let config_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(full.saved.join("config.json")).unwrap()).unwrap();
    let dtype = config_json
        .get("dtype")
        .or_else(|| config_json.get("torch_dtype"));
    assert_eq!(dtype, Some(&serde_json::json!("float32")), "{config_json}");
    let resumed = run(&config, Some(checkpoint), false);
    assert_resumed_losses_equal(&full, &resumed, 3);
    assert_eq!(model_values(&full.saved), model_values(&resumed.saved));
    let base = model_values(&tiny());
    assert_ne!(model_values(&full.saved), base, "the weights changed");
}

//! `[train] gradient_checkpointing = true` on the tiny model: LoRA and full fine-tuning follow the
//! plain run (losses and weights); several peers of one process refuse adapter dropout with it
//! (dropout with checkpointing: `checkpointed_dropout.rs`, a process of its own).

use std::path::{Path, PathBuf};

use ft_data::rows::RowSource;
use ft_train::config::TrainConfig;
use ft_train::parallel::train_parallel;
use ft_train::trainer::{NoHooks, TrainOutcome, train};

use crate::common;
use common::{adapter_values, max_difference, model_values, tiny_rows, tiny_setup, write_tiny_config};

const STEPS: &str = "max_steps = 3\nbatch_size = 4\nmax_grad_norm = 1.0\neps = 1e-4";

fn lora(dropout: f64) -> String {
    format!("[lora]\nr = 4\nalpha = 8\ndropout = {dropout}\n")
}

/// `train` keys plus `gradient_checkpointing` as `checkpoint` says.
fn config(dir: &Path, train: &str, checkpoint: bool, lora: &str) -> PathBuf {
    let train = format!("{train}\ngradient_checkpointing = {checkpoint}");
    write_tiny_config(dir, 16, &train, true, lora)
}

fn run(config_path: &Path, resume: Option<PathBuf>) -> TrainOutcome {
    let config = TrainConfig::from_file(config_path).unwrap();
    let rows = Box::new(tiny_rows(&config));
    train(tiny_setup(&config, rows, resume, false), &mut NoHooks).unwrap()
}

fn assert_losses_close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol, "{a:?} vs {b:?}");
    }
}

#[test]
fn checkpointed_lora_training_follows_the_plain_run() {
    let (plain_dir, kept_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let plain = run(&config(plain_dir.path(), STEPS, false, &lora(0.0)), None);
    let kept = run(&config(kept_dir.path(), STEPS, true, &lora(0.0)), None);
    assert_losses_close(&plain.losses, &kept.losses, 1e-6);
    let diff = max_difference(&adapter_values(&plain.saved), &adapter_values(&kept.saved));
    assert!(diff < 1e-5, "adapters differ by {diff}");
    assert!(kept.losses[2] < kept.losses[0], "{:?}", kept.losses);
}

#[test]
fn checkpointed_full_fine_tuning_follows_the_plain_run() {
    let (plain_dir, kept_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let train = "max_steps = 2\nbatch_size = 4\neps = 1e-4";
    let plain = run(&config(plain_dir.path(), train, false, ""), None);
    let kept = run(&config(kept_dir.path(), train, true, ""), None);
    assert_losses_close(&plain.losses, &kept.losses, 1e-6);
    let diff = max_difference(&model_values(&plain.saved), &model_values(&kept.saved));
    assert!(diff < 1e-5, "weights differ by {diff}");
}

#[test]
fn peers_of_one_process_refuse_dropout_with_checkpointing() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), STEPS, true, &lora(0.1));
    let config = TrainConfig::from_file(&path).unwrap();
    let rows: std::sync::Arc<dyn RowSource> = std::sync::Arc::new(tiny_rows(&config));
    let setups = (0..2)
        .map(|_| tiny_setup(&config, Box::new(rows.clone()), None, false))
        .collect();
    let err = train_parallel(setups, &mut NoHooks, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("gradient_checkpointing") && err.contains("dropout"),
        "{err}"
    );
}

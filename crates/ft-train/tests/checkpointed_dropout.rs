//! `[train] gradient_checkpointing` with adapter dropout on the tiny model: a run is
//! reproducible, resumes exactly, and its masks are drawn (its losses are not the dropout-free
//! run's). A process of its own: the backend's random generator is process-wide, and every
//! training run reseeds it at each step, so runs on other test threads would change its draws.

use std::path::{Path, PathBuf};

use ft_train::config::TrainConfig;
use ft_train::trainer::{NoHooks, TrainOutcome, train};

mod common;
use common::{tiny_rows, tiny_setup, write_tiny_config};

fn config(dir: &Path, dropout: f64) -> PathBuf {
    let train =
        "max_steps = 4\nbatch_size = 4\nsave_steps = 2\nsave_total_limit = 0\ngradient_checkpointing = true";
    write_tiny_config(
        dir,
        16,
        train,
        true,
        &format!("[lora]\nr = 4\nalpha = 8\ndropout = {dropout}\n"),
    )
}

fn run(config_path: &Path, resume: Option<PathBuf>) -> TrainOutcome {
    let config = TrainConfig::from_file(config_path).unwrap();
    let rows = Box::new(tiny_rows(&config));
    train(tiny_setup(&config, rows, resume, false), &mut NoHooks).unwrap()
}

fn assert_losses_equal(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-9, "{a:?} vs {b:?}");
    }
}

#[test]
fn checkpointed_dropout_is_reproducible_resumes_exactly_and_masks() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), 0.3);
    let first = run(&path, None);
    let resumed = run(&path, Some(dir.path().join("out/checkpoint-2")));
    assert_losses_equal(&first.losses[2..], &resumed.losses);
    let again = run(&path, None);
    assert_losses_equal(&first.losses, &again.losses);
    let plain_dir = tempfile::tempdir().unwrap();
    let without = run(&config(plain_dir.path(), 0.0), None);
    // Step 1's loss already differs (at step 0, B = 0: the adapter adds nothing, masked or not).
    let moved = (without.losses[1] - first.losses[1]).abs();
    assert!(moved > 1e-4, "{:?} vs {:?}", without.losses, first.losses);
}

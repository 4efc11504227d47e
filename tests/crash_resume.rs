//! Crash safety of checkpoints: `ft train` is killed with SIGKILL at pseudo-random moments (many
//! during checkpoint writes: a full fine-tuning run saving after every step), then resumed with a
//! bare `--resume`, again and again. Every `checkpoint-N` folder left behind must be complete, and
//! the run must end with exactly the losses of an uninterrupted run.
//!
//! `FT_CRASH_KILLS` sets the number of kills (default 8).

use crate::common;
use common::{assistant_config, ft};

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use ft_metrics::RunHistory;
use ft_train::checkpoint::{TrainerState, latest_checkpoint, list_checkpoints};

/// Full fine-tuning of the tiny model for 12 steps, a checkpoint after every step, keeping 2.
fn config(dir: &Path, out: &Path) -> PathBuf {
    let data = dir.join("assistant.jsonl");
    if !data.exists() {
        let ok = ft()
            .args(["data", "gen-assistant", "--name", "Ada", "--count", "32", "--out"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(ok.status.success());
    }
    assistant_config(dir, &data, out, |text| {
        // Without the [lora] section: full fine-tuning.
        let full = text.split("[lora]").next().unwrap().to_owned()
            + "[train]"
            + text.split("[train]").nth(1).unwrap();
        full.replace("epochs = 8", "max_steps = 12")
            .replace("lr = 3e-3", "lr = 1e-4")
            .replace("save_steps = 50", "save_steps = 1")
            .replace("every_steps = 50", "every_steps = 1000")
    })
}

/// Every `checkpoint-N` is whole: its state names step N and its safetensors files parse.
fn assert_checkpoints_complete(out: &Path) {
    for (step, dir) in list_checkpoints(out).unwrap() {
        let state = TrainerState::read(&dir).unwrap();
        assert_eq!(state.global_step, step, "{}", dir.display());
        for file in ["model.safetensors", "optimizer.safetensors"] {
            let bytes =
                std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()));
            safetensors::SafeTensors::deserialize(&bytes)
                .unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()));
        }
    }
}

fn train(config: &Path, resume: bool) -> std::process::Child {
    let mut cmd = ft();
    cmd.arg("train")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if resume {
        cmd.arg("--resume");
    }
    cmd.spawn().unwrap()
}

#[test]
fn killed_runs_always_resume_from_a_complete_checkpoint_with_the_same_losses() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference");
    let started = Instant::now();
    assert!(
        train(&config(dir.path(), &reference), false)
            .wait()
            .unwrap()
            .success()
    );
    let run_time = started.elapsed();
    let expected = RunHistory::read(&reference).unwrap();
    assert_eq!(expected.steps.len(), 12);

    let out = dir.path().join("crashed");
    let cfg = config(dir.path(), &out);
    let kills: usize = std::env::var("FT_CRASH_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(8);
    // A fixed linear congruential sequence: the same moments on every run of the test.
    let mut lcg: u64 = 0x2545_f491_4f6c_dd1d;
    let (mut mid_write, mut finished_early) = (0, 0);
    for _ in 0..kills {
        lcg = lcg
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let fraction = (lcg >> 11) as f64 / (1u64 << 53) as f64;
        let delay = run_time.mul_f64(0.15 + 0.7 * fraction);
        let resume = latest_checkpoint(&out).unwrap().is_some();
        let mut child = train(&cfg, resume);
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_some() {
            finished_early += 1;
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let partial = std::fs::read_dir(&out)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .any(|e| e.file_name().to_string_lossy().contains(".ft-partial-"))
            })
            .unwrap_or(false);
        mid_write += usize::from(partial);
        assert_checkpoints_complete(&out);
    }
    let resume = latest_checkpoint(&out).unwrap().is_some();
    assert!(
        train(&cfg, resume).wait().unwrap().success(),
        "the last resume finishes"
    );
    assert!(out.join("final/model.safetensors").is_file());
    assert_checkpoints_complete(&out);

    let got = RunHistory::read(&out).unwrap();
    assert_eq!(got.steps.len(), 12, "one line per step after the resumes");
    for (a, b) in expected.steps.iter().zip(&got.steps) {
        assert_eq!(a.step, b.step);
        assert!(
            (a.loss - b.loss).abs() < 1e-9,
            "step {}: {} vs {}",
            a.step,
            a.loss,
            b.loss
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".ft-partial-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "stale staging folders are cleared: {leftovers:?}"
    );
    eprintln!(
        "{kills} kills ({mid_write} mid-write, {finished_early} after the run had finished); run time {run_time:?}"
    );
}

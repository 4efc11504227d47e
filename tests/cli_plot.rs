//! Pictures and TensorBoard files of a real `ft train` run, through the binary: `loss.png` /
//! `loss.svg` at checkpoints and at the end, `report_to = ["tensorboard"]`, one continuous curve
//! after an interrupted run is resumed, and `ft plot` over several runs.

use crate::common;
use common::{assistant_config, ft, run_ok, tensorboard_series};

use std::path::{Path, PathBuf};

use ft_metrics::{Metric, RunHistory};

/// A 6-step LoRA run of the assistant example (checkpoints at 2 and 4), reporting to TensorBoard.
fn config(dir: &Path, out: &Path, lr: &str) -> PathBuf {
    let data = dir.join("assistant.jsonl");
    if !data.exists() {
        run_ok(
            ft().args(["data", "gen-assistant", "--name", "Ada", "--count", "48", "--out"])
                .arg(&data),
        );
    }
    assistant_config(dir, &data, out, |text| {
        text.replace("epochs = 8", "max_steps = 6")
            .replace("lr = 3e-3", &format!("lr = {lr}"))
            .replace("save_steps = 50", "save_steps = 2")
            .replace("save_total_limit = 2", "save_total_limit = 0")
            .replace("every_steps = 50", "every_steps = 100")
    })
}

fn assert_png(path: &Path) {
    let img = image::open(path).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (1280, 960));
    let blue = img.pixels().filter(|p| p.0 == [31, 119, 180]).count();
    assert!(
        blue > 200,
        "{}: the loss curve is drawn ({blue} pixels)",
        path.display()
    );
}

#[test]
fn a_run_draws_its_curves_and_reports_to_tensorboard_across_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lora");
    let cfg = config(dir.path(), &out, "3e-3");
    run_ok(ft().arg("train").arg(&cfg));
    assert_png(&out.join("loss.png"));
    let svg = std::fs::read_to_string(out.join("loss.svg")).unwrap();
    assert!(
        svg.contains("lora · tiny-base"),
        "the title names the run and the base"
    );
    let first = RunHistory::read(&out).unwrap();
    assert_eq!(
        first.steps.iter().map(|s| s.step).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
    let runs = out.join("runs");
    let losses = tensorboard_series(&runs, "train/loss");
    let expected: Vec<(i64, f32)> = first
        .steps
        .iter()
        .map(|s| (s.step as i64, s.loss as f32))
        .collect();
    assert_eq!(losses, expected, "TensorBoard holds metrics.jsonl's losses");
    for tag in [
        "train/lr",
        "train/grad_norm",
        "train/tokens_per_s",
        "train/supervised_tokens",
    ] {
        assert_eq!(tensorboard_series(&runs, tag).len(), 6, "{tag}");
    }

    // As if the run had died after step 6 with checkpoint-4 its last: resume from there.
    std::fs::remove_file(out.join("loss.png")).unwrap();
    run_ok(
        ft().arg("train")
            .arg(&cfg)
            .arg("--resume")
            .arg(out.join("checkpoint-4")),
    );
    let resumed = RunHistory::read(&out).unwrap();
    assert_eq!(resumed.steps.len(), 6, "one continuous curve, no step twice");
    for (a, b) in first.steps.iter().zip(&resumed.steps) {
        assert!(
            (a.loss - b.loss).abs() < 1e-9,
            "step {}: {} vs {}",
            a.step,
            a.loss,
            b.loss
        );
    }
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(
        text.lines().count(),
        6,
        "metrics.jsonl lost the superseded lines:\n{text}"
    );
    assert_eq!(
        std::fs::read_dir(&runs).unwrap().count(),
        2,
        "the resumed run wrote a second file"
    );
    let after = tensorboard_series(&runs, "train/loss");
    assert_eq!(
        after.iter().map(|p| p.0).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
    assert_png(&out.join("loss.png"));
}

#[test]
fn ft_plot_compares_runs_and_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run_ok(ft().arg("train").arg(config(dir.path(), &a, "3e-3")));
    run_ok(ft().arg("train").arg(config(dir.path(), &b, "1e-3")));

    let svg = dir.path().join("cmp.svg");
    let out = run_ok(
        ft().arg("plot")
            .arg(&a)
            .arg(b.join("metrics.jsonl"))
            .arg("--out")
            .arg(&svg),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("cmp.svg"));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.contains(">\na\n</text>") && text.contains(">\nb\n</text>"),
        "legend names both runs"
    );
    let six_point_lines = text.split("<polyline").filter(|p| {
        p.split("points=\"")
            .nth(1)
            .is_some_and(|pts| pts.split('"').next().unwrap().split_whitespace().count() == 6)
    });
    assert_eq!(six_point_lines.count(), 4, "raw and smoothed loss of each run");

    let png = dir.path().join("lr.png");
    run_ok(
        ft().arg("plot")
            .arg(&a)
            .arg(&b)
            .args(["--metric", "lr", "--out"])
            .arg(&png),
    );
    assert_eq!(image::open(&png).unwrap().to_rgb8().dimensions(), (1280, 720));

    let none = ft()
        .arg("plot")
        .arg(&a)
        .args(["--metric", "eval_loss", "--out"])
        .arg(&png)
        .output()
        .unwrap();
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("eval_loss"));
    let missing = ft().arg("plot").arg(dir.path().join("nope")).output().unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope"));
    assert_eq!(RunHistory::read(&a).unwrap().series(Metric::Lr).len(), 6);
}

#[test]
fn an_unknown_report_target_is_refused_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let cfg = config(dir.path(), &out, "3e-3");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("\"tensorboard\"", "\"wandb\"");
    std::fs::write(&cfg, text).unwrap();
    let res = ft().arg("train").arg(&cfg).output().unwrap();
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("train.report_to") && err.contains("wandb"), "{err}");
    // Nothing was started: no event file.
    assert!(!out.join("runs").exists());
}

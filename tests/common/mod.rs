//! What the CLI suites share: the binary under test, repository paths, and running a command
//! that must succeed. Each suite uses part of it.
#![allow(dead_code)]

pub mod serve;

use std::path::{Path, PathBuf};

use ft_metrics::tensorboard::proto::What;
use ft_metrics::tensorboard::read_events;
use std::process::{Command, Output};

/// The `ft` binary of this build.
pub fn ft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ft"))
}

/// A path inside the repository.
pub fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(p)
}

/// The assistant example's config with its paths filled in (as `examples/assistant/run.sh`
/// does), changed by `edit`, written as `DIR/<out's name>.toml`.
pub fn assistant_config(dir: &Path, data: &Path, out: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(repo("examples/assistant/assistant.toml"))
        .unwrap()
        .replace("@DATA@", &data.display().to_string())
        .replace("@MODEL@", &repo("fixtures/tiny-base").display().to_string())
        .replace("@OUT@", &out.display().to_string());
    let name = out.file_name().unwrap().to_str().unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, edit(text)).unwrap();
    path
}

/// A JSON file, parsed.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Runs `cmd`, failing the test with its stderr when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The scalars TensorBoard shows: every event file in name order, a session START purging the
/// earlier files' events at its step and later.
pub fn tensorboard_series(runs: &Path, tag: &str) -> Vec<(i64, f32)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut series: Vec<(i64, f32)> = Vec::new();
    for file in files {
        for event in read_events(&file).unwrap() {
            if matches!(&event.what, Some(What::SessionLog(s)) if s.status == 1) {
                series.retain(|(step, _)| *step < event.step);
            }
            for (t, v) in event.scalar_values() {
                if t == tag {
                    series.push((event.step, v));
                }
            }
        }
    }
    series
}

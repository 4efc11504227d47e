//! `output_dir/metrics.jsonl`: one JSON object per logged optimizer step, and one per eval.

use std::io::Write;
use std::path::{Path, PathBuf};

use ft_io::IoError;
use serde::{Deserialize, Serialize};

use crate::error::{MetricsError, Result};

/// The metrics file of a run folder.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// What is logged for an optimizer step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Optimizer step (1-based).
    pub step: usize,
    /// Token-mean loss over the step's accumulation window.
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f64,
    /// Learning rate used for the step.
    #[serde(deserialize_with = "nan_if_null")]
    pub lr: f64,
    /// Global gradient norm before clipping.
    #[serde(deserialize_with = "nan_if_null")]
    pub grad_norm: f64,
    /// Real (non-padding) tokens per second over the step.
    #[serde(deserialize_with = "nan_if_null")]
    pub tokens_per_s: f64,
    /// Supervised tokens in the window.
    pub supervised_tokens: usize,
}

/// What is logged for an evaluation of held-out data (a line with an `eval_loss` key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Optimizer steps done when it was measured.
    pub step: usize,
    /// Mean loss over the held-out supervised tokens.
    #[serde(deserialize_with = "nan_if_null")]
    pub eval_loss: f64,
    /// Supervised tokens it was measured on.
    pub eval_tokens: usize,
}

/// JSON has no NaN: serde_json writes a non-finite float (a skipped step's loss) as `null`.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricsLine {
    /// A training step.
    Step(StepMetrics),
    /// An evaluation.
    Eval(EvalMetrics),
}

impl MetricsLine {
    /// The optimizer step the line belongs to.
    pub fn step(&self) -> usize {
        match self {
            MetricsLine::Step(m) => m.step,
            MetricsLine::Eval(m) => m.step,
        }
    }

    /// Parses a line; `path` and `line` (1-based) name it in the error.
    pub fn parse(text: &str, path: &Path, line: usize) -> Result<Self> {
        let err = |e: serde_json::Error| MetricsError::Line {
            path: path.to_path_buf(),
            line,
            message: e.to_string(),
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(err)?;
        if value.get("eval_loss").is_some() {
            serde_json::from_value(value).map(MetricsLine::Eval).map_err(err)
        } else {
            serde_json::from_value(value).map(MetricsLine::Step).map_err(err)
        }
    }
}

/// Appends metrics lines, flushing each one (a crash loses nothing already logged).
#[derive(Debug)]
pub struct MetricsWriter {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsWriter {
    /// Opens `output_dir/metrics.jsonl` for appending.
    pub fn open(output_dir: &Path) -> Result<Self> {
        let path = output_dir.join(METRICS_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(IoError::at("opening", &path))?;
        Ok(Self { path, file })
    }

    /// Opens it for a run resumed after optimizer step `step`: lines logged past that step by
    /// the interrupted run are dropped first (atomically), so the file reads as one run.
    pub fn open_resumed(output_dir: &Path, step: usize) -> Result<Self> {
        let path = output_dir.join(METRICS_FILE);
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(IoError::at("reading", &path))?;
            let mut kept = String::with_capacity(text.len());
            for (i, line) in text.lines().enumerate() {
                let past = MetricsLine::parse(line, &path, i + 1).is_ok_and(|m| m.step() > step);
                if !past && !line.trim().is_empty() {
                    kept.push_str(line);
                    kept.push('\n');
                }
            }
            if kept.len() != text.len() {
                ft_io::write_file_atomically(&path, kept.as_bytes())?;
            }
        }
        Self::open(output_dir)
    }

    /// Appends a step's line.
    pub fn log(&mut self, metrics: &StepMetrics) -> Result<()> {
        self.append(&serde_json::to_string(metrics).expect("invariant: metrics serialise"))
    }

    /// Appends an eval's line.
    pub fn log_eval(&mut self, metrics: &EvalMetrics) -> Result<()> {
        self.append(&serde_json::to_string(metrics).expect("invariant: metrics serialise"))
    }

    fn append(&mut self, line: &str) -> Result<()> {
        writeln!(self.file, "{line}")
            .and_then(|_| self.file.flush())
            .map_err(IoError::at("appending to", &self.path))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(step: usize) -> StepMetrics {
        StepMetrics {
            step,
            loss: 2.5,
            lr: 1e-4,
            grad_norm: 0.9,
            tokens_per_s: 1000.0,
            supervised_tokens: 12,
        }
    }

    #[test]
    fn lines_append_and_parse_back_with_every_key() {
        let dir = tempfile::tempdir().unwrap();
        MetricsWriter::open(dir.path()).unwrap().log(&step(1)).unwrap();
        let mut w = MetricsWriter::open(dir.path()).unwrap();
        w.log(&step(2)).unwrap();
        w.log_eval(&EvalMetrics {
            step: 2,
            eval_loss: 1.5,
            eval_tokens: 40,
        })
        .unwrap();
        let path = dir.path().join(METRICS_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<MetricsLine> = text
            .lines()
            .enumerate()
            .map(|(i, l)| MetricsLine::parse(l, &path, i + 1).unwrap())
            .collect();
        assert_eq!(lines[0], MetricsLine::Step(step(1)));
        assert_eq!(
            lines[2],
            MetricsLine::Eval(EvalMetrics {
                step: 2,
                eval_loss: 1.5,
                eval_tokens: 40
            })
        );
        for key in [
            "step",
            "loss",
            "lr",
            "grad_norm",
            "tokens_per_s",
            "supervised_tokens",
        ] {
            assert!(text.lines().next().unwrap().contains(&format!("\"{key}\"")));
        }
    }

    #[test]
    fn a_bad_line_names_file_and_line() {
        let path = Path::new("run/metrics.jsonl");
        let err = MetricsLine::parse("{\"step\": 1}", path, 7)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("run/metrics.jsonl:7:"), "{err}");
    }

    #[test]
    fn resuming_drops_the_lines_past_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = MetricsWriter::open(dir.path()).unwrap();
        for s in 1..=5 {
            w.log(&step(s)).unwrap();
        }
        w.log_eval(&EvalMetrics {
            step: 4,
            eval_loss: 1.0,
            eval_tokens: 3,
        })
        .unwrap();
        let mut w = MetricsWriter::open_resumed(dir.path(), 3).unwrap();
        w.log(&step(4)).unwrap();
        let path = dir.path().join(METRICS_FILE);
        let steps: Vec<usize> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .enumerate()
            .map(|(i, l)| MetricsLine::parse(l, &path, i + 1).unwrap().step())
            .collect();
        assert_eq!(steps, vec![1, 2, 3, 4]);
    }
}

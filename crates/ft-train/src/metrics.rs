//! `output_dir/metrics.jsonl`: one JSON object per logged optimizer step.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// What is logged for an optimizer step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Optimizer step (1-based).
    pub step: usize,
    /// Token-mean loss over the step's accumulation window.
    pub loss: f64,
    /// Learning rate used for the step.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Real (non-padding) tokens per second over the step.
    pub tokens_per_s: f64,
    /// Supervised tokens in the window.
    pub supervised_tokens: usize,
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
        let path = output_dir.join("metrics.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        Ok(Self { path, file })
    }

    /// Appends one line.
    pub fn log(&mut self, metrics: &StepMetrics) -> Result<()> {
        let line = serde_json::to_string(metrics).expect("invariant: metrics serialise");
        writeln!(self.file, "{line}")
            .and_then(|_| self.file.flush())
            .map_err(|e| TrainError::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_append_and_parse_back() {
        let dir = tempfile::tempdir().unwrap();
        let m = StepMetrics {
            step: 1,
            loss: 2.5,
            lr: 1e-4,
            grad_norm: 0.9,
            tokens_per_s: 1000.0,
            supervised_tokens: 12,
        };
        MetricsWriter::open(dir.path()).unwrap().log(&m).unwrap();
        MetricsWriter::open(dir.path())
            .unwrap()
            .log(&StepMetrics { step: 2, ..m.clone() })
            .unwrap();
        let text = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
        let lines: Vec<StepMetrics> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], m);
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
}

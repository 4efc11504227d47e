//! A run's metrics read back from `metrics.jsonl`, as one continuous history.

use std::path::{Path, PathBuf};

use ft_io::IoError;

use crate::error::{MetricsError, Result};
use crate::record::{EvalMetrics, METRICS_FILE, MetricsLine, StepMetrics};

/// A quantity that can be drawn against the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Training loss (drawn raw and smoothed).
    Loss,
    /// Learning rate.
    Lr,
    /// Gradient norm before clipping.
    GradNorm,
    /// Real tokens per second.
    TokensPerS,
    /// Held-out loss.
    EvalLoss,
}

impl Metric {
    /// Every metric, in `--metric` order.
    pub const ALL: [Metric; 5] = [
        Metric::Loss,
        Metric::Lr,
        Metric::GradNorm,
        Metric::TokensPerS,
        Metric::EvalLoss,
    ];

    /// The key in `metrics.jsonl` (and the `--metric` value).
    pub fn key(self) -> &'static str {
        match self {
            Metric::Loss => "loss",
            Metric::Lr => "lr",
            Metric::GradNorm => "grad_norm",
            Metric::TokensPerS => "tokens_per_s",
            Metric::EvalLoss => "eval_loss",
        }
    }

    /// A metric by its key.
    pub fn parse(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.key() == key)
    }
}

/// The logged steps and evals of one run, in step order.
#[derive(Debug, Clone, PartialEq)]
pub struct RunHistory {
    /// The run's name: its folder's name.
    pub name: String,
    /// Logged optimizer steps.
    pub steps: Vec<StepMetrics>,
    /// Evaluations of held-out data.
    pub evals: Vec<EvalMetrics>,
}

impl RunHistory {
    /// Reads a run folder's `metrics.jsonl` (or that file itself).
    ///
    /// A run that was interrupted and resumed logs some steps twice (the ones after its last
    /// checkpoint, if it died without saving): a line whose step does not follow the previous
    /// line's starts the curve again from there, so the newest lines win and the history is one
    /// continuous curve.
    pub fn read(run: &Path) -> Result<Self> {
        let (dir, path) = locate(run)?;
        let text = std::fs::read_to_string(&path).map_err(IoError::at("reading", &path))?;
        let mut history = Self {
            name: run_name(&dir),
            steps: Vec::new(),
            evals: Vec::new(),
        };
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match MetricsLine::parse(line, &path, i + 1)? {
                MetricsLine::Step(m) => {
                    history.steps.retain(|s| s.step < m.step);
                    history.evals.retain(|e| e.step < m.step);
                    history.steps.push(m);
                }
                MetricsLine::Eval(m) => {
                    history.evals.retain(|e| e.step < m.step);
                    history.evals.push(m);
                }
            }
        }
        Ok(history)
    }

    /// `(step, value)` of a metric, finite values only (a skipped step logs NaN).
    pub fn series(&self, metric: Metric) -> Vec<(f64, f64)> {
        let points: Vec<(f64, f64)> = match metric {
            Metric::EvalLoss => self.evals.iter().map(|e| (e.step as f64, e.eval_loss)).collect(),
            _ => self
                .steps
                .iter()
                .map(|s| {
                    let v = match metric {
                        Metric::Loss => s.loss,
                        Metric::Lr => s.lr,
                        Metric::GradNorm => s.grad_norm,
                        _ => s.tokens_per_s,
                    };
                    (s.step as f64, v)
                })
                .collect(),
        };
        points.into_iter().filter(|(_, v)| v.is_finite()).collect()
    }
}

/// The folder and the `metrics.jsonl` of a run given as either.
fn locate(run: &Path) -> Result<(PathBuf, PathBuf)> {
    if run.is_dir() {
        let path = run.join(METRICS_FILE);
        if !path.is_file() {
            return Err(MetricsError::NoMetrics(run.to_path_buf()));
        }
        return Ok((run.to_path_buf(), path));
    }
    if !run.is_file() {
        return Err(MetricsError::NoMetrics(run.to_path_buf()));
    }
    let dir = run.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok((dir, run.to_path_buf()))
}

fn run_name(dir: &Path) -> String {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    absolute
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(step: usize, loss: f64) -> String {
        format!(
            "{{\"step\":{step},\"loss\":{loss},\"lr\":0.001,\"grad_norm\":1.0,\"tokens_per_s\":10.0,\"supervised_tokens\":4}}\n"
        )
    }

    #[test]
    fn a_resumed_run_reads_as_one_curve_with_the_newest_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for s in 1..=5 {
            text += &line(s, 10.0);
        }
        text += "{\"step\":4,\"eval_loss\":9.0,\"eval_tokens\":3}\n";
        // Resumed from checkpoint-3: steps 4 and 5 again, with other losses.
        for s in 4..=6 {
            text += &line(s, 1.0);
        }
        std::fs::write(dir.path().join(METRICS_FILE), text).unwrap();
        let run = RunHistory::read(dir.path()).unwrap();
        let steps: Vec<usize> = run.steps.iter().map(|s| s.step).collect();
        assert_eq!(steps, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(run.steps[3].loss, 1.0);
        assert!(
            run.evals.is_empty(),
            "the eval at step 4 belonged to the abandoned branch"
        );
    }

    #[test]
    fn nan_losses_are_left_out_of_the_series() {
        let dir = tempfile::tempdir().unwrap();
        let text = line(1, 2.0) + &line(2, 1.0).replace("\"loss\":1", "\"loss\":NaN");
        std::fs::write(dir.path().join(METRICS_FILE), text).unwrap();
        // serde_json writes NaN as null; both must read.
        let err = RunHistory::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("metrics.jsonl:2"), "{err}");
        let text = line(1, 2.0) + &line(2, 1.0).replace("\"loss\":1", "\"loss\":null");
        std::fs::write(dir.path().join(METRICS_FILE), text).unwrap();
        let run = RunHistory::read(dir.path()).unwrap();
        assert_eq!(run.series(Metric::Loss), vec![(1.0, 2.0)]);
        assert_eq!(run.series(Metric::Lr).len(), 2);
    }

    #[test]
    fn a_folder_without_metrics_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = RunHistory::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no metrics.jsonl"), "{err}");
    }

    #[test]
    fn metrics_parse_from_their_keys() {
        for m in Metric::ALL {
            assert_eq!(Metric::parse(m.key()), Some(m));
        }
        assert_eq!(Metric::parse("accuracy"), None);
    }
}

//! What a run logs, and where: `output_dir/metrics.jsonl` (always), TensorBoard event files
//! under `output_dir/runs/` (`[train] report_to = ["tensorboard"]`), and the pictures
//! `output_dir/loss.png` / `loss.svg`, redrawn at every checkpoint and at the end.

use std::path::PathBuf;

use ft_metrics::tensorboard::{EventWriter, TENSORBOARD_DIR};
pub use ft_metrics::{EvalMetrics, MetricsWriter, StepMetrics};

use crate::config::TrainConfig;
use crate::error::Result;

/// The logs of one training run.
#[derive(Debug)]
pub struct RunLog {
    jsonl: MetricsWriter,
    tensorboard: Option<EventWriter>,
    output_dir: PathBuf,
    title: String,
}

impl RunLog {
    /// Opens the logs of `config`'s run, which starts after optimizer step `resumed_after` (0 for
    /// a fresh run): lines and events logged past it by an earlier run into the same
    /// `output_dir` are superseded, so the curves continue as one.
    pub fn open(config: &TrainConfig, resumed_after: usize) -> Result<Self> {
        let output_dir = config.train.output_dir.clone();
        let jsonl = MetricsWriter::open_resumed(&output_dir, resumed_after)?;
        let tensorboard = if config.train.report_to.iter().any(|r| r == "tensorboard") {
            let dir = output_dir.join(TENSORBOARD_DIR);
            Some(EventWriter::create(&dir, Some(resumed_after))?)
        } else {
            None
        };
        Ok(Self {
            jsonl,
            tensorboard,
            title: run_title(config),
            output_dir,
        })
    }

    /// Logs an optimizer step.
    pub fn log_step(&mut self, m: &StepMetrics) -> Result<()> {
        self.jsonl.log(m)?;
        if let Some(tb) = &mut self.tensorboard {
            tb.add_scalars(
                m.step,
                &[
                    ("train/loss", m.loss),
                    ("train/lr", m.lr),
                    ("train/grad_norm", m.grad_norm),
                    ("train/tokens_per_s", m.tokens_per_s),
                    ("train/supervised_tokens", m.supervised_tokens as f64),
                ],
            )?;
        }
        Ok(())
    }

    /// Logs an evaluation of held-out data.
    pub fn log_eval(&mut self, m: &EvalMetrics) -> Result<()> {
        self.jsonl.log_eval(m)?;
        if let Some(tb) = &mut self.tensorboard {
            tb.add_scalars(m.step, &[("eval/loss", m.eval_loss)])?;
        }
        Ok(())
    }

    /// Redraws `loss.png` and `loss.svg` from everything logged so far. A picture that cannot
    /// be drawn is a warning: it never stops training.
    pub fn draw(&self) {
        if let Err(e) = ft_metrics::plot::write_run_plots(&self.output_dir, &self.title) {
            tracing::warn!("loss picture not drawn: {e}");
        }
    }
}

/// `RUN · BASE`: the output folder's name and the base model's file or folder name.
fn run_title(config: &TrainConfig) -> String {
    let name = |p: &std::path::Path| {
        std::path::absolute(p)
            .ok()
            .and_then(|a| a.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| p.display().to_string())
    };
    format!(
        "{} · {}",
        name(&config.train.output_dir),
        name(&config.model.path)
    )
}

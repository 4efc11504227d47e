//! # ft-metrics
//!
//! What a training run leaves to look at: `metrics.jsonl` (one JSON object per logged step,
//! plus eval-loss lines), the loss curves drawn from it as PNG and SVG (`loss.png`), and
//! TensorBoard event files (`runs/events.out.tfevents.*`).
//!
//! ```
//! use ft_metrics::{MetricsWriter, RunHistory, StepMetrics};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let mut log = MetricsWriter::open(dir.path()).unwrap();
//! for step in 1..=3 {
//!     let m = StepMetrics { step, loss: 3.0 / step as f64, lr: 1e-4, grad_norm: 1.0, tokens_per_s: 900.0, supervised_tokens: 12 };
//!     log.log(&m).unwrap();
//! }
//! let run = RunHistory::read(dir.path()).unwrap();
//! assert_eq!(run.steps.len(), 3);
//! let written = ft_metrics::plot::write_run_plots(dir.path(), "my run").unwrap();
//! assert!(written.is_some() && dir.path().join("loss.png").exists());
//! ```
//!
//! This crate has no Burn dependency: pictures are drawn with `plotters` and a bundled font
//! (DejaVu Sans), so no Python and no system fonts are needed.

pub mod error;
pub mod history;
pub mod plot;
pub mod record;
pub mod smooth;
pub mod tensorboard;

pub use error::{MetricsError, Result};
pub use history::{Metric, RunHistory};
pub use record::{EvalMetrics, MetricsWriter, StepMetrics};

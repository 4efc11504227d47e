//! `ft plot`: one metric of one or several runs in one picture, from their `metrics.jsonl`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use ft_metrics::{Metric, RunHistory};

/// Arguments of `ft plot`.
#[derive(Args)]
pub struct PlotArgs {
    /// Run folders (a `ft train` output_dir) or their `metrics.jsonl` files.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// The picture to write: `.png` or `.svg` [default: plot-METRIC.png].
    #[arg(long)]
    out: Option<PathBuf>,
    /// What to compare.
    #[arg(long, value_enum, default_value_t = MetricArg::Loss)]
    metric: MetricArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum MetricArg {
    /// Training loss, raw (pale) and smoothed (EMA 0.9).
    #[value(name = "loss")]
    Loss,
    /// Learning rate.
    #[value(name = "lr")]
    Lr,
    /// Gradient norm before clipping.
    #[value(name = "grad_norm")]
    GradNorm,
    /// Real tokens per second.
    #[value(name = "tokens_per_s")]
    TokensPerS,
    /// Held-out loss.
    #[value(name = "eval_loss")]
    EvalLoss,
}

impl From<MetricArg> for Metric {
    fn from(m: MetricArg) -> Self {
        match m {
            MetricArg::Loss => Metric::Loss,
            MetricArg::Lr => Metric::Lr,
            MetricArg::GradNorm => Metric::GradNorm,
            MetricArg::TokensPerS => Metric::TokensPerS,
            MetricArg::EvalLoss => Metric::EvalLoss,
        }
    }
}

/// Draws the picture and prints its path.
pub fn run(args: PlotArgs) -> anyhow::Result<()> {
    let metric = Metric::from(args.metric);
    let runs = args
        .runs
        .iter()
        .map(|run| RunHistory::read(run))
        .collect::<Result<Vec<_>, _>>()?;
    if runs.iter().all(|r| r.series(metric).is_empty()) {
        bail!(
            "no run logged any `{}` value ({})",
            metric.key(),
            args.runs
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("plot-{}.png", metric.key())));
    ft_metrics::plot::write_comparison(&runs, metric, &out)
        .with_context(|| format!("drawing {}", out.display()))?;
    println!("{}", out.display());
    Ok(())
}

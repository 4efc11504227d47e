//! Loss curves as pictures: `output_dir/loss.png` and `loss.svg` for a run (loss raw and
//! smoothed with eval losses, learning rate, gradient norm), and one metric of several runs side
//! by side (`ft plot`).

pub mod chart;
pub mod output;

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::history::{Metric, RunHistory};
pub use chart::{ComparisonChart, RunChart};
pub use output::{PictureFormat, render};

/// The pictures of a run, without extension: `loss.png`, `loss.svg`.
pub const RUN_PICTURE: &str = "loss";
/// Size of a run's picture (pixels).
pub const RUN_SIZE: (u32, u32) = (1280, 960);
/// Size of a comparison picture (pixels).
pub const COMPARISON_SIZE: (u32, u32) = (1280, 720);

/// Draws `output_dir/loss.png` and `loss.svg` from its `metrics.jsonl`; `title` heads them
/// (the run name and base model). Returns the paths written, or `None` when nothing was logged
/// yet.
pub fn write_run_plots(output_dir: &Path, title: &str) -> Result<Option<[PathBuf; 2]>> {
    let history = RunHistory::read(output_dir)?;
    if history.steps.is_empty() {
        return Ok(None);
    }
    let chart = RunChart {
        history: &history,
        title,
    };
    let png = output_dir.join(format!("{RUN_PICTURE}.png"));
    let svg = output_dir.join(format!("{RUN_PICTURE}.svg"));
    render(&png, RUN_SIZE, &chart)?;
    render(&svg, RUN_SIZE, &chart)?;
    Ok(Some([png, svg]))
}

/// Draws `metric` of several runs in one picture (`.png` or `.svg` by `out`'s extension).
pub fn write_comparison(runs: &[RunHistory], metric: Metric, out: &Path) -> Result<()> {
    let chart = ComparisonChart { runs, metric };
    render(out, COMPARISON_SIZE, &chart)
}

//! The one error type of `ft-metrics`: every variant names the file (and line or byte) at fault.

use std::path::PathBuf;

/// What can go wrong reading metrics, drawing them or writing event files.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A file could not be read, written or renamed.
    #[error(transparent)]
    Io(#[from] ft_io::IoError),
    /// A line of `metrics.jsonl` is not a metrics record.
    #[error("{path}:{line}: not a metrics record: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A run folder has no `metrics.jsonl`.
    #[error("{0}: no metrics.jsonl here (is this a `ft train` output_dir?)")]
    NoMetrics(PathBuf),
    /// Drawing failed.
    #[error("{path}: cannot draw: {message}")]
    Plot { path: PathBuf, message: String },
    /// An output name whose extension is neither `.png` nor `.svg`.
    #[error("{0}: the picture's name must end in .png or .svg")]
    PictureFormat(PathBuf),
    /// A TensorBoard event file is damaged.
    #[error("{path}: byte {offset}: {message}")]
    Event {
        path: PathBuf,
        offset: u64,
        message: String,
    },
}

/// `Result` with [`MetricsError`].
pub type Result<T> = std::result::Result<T, MetricsError>;

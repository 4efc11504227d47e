//! The one error type of `ft-train`.

use std::path::PathBuf;

/// What can stop a training run before or while it runs.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A config value is missing, unknown or out of range.
    #[error("{file}: `{key}`: {message}")]
    Config {
        file: PathBuf,
        key: String,
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint is missing or unreadable.
    #[error("{path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    /// LoRA targets or adapter tensors do not fit the model.
    #[error("LoRA: {0}")]
    Lora(String),
    /// The model could not be loaded or run.
    #[error(transparent)]
    Model(#[from] ft_model::ModelError),
    /// An adapter folder could not be read or written.
    #[error(transparent)]
    Peft(#[from] ft_lora::peft::PeftError),
    /// Training cannot go on (no supervised tokens, non-finite loss, ...).
    #[error("{0}")]
    Training(String),
    /// A model folder could not be written.
    #[error(transparent)]
    Export(#[from] ft_export::ExportError),
    /// The data pipeline failed.
    #[error(transparent)]
    Data(#[from] ft_data::DataError),
    /// A LLaVA's picture, CLIP or projector.
    #[error(transparent)]
    Llava(#[from] ft_llava::LlavaError),
    /// A file or folder could not be written atomically.
    #[error(transparent)]
    Files(#[from] ft_io::IoError),
    /// A data-parallel peer failed, or did not answer in time.
    #[error("rank {rank}: {message}")]
    Peer { rank: usize, message: String },
    /// Metrics, pictures or TensorBoard files could not be written.
    #[error(transparent)]
    Metrics(#[from] ft_metrics::MetricsError),
}

/// Result alias for the crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

impl TrainError {
    /// An I/O error tagged with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

//! The one error type of `ft-model`.

use std::path::PathBuf;

/// What can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is missing a field or has a bad value.
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    /// The architecture is not supported.
    #[error("{path}: unsupported model_type `{model_type}`; supported: {supported}")]
    UnsupportedModel {
        path: PathBuf,
        model_type: String,
        supported: String,
    },
    /// A weights file is truncated or corrupt.
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    /// Tensors the model needs are missing, or the checkpoint has tensors the model does not use.
    #[error("{path}: {message}")]
    Tensors { path: PathBuf, message: String },
    /// A tensor has the wrong shape.
    #[error("{path}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    Shape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// An unsupported tensor dtype.
    #[error("{path}: tensor `{name}` has dtype {dtype}, expected F32, F16 or BF16")]
    Dtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },
    /// Non-finite values in a checkpoint tensor.
    #[error("{path}: tensor `{name}` holds NaN or Inf")]
    NonFinite { path: PathBuf, name: String },
    /// NF4 quantisation failed.
    #[error("NF4: {0}")]
    Nf4(#[from] ft_lora::nf4::Nf4Error),
    /// A LoRA adapter does not fit the model, or its targets match nothing.
    #[error("adapter: {0}")]
    Adapter(#[from] ft_lora::peft::PeftError),
    /// Invalid input to the model.
    #[error("{0}")]
    Input(String),
    /// A model folder's files (which weight files it has, their index).
    #[error(transparent)]
    Files(#[from] ft_io::IoError),
}

/// Result alias for the crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

impl ModelError {
    /// An I/O error tagged with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

//! The one error type of `ft-data`: every variant names the file, line or key at fault.

use std::path::PathBuf;

/// Everything that can go wrong between a dataset file and a batch of token ids.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON document or JSON line is not valid JSON.
    #[error("{path}:{line}: invalid JSON: {message}")]
    Json {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A record is valid JSON but does not fit the dataset format.
    #[error("{path}:{line}: {message}")]
    Record {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// The format of a file could not be recognised from its first record.
    #[error("{path}: cannot detect the dataset format from keys {keys:?}; set `format` to one of {known}")]
    UnknownFormat {
        path: PathBuf,
        keys: Vec<String>,
        known: String,
    },
    /// A dataset holds no usable sample.
    #[error("{0}: the dataset is empty")]
    EmptyDataset(String),
    /// A template name is not in the registry.
    #[error("unknown template `{name}`; known templates: {known}")]
    UnknownTemplate { name: String, known: String },
    /// A template could not be rendered or parsed.
    #[error("template `{name}`: {message}")]
    Template { name: String, message: String },
    /// A tokenizer file is missing or unusable.
    #[error("{path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    /// Tokenizing a text failed.
    #[error("tokenizing failed: {0}")]
    Encode(String),
    /// A configuration value is invalid.
    #[error("config key `{key}`: {message}")]
    Config { key: String, message: String },
    /// A token cache is unusable (missing, corrupted, truncated or written by another version).
    #[error("token cache {path}: {message}")]
    Cache { path: PathBuf, message: String },
    /// A sample contains `<image>` while the dataset/model is text-only.
    #[error(
        "{path}:{line}: `<image>` found in a text-only dataset (use format = \"llava\" with a LLaVA model)"
    )]
    UnexpectedImage { path: PathBuf, line: usize },
}

/// Result alias used across the crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

impl DataError {
    /// An I/O error tagged with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

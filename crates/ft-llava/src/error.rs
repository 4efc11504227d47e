//! Errors of ft-llava, each naming the file, image or key at fault.

use std::path::{Path, PathBuf};

/// What can go wrong loading images, the vision tower or the projector.
#[derive(Debug, thiserror::Error)]
pub enum LlavaError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An image could not be decoded.
    #[error("{path}: not a readable image ({message})")]
    Image {
        /// The image file.
        path: PathBuf,
        /// The decoder's words.
        message: String,
    },
    /// A configuration file is missing a key or holds a bad value.
    #[error("{path}: {message}")]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Weights are missing or do not fit.
    #[error("{path}: {message}")]
    Weights {
        /// The weights' folder or file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Samples, images or sizes that do not fit together.
    #[error("{0}")]
    Input(String),
    /// The model's tensors could not be read.
    #[error(transparent)]
    Model(#[from] ft_model::error::ModelError),
    /// Writing a folder failed.
    #[error(transparent)]
    Write(#[from] ft_io::IoError),
}

impl LlavaError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A configuration error on `path`.
    pub fn config(path: &Path, message: impl Into<String>) -> Self {
        Self::Config {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    /// A weights error on `path`.
    pub fn weights(path: &Path, message: impl Into<String>) -> Self {
        Self::Weights {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// ft-llava's result.
pub type Result<T> = std::result::Result<T, LlavaError>;

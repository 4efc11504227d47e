//! The one error type of `ft-io`: every variant names the file or folder at fault.

use std::path::PathBuf;

/// A file operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The operating system refused, with the path and what was being done.
    #[error("{path}: {action}: {source}")]
    Io {
        /// The file or folder at fault.
        path: PathBuf,
        /// What was being done (`writing`, `renaming to`, ...).
        action: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The output folder exists and replacing it was not asked for.
    #[error("output {path} already exists; pass force (overwrite) to replace it")]
    OutputExists {
        /// The existing output.
        path: PathBuf,
    },
}

impl IoError {
    /// A closure for `map_err` that records `action` on `path`.
    pub fn at(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, action, source }
    }
}

/// `Result` with [`IoError`].
pub type Result<T> = std::result::Result<T, IoError>;

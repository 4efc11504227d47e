//! The error type of `ft-export`.

use std::path::PathBuf;

use crate::Dtype;

/// Everything that can go wrong while exporting.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A file-system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The output folder exists and overwriting was not asked for.
    #[error("output {path} already exists; pass force (overwrite) to replace it")]
    OutputExists { path: PathBuf },
    /// A size string such as `"2GB"` could not be parsed.
    #[error(
        "size `{input}` is not in a valid format: use an integer followed by a unit, e.g. \"2GB\", \"500MB\", \
         \"20KB\" (decimal), \"5GiB\", \"10MiB\", \"3KiB\" (binary), or a plain byte count"
    )]
    InvalidSize { input: String },
    /// A shard limit of zero bytes.
    #[error("max shard size must be at least 1 byte")]
    ZeroShardSize,
    /// The same tensor name was added twice.
    #[error("tensor `{name}` was added twice")]
    DuplicateTensor { name: String },
    /// A tensor name that safetensors cannot hold.
    #[error("tensor name `{name}` is invalid: {reason}")]
    InvalidTensorName { name: String, reason: &'static str },
    /// The byte length does not match dtype × shape.
    #[error("tensor `{name}`: {dtype:?} {shape:?} needs {expected} bytes, got {found}")]
    ByteLength {
        name: String,
        dtype: Dtype,
        shape: Vec<usize>,
        expected: usize,
        found: usize,
    },
    /// f32 values can only be cast to float dtypes.
    #[error("tensor `{name}`: cannot cast f32 values to {dtype:?} (float dtypes only: F64, F32, F16, BF16)")]
    UnsupportedCast { name: String, dtype: Dtype },
}

/// `Result` with [`ExportError`].
pub type Result<T> = std::result::Result<T, ExportError>;

/// Attaches an action and a path to an `io::Error`.
pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> ExportError {
    let path = path.into();
    move |source| ExportError::Io { action, path, source }
}

//! The error type of `ft-export`.

use std::path::PathBuf;

use ft_io::dtype::Dtype;

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
    /// Reading the base folder or writing the output failed (`ft-io`: safetensors files, shard
    /// sizes, JSON files, the staging folder).
    #[error(transparent)]
    Files(ft_io::IoError),
    /// The adapter folder could not be read.
    #[error("reading the adapter {dir}")]
    Adapter {
        dir: PathBuf,
        #[source]
        source: ft_io::peft::PeftError,
    },
    /// The adapter adapts a module whose weight the base does not have.
    #[error(
        "adapter tensor `{key}` adapts `{module}`, but the base model has no tensor `{module}.weight` \
         (is the adapter for another base model?)"
    )]
    AdapterModuleMissing { module: String, key: String },
    /// The adapter's delta `B @ A` does not have the base weight's shape.
    #[error(
        "tensor `{tensor}` is {base:?} in the base model, but the adapter's lora_B @ lora_A is {delta:?} \
         (lora_A {a:?}, lora_B {b:?}): the adapter was trained on another base model"
    )]
    AdapterShapeMismatch {
        tensor: String,
        base: Vec<usize>,
        delta: [usize; 2],
        a: [usize; 2],
        b: [usize; 2],
    },
    /// A tensor that has to be converted or merged is not a float tensor.
    #[error("tensor `{name}` has dtype {dtype:?}; only F32, F16 and BF16 tensors can be merged or re-typed")]
    NotFloat { name: String, dtype: Dtype },
    /// An output dtype other than F32, F16 or BF16.
    #[error("output dtype {dtype:?} is not supported: choose F32, F16 or BF16")]
    UnsupportedOutputDtype { dtype: Dtype },
    /// A folder that does not hold what the export needs.
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// NF4 quantisation of a base weight failed.
    #[error("NF4 round trip of `{name}`")]
    Nf4 {
        name: String,
        #[source]
        source: ft_io::nf4::Nf4Error,
    },
}

/// `Result` with [`ExportError`].
pub type Result<T> = std::result::Result<T, ExportError>;

/// `ft-io`'s errors; a failed file operation reads as this crate's own ([`ExportError::Io`]).
impl From<ft_io::IoError> for ExportError {
    fn from(e: ft_io::IoError) -> Self {
        match e {
            ft_io::IoError::Io { path, action, source } => ExportError::Io { action, path, source },
            other => ExportError::Files(other),
        }
    }
}

/// Attaches an action and a path to an `io::Error`.
pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> ExportError {
    let path = path.into();
    move |source| ExportError::Io { action, path, source }
}

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

    /// A safetensors file that cannot be read as one.
    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors { path: PathBuf, message: String },
    /// A JSON file (config, index, generation config) that cannot be parsed.
    #[error("{path}: {message}")]
    Json { path: PathBuf, message: String },
    /// The base folder has neither `model.safetensors.index.json` nor `model.safetensors`.
    #[error(
        "{dir} has no model.safetensors.index.json or model.safetensors{hint}",
        hint = if dir.join("pytorch_model.bin").exists() || dir.join("pytorch_model.bin.index.json").exists() {
            " (it has pytorch_model*.bin torch pickles: re-save the model with safetensors, e.g. \
             transformers `save_pretrained(..., safe_serialization=True)`)"
        } else {
            ""
        }
    )]
    NoWeights { dir: PathBuf },
    /// The shard index names a tensor that its shard does not hold.
    #[error("{index}: tensor `{name}` is mapped to {shard}, which does not contain it")]
    IndexMismatch {
        index: PathBuf,
        name: String,
        shard: String,
    },
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

/// Attaches an action and a path to an `io::Error`.
/// Staging folders and atomic writes (ft-io) report in this crate's terms.
impl From<ft_io::IoError> for ExportError {
    fn from(e: ft_io::IoError) -> Self {
        match e {
            ft_io::IoError::Io { path, action, source } => ExportError::Io { action, path, source },
            ft_io::IoError::OutputExists { path } => ExportError::OutputExists { path },
        }
    }
}

pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> ExportError {
    let path = path.into();
    move |source| ExportError::Io { action, path, source }
}

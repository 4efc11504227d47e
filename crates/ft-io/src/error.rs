//! The error type of `ft-io`'s files and folders: every variant names the file, folder, tensor or
//! input at fault. (The [`crate::nf4`] codec and the [`crate::peft`] format have their own enums.)

use std::path::PathBuf;

use crate::dtype::Dtype;

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
    /// A size string such as `"2GB"` could not be parsed.
    #[error(
        "size `{input}` is not in a valid format: use an integer followed by a unit, e.g. \"2GB\", \"500MB\", \
         \"20KB\" (decimal), \"5GiB\", \"10MiB\", \"3KiB\" (binary), or a plain byte count"
    )]
    InvalidSize {
        /// The string as given.
        input: String,
    },
    /// A shard limit of zero bytes.
    #[error("max shard size must be at least 1 byte")]
    ZeroShardSize,
    /// The same tensor name was added twice.
    #[error("tensor `{name}` was added twice")]
    DuplicateTensor {
        /// The tensor.
        name: String,
    },
    /// A tensor name that safetensors cannot hold.
    #[error("tensor name `{name}` is invalid: {reason}")]
    InvalidTensorName {
        /// The tensor.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// The byte length does not match dtype × shape.
    #[error("tensor `{name}`: {dtype:?} {shape:?} needs {expected} bytes, got {found}")]
    ByteLength {
        /// The tensor.
        name: String,
        /// Its dtype.
        dtype: Dtype,
        /// Its shape.
        shape: Vec<usize>,
        /// Bytes dtype × shape needs.
        expected: usize,
        /// Bytes given.
        found: usize,
    },
    /// f32 values can only be cast to float dtypes.
    #[error("tensor `{name}`: cannot cast f32 values to {dtype:?} (float dtypes only: F64, F32, F16, BF16)")]
    UnsupportedCast {
        /// The tensor.
        name: String,
        /// The dtype asked for.
        dtype: Dtype,
    },
    /// A safetensors file that cannot be read as one.
    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A JSON file (config, index, generation config) that cannot be parsed.
    #[error("{path}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The model folder has neither `model.safetensors.index.json` nor `model.safetensors`.
    #[error(
        "{dir} has no model.safetensors.index.json or model.safetensors{hint}",
        hint = if dir.join("pytorch_model.bin").exists() || dir.join("pytorch_model.bin.index.json").exists() {
            " (it has pytorch_model*.bin torch pickles: re-save the model with safetensors, e.g. \
             transformers `save_pretrained(..., safe_serialization=True)`)"
        } else {
            ""
        }
    )]
    NoWeights {
        /// The folder.
        dir: PathBuf,
    },
    /// The shard index names a tensor that its shard does not hold.
    #[error("{index}: tensor `{name}` is mapped to {shard}, which does not contain it")]
    IndexMismatch {
        /// `model.safetensors.index.json`.
        index: PathBuf,
        /// The tensor.
        name: String,
        /// The shard file the index names.
        shard: String,
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

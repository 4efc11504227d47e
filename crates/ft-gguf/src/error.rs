//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while reading or writing a GGUF file.
///
/// Every variant names the file, so a message read out of context still says where to look.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened or mapped.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The first four bytes are not `GGUF`.
    #[error("{file}: not a GGUF file (magic bytes {found:02x?}, expected `GGUF`)")]
    BadMagic {
        /// The file.
        file: PathBuf,
        /// The bytes found.
        found: Vec<u8>,
    },
    /// A version other than 2 or 3 (version 1 used 32-bit counts; big-endian files read as a huge number).
    #[error("{file}: GGUF version {version} is not supported (expected 2 or 3, little-endian)")]
    UnsupportedVersion {
        /// The file.
        file: PathBuf,
        /// The version as read little-endian.
        version: u32,
    },
    /// The file ends before something it declares.
    #[error("{file}: truncated: {what} needs {needed} bytes at offset {offset}, but the file has {len}")]
    Truncated {
        /// The file.
        file: PathBuf,
        /// What was being read.
        what: String,
        /// Where it starts.
        offset: u64,
        /// How many bytes it needs.
        needed: u64,
        /// The file's length.
        len: u64,
    },
    /// A structural value is impossible (bad type id, bad alignment, overlapping data, invalid UTF-8 …).
    #[error("{file}: corrupt: {what}")]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A metadata key that is required is absent.
    #[error("{file}: metadata key `{key}` is missing")]
    MissingKey {
        /// The file.
        file: PathBuf,
        /// The key.
        key: String,
    },
    /// A metadata key holds a value of the wrong type.
    #[error("{file}: metadata key `{key}` is {found}, expected {expected}")]
    WrongType {
        /// The file.
        file: PathBuf,
        /// The key.
        key: String,
        /// The type expected.
        expected: &'static str,
        /// The type found.
        found: String,
    },
    /// No tensor by that name.
    #[error("{file}: no tensor named `{name}`")]
    TensorNotFound {
        /// The file.
        file: PathBuf,
        /// The name asked for.
        name: String,
    },
    /// The tensor's ggml type has no dequantiser here.
    #[error("{file}: tensor `{name}` has ggml type {ggml_type}, which ft-gguf cannot dequantise")]
    UnsupportedTensorType {
        /// The file.
        file: PathBuf,
        /// The tensor.
        name: String,
        /// The type's name.
        ggml_type: String,
    },
    /// The model architecture has no HF mapping here.
    #[error("{file}: architecture `{architecture}` is not supported (supported: llama, qwen2)")]
    UnsupportedArchitecture {
        /// The file.
        file: PathBuf,
        /// `general.architecture`.
        architecture: String,
    },
    /// The tokenizer metadata is inconsistent or of an unsupported kind.
    #[error("{file}: tokenizer: {what}")]
    Tokenizer {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The output file exists and overwriting was not asked for.
    #[error("{file}: already exists (pass --force to overwrite)")]
    OutputExists {
        /// The file.
        file: PathBuf,
    },
    /// The input to an export (config.json, tokenizer.json, a tensor) cannot be converted.
    #[error("{file}: {what}")]
    Export {
        /// The input file (or folder) at fault.
        file: PathBuf,
        /// What is wrong, naming the key or tensor.
        what: String,
    },
}

/// Shorthand for results in this crate.
pub type Result<T> = std::result::Result<T, GgufError>;

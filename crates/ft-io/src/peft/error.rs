//! Errors of the PEFT adapter folder reader/writer.

use std::path::PathBuf;

/// What `ft` supports of PEFT's LoRA, quoted in every "unsupported" error.
pub const SUPPORTED_PEFT: &str = "ft supports plain LoRA adapters: peft_type \"LORA\" (optionally use_rslora), \
bias \"none\", fan_in_fan_out false, no DoRA, empty rank_pattern/alpha_pattern, and no layers_to_transform, \
modules_to_save, exclude_modules, lora_bias, layer_replication, target_parameters or trainable_token_indices";

/// Everything that can go wrong reading, checking or writing a PEFT LoRA adapter.
#[derive(Debug, thiserror::Error)]
pub enum PeftError {
    /// The folder has no `adapter_config.json`.
    #[error("{dir} is not a PEFT adapter folder: it has no adapter_config.json")]
    MissingConfig { dir: PathBuf },
    /// The folder has no `adapter_model.safetensors`.
    #[error(
        "{dir} has no adapter_model.safetensors{hint}",
        hint = if dir.join("adapter_model.bin").exists() {
            " (it has adapter_model.bin, a torch pickle; convert it with PEFT: load the adapter and save_pretrained it)"
        } else {
            ""
        }
    )]
    MissingWeights { dir: PathBuf },
    /// A file-system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file could not be parsed.
    #[error("{path}: invalid JSON: {message}")]
    Json { path: PathBuf, message: String },
    /// A config key has a value `ft` cannot use.
    #[error("{path}: `{key}` {message}")]
    InvalidConfig {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
    /// A PEFT feature `ft` does not implement.
    #[error("{path}: {feature} is not supported (found {found}). {SUPPORTED_PEFT}")]
    Unsupported {
        path: PathBuf,
        feature: &'static str,
        found: String,
    },
    /// A `target_modules` regex that does not compile.
    #[error("target_modules regex `{pattern}` is invalid: {message}")]
    Regex { pattern: String, message: String },
    /// A `target_modules` entry (or the whole regex / all-linear) matches no linear layer of the model.
    #[error("target_modules `{target}` matches none of the model's linear layers; they are named: {}", available.join(", "))]
    NoMatch { target: String, available: Vec<String> },
    /// The safetensors file is malformed.
    #[error("{path}: {message}")]
    Safetensors { path: PathBuf, message: String },
    /// A tensor that is not a LoRA `lora_A`/`lora_B` weight (DoRA magnitude, LoRA bias, embedding LoRA…).
    #[error(
        "{path}: tensor `{key}` is not a LoRA weight (expected `base_model.model.<module>.lora_A.weight` or `.lora_B.weight`). {SUPPORTED_PEFT}"
    )]
    UnexpectedTensor { path: PathBuf, key: String },
    /// The same module's `lora_A` or `lora_B` appears twice (with and without `.default.`).
    #[error("{path}: tensor `{key}` appears twice (with and without `.default.`)")]
    DuplicateTensor { path: PathBuf, key: String },
    /// A module has `lora_A` but no `lora_B` or the other way round.
    #[error("module `{module}` has no {missing} tensor")]
    MissingTensor { module: String, missing: &'static str },
    /// A tensor dtype other than F32/F16/BF16.
    #[error("tensor `{key}` has dtype {dtype}; LoRA weights must be F32, F16 or BF16")]
    UnsupportedDtype { key: String, dtype: String },
    /// A tensor shape that does not fit LoRA (`lora_A [r, in]`, `lora_B [out, r]`).
    #[error("tensor `{key}` has shape {found:?}, expected {expected}")]
    BadShape {
        key: String,
        found: Vec<usize>,
        expected: String,
    },
    /// A NaN or infinite value.
    #[error("tensor `{key}` holds a non-finite value {value} at flat index {index}")]
    NotFinite { key: String, index: usize, value: f32 },
    /// An adapted module the config's `target_modules` does not select.
    #[error("tensor `{key}`: module `{module}` is not selected by target_modules {targets}")]
    NotTargeted {
        key: String,
        module: String,
        targets: String,
    },
    /// An adapted module the model does not have, or whose size differs.
    #[error("tensor `{key}`: {message}")]
    ModelMismatch { key: String, message: String },
    /// One of the errors above, in the file or folder it was found in.
    #[error("{path}: {source}")]
    In {
        path: PathBuf,
        #[source]
        source: Box<PeftError>,
    },
}

impl PeftError {
    /// The error, naming `path` when it does not name a file already.
    pub fn within(self, path: &std::path::Path) -> Self {
        match self {
            PeftError::MissingTensor { .. }
            | PeftError::UnsupportedDtype { .. }
            | PeftError::BadShape { .. }
            | PeftError::NotFinite { .. }
            | PeftError::NotTargeted { .. }
            | PeftError::ModelMismatch { .. } => PeftError::In {
                path: path.to_path_buf(),
                source: Box::new(self),
            },
            named => named,
        }
    }
}

/// `Result` with [`PeftError`].
pub type Result<T> = std::result::Result<T, PeftError>;

pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> PeftError {
    let path = path.into();
    move |source| PeftError::Io { action, path, source }
}

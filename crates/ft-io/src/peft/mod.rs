//! PEFT LoRA adapter folders, in plain Rust: `adapter_config.json`
//! ([`AdapterConfig`]), `adapter_model.safetensors` ([`AdapterWeights`]), `ft`'s own
//! `ft_adapter.json` ([`FtAdapterMeta`]), and PEFT's `target_modules` matching ([`resolve_targets`]).
//!
//! Saved keys are `base_model.model.<module>.lora_A.weight` `[r, in]` and `….lora_B.weight`
//! `[out, r]`; a module's delta is `scale · (B @ A)` with [`AdapterConfig::scale`]. Burn's LoRA stores
//! the transposes (`a [in, r]`, `b [r, out]`).
//!
//! ```
//! use ft_io::peft::{Adapter, AdapterConfig, AdapterDtype, AdapterWeights, LoraMatrix, LoraPair, TargetModules};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let pair = LoraPair {
//!     a: LoraMatrix { shape: [2, 3], data: vec![0.1; 6] },
//!     b: LoraMatrix { shape: [4, 2], data: vec![0.2; 8] },
//! };
//! let adapter = Adapter {
//!     config: AdapterConfig::new(2, 4.0, TargetModules::names(&["q_proj"])),
//!     weights: AdapterWeights { modules: [("model.layers.0.self_attn.q_proj".to_string(), pair)].into() },
//!     ft_meta: None,
//! };
//! adapter.write(dir.path(), AdapterDtype::F32).unwrap();
//! assert_eq!(Adapter::read(dir.path()).unwrap(), adapter);
//! ```

mod adapter;
mod config;
mod error;
mod ft_meta;
mod targets;
mod weights;

use std::path::Path;

pub use adapter::Adapter;
pub use config::{ADAPTER_CONFIG_FILE, AdapterConfig, FT_TEMPLATE_KEY};
pub use error::{PeftError, Result, SUPPORTED_PEFT};
pub use ft_meta::{FT_ADAPTER_FILE, FtAdapterMeta};
pub use targets::{ALL_LINEAR_EXCLUDED_HEADS, TargetModules, encoder_layer_name, resolve_targets};
pub use weights::{
    ADAPTER_WEIGHTS_FILE, AdapterDtype, AdapterWeights, Half, LoraMatrix, LoraPair, PEFT_KEY_PREFIX,
};

/// Writes a whole file atomically (temporary sibling, fsync, rename: [`crate::write_file_atomically`]).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::write_file_atomically(path, bytes).map_err(|e| match e {
        crate::IoError::Io { path, action, source } => PeftError::Io { action, path, source },
        other => PeftError::Io {
            action: "writing",
            path: path.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    })
}

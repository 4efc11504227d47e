//! PEFT LoRA adapter folders (formats.md §3), in plain Rust: `adapter_config.json`
//! ([`AdapterConfig`]), `adapter_model.safetensors` ([`AdapterWeights`]), `ft`'s own
//! `ft_adapter.json` ([`FtAdapterMeta`]), and PEFT's `target_modules` matching ([`resolve_targets`]).
//!
//! Saved keys are `base_model.model.<module>.lora_A.weight` `[r, in]` and `….lora_B.weight`
//! `[out, r]`; a module's delta is `scale · (B @ A)` with [`AdapterConfig::scale`]. Burn's LoRA stores
//! the transposes (`a [in, r]`, `b [r, out]`).
//!
//! ```
//! use ft_lora::peft::{Adapter, AdapterConfig, AdapterDtype, AdapterWeights, LoraMatrix, LoraPair, TargetModules};
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

use std::io::Write;
use std::path::Path;

pub use adapter::Adapter;
pub use config::{ADAPTER_CONFIG_FILE, AdapterConfig, FT_TEMPLATE_KEY};
pub use error::{PeftError, Result, SUPPORTED_PEFT};
pub use ft_meta::{FT_ADAPTER_FILE, FtAdapterMeta};
pub use targets::{ALL_LINEAR_EXCLUDED_HEADS, TargetModules, resolve_targets};
pub use weights::{
    ADAPTER_WEIGHTS_FILE, AdapterDtype, AdapterWeights, LoraMatrix, LoraPair, PEFT_KEY_PREFIX,
};

/// Writes `bytes` to a hidden temporary file next to `path`, syncs it, and renames it onto `path`,
/// so a reader never sees a half-written file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp).map_err(error::io_err("creating", &tmp))?;
        file.write_all(bytes).map_err(error::io_err("writing", &tmp))?;
        file.sync_all().map_err(error::io_err("syncing", &tmp))?;
        std::fs::rename(&tmp, path).map_err(error::io_err("renaming to", path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

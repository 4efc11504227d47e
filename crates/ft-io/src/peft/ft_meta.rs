//! `ft_adapter.json`: what `ft` records next to a PEFT adapter (PEFT ignores extra files).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{PeftError, Result, io_err};

/// File name of the `ft` metadata.
pub const FT_ADAPTER_FILE: &str = "ft_adapter.json";

/// `ft`-specific facts about a trained adapter, kept out of `adapter_config.json` so PEFT (which
/// may reject unknown keys) still loads the folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FtAdapterMeta {
    /// The `ft` version that wrote the adapter.
    pub ft_version: String,
    /// Name of the chat template used in training (e.g. `internlm2_chat`, `qwen_chat`).
    #[serde(default)]
    pub chat_template: Option<String>,
    /// One training example rendered with that template, to check inference prompts against.
    #[serde(default)]
    pub rendered_example: Option<String>,
    /// `"nf4"` when the base was quantised in training (QLoRA); absent for a dense base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
    /// Whether the NF4 absmax was double-quantised (with `quantization = "nf4"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub double_quant: Option<bool>,
}

impl FtAdapterMeta {
    /// Metadata stamped with this crate's version.
    pub fn new(chat_template: Option<String>, rendered_example: Option<String>) -> Self {
        Self {
            ft_version: env!("CARGO_PKG_VERSION").to_string(),
            chat_template,
            rendered_example,
            quantization: None,
            double_quant: None,
        }
    }

    /// Reads `<dir>/ft_adapter.json`; `Ok(None)` when the folder has none (e.g. a PEFT-made adapter).
    pub fn read(dir: impl AsRef<Path>) -> Result<Option<Self>> {
        let path = dir.as_ref().join(FT_ADAPTER_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("reading", &path)(e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| PeftError::Json {
                path,
                message: e.to_string(),
            })
    }

    /// Writes `<dir>/ft_adapter.json` (temp file + rename).
    pub fn write(&self, dir: impl AsRef<Path>) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self).expect("invariant: metadata serialises");
        text.push('\n');
        super::write_atomically(&dir.as_ref().join(FT_ADAPTER_FILE), text.as_bytes())
    }
}

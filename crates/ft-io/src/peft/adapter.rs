//! A whole adapter folder: config, weights and optional `ft` metadata.

use std::path::Path;

use super::config::{ADAPTER_CONFIG_FILE, AdapterConfig};
use super::error::{PeftError, Result, io_err};
use super::ft_meta::FtAdapterMeta;
use super::weights::{ADAPTER_WEIGHTS_FILE, AdapterDtype, AdapterWeights};

/// A PEFT LoRA adapter folder as `ft` reads and writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Adapter {
    pub config: AdapterConfig,
    pub weights: AdapterWeights,
    /// `ft_adapter.json`, absent in adapters made by other tools.
    pub ft_meta: Option<FtAdapterMeta>,
}

impl Adapter {
    /// Reads `adapter_config.json`, `adapter_model.safetensors` and `ft_adapter.json` (if any) from
    /// `dir`, and checks the weights against the config ([`AdapterWeights::validate`]).
    pub fn read(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let config = AdapterConfig::read(dir)?;
        let weights_path = dir.join(ADAPTER_WEIGHTS_FILE);
        if !weights_path.exists() {
            return Err(PeftError::MissingWeights {
                dir: dir.to_path_buf(),
            });
        }
        let weights = AdapterWeights::read(&weights_path).map_err(|e| e.within(&weights_path))?;
        weights.validate(&config).map_err(|e| e.within(dir))?;
        let ft_meta = FtAdapterMeta::read(dir)?;
        Ok(Self {
            config,
            weights,
            ft_meta,
        })
    }

    /// Writes the folder (created if needed): `adapter_config.json`, `adapter_model.safetensors` in
    /// `dtype`, and `ft_adapter.json` when there is metadata; each file via temp file + rename.
    pub fn write(&self, dir: impl AsRef<Path>, dtype: AdapterDtype) -> Result<()> {
        let dir = dir.as_ref();
        self.weights.validate(&self.config)?;
        std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        self.weights.write(dir.join(ADAPTER_WEIGHTS_FILE), dtype)?;
        if let Some(meta) = &self.ft_meta {
            meta.write(dir)?;
        }
        // The config last: a folder with adapter_config.json is a complete adapter.
        self.config.write(dir)?;
        debug_assert!(dir.join(ADAPTER_CONFIG_FILE).exists());
        Ok(())
    }

    /// The LoRA scale, see [`AdapterConfig::scale`].
    pub fn scale(&self) -> f64 {
        self.config.scale()
    }
}

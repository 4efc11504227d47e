//! GGUF files (llama.cpp) as a weight source: tensors dequantised to f32 and un-permuted into
//! Hugging Face names and layout by `ft-gguf`, the config built from the metadata.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use ft_gguf::GgufFile;

use crate::config::{HfConfig, ModelConfig};
use crate::error::{ModelError, Result};
use crate::model::CausalLm;
use crate::weights::{HostTensor, TensorSource, load_weights};

/// A GGUF file seen through Hugging Face names.
pub struct GgufSource {
    file: GgufFile,
    path: PathBuf,
    names: Vec<String>,
}

fn gguf_error(path: &Path, e: ft_gguf::GgufError) -> ModelError {
    let message = e.to_string();
    ModelError::Corrupt {
        path: path.to_path_buf(),
        message,
    }
}

impl GgufSource {
    /// Opens a GGUF file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = GgufFile::open(path).map_err(|e| gguf_error(path, e))?;
        let names = file.hf_tensor_names().map_err(|e| gguf_error(path, e))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            names,
        })
    }

    /// The underlying file (metadata, tokenizer).
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    /// The model configuration from the metadata.
    pub fn config(&self) -> Result<ModelConfig> {
        let value = self.file.hf_config().map_err(|e| gguf_error(&self.path, e))?;
        let hf: HfConfig = serde_json::from_value(value).map_err(|e| ModelError::Config {
            path: self.path.clone(),
            message: format!("GGUF metadata does not describe a supported model: {e}"),
        })?;
        let mut config = ModelConfig::from_hf(&hf, &self.path)?;
        let factors = self
            .file
            .rope_freq_factors()
            .map_err(|e| gguf_error(&self.path, e))?;
        if let Some(factors) = factors {
            if factors.len() != config.head_dim / 2 {
                return Err(ModelError::Corrupt {
                    path: self.path.clone(),
                    message: format!(
                        "rope_freqs.weight has {} values; head_dim {} needs {}",
                        factors.len(),
                        config.head_dim,
                        config.head_dim / 2
                    ),
                });
            }
            config.rope_scaling = crate::rope::RopeScaling::FreqFactors {
                factors: factors.into_iter().map(f64::from).collect(),
            };
        }
        Ok(config)
    }
}

impl TensorSource for GgufSource {
    fn names(&self) -> Vec<String> {
        self.names.clone()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let gguf = ft_gguf::gguf_name(name)?;
        self.file.tensor_info(&gguf).ok().map(|info| info.shape())
    }

    fn read(&self, name: &str) -> Result<HostTensor> {
        let (data, shape) = self
            .file
            .tensor_f32(name)
            .map_err(|e| gguf_error(&self.path, e))?;
        Ok(HostTensor { shape, data })
    }

    fn origin(&self) -> &Path {
        &self.path
    }
}

/// Loads a Llama-family GGUF file (dequantised to the backend's float type).
pub fn load_gguf<B: Backend>(
    path: &Path,
    device: &B::Device,
) -> Result<(CausalLm<B>, ModelConfig, GgufSource)> {
    let source = GgufSource::open(path)?;
    let config = source.config()?;
    let mut model = CausalLm::init(&config, device);
    load_weights(&mut model, &config, &source)?;
    Ok((model, config, source))
}

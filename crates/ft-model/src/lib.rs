//! # ft-model
//!
//! Decoder LLMs on Burn — Llama (1/2/3, SmolLM2), Mistral, Qwen2 and InternLM2 — loaded from
//! Hugging Face folders (single or sharded safetensors, f32/f16/bf16), with a forward pass that
//! matches transformers, a masked causal-LM loss, and KV-cache generation.
//!
//! Every projection is [`ft_lora::linear::FtLinear`], so LoRA and NF4 attach to the same model
//! code. One generic code path serves every backend (`B: Backend`).

pub mod config;
pub mod error;
pub mod families;
pub mod generate;
pub mod gguf;
pub mod layers;
pub mod loss;
pub mod model;
pub mod rope;
pub mod sampling;
pub mod session;
pub mod weights;

use std::path::Path;

use burn::tensor::backend::Backend;

pub use config::{Family, HfConfig, ModelConfig};
pub use error::{ModelError, Result};
pub use model::{CausalLm, ModelInput};

/// Loads a Hugging Face model folder (`config.json` + safetensors).
pub fn load_hf<B: Backend>(dir: &Path, device: &B::Device) -> Result<(CausalLm<B>, ModelConfig)> {
    let config = ModelConfig::from_dir(dir)?;
    let source = weights::SafetensorsSource::open_dir(dir)?;
    let mut model = CausalLm::init(&config, device);
    weights::load_weights(&mut model, &config, &source)?;
    Ok((model, config))
}

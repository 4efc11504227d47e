//! # ft-model
//!
//! Decoder LLMs on Burn — Llama (1/2/3, SmolLM2), Mistral and Qwen2 (sliding-window attention
//! included) and InternLM2 — loaded from Hugging Face folders (single or sharded safetensors,
//! f32/f16/bf16), with a forward pass that matches transformers, a masked causal-LM loss, and
//! KV-cache generation. Models may run in f16/bf16: RMSNorm, the attention softmax and the loss
//! compute in f32, as transformers does.
//!
//! Every projection is [`ft_lora::linear::FtLinear`], so LoRA and NF4 attach to the same model
//! code. One generic code path serves every backend (`B: Backend`). [`load_hf_nf4`] quantises the
//! decoder-block linears to NF4 while loading (QLoRA), and [`adapters`] attaches, loads and
//! extracts PEFT LoRA adapters.

pub mod adapters;
pub mod batch;
pub mod config;
pub mod error;
pub mod families;
pub mod generate;
pub mod gguf;
pub mod layers;
pub mod loss;
mod mask;
pub mod model;
pub mod named;
pub mod quantize;
pub mod rope;
pub mod sampling;
pub mod session;
pub mod weights;

use std::path::Path;

use burn::tensor::backend::Backend;

pub use config::{Family, HfConfig, ModelConfig};
pub use error::{ModelError, Result};
pub use ft_kernels::{KernelBackend, TrainBackend};
pub use model::{CausalLm, LinearStorage, ModelInput};

/// Loads a Hugging Face model folder (`config.json` + safetensors); of a LLaVA folder, its
/// language model.
pub fn load_hf<B: Backend>(dir: &Path, device: &B::Device) -> Result<(CausalLm<B>, ModelConfig)> {
    let config = ModelConfig::from_dir(dir)?;
    let source = weights::SafetensorsSource::open_llm_dir(dir)?;
    let mut model = CausalLm::init(&config, device);
    weights::load_weights(&mut model, &config, &source)?;
    Ok((model, config))
}

/// Loads a Hugging Face model folder for QLoRA: every linear layer inside the decoder blocks is
/// quantised to NF4 as it is read (see [`weights::load_weights_as`]); embeddings, norms and the
/// LM head stay dense.
pub fn load_hf_nf4<B: Backend>(
    dir: &Path,
    device: &B::Device,
    double_quant: bool,
) -> Result<(CausalLm<B>, ModelConfig)> {
    let config = ModelConfig::from_dir(dir)?;
    let source = weights::SafetensorsSource::open_llm_dir(dir)?;
    let storage = LinearStorage::Nf4 { double_quant };
    let mut model = CausalLm::init_as(&config, device, storage);
    weights::load_weights_as(&mut model, &config, &source, storage)?;
    Ok((model, config))
}

//! The trainable LoRA tensors of a model, by PEFT name (`<module>.lora_A.weight`): listed, read,
//! replaced (optimizer updates) and restored from a checkpoint through `ft_lora::linears`.
//! Attaching and extracting adapters is `ft_model::adapters`.

use ft_lora::linears::{load_lora_values, lora_params as set_lora_params};
use ft_lora::peft::AdapterWeights;
use ft_model::adapters::{ModelLinears, ModelLinearsMut};
use ft_model::{CausalLm, KernelBackend, ModelConfig};

pub use ft_lora::linears::LoraParam;

use crate::error::{Result, TrainError};

/// The trainable tensors, in a fixed order.
pub fn lora_params<B: KernelBackend>(model: &CausalLm<B>, config: &ModelConfig) -> Vec<LoraParam> {
    set_lora_params(&ModelLinears { model, config })
}

/// Loads adapter tensors (e.g. from a checkpoint) into the model's existing adapters.
pub fn load_adapter_weights<B: KernelBackend>(
    model: &mut CausalLm<B>,
    config: &ModelConfig,
    weights: &AdapterWeights,
    device: &B::Device,
) -> Result<()> {
    load_lora_values(&mut ModelLinearsMut { model, config }, weights, device)
        .map_err(|e| TrainError::Lora(e.to_string()))
}

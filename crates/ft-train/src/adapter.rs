//! The trainable LoRA tensors of a model, by PEFT name (`<module>.lora_A.weight`): read, replace
//! (optimizer updates) and restore from a checkpoint. Attaching and extracting adapters is
//! `ft_model::adapters`.

use burn::module::Param;
use burn::tensor::{Tensor, TensorData};
use ft_lora::peft::AdapterWeights;
use ft_model::KernelBackend;
use ft_model::families::{linear, linear_mut, linear_names};
use ft_model::{CausalLm, ModelConfig};

use crate::error::{Result, TrainError};

/// Which half of a LoRA pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Half {
    /// `lora_A`, `[r, in]`.
    A,
    /// `lora_B`, `[out, r]`.
    B,
}

/// A trainable tensor: the module it belongs to and which half.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoraParam {
    /// Module name (`model.layers.0.self_attn.q_proj`).
    pub module: String,
    /// A or B.
    pub half: Half,
}

impl LoraParam {
    /// PEFT's tensor name without the `base_model.model.` prefix.
    pub fn name(&self) -> String {
        match self.half {
            Half::A => format!("{}.lora_A.weight", self.module),
            Half::B => format!("{}.lora_B.weight", self.module),
        }
    }
}

/// The trainable tensors, in a fixed order.
pub fn lora_params<B: KernelBackend>(model: &CausalLm<B>, config: &ModelConfig) -> Vec<LoraParam> {
    linear_names(config)
        .into_iter()
        .filter(|n| linear(model, config, n).is_some_and(|l| l.lora.is_some()))
        .flat_map(|module| {
            [Half::A, Half::B].map(|half| LoraParam {
                module: module.clone(),
                half,
            })
        })
        .collect()
}

/// The current value of a trainable tensor.
pub fn get<B: KernelBackend>(model: &CausalLm<B>, config: &ModelConfig, p: &LoraParam) -> Tensor<B, 2> {
    let lora = linear(model, config, &p.module)
        .and_then(|l| l.lora.as_ref())
        .expect("invariant: listed by lora_params");
    match p.half {
        Half::A => lora.a.val(),
        Half::B => lora.b.val(),
    }
}

/// Replaces a trainable tensor (keeping its parameter id).
pub fn set<B: KernelBackend>(
    model: &mut CausalLm<B>,
    config: &ModelConfig,
    p: &LoraParam,
    value: Tensor<B, 2>,
) {
    let lora = linear_mut(model, config, &p.module)
        .and_then(|l| l.lora.as_mut())
        .expect("invariant: listed by lora_params");
    let slot = match p.half {
        Half::A => &mut lora.a,
        Half::B => &mut lora.b,
    };
    *slot = Param::initialized(slot.id, value.require_grad());
}

/// Loads adapter tensors (e.g. from a checkpoint) into the model's existing adapters.
pub fn load_adapter_weights<B: KernelBackend>(
    model: &mut CausalLm<B>,
    config: &ModelConfig,
    weights: &AdapterWeights,
    device: &B::Device,
) -> Result<()> {
    for p in lora_params(model, config) {
        let pair = weights
            .modules
            .get(&p.module)
            .ok_or_else(|| TrainError::Lora(format!("checkpoint has no adapter for `{}`", p.module)))?;
        let m = match p.half {
            Half::A => &pair.a,
            Half::B => &pair.b,
        };
        let current = get(model, config, &p).dims();
        if current != m.shape {
            return Err(TrainError::Lora(format!(
                "`{}` has shape {:?} in the checkpoint, {:?} in the model",
                p.name(),
                m.shape,
                current
            )));
        }
        let t = Tensor::from_data(TensorData::new(m.data.clone(), m.shape), device);
        set(model, config, &p, t);
    }
    Ok(())
}

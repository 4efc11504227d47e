//! What the optimizer trains: the LoRA tensors (`[lora]` present) or every weight of the model
//! (full fine-tuning), each seen as a matrix under a stable name (the optimizer state is saved
//! and restored by that name).

use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;
use ft_model::named::{NamedTensor, named_weight, set_named_weight, weight_names};
use ft_model::{CausalLm, ModelConfig};
use ft_model::{KernelBackend, TrainBackend};

use crate::adapter::{LoraParam, lora_params};
use ft_model::adapters::{ModelLinears, ModelLinearsMut};

/// Gradients of one backward pass.
pub type Gradients<B> = <B as AutodiffBackend>::Gradients;

/// One trainable tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrainParam {
    /// A LoRA `A` or `B`.
    Lora(LoraParam),
    /// A model weight by its Hugging Face name (full fine-tuning).
    Weight(String),
}

/// Which tensors a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainMode {
    /// The adapters attached to the model.
    Lora,
    /// Every weight of the model.
    Full,
}

impl TrainParam {
    /// The name the optimizer state is kept under (PEFT names without `base_model.model.` for
    /// LoRA, checkpoint names for full fine-tuning).
    pub fn name(&self) -> String {
        match self {
            TrainParam::Lora(p) => p.name(),
            TrainParam::Weight(name) => name.clone(),
        }
    }

    /// The current value as a matrix (vectors as `[1, n]`).
    pub fn value<B: KernelBackend>(&self, model: &CausalLm<B>, config: &ModelConfig) -> Tensor<B, 2> {
        match self {
            TrainParam::Lora(p) => p.get(&ModelLinears { model, config }),
            TrainParam::Weight(name) => weight(model, config, name).to_matrix(),
        }
    }

    /// This tensor's gradient, as a matrix like [`TrainParam::value`]; `None` when it got none.
    pub fn grad<B: TrainBackend>(
        &self,
        model: &CausalLm<B>,
        config: &ModelConfig,
        grads: &Gradients<B>,
    ) -> Option<Tensor<B::InnerBackend, 2>> {
        match self {
            TrainParam::Lora(p) => p.get(&ModelLinears { model, config }).grad(grads),
            TrainParam::Weight(name) => match weight(model, config, name) {
                NamedTensor::Vector(t) => t.grad(grads).map(|g| g.unsqueeze_dim(0)),
                NamedTensor::Matrix(t) => t.grad(grads),
            },
        }
    }

    /// Replaces the value (given as a matrix like [`TrainParam::value`]).
    pub fn set<B: KernelBackend>(&self, model: &mut CausalLm<B>, config: &ModelConfig, value: Tensor<B, 2>) {
        match self {
            TrainParam::Lora(p) => p.set(&mut ModelLinearsMut { model, config }, value),
            TrainParam::Weight(name) => {
                let value = match weight(model, config, name) {
                    NamedTensor::Vector(_) => NamedTensor::Vector(value.squeeze_dim(0)),
                    NamedTensor::Matrix(_) => NamedTensor::Matrix(value),
                };
                let replaced = set_named_weight(model, config, name, value);
                debug_assert!(replaced, "invariant: listed by trainable_params");
            }
        }
    }
}

fn weight<B: KernelBackend>(model: &CausalLm<B>, config: &ModelConfig, name: &str) -> NamedTensor<B> {
    named_weight(model, config, name).expect("invariant: listed by trainable_params")
}

/// The tensors a run trains, in a fixed order: the adapters' A and B, or every dense weight.
pub fn trainable_params<B: KernelBackend>(
    model: &CausalLm<B>,
    config: &ModelConfig,
    mode: TrainMode,
) -> Vec<TrainParam> {
    match mode {
        TrainMode::Lora => lora_params(model, config)
            .into_iter()
            .map(TrainParam::Lora)
            .collect(),
        TrainMode::Full => weight_names(config)
            .into_iter()
            .filter(|n| named_weight(model, config, n).is_some())
            .map(TrainParam::Weight)
            .collect(),
    }
}

//! LoRA on a whole model: attach fresh adapters to the layers a `target_modules` spec selects,
//! load a PEFT adapter folder's A/B into the named layers, and read the A/B back out in PEFT's
//! layout. Module names are Hugging Face's (`model.layers.0.self_attn.q_proj`, InternLM2's
//! `model.layers.0.attention.wqkv` and `output`), so PEFT keys map without a rename table.

use burn::module::Module;
use burn::tensor::backend::Backend;
use ft_lora::linear::{FtLinear, LoraSpec};
use ft_lora::linears::{Linears, LinearsMut, attach_adapter, attach_new_loras, lora_weights};
use ft_lora::peft::{Adapter, AdapterConfig, AdapterWeights, TargetModules, resolve_targets};

use crate::config::ModelConfig;
use crate::error::Result;
use crate::families::{self, linear, linear_mut, linear_names};
use crate::model::CausalLm;

/// The model's linear layers by Hugging Face name, for `ft_lora::linears`.
pub struct ModelLinears<'a, B: Backend> {
    /// The model.
    pub model: &'a CausalLm<B>,
    /// Its configuration.
    pub config: &'a ModelConfig,
}

/// [`ModelLinears`], to change.
pub struct ModelLinearsMut<'a, B: Backend> {
    /// The model.
    pub model: &'a mut CausalLm<B>,
    /// Its configuration.
    pub config: &'a ModelConfig,
}

impl<B: Backend> Linears<B> for ModelLinears<'_, B> {
    fn linear_names(&self) -> Vec<String> {
        linear_names(self.config)
    }
    fn linear(&self, name: &str) -> Option<&FtLinear<B>> {
        linear(self.model, self.config, name)
    }
}

impl<B: Backend> Linears<B> for ModelLinearsMut<'_, B> {
    fn linear_names(&self) -> Vec<String> {
        linear_names(self.config)
    }
    fn linear(&self, name: &str) -> Option<&FtLinear<B>> {
        linear(self.model, self.config, name)
    }
}

impl<B: Backend> LinearsMut<B> for ModelLinearsMut<'_, B> {
    fn linear_mut(&mut self, name: &str) -> Option<&mut FtLinear<B>> {
        linear_mut(self.model, self.config, name)
    }
}

/// Every linear layer of the model as `(full name, [out, in])`, in checkpoint order.
pub fn linear_shapes<B: Backend>(model: &CausalLm<B>, config: &ModelConfig) -> Vec<(String, [usize; 2])> {
    ft_lora::linears::linear_shapes(&ModelLinears { model, config })
}

/// The full names of the linear layers `targets` selects (PEFT's matching; `all-linear` is
/// XTuner's rule, which adapts InternLM2's `output` head). A spec that selects nothing is an error
/// listing the model's linear layers.
pub fn resolve_model_targets(config: &ModelConfig, targets: &TargetModules) -> Result<Vec<String>> {
    let lm_head = families::names(config.family).lm_head;
    Ok(resolve_targets(targets, &linear_names(config), lm_head)?)
}

/// Freezes every parameter of the model (embeddings, norms, head, bases and any adapter).
pub fn freeze_all<B: Backend>(model: &mut CausalLm<B>) {
    *model = model.clone().no_grad();
}

/// Freezes every base parameter and attaches a fresh adapter (PEFT init: A kaiming-uniform,
/// B = 0, so the outputs are unchanged) to each layer `targets` selects; returns their names.
/// Only the adapters' A and B are trainable afterwards.
pub fn attach_new_lora<B: Backend>(
    model: &mut CausalLm<B>,
    config: &ModelConfig,
    spec: LoraSpec,
    targets: &TargetModules,
    seed: u64,
) -> Result<Vec<String>> {
    let picked = resolve_model_targets(config, targets)?;
    let device = model.embed.device();
    freeze_all(model);
    attach_new_loras(
        &mut ModelLinearsMut { model, config },
        &picked,
        spec,
        seed,
        &device,
    );
    Ok(picked)
}

/// Freezes every base parameter and loads a PEFT adapter into the named layers (trainable, with
/// the adapter's scale and dropout); returns the adapted module names. The first tensor that does
/// not fit (a module the model lacks, or a shape) is named in the error, and the model is left
/// untouched then.
pub fn attach_peft_adapter<B: Backend>(
    model: &mut CausalLm<B>,
    config: &ModelConfig,
    adapter: &Adapter,
) -> Result<Vec<String>> {
    let device = model.embed.device();
    // Checked before freezing, so a misfit leaves the model as it was.
    adapter
        .weights
        .check_against_model(&linear_shapes(model, config))?;
    freeze_all(model);
    Ok(attach_adapter(
        &mut ModelLinearsMut { model, config },
        adapter,
        &device,
    )?)
}

/// The A/B of every adapted layer, keyed by module name (PEFT layout: `A [r, in]`, `B [out, r]`).
pub fn adapter_weights<B: Backend>(model: &CausalLm<B>, config: &ModelConfig) -> AdapterWeights {
    lora_weights(&ModelLinears { model, config })
}

/// The model's adapters as a PEFT adapter folder (no `ft` metadata): weights from
/// [`adapter_weights`], a config with `spec`'s r, alpha, dropout and rsLoRA, and `target_modules`
/// saved the way XTuner does (distinct last names when they select exactly the adapted layers).
pub fn adapter_from_model<B: Backend>(model: &CausalLm<B>, config: &ModelConfig, spec: LoraSpec) -> Adapter {
    let weights = adapter_weights(model, config);
    let adapted: Vec<String> = weights.modules.keys().cloned().collect();
    let mut adapter_config = AdapterConfig::new(
        spec.r,
        spec.alpha,
        TargetModules::for_saving(&adapted, &linear_names(config)),
    );
    adapter_config.lora_dropout = spec.dropout;
    adapter_config.use_rslora = spec.use_rslora;
    Adapter {
        config: adapter_config,
        weights,
        ft_meta: None,
    }
}

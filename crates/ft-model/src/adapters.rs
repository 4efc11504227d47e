//! LoRA on a whole model: attach fresh adapters to the layers a `target_modules` spec selects,
//! load a PEFT adapter folder's A/B into the named layers, and read the A/B back out in PEFT's
//! layout. Module names are Hugging Face's (`model.layers.0.self_attn.q_proj`, InternLM2's
//! `model.layers.0.attention.wqkv` and `output`), so PEFT keys map without a rename table.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use ft_lora::linear::{FtLinear, LoraSpec};
use ft_lora::peft::{
    Adapter, AdapterConfig, AdapterWeights, LoraMatrix, LoraPair, TargetModules, resolve_targets,
};
use rand::SeedableRng;

use crate::config::ModelConfig;
use crate::error::Result;
use crate::families::{self, linear, linear_mut, linear_names};
use crate::model::CausalLm;

/// Every linear layer of the model as `(full name, [out, in])`, in checkpoint order.
pub fn linear_shapes<B: Backend>(model: &CausalLm<B>, config: &ModelConfig) -> Vec<(String, [usize; 2])> {
    linear_names(config)
        .into_iter()
        .map(|name| {
            let (out, d_in) = linear(model, config, &name)
                .expect("invariant: linear_names lists the model's linears")
                .shape();
            (name, [out, d_in])
        })
        .collect()
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
    // One host-side generator, drawn in target order: the same seed gives the same adapters on
    // every backend (the backends' own generators differ).
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for name in &picked {
        linear_mut(model, config, name)
            .expect("invariant: resolved targets are linear names")
            .set_new_lora(spec, &mut rng, &device);
    }
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
    adapter
        .weights
        .check_against_model(&linear_shapes(model, config))?;
    let device = model.embed.device();
    freeze_all(model);
    let (scale, dropout) = (adapter.scale(), adapter.config.lora_dropout);
    for (name, pair) in &adapter.weights.modules {
        let a = to_tensor::<B>(&pair.a, &device);
        let b = to_tensor::<B>(&pair.b, &device);
        linear_mut(model, config, name)
            .expect("invariant: checked against the model's linears")
            .set_lora(a, b, scale, dropout);
    }
    Ok(adapter.weights.modules.keys().cloned().collect())
}

/// The A/B of every adapted layer, keyed by module name (PEFT layout: `A [r, in]`, `B [out, r]`).
pub fn adapter_weights<B: Backend>(model: &CausalLm<B>, config: &ModelConfig) -> AdapterWeights {
    let modules = linear_names(config)
        .into_iter()
        .filter_map(|name| {
            let layer: &FtLinear<B> = linear(model, config, &name)?;
            let lora = layer.lora.as_ref()?;
            let pair = LoraPair {
                a: to_matrix(lora.a.val()),
                b: to_matrix(lora.b.val()),
            };
            Some((name, pair))
        })
        .collect();
    AdapterWeights { modules }
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

fn to_tensor<B: Backend>(m: &LoraMatrix, device: &B::Device) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(m.data.clone(), m.shape), device)
}

fn to_matrix<B: Backend>(t: Tensor<B, 2>) -> LoraMatrix {
    let shape = t.dims();
    let data = t
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("invariant: converted to f32");
    LoraMatrix { shape, data }
}

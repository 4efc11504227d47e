//! `gradient_checkpointing`: with every decoder layer recomputed in backward, the loss and every
//! gradient equal the plain run's, for a PEFT adapter (LoRA), an NF4 base with an adapter
//! (QLoRA, InternLM2's fused wqkv) and full fine-tuning (every weight trained); inference
//! ignores the flag.

use crate::common;

use burn::backend::Autodiff;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;
use burn_flex::Flex;
use common::{Golden, assert_close, host, lora_dir, model_dir};
use ft_lora::peft::Adapter;
use ft_model::adapters::attach_peft_adapter;
use ft_model::{CausalLm, ModelConfig, load_hf, load_hf_nf4};

type A = Autodiff<Flex>;
type Grads = <A as AutodiffBackend>::Gradients;

/// Every float parameter's gradient, in module order (those without one are skipped).
struct CollectGrads<'a> {
    grads: &'a Grads,
    found: Vec<Vec<f32>>,
}

impl ModuleVisitor<A> for CollectGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
        if let Some(grad) = param.val().grad(self.grads) {
            self.found.push(host(grad));
        }
    }
}

/// Trains every float parameter (full fine-tuning).
struct TrainAll;

impl ModuleMapper<A> for TrainAll {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<A, D>>) -> Param<Tensor<A, D>> {
        param.map(|t| t.require_grad())
    }
}

/// The loss and every gradient of the golden batch, plain or checkpointed.
fn loss_and_grads(
    model: &CausalLm<A>,
    config: &ModelConfig,
    name: &str,
    checkpoint: bool,
) -> (f32, Vec<Vec<f32>>) {
    let (input, labels) = Golden::read(&lora_dir(name).join("golden.safetensors")).input();
    let config = ModelConfig {
        gradient_checkpointing: checkpoint,
        ..config.clone()
    };
    let loss = model.loss(&input, &labels, &config);
    let value = loss.clone().into_scalar();
    let grads = loss.backward();
    let mut collect = CollectGrads {
        grads: &grads,
        found: Vec::new(),
    };
    model.visit(&mut collect);
    (value, collect.found)
}

fn assert_checkpointing_changes_nothing(what: &str, model: &CausalLm<A>, config: &ModelConfig, name: &str) {
    let (plain_loss, plain) = loss_and_grads(model, config, name, false);
    let (kept_loss, kept) = loss_and_grads(model, config, name, true);
    assert!(
        (plain_loss - kept_loss).abs() < 1e-6,
        "{what}: loss {kept_loss} vs {plain_loss}"
    );
    assert!(!plain.is_empty(), "{what}: something trains");
    assert_eq!(
        kept.len(),
        plain.len(),
        "{what}: the same parameters have gradients"
    );
    for (i, (got, want)) in kept.iter().zip(&plain).enumerate() {
        assert_close(&format!("{what}: gradient {i}"), got, want, 1e-5, 1e-7);
    }
}

fn with_adapter(mut model: CausalLm<A>, config: &ModelConfig, name: &str) -> CausalLm<A> {
    let adapter = Adapter::read(lora_dir(name).join("adapter")).unwrap();
    attach_peft_adapter(&mut model, config, &adapter).unwrap();
    model
}

#[test]
fn checkpointed_lora_gives_the_plain_loss_and_adapter_gradients() {
    let (model, config) = load_hf::<A>(&model_dir("llama"), &Default::default()).unwrap();
    let model = with_adapter(model, &config, "llama");
    assert_checkpointing_changes_nothing("lora llama", &model, &config, "llama");
}

#[test]
fn checkpointed_qlora_gives_the_plain_loss_and_adapter_gradients() {
    let (model, config) = load_hf_nf4::<A>(&model_dir("internlm2"), &Default::default(), true).unwrap();
    let model = with_adapter(model, &config, "internlm2");
    assert_checkpointing_changes_nothing("qlora internlm2", &model, &config, "internlm2");
}

#[test]
fn checkpointed_full_fine_tuning_gives_the_plain_loss_and_every_gradient() {
    let (model, config) = load_hf::<A>(&model_dir("qwen2"), &Default::default()).unwrap();
    let model = model.map(&mut TrainAll);
    assert_checkpointing_changes_nothing("full qwen2", &model, &config, "qwen2");
}

#[test]
fn inference_ignores_gradient_checkpointing() {
    let (model, config) = load_hf::<Flex>(&model_dir("llama"), &Default::default()).unwrap();
    let (input, _) = Golden::read(&lora_dir("llama").join("golden.safetensors")).input();
    let plain = host(model.forward(&input, &config));
    let flagged = ModelConfig {
        gradient_checkpointing: true,
        ..config.clone()
    };
    assert_eq!(host(model.forward(&input, &flagged)), plain);
}

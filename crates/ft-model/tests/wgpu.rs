//! The models on a GPU backend (wgpu; in CI Mesa's lavapipe, a software Vulkan device): every
//! tiny family's logits, loss and greedy continuation equal transformers'; an NF4 model's eval
//! equals the CPU's; a LoRA and a QLoRA step's loss and adapter gradients equal the CPU's.
//! Build with `--features wgpu`.

mod common;

use burn::backend::{Autodiff, Wgpu};
use burn::tensor::ElementConversion;
use burn_flex::Flex;
use common::family::check_family;
use common::{Golden, assert_close, host, lora_dir, max_logit_error, model_dir};
use ft_lora::peft::Adapter;
use ft_model::adapters::attach_peft_adapter;
use ft_model::families::linear;
use ft_model::{CausalLm, KernelBackend, ModelConfig, TrainBackend, load_hf, load_hf_nf4};

#[test]
fn every_family_on_wgpu_matches_transformers() {
    for name in [
        "llama",
        "llama-rope-yarn",
        "llama-rope-longrope",
        "qwen2",
        "qwen2-window",
        "mistral-window",
        "internlm2",
        "llama-bf16",
    ] {
        check_family::<Wgpu>(name, &Default::default());
    }
}

/// `name`'s model with NF4 decoder linears (`nf4`), or dense.
fn load<B: KernelBackend>(name: &str, nf4: Option<bool>) -> (CausalLm<B>, ModelConfig) {
    let (dir, device) = (model_dir(name), Default::default());
    match nf4 {
        Some(double_quant) => load_hf_nf4::<B>(&dir, &device, double_quant).unwrap(),
        None => load_hf::<B>(&dir, &device).unwrap(),
    }
}

#[test]
fn nf4_eval_on_wgpu_equals_the_cpu() {
    for (name, double_quant) in [("llama", false), ("internlm2", true)] {
        let g = Golden::read(&lora_dir(name).join("golden.safetensors"));
        let (input, labels) = g.input();
        let (cpu, config) = load::<Flex>(name, Some(double_quant));
        let (gpu, _) = load::<Wgpu>(name, Some(double_quant));
        let want = host(cpu.forward(&input, &config));
        let got = host(gpu.forward(&input, &config));
        let err = max_logit_error(
            &got,
            &want,
            input.attention_mask.as_ref().unwrap(),
            config.vocab_size,
        );
        assert!(err < 1e-4, "{name}: NF4 logits on wgpu vs cpu {err}");
        let cpu_loss: f32 = cpu.loss(&input, &labels, &config).into_scalar().elem();
        let gpu_loss: f32 = gpu.loss(&input, &labels, &config).into_scalar().elem();
        assert!(
            (cpu_loss - gpu_loss).abs() < 1e-5,
            "{name}: loss {gpu_loss} vs {cpu_loss}"
        );
    }
}

/// The loss and every adapter gradient of one LoRA (or QLoRA) step on `name` with its PEFT adapter.
fn adapter_step<B: TrainBackend>(name: &str, nf4: Option<bool>) -> (f32, Vec<(String, Vec<f32>)>) {
    let adapter = Adapter::read(lora_dir(name).join("adapter")).unwrap();
    let (input, labels) = Golden::read(&lora_dir(name).join("golden.safetensors")).input();
    let (mut model, config) = load::<B>(name, nf4);
    attach_peft_adapter(&mut model, &config, &adapter).unwrap();
    let loss = model.loss(&input, &labels, &config);
    let value: f32 = loss.clone().into_scalar().elem();
    let grads = loss.backward();
    let mut out = Vec::new();
    for module in adapter.weights.modules.keys() {
        let lora = linear(&model, &config, module).unwrap().lora.as_ref().unwrap();
        for (half, param) in [("A", &lora.a), ("B", &lora.b)] {
            let grad = param.val().grad(&grads).expect("adapter gradient");
            out.push((format!("{module}.lora_{half}"), host(grad)));
        }
    }
    (value, out)
}

fn check_step(name: &str, nf4: Option<bool>) {
    let (gpu_loss, gpu_grads) = adapter_step::<Autodiff<Wgpu>>(name, nf4);
    let (cpu_loss, cpu_grads) = adapter_step::<Autodiff<Flex>>(name, nf4);
    assert!(
        (gpu_loss - cpu_loss).abs() < 1e-5,
        "{name}: loss {gpu_loss} vs {cpu_loss}"
    );
    assert!(!cpu_grads.is_empty());
    for ((what, got), (_, want)) in gpu_grads.iter().zip(&cpu_grads) {
        assert_close(what, got, want, 1e-3, 1e-6);
    }
}

#[test]
fn lora_and_qlora_steps_on_wgpu_equal_the_cpu() {
    check_step("llama", None);
    check_step("llama", Some(false));
    check_step("internlm2", Some(true));
}

//! LoRA on whole models against PEFT 0.21 (goldens by `fixtures/gen_lora.py`): logits, loss and
//! the gradient of every lora_A / lora_B, for Llama, Qwen2 and InternLM2 (fused `wqkv`, adapted
//! `output` head); targeting, errors, and extraction back to PEFT layout.

use crate::common;

use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn_flex::Flex;
use common::{Golden, assert_close, host, lora_dir, max_logit_error, model_dir};
use ft_lora::linear::LoraSpec;
use ft_lora::peft::{Adapter, AdapterDtype, LoraMatrix, TargetModules};
use ft_model::adapters::{adapter_from_model, adapter_weights, attach_new_lora, attach_peft_adapter};
use ft_model::families::linear;
use ft_model::{CausalLm, ModelConfig, load_hf};

type A = Autodiff<Flex>;

const SPEC: LoraSpec = LoraSpec {
    r: 4,
    alpha: 8.0,
    dropout: 0.0,
    use_rslora: false,
};

fn with_peft_adapter<B: Backend>(name: &str) -> (CausalLm<B>, ModelConfig, Adapter) {
    let (mut model, config) = load_hf::<B>(&model_dir(name), &Default::default()).unwrap();
    let adapter = Adapter::read(lora_dir(name).join("adapter")).unwrap();
    let attached = attach_peft_adapter(&mut model, &config, &adapter).unwrap();
    assert_eq!(attached.len(), adapter.weights.modules.len());
    (model, config, adapter)
}

fn check_against_peft(name: &str, expected_modules: usize) {
    let (model, config, adapter) = with_peft_adapter::<A>(name);
    assert_eq!(adapter.weights.modules.len(), expected_modules);
    let g = Golden::read(&lora_dir(name).join("golden.safetensors"));
    let (input, labels) = g.input();

    let logits = host(model.forward(&input, &config));
    let err = max_logit_error(
        &logits,
        g.logits(),
        input.attention_mask.as_ref().unwrap(),
        config.vocab_size,
    );
    assert!(err < 1e-4, "{name}: max |logit error| {err}");

    let loss = model.loss(&input, &labels, &config);
    let value = loss.clone().into_scalar();
    assert!(
        (value - g.loss()).abs() < 1e-5,
        "{name}: loss {value} vs {}",
        g.loss()
    );

    let grads = loss.backward();
    let mut compared = 0;
    for module in adapter.weights.modules.keys() {
        let lora = linear(&model, &config, module).unwrap().lora.as_ref().unwrap();
        for (half, param) in [("A", &lora.a), ("B", &lora.b)] {
            let key = format!("grad.{module}.lora_{half}.weight");
            let (shape, want) = &g.floats[&key];
            let got = param
                .val()
                .grad(&grads)
                .unwrap_or_else(|| panic!("{key}: no gradient"));
            assert_eq!(&got.dims().to_vec(), shape, "{key}");
            assert_close(&key, &host(got), want, 1e-3, reference_noise(want));
            compared += 1;
        }
    }
    assert_eq!(compared, 2 * expected_modules);
    // The base is frozen: no gradient on embeddings, norms, base weights.
    assert!(model.embed.val().grad(&grads).is_none());
    assert!(model.norm.weight.val().grad(&grads).is_none());
    let first = adapter.weights.modules.keys().next().unwrap();
    let base = linear(&model, &config, first).unwrap().dense_weight().unwrap();
    assert!(base.val().grad(&grads).is_none());
}

/// The absolute part of a gradient's tolerance: 2e-5 of the tensor's largest element. PEFT's f32
/// gradients are themselves that far from the exact ones (the same script in f64: up to 7.6e-6 of
/// the tensor's largest, 1.4e-5 absolute, on InternLM2), so an element much smaller than its
/// tensor's largest can be off by more than 1e-3 of itself in either library; a wrong gradient is
/// off by the tensor's scale.
fn reference_noise(want: &[f32]) -> f32 {
    2e-5 * want.iter().fold(0f32, |m, w| m.max(w.abs()))
}

#[test]
fn llama_lora_matches_peft() {
    check_against_peft("llama", 14);
}

#[test]
fn qwen2_lora_matches_peft() {
    check_against_peft("qwen2", 14);
}

#[test]
fn internlm2_lora_with_wqkv_and_output_matches_peft() {
    check_against_peft("internlm2", 11);
}

#[test]
fn fresh_adapters_leave_logits_unchanged_and_train_only_a_b() {
    for (name, expected) in [("llama", 14), ("internlm2", 11)] {
        let (mut model, config) = load_hf::<A>(&model_dir(name), &Default::default()).unwrap();
        let g = Golden::read(&model_dir(name).join("golden.safetensors"));
        let (input, labels) = g.input();
        let picked = attach_new_lora(&mut model, &config, SPEC, &TargetModules::AllLinear, 0).unwrap();
        assert_eq!(picked.len(), expected, "{name}: all-linear targets");
        // XTuner's all-linear: Llama's lm_head stays out, InternLM2's `output` is adapted.
        assert_eq!(picked.iter().any(|n| n == "output"), name == "internlm2");
        assert!(!picked.iter().any(|n| n == "lm_head"));
        let logits = host(model.forward(&input, &config));
        let mask = input.attention_mask.as_ref().unwrap();
        let err = max_logit_error(&logits, g.logits(), mask, config.vocab_size);
        assert!(
            err < 1e-4,
            "{name}: B = 0 must keep the base logits (error {err})"
        );

        let grads = model.loss(&input, &labels, &config).backward();
        assert!(model.embed.val().grad(&grads).is_none());
        for module in &picked {
            let layer = linear(&model, &config, module).unwrap();
            assert!(
                layer.dense_weight().unwrap().val().grad(&grads).is_none(),
                "{module}: base frozen"
            );
            let lora = layer.lora.as_ref().unwrap();
            assert!(lora.b.val().grad(&grads).is_some(), "{module}: B trains");
        }
    }
}

#[test]
fn named_targets_select_by_suffix_and_unknown_names_list_the_linears() {
    let (mut model, config) = load_hf::<Flex>(&model_dir("llama"), &Default::default()).unwrap();
    let picked = attach_new_lora(
        &mut model,
        &config,
        SPEC,
        &TargetModules::names(&["q_proj", "lm_head"]),
        0,
    )
    .unwrap();
    assert_eq!(
        picked,
        [
            "model.layers.0.self_attn.q_proj",
            "model.layers.1.self_attn.q_proj",
            "lm_head"
        ]
    );
    let err = attach_new_lora(&mut model, &config, SPEC, &TargetModules::names(&["wqkv"]), 0)
        .unwrap_err()
        .to_string();
    for listed in ["wqkv", "q_proj", "down_proj", "lm_head"] {
        assert!(err.contains(listed), "{err}");
    }
}

#[test]
fn adapter_that_does_not_fit_names_the_first_bad_tensor() {
    let (mut model, config) = load_hf::<Flex>(&model_dir("llama"), &Default::default()).unwrap();
    let good = Adapter::read(lora_dir("llama").join("adapter")).unwrap();

    let mut wrong_shape = good.clone();
    let pair = wrong_shape
        .weights
        .modules
        .get_mut("model.layers.1.mlp.up_proj")
        .unwrap();
    pair.b = LoraMatrix {
        shape: [63, 4],
        data: vec![0.0; 63 * 4],
    };
    let err = attach_peft_adapter(&mut model, &config, &wrong_shape)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("base_model.model.model.layers.1.mlp.up_proj.lora_B.weight"),
        "{err}"
    );

    let mut missing = good.clone();
    let pair = missing
        .weights
        .modules
        .remove("model.layers.0.self_attn.o_proj")
        .unwrap();
    missing
        .weights
        .modules
        .insert("model.layers.7.self_attn.o_proj".into(), pair);
    let err = attach_peft_adapter(&mut model, &config, &missing)
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.layers.7.self_attn.o_proj"), "{err}");
    // Nothing was attached by the failed calls.
    assert!(adapter_weights(&model, &config).modules.is_empty());
}

#[test]
fn adapters_extract_back_to_the_peft_layout() {
    for name in ["llama", "internlm2"] {
        let (model, config, adapter) = with_peft_adapter::<Flex>(name);
        assert_eq!(adapter_weights(&model, &config), adapter.weights, "{name}");
        let saved = adapter_from_model(&model, &config, SPEC);
        assert_eq!(
            sorted(&saved.config.target_modules),
            sorted(&adapter.config.target_modules)
        );
        let dir = tempfile::tempdir().unwrap();
        saved.write(dir.path(), AdapterDtype::F32).unwrap();
        assert_eq!(Adapter::read(dir.path()).unwrap().weights, adapter.weights);
    }
}

fn sorted(targets: &TargetModules) -> Vec<String> {
    match targets {
        TargetModules::Names(names) => {
            let mut names = names.clone();
            names.sort();
            names
        }
        other => panic!("expected a name list, found {other}"),
    }
}

//! QLoRA: a model whose decoder-block linears are NF4 (quantised while loading) plus a PEFT adapter
//! equals the dense model whose weights are replaced by dequant(quant(W)); gradients reach the
//! adapter only; the NF4 bases hold ≤ 0.6 bytes per parameter.

use crate::common;

use burn::backend::Autodiff;
use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use burn_flex::Flex;
use common::{Golden, assert_close, host, lora_dir, max_logit_error, model_dir};
use ft_lora::nf4::Nf4Tensor;
use ft_lora::peft::Adapter;
use ft_model::adapters::attach_peft_adapter;
use ft_model::families::{linear, linear_mut, linear_names};
use ft_model::quantize::{nf4_footprint, quantizable_linear_names, quantize_model};
use ft_model::{load_hf, load_hf_nf4};

type A = Autodiff<Flex>;

/// The dense model with every decoder-block weight replaced by dequant(quant(W)), built in Rust.
fn dequantised_reference(name: &str, double_quant: bool) -> (ft_model::CausalLm<A>, ft_model::ModelConfig) {
    let device = Default::default();
    let (mut model, config) = load_hf::<A>(&model_dir(name), &device).unwrap();
    for module in quantizable_linear_names(&config) {
        let layer = linear_mut(&mut model, &config, &module).unwrap();
        let (out, d_in) = layer.shape();
        let w = host(layer.dense_weight().unwrap().val());
        let dq = Nf4Tensor::quantize(&w, &[out, d_in], double_quant)
            .unwrap()
            .dequantize();
        layer.set_dense_weight(Tensor::from_data(TensorData::new(dq, [out, d_in]), &device));
    }
    (model, config)
}

fn check_qlora(name: &str, double_quant: bool) {
    let adapter = Adapter::read(lora_dir(name).join("adapter")).unwrap();
    let g = Golden::read(&lora_dir(name).join("golden.safetensors"));
    let (input, labels) = g.input();

    let (mut qlora, config) = load_hf_nf4::<A>(&model_dir(name), &Default::default(), double_quant).unwrap();
    attach_peft_adapter(&mut qlora, &config, &adapter).unwrap();
    let (mut reference, _) = dequantised_reference(name, double_quant);
    attach_peft_adapter(&mut reference, &config, &adapter).unwrap();

    let got = host(qlora.forward(&input, &config));
    let want = host(reference.forward(&input, &config));
    let mask = input.attention_mask.as_ref().unwrap();
    let err = max_logit_error(&got, &want, mask, config.vocab_size);
    assert!(err < 1e-5, "{name}: QLoRA vs dequantised reference {err}");
    // Quantisation moves the logits away from the dense PEFT result (the test is not vacuous).
    assert!(max_logit_error(&got, g.logits(), mask, config.vocab_size) > 1e-3);

    let loss = qlora.loss(&input, &labels, &config);
    let ref_loss = reference.loss(&input, &labels, &config);
    let (qv, rv) = (loss.clone().into_scalar(), ref_loss.clone().into_scalar());
    assert!((qv - rv).abs() < 1e-5, "{name}: loss {qv} vs {rv}");
    let grads = loss.backward();
    let ref_grads = ref_loss.backward();
    for module in adapter.weights.modules.keys() {
        let q = linear(&qlora, &config, module).unwrap().lora.as_ref().unwrap();
        let r = linear(&reference, &config, module)
            .unwrap()
            .lora
            .as_ref()
            .unwrap();
        for (half, qp, rp) in [("A", &q.a, &r.a), ("B", &q.b, &r.b)] {
            let got = host(qp.val().grad(&grads).expect("adapter gradient"));
            let want = host(rp.val().grad(&ref_grads).expect("adapter gradient"));
            assert_close(&format!("{module}.lora_{half}"), &got, &want, 1e-3, 1e-6);
        }
    }
    assert!(qlora.embed.val().grad(&grads).is_none());
}

#[test]
fn qlora_llama_equals_dense_model_on_dequantised_weights() {
    check_qlora("llama", false);
}

#[test]
fn qlora_internlm2_double_quant_equals_dense_model_on_dequantised_weights() {
    check_qlora("internlm2", true);
}

#[test]
fn nf4_loading_quantises_decoder_linears_only_and_matches_quantize_model() {
    let device = Default::default();
    let (streamed, config) = load_hf_nf4::<Flex>(&model_dir("qwen2"), &device, false).unwrap();
    let (mut converted, _) = load_hf::<Flex>(&model_dir("qwen2"), &device).unwrap();
    let dense_params = converted.num_params();
    quantize_model(&mut converted, &config, false).unwrap();
    let decoder = quantizable_linear_names(&config);
    assert_eq!(decoder.len(), 14);
    for name in linear_names(&config) {
        let s = linear(&streamed, &config, &name).unwrap();
        let c = linear(&converted, &config, &name).unwrap();
        if decoder.contains(&name) {
            let (s, c) = (s.nf4_weight().unwrap(), c.nf4_weight().unwrap());
            assert_eq!(s.to_host(), c.to_host(), "{name}: same packed codes and scales");
        } else {
            assert!(s.dense_weight().is_some(), "{name} (LM head) stays dense");
        }
    }
    // Qwen2's q/k/v biases survive quantisation.
    assert!(
        linear(&streamed, &config, "model.layers.0.self_attn.q_proj")
            .unwrap()
            .bias
            .is_some()
    );
    let (bytes, params) = nf4_footprint(&streamed, &config);
    assert_eq!(
        streamed.num_params(),
        dense_params - params,
        "NF4 bases are not parameters"
    );
    assert_eq!(converted.num_params(), streamed.num_params());
    assert!(params > 0);
    assert_eq!(bytes, nf4_footprint(&converted, &config).0);
}

#[test]
fn nf4_model_holds_at_most_0_6_bytes_per_quantised_parameter() {
    for double_quant in [false, true] {
        let (model, config) =
            load_hf_nf4::<Flex>(&model_dir("llama"), &Default::default(), double_quant).unwrap();
        let (bytes, params) = nf4_footprint(&model, &config);
        let per_param = bytes as f64 / params as f64;
        assert!(
            per_param <= 0.6,
            "double_quant {double_quant}: {per_param} bytes/param"
        );
        let expected_params: usize = quantizable_linear_names(&config)
            .iter()
            .map(|n| {
                let (o, i) = linear(&model, &config, n).unwrap().shape();
                o * i
            })
            .sum();
        assert_eq!(params, expected_params);
    }
}

//! LLaVA training gradients against PyTorch (`fixtures/gen_llava.py`) on the same weights and
//! batch: stage 1 (CLIP and LLM frozen; the projector's gradients) and stage 2 (LoRA on every
//! q_proj / v_proj of the LLM plus the projector). CLIP runs without an autodiff graph.

use burn::backend::Autodiff;
use burn::tensor::{Tensor, TensorData};
use burn_flex::Flex;
use ft_llava::VisionSide;
use ft_model::weights::HostTensor;
use ft_model::{CausalLm, ModelConfig};

use crate::common;

use common::golden;

type A = Autodiff<Flex>;

fn tensor<const D: usize>(t: HostTensor, shape: [usize; D]) -> Tensor<A, D> {
    Tensor::from_data(TensorData::new(t.data, shape), &Default::default())
}

/// The batch's mean loss (transformers' convention) with a frozen CLIP.
fn mean_loss(llm: &CausalLm<A>, config: &ModelConfig, vision: &VisionSide<A>) -> Tensor<A, 1> {
    let spliced = common::spliced(llm, &common::batch(), |pixels| {
        let shape = [1, pixels.shape[0], pixels.shape[1], pixels.shape[2]];
        vision.image_rows_frozen_clip(Tensor::from_data(
            TensorData::new(pixels.data, shape),
            &Default::default(),
        ))
    });
    let loss = llm.loss_sum_of_embeddings(spliced.embeddings, &spliced.input, &spliced.labels, config);
    loss.sum.div_scalar(loss.count as f64)
}

fn setup() -> (CausalLm<A>, ModelConfig, VisionSide<A>) {
    let (mut llm, config, vision) = common::tiny_llava();
    ft_model::adapters::freeze_all(&mut llm);
    (llm, config, vision)
}

/// max |got − want| relative to max |want|.
fn relative_error(got: Tensor<Flex, 2>, want: &HostTensor) -> f32 {
    let got = got.into_data().into_vec::<f32>().unwrap();
    let scale = want.data.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
    got.iter()
        .zip(&want.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
        / scale
}

fn check_projector(
    vision: &VisionSide<A>,
    grads: &<A as burn::tensor::backend::AutodiffBackend>::Gradients,
    stage: &str,
) {
    for (k, name) in [(0, "linear_1"), (1, "linear_2")] {
        let layer = &vision.projector.layers[k];
        let weight = layer
            .dense_weight()
            .unwrap()
            .grad(grads)
            .expect("the projector trains");
        let want = golden(&format!("{stage}.{name}.weight"));
        let err = relative_error(weight, &want);
        assert!(err < 1e-3, "{stage} {name}.weight gradient: relative error {err}");
        let bias = layer.bias.as_ref().unwrap().grad(grads).unwrap();
        let want = golden(&format!("{stage}.{name}.bias"));
        let err = relative_error(bias.unsqueeze_dim(0), &want);
        assert!(err < 1e-3, "{stage} {name}.bias gradient: relative error {err}");
    }
}

#[test]
fn stage_one_trains_only_the_projector_with_torchs_gradients() {
    let (llm, config, vision) = setup();
    let loss = mean_loss(&llm, &config, &vision);
    let want = golden("llava.loss").data[0];
    let got = loss.clone().into_scalar();
    assert!((got - want).abs() < 1e-5, "loss {got} vs {want}");
    let grads = loss.backward();
    check_projector(&vision, &grads, "grad1");
    assert!(
        llm.layers[0]
            .attn
            .q
            .as_ref()
            .unwrap()
            .dense_weight()
            .unwrap()
            .grad(&grads)
            .is_none(),
        "the LLM is frozen"
    );
    assert!(
        vision.clip.layers[0]
            .q_proj
            .dense_weight()
            .unwrap()
            .grad(&grads)
            .is_none(),
        "CLIP is frozen"
    );
}

#[test]
fn stage_two_lora_and_projector_gradients_match_torch() {
    let (mut llm, config, vision) = setup();
    for (i, layer) in llm.layers.iter_mut().enumerate() {
        for (short, linear) in [
            ("q", layer.attn.q.as_mut().unwrap()),
            ("v", layer.attn.v.as_mut().unwrap()),
        ] {
            let a = golden(&format!("lora.{i}.{short}.a"));
            let b = golden(&format!("lora.{i}.{short}.b"));
            let (a_shape, b_shape) = ([a.shape[0], a.shape[1]], [b.shape[0], b.shape[1]]);
            linear.set_lora(tensor(a, a_shape), tensor(b, b_shape), 8.0 / 4.0, 0.0);
        }
    }
    let loss = mean_loss(&llm, &config, &vision);
    let want = golden("loss2").data[0];
    let got = loss.clone().into_scalar();
    assert!((got - want).abs() < 1e-5, "stage-2 loss {got} vs {want}");
    let grads = loss.backward();
    check_projector(&vision, &grads, "grad2");
    for (i, layer) in llm.layers.iter().enumerate() {
        for (short, linear) in [
            ("q", layer.attn.q.as_ref().unwrap()),
            ("v", layer.attn.v.as_ref().unwrap()),
        ] {
            let lora = linear.lora.as_ref().unwrap();
            for (part, param) in [("a", &lora.a), ("b", &lora.b)] {
                let got = param.grad(&grads).expect("LoRA trains");
                let err = relative_error(got, &golden(&format!("grad2.{i}.{short}.{part}")));
                assert!(
                    err < 1e-3,
                    "layer {i} {short}_proj lora_{part} gradient: relative error {err}"
                );
            }
        }
    }
}

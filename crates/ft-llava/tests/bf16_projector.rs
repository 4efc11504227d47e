//! The projector over a bf16 base (its own process: burn-flex's default float dtype is set to
//! BF16 before any tensor exists): its weights stay f32 when made fresh and when loaded, it
//! computes in f32 from the bf16 features and returns bf16, and training it gives f32 gradients.

use std::sync::Once;

use burn::backend::Autodiff;
use burn::tensor::{DType, Distribution, FloatDType, Tensor};
use burn_flex::Flex;
use ft_llava::{Projector, ProjectorConfig, load_projector, save_projector};

type A = Autodiff<Flex>;

fn bf16_device() -> burn_flex::FlexDevice {
    static INIT: Once = Once::new();
    let device = Default::default();
    INIT.call_once(|| {
        burn::tensor::backend::set_default_float_dtype::<Flex>(&device, FloatDType::BF16)
            .expect("no tensor exists before the first test sets the dtype");
    });
    device
}

fn weight_dtypes<B: burn::tensor::backend::Backend>(p: &Projector<B>) -> Vec<DType> {
    let layers = p.layers.iter();
    layers
        .flat_map(|l| {
            let (weight, bias) = (l.dense_weight().expect("dense"), l.bias.as_ref().expect("bias"));
            [weight.val().dtype(), bias.val().dtype()]
        })
        .collect()
}

#[test]
fn a_projector_keeps_f32_weights_and_f32_gradients_over_a_bf16_base() {
    let device = bf16_device();
    let config = ProjectorConfig::new(8, 6);
    let fresh = Projector::<A>::init(&config, 3, &device);
    assert_eq!(weight_dtypes(&fresh), vec![DType::F32; 4]);

    let features = Tensor::<A, 3>::random([1, 5, 8], Distribution::Normal(0.0, 1.0), &device);
    assert_eq!(features.dtype(), DType::BF16);
    let features = features.require_grad();
    let out = fresh.forward(features.clone());
    assert_eq!(
        out.dtype(),
        DType::BF16,
        "the LLM's embeddings keep the base's dtype"
    );

    // The same computation done by hand in f32 from the same (bf16) features.
    let x = features.clone().inner().cast(FloatDType::F32);
    let layer = |i: usize, x: Tensor<Flex, 2>| {
        let l = &fresh.layers[i];
        let w = l.dense_weight().unwrap().val().inner();
        x.matmul(w.transpose()) + l.bias.as_ref().unwrap().val().inner().unsqueeze_dim(0)
    };
    let hidden = burn::tensor::activation::gelu(layer(0, x.reshape([5, 8])));
    let expected = layer(1, hidden).cast(FloatDType::BF16).reshape([1, 5, 6]);
    out.clone().inner().into_data().assert_approx_eq::<f32>(
        &expected.into_data(),
        burn::tensor::Tolerance::rel_abs(1e-2, 1e-2),
    );

    let grads = out.cast(FloatDType::F32).sum().backward();
    let grad = fresh.layers[0]
        .dense_weight()
        .unwrap()
        .val()
        .grad(&grads)
        .expect("a gradient");
    assert_eq!(grad.dtype(), DType::F32);

    let dir = tempfile::tempdir().unwrap();
    save_projector(&fresh, &config, dir.path()).unwrap();
    let (loaded, _) = load_projector::<A>(dir.path(), &device).unwrap();
    assert_eq!(weight_dtypes(&loaded), vec![DType::F32; 4]);
}

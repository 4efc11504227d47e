//! `FtLinear` over an NF4 base: the forward equals a dense layer holding dequant(quant(W)),
//! gradients reach the input and the adapter only, and the base holds ≈ 0.56 bytes per parameter.

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module};
use burn::tensor::{Distribution, Tensor, TensorData, Tolerance};
use burn_flex::Flex;
use ft_lora::linear::{FtLinear, LinearBase, Nf4Weight};
use ft_lora::nf4::Nf4Tensor;

type A = Autodiff<Flex>;

fn host(t: Tensor<A, 2>) -> Vec<f32> {
    t.into_data().into_vec::<f32>().unwrap()
}

#[test]
fn nf4_forward_equals_dense_layer_on_dequantised_weight() {
    let device = Default::default();
    let w = Tensor::<A, 2>::random([48, 80], Distribution::Normal(0.0, 0.05), &device);
    let bias = Tensor::<A, 1>::random([48], Distribution::Normal(0.0, 1.0), &device);
    let x = Tensor::<A, 3>::random([2, 3, 80], Distribution::Normal(0.0, 1.0), &device);
    let dequant = Nf4Tensor::quantize(&host(w.clone()), &[48, 80], true)
        .unwrap()
        .dequantize();
    let reference = FtLinear::from_weight(
        Tensor::<A, 2>::from_data(TensorData::new(dequant, [48, 80]), &device),
        Some(bias.clone()),
    );
    let mut layer = FtLinear::from_weight(w, Some(bias));
    layer.quantize_base(true).unwrap();
    assert!(matches!(layer.base, LinearBase::Nf4(_)));
    assert_eq!(layer.shape(), (48, 80));
    layer
        .forward(x.clone())
        .into_data()
        .assert_approx_eq::<f32>(&reference.forward(x).into_data(), Tolerance::absolute(1e-6));
}

#[test]
fn qlora_gradients_reach_input_and_adapter_but_not_base() {
    let device = Default::default();
    let w = Tensor::<A, 2>::random([16, 64], Distribution::Normal(0.0, 0.1), &device);
    let a = Tensor::<A, 2>::random([4, 64], Distribution::Normal(0.0, 0.1), &device);
    let b = Tensor::<A, 2>::random([16, 4], Distribution::Normal(0.0, 0.1), &device);
    let mut layer = FtLinear::from_weight(w, Some(Tensor::zeros([16], &device)));
    layer.quantize_base(false).unwrap();
    let layer = layer.with_lora(a, b, 2.0, 0.0);
    // Only the adapter (and no NF4 weight) counts as parameters: the bias is frozen but counted.
    assert_eq!(layer.num_params(), 4 * 64 + 16 * 4 + 16);
    let x = Tensor::<A, 2>::random([5, 64], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let grads = layer.forward(x.clone()).sum().backward();
    let lora = layer.lora.as_ref().unwrap();
    assert!(lora.a.val().grad(&grads).is_some());
    assert!(lora.b.val().grad(&grads).is_some());
    assert!(
        x.grad(&grads).is_some(),
        "gradient flows through the frozen NF4 base"
    );
    assert!(layer.bias.as_ref().unwrap().val().grad(&grads).is_none());
    // The inner (non-autodiff) module keeps the NF4 base.
    let inner: FtLinear<Flex> = layer.valid();
    assert!(inner.nf4_weight().is_some());
}

#[test]
fn nf4_base_holds_about_half_a_byte_per_parameter_on_the_device() {
    let values: Vec<f32> = (0..1024 * 96)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
        .collect();
    let device = Default::default();
    let full = Nf4Weight::<Flex>::quantize(&values, [1024, 96], false, &device).unwrap();
    let double = Nf4Weight::<Flex>::quantize(&values, [1024, 96], true, &device).unwrap();
    let n = values.len() as f64;
    assert_eq!(full.device_bytes() as f64 / n, 0.5625);
    let double_bytes = double.device_bytes() as f64 / n;
    assert!(double_bytes < 0.517, "{double_bytes} bytes per parameter");
    let vector = Nf4Tensor::quantize(&values, &[values.len()], false).unwrap();
    assert!(Nf4Weight::<Flex>::upload(&vector, &device).is_err());
    // What is read back is what was uploaded, padding dropped.
    let host = Nf4Tensor::quantize(&values, &[1024, 96], true).unwrap();
    assert_eq!(double.to_host(), host);
}

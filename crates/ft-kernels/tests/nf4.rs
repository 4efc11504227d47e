//! NF4 on the device: the CPU kernel and the composite (what GPUs run) dequantise bit for bit as
//! bitsandbytes does (fixtures/gen_nf4.py); `nf4_linear`'s forward and hand-written backward
//! (which dequantises again) equal the LoRA op on the dense dequantised weight.

use crate::common;
use crate::nf4_common;

use burn::backend::Autodiff;
use burn::tensor::{DType, Tensor, TensorData};
use burn_flex::Flex;
use common::{assert_close, random, values};
use ft_io::nf4::Nf4Tensor;
use ft_kernels::nf4::composite;
use ft_kernels::{LoraWeights, Nf4Device, lora_linear, nf4_dequantize, nf4_linear};
use nf4_common::{Fixture, assert_bits_eq};

type A = Autodiff<Flex>;

/// Every bitsandbytes case, with double quantisation or without, as a `[1, n]` device weight.
fn cases() -> Vec<(String, Nf4Device<Flex>, Vec<f32>)> {
    let fx = Fixture::open("cases.safetensors");
    let plain = ["normal", "odd_partial", "midpoints", "zero_blocks", "extremes"].map(|c| (c, false));
    let double = ["dq_even", "dq_odd", "dq_single"].map(|c| (c, true));
    plain
        .into_iter()
        .chain(double)
        .map(|(case, double_quant)| {
            let input = fx.f32(&format!("{case}.input"));
            let q = Nf4Tensor::quantize(&input, &[1, input.len()], double_quant).unwrap();
            let weight = Nf4Device::upload(&q, &Default::default()).unwrap();
            (case.to_owned(), weight, fx.f32(&format!("{case}.dequant")))
        })
        .collect()
}

#[test]
fn device_dequantisation_is_bit_exact_with_bitsandbytes() {
    for (case, weight, want) in cases() {
        assert_bits_eq(
            &format!("{case}: kernel"),
            &values(nf4_dequantize(&weight)),
            &want,
        );
        let reference = composite::dequantize(weight.primitive(), DType::F32, &Default::default());
        assert_bits_eq(&format!("{case}: composite"), &values(reference), &want);
    }
}

#[test]
fn dequantisation_to_bf16_rounds_the_f32_values_once() {
    let (_, weight, want) = cases().swap_remove(0);
    let device = Default::default();
    let half = values(composite::dequantize(weight.primitive(), DType::BF16, &device));
    assert_eq!(half.len(), want.len());
    for (h, w) in half.iter().zip(&want) {
        assert_eq!(h.to_bits(), burn::tensor::bf16::from_f32(*w).to_f32().to_bits());
    }
}

/// A quantised `[out, in]` weight and its dequantised dense copy.
fn weight(out: usize, d_in: usize, double_quant: bool) -> (Nf4Device<A>, Tensor<A, 2>) {
    let values = values(random::<Flex, 2>([out, d_in], 3, 0.2));
    let q = Nf4Tensor::quantize(&values, &[out, d_in], double_quant).unwrap();
    let dense = Tensor::from_data(TensorData::new(q.dequantize(), [out, d_in]), &Default::default());
    (Nf4Device::upload(&q, &Default::default()).unwrap(), dense)
}

/// `[output, dx, dx_adapter, da, db]` of `sum(op(x, x_a, a, b) ∘ w)`.
fn grads(op: impl Fn([Tensor<A, 2>; 4]) -> Tensor<A, 2>) -> Vec<Vec<f32>> {
    let inputs = [
        random::<A, 2>([7, 72], 4, 1.0),
        random::<A, 2>([7, 72], 5, 1.0),
        random::<A, 2>([6, 72], 6, 0.3),
        random::<A, 2>([40, 6], 7, 0.3),
    ]
    .map(Tensor::require_grad);
    let out = op(inputs.clone());
    let w = random::<A, 2>(out.dims(), 8, 1.0);
    let mut result = vec![values(out.clone())];
    let g = (out * w).sum().backward();
    result.extend(inputs.map(|t| t.grad(&g).map(values).unwrap_or_default()));
    result
}

#[test]
fn nf4_linear_and_its_backward_equal_the_dense_layer_on_dequantised_weights() {
    for double_quant in [false, true] {
        let (nf4, dense) = weight(40, 72, double_quant);
        let got = grads(|[x, xa, a, b]| nf4_linear(x, xa, &nf4, Some((a, b, 1.5))));
        let want = grads(|[x, xa, a, b]| {
            let weights = LoraWeights {
                weight: dense.clone(),
                a,
                b,
                scale: 1.5,
            };
            lora_linear(x, xa, weights)
        });
        for (part, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(!w.is_empty(), "part {part} has a gradient");
            assert_close(&format!("with an adapter, part {part}"), g, w, 1e-5);
        }

        let got = grads(|[x, ..]| nf4_linear(x.clone(), x, &nf4, None));
        let want = grads(|[x, ..]| x.matmul(dense.clone().transpose()));
        assert_close("without an adapter: output", &got[0], &want[0], 1e-5);
        assert_close("without an adapter: dx", &got[1], &want[1], 1e-5);
        assert!(got[3].is_empty() && got[4].is_empty());
    }
}

//! The flex RMSNorm, SwiGLU and RoPE kernels and their hand-written backward against the
//! composite reference: outputs, and gradients against Burn's own autodiff through tensor ops.

use burn::backend::Autodiff;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn_flex::Flex;
use ft_kernels::rms_norm::composite as composite_norm;
use ft_kernels::rope::composite as composite_rope;
use ft_kernels::swiglu::composite as composite_gate;
use ft_kernels::{rms_norm, rope, swiglu};
use proptest::prelude::*;

use crate::common;
use common::{assert_close, random, values};

type A = Autodiff<Flex>;

/// Reference RMSNorm written with plain tensor ops, as ft-model computed it before the kernel.
fn reference_rms_norm<B: Backend>(x: Tensor<B, 3>, weight: Tensor<B, 1>, eps: f64) -> Tensor<B, 3> {
    let variance = x.clone().powi_scalar(2).mean_dim(2);
    x * (variance + eps).sqrt().recip() * weight.unsqueeze_dims::<3>(&[0, 1])
}

fn check_rms_norm(shape: [usize; 3], seed: u64, weight_trained: bool) {
    let eps = 1e-5;
    let x = random::<Flex, 3>(shape, seed, 3.0);
    let weight = random::<Flex, 1>([shape[2]], seed + 1, 1.5);
    let got = values(rms_norm(x.clone(), weight.clone(), eps));
    assert_close(
        "rms_norm forward",
        &got,
        &values(reference_rms_norm(x, weight, eps)),
        1e-5,
    );

    let grads = |fused: bool| {
        let x = random::<A, 3>(shape, seed, 3.0).require_grad();
        let mut weight = random::<A, 1>([shape[2]], seed + 1, 1.5);
        if weight_trained {
            weight = weight.require_grad();
        }
        let out = if fused {
            rms_norm(x.clone(), weight.clone(), eps)
        } else {
            reference_rms_norm(x.clone(), weight.clone(), eps)
        };
        let g = (out * random::<A, 3>(shape, seed + 2, 1.0)).sum().backward();
        let dw = weight.grad(&g).map(values);
        (values(x.grad(&g).expect("x is tracked")), dw)
    };
    let ((dx, dw), (want_dx, want_dw)) = (grads(true), grads(false));
    assert_close("rms_norm dx", &dx, &want_dx, 1e-4);
    assert_eq!(dw.is_some(), weight_trained, "a frozen weight gets no gradient");
    if let (Some(dw), Some(want_dw)) = (dw, want_dw.clone()) {
        assert_close("rms_norm dweight", &dw, &want_dw, 1e-4);
    }

    // The composite backward (what GPU backends run) against the same autodiff reference.
    let rows = [shape[0] * shape[1], shape[2]];
    let x = random::<Flex, 3>(shape, seed, 3.0).reshape(rows);
    let weight = random::<Flex, 1>([shape[2]], seed + 1, 1.5);
    let (_, inv_rms) = composite_norm::forward(x.clone(), weight.clone(), eps);
    let grad_out = random::<Flex, 3>(shape, seed + 2, 1.0).reshape(rows);
    let (dx, dw) = composite_norm::backward(x, weight, inv_rms, grad_out);
    assert_close("composite rms_norm dx", &values(dx), &want_dx, 1e-4);
    if let Some(want_dw) = want_dw {
        assert_close("composite rms_norm dweight", &values(dw), &want_dw, 1e-4);
    }
}

fn check_swiglu(shape: [usize; 3], seed: u64) {
    let gate = random::<Flex, 3>(shape, seed, 6.0);
    let up = random::<Flex, 3>(shape, seed + 1, 2.0);
    let want = burn::tensor::activation::silu(gate.clone()) * up.clone();
    assert_close("swiglu forward", &values(swiglu(gate, up)), &values(want), 1e-6);

    let grads = |fused: bool| {
        let gate = random::<A, 3>(shape, seed, 6.0).require_grad();
        let up = random::<A, 3>(shape, seed + 1, 2.0).require_grad();
        let out = if fused {
            swiglu(gate.clone(), up.clone())
        } else {
            burn::tensor::activation::silu(gate.clone()) * up.clone()
        };
        let g = (out * random::<A, 3>(shape, seed + 2, 1.0)).sum().backward();
        [gate, up].map(|t| values(t.grad(&g).expect("tracked")))
    };
    let (got, want) = (grads(true), grads(false));
    assert_close("swiglu dgate", &got[0], &want[0], 1e-5);
    assert_close("swiglu dup", &got[1], &want[1], 1e-5);

    let flat = |t: Tensor<Flex, 3>| t.reshape([shape.iter().product::<usize>()]);
    let composite = composite_gate::backward(
        flat(random(shape, seed, 6.0)),
        flat(random(shape, seed + 1, 2.0)),
        flat(random(shape, seed + 2, 1.0)),
    );
    assert_close(
        "composite swiglu dgate",
        &values(composite[0].clone()),
        &want[0],
        1e-5,
    );
    assert_close(
        "composite swiglu dup",
        &values(composite[1].clone()),
        &want[1],
        1e-5,
    );
}

fn check_rope(shape: [usize; 4], seed: u64) {
    let [batch, seq, _, head_dim] = shape;
    let angles = |seed| random::<A, 3>([batch, seq, head_dim], seed, 1.0);
    let x = random::<Flex, 4>(shape, seed, 2.0);
    let (cos, sin) = (angles(seed + 1).inner(), angles(seed + 2).inner());
    let want = composite_rope::forward(x.clone(), cos.clone(), sin.clone());
    assert_close(
        "rope forward",
        &values(rope(x, cos.clone(), sin.clone())),
        &values(want),
        1e-6,
    );

    let grads = |fused: bool| {
        let x = random::<A, 4>(shape, seed, 2.0).require_grad();
        let (cos, sin) = (angles(seed + 1), angles(seed + 2));
        let out = if fused {
            rope(x.clone(), cos, sin)
        } else {
            composite_rope::forward(x.clone(), cos, sin)
        };
        let g = (out * random::<A, 4>(shape, seed + 3, 1.0)).sum().backward();
        values(x.grad(&g).expect("tracked"))
    };
    let want = grads(false);
    assert_close("rope dx", &grads(true), &want, 1e-6);
    let composite = composite_rope::backward(random::<Flex, 4>(shape, seed + 3, 1.0), cos, sin);
    assert_close("composite rope dx", &values(composite), &want, 1e-6);
}

#[test]
fn rope_over_many_positions_and_grouped_heads() {
    check_rope([2, 70, 3, 16], 11); // 140 positions: five rayon tasks
}

#[test]
fn rms_norm_with_a_trained_weight_matches_autodiff_of_tensor_ops() {
    check_rms_norm([2, 37, 48], 3, true);
}

#[test]
fn rms_norm_with_a_frozen_weight_gives_only_the_input_gradient() {
    check_rms_norm([1, 70, 128], 5, false);
}

#[test]
fn swiglu_over_many_chunks_matches_autodiff_of_tensor_ops() {
    check_swiglu([3, 50, 352], 9); // 52,800 elements: four rayon chunks
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn random_shapes_match(batch in 1usize..3, seq in 1usize..40, hidden in 1usize..70, seed in 0u64..500) {
        check_rms_norm([batch, seq, hidden], seed, seed % 2 == 0);
        check_swiglu([batch, seq, hidden], seed);
        check_rope([batch, seq, 1 + hidden % 4, 2 * (1 + hidden % 8)], seed);
    }
}

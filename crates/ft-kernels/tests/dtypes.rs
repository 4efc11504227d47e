//! Half-precision inputs: every flex kernel takes bf16 and f16 tensors, computes in f32 and
//! returns the input's dtype, within the dtype's rounding of the f32 result on the same
//! (rounded) inputs.

use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Tensor};
use burn_flex::Flex;
use ft_kernels::{
    AttentionMask, LoraWeights, attention, linear_cross_entropy, lora_linear, rms_norm, rope, swiglu,
};

use crate::common;
use common::{random, values};

type A = Autodiff<Flex>;

const HALVES: [(FloatDType, DType, f32); 2] = [
    (FloatDType::BF16, DType::BF16, 2e-2),
    (FloatDType::F16, DType::F16, 4e-3),
];

/// `got` (a half tensor) within `tol` (relative to the largest value) of `want` (f32).
fn assert_close<B: Backend, const D: usize>(
    what: &str,
    got: Tensor<B, D>,
    want: Tensor<B, D>,
    dtype: DType,
    tol: f32,
) {
    assert_eq!(got.dtype(), dtype, "{what}: output dtype");
    let (got, want) = (values(got), values(want));
    let scale = want.iter().fold(1e-6f32, |m, w| m.max(w.abs()));
    let worst = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0f32, f32::max)
        / scale;
    assert!(
        worst <= tol,
        "{what} ({dtype:?}): worst difference {worst:e} of the largest value"
    );
}

#[test]
fn every_op_takes_half_inputs_and_returns_their_dtype() {
    for (half, dtype, tol) in HALVES {
        // Round the inputs once; the f32 reference sees the same rounded values.
        let rounded = |t: Tensor<Flex, 2>| t.cast(half).cast(FloatDType::F32);
        let h = |t: Tensor<Flex, 2>| t.cast(half);

        let x = rounded(random([6, 32], 1, 1.0));
        let weight = rounded(random::<Flex, 2>([1, 32], 2, 1.0)).reshape([32]);
        let got = rms_norm(h(x.clone()), weight.clone().cast(half), 1e-5);
        assert_close("rms_norm", got, rms_norm(x.clone(), weight, 1e-5), dtype, tol);

        let up = rounded(random([6, 32], 3, 1.0));
        assert_close(
            "swiglu",
            swiglu(h(x.clone()), h(up.clone())),
            swiglu(x.clone(), up),
            dtype,
            tol,
        );

        let q4 = |t: Tensor<Flex, 2>| t.reshape([1, 6, 2, 16]);
        let (q, k, v) = (
            rounded(random([6, 32], 4, 1.0)),
            rounded(random([6, 32], 5, 1.0)),
            rounded(random([6, 32], 6, 1.0)),
        );
        let mask = AttentionMask::causal(1, 6, 0);
        let got = attention(q4(h(q.clone())), q4(h(k.clone())), q4(h(v.clone())), &mask, 0.25);
        assert_close(
            "attention",
            got,
            attention(q4(q.clone()), q4(k), q4(v), &mask, 0.25),
            dtype,
            tol,
        );

        let angles = |seed| rounded(random([6, 16], seed, 1.0)).reshape([1, 6, 16]);
        let (cos, sin) = (angles(7), angles(8));
        let got = rope(q4(h(q.clone())), cos.clone().cast(half), sin.clone().cast(half));
        assert_close("rope", got, rope(q4(q), cos, sin), dtype, tol);

        let head = rounded(random([50, 32], 9, 1.0));
        let targets: Vec<u32> = (0..6).map(|i| i * 7).collect();
        let got = linear_cross_entropy(h(x.clone()), h(head.clone()), &targets);
        assert_eq!(got.dtype(), DType::F32, "the loss is f32 whatever the dtype");
        let want = linear_cross_entropy(x.clone(), head, &targets);
        assert_close("cross-entropy", got.cast(half), want, dtype, tol);

        let weights = |cast: &dyn Fn(Tensor<Flex, 2>) -> Tensor<Flex, 2>| LoraWeights {
            weight: cast(rounded(random([24, 32], 10, 1.0))),
            a: cast(rounded(random([4, 32], 11, 1.0))),
            b: cast(rounded(random([24, 4], 12, 1.0))),
            scale: 2.0,
        };
        let got = lora_linear(h(x.clone()), h(x.clone()), weights(&h));
        assert_close(
            "lora_linear",
            got,
            lora_linear(x.clone(), x, weights(&|t| t)),
            dtype,
            tol,
        );
    }
}

#[test]
fn half_gradients_come_back_in_the_inputs_dtype() {
    for (half, dtype, tol) in HALVES {
        let grads = |cast: bool| {
            let mut q = random::<A, 4>([1, 6, 2, 16], 1, 1.0);
            let mut k = random::<A, 4>([1, 6, 1, 16], 2, 1.0);
            let mut v = random::<A, 4>([1, 6, 1, 16], 3, 1.0);
            if cast {
                (q, k, v) = (q.cast(half), k.cast(half), v.cast(half));
            } else {
                let round = |t: Tensor<A, 4>| t.cast(half).cast(FloatDType::F32);
                (q, k, v) = (round(q), round(k), round(v));
            }
            let (q, k, v) = (q.require_grad(), k.require_grad(), v.require_grad());
            let out = attention(
                q.clone(),
                k.clone(),
                v.clone(),
                &AttentionMask::causal(1, 6, 0),
                0.25,
            );
            let g = out.cast(FloatDType::F32).sum().backward();
            [q, k, v].map(|t| t.grad(&g).expect("tracked"))
        };
        let (got, want) = (grads(true), grads(false));
        for (name, (g, w)) in ["dq", "dk", "dv"].iter().zip(got.into_iter().zip(want)) {
            assert_close(name, g, w, dtype, tol);
        }
    }
}

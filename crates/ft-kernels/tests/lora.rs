//! The fused LoRA product (flex kernel, hand-written backward, composite) against plain tensor
//! ops: `x · Wᵀ + s · (x_a · Aᵀ) · Bᵀ` and its gradients through Burn's autodiff, with the
//! adapter input shared with x (no dropout) or distinct (dropout), and a frozen or trained base.

use burn::backend::Autodiff;
use burn_flex::Flex;
use ft_kernels::lora::composite;
use ft_kernels::{LoraWeights, lora_linear};
use proptest::prelude::*;

use crate::common;
use common::{assert_close, random, values};

type A = Autodiff<Flex>;

/// Sizes and what is tracked.
#[derive(Debug, Clone, Copy)]
struct Case {
    rows: usize,
    d_in: usize,
    d_out: usize,
    rank: usize,
    dropout: bool,
    base_trained: bool,
    seed: u64,
}

impl Case {
    /// Output and the gradients of x, the adapter input (when distinct), W (when trained), A, B.
    fn run(&self, fused: bool) -> Vec<Vec<f32>> {
        let s = self.seed;
        let x = random::<A, 2>([self.rows, self.d_in], s, 1.0).require_grad();
        // "Dropout": a fixed mask times 2, so the adapter input is a tracked function of x.
        let x_adapter = if self.dropout {
            x.clone()
                * random::<A, 2>([self.rows, self.d_in], s + 9, 1.0)
                    .greater_elem(0.0)
                    .float()
                * 2.0
        } else {
            x.clone()
        };
        let mut weight = random::<A, 2>([self.d_out, self.d_in], s + 1, 1.0);
        if self.base_trained {
            weight = weight.require_grad();
        }
        let a = random::<A, 2>([self.rank, self.d_in], s + 2, 1.0).require_grad();
        let b = random::<A, 2>([self.d_out, self.rank], s + 3, 1.0).require_grad();
        let scale = 1.75;
        let y = if fused {
            let weights = LoraWeights {
                weight: weight.clone(),
                a: a.clone(),
                b: b.clone(),
                scale,
            };
            lora_linear(x.clone(), x_adapter, weights)
        } else {
            x.clone().matmul(weight.clone().transpose())
                + x_adapter
                    .matmul(a.clone().transpose())
                    .matmul(b.clone().transpose())
                    * scale
        };
        let grads = (y.clone() * random::<A, 2>([self.rows, self.d_out], s + 4, 1.0))
            .sum()
            .backward();
        let mut out = vec![values(y)];
        for t in [&x, &weight, &a, &b] {
            if let Some(g) = t.grad(&grads) {
                out.push(values(g));
            }
        }
        out
    }

    fn check(&self) {
        let (got, want) = (self.run(true), self.run(false));
        assert_eq!(got.len(), want.len(), "the same inputs get gradients");
        assert_eq!(got.len(), if self.base_trained { 5 } else { 4 });
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_close(&format!("{self:?} output/gradient {i}"), g, w, 1e-5);
        }
        self.check_composite();
    }

    /// The composite backward (GPU backends) against the same autodiff reference.
    fn check_composite(&self) {
        let s = self.seed;
        let x = random::<Flex, 2>([self.rows, self.d_in], s, 1.0);
        let weights = [
            random::<Flex, 2>([self.d_out, self.d_in], s + 1, 1.0),
            random::<Flex, 2>([self.rank, self.d_in], s + 2, 1.0),
            random::<Flex, 2>([self.d_out, self.rank], s + 3, 1.0),
        ];
        let (_, h) = composite::forward(x.clone(), x.clone(), weights.clone(), 1.75);
        let grad_out = random::<Flex, 2>([self.rows, self.d_out], s + 4, 1.0);
        let grads = composite::backward(
            x.clone(),
            x,
            weights,
            h,
            grad_out,
            1.75,
            [true, true, true, true, true],
        );
        let [Some(dx), Some(dxa), Some(dw), Some(da), Some(db)] = grads else {
            panic!("every gradient was asked for");
        };
        let want = Case {
            dropout: false,
            base_trained: true,
            ..*self
        }
        .run(false);
        assert_close("composite dx", &values(dx + dxa), &want[1], 1e-5);
        assert_close("composite dW", &values(dw), &want[2], 1e-5);
        assert_close("composite dA", &values(da), &want[3], 1e-5);
        assert_close("composite dB", &values(db), &want[4], 1e-5);
    }
}

#[test]
fn frozen_base_without_dropout() {
    Case {
        rows: 130,
        d_in: 48,
        d_out: 40,
        rank: 8,
        dropout: false,
        base_trained: false,
        seed: 1,
    }
    .check();
}

#[test]
fn trained_base_with_dropout() {
    Case {
        rows: 33,
        d_in: 20,
        d_out: 24,
        rank: 4,
        dropout: true,
        base_trained: true,
        seed: 2,
    }
    .check();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn random_sizes_match(
        rows in 1usize..40, d_in in 1usize..30, d_out in 1usize..30, rank in 1usize..9,
        dropout: bool, base_trained: bool, seed in 0u64..500,
    ) {
        Case { rows, d_in, d_out, rank, dropout, base_trained, seed }.check();
    }
}

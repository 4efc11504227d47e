//! The chunked LM-head cross-entropy (flex kernel, hand-written backward, composite) against
//! plain tensor ops: `−Σ log_softmax(hidden · Wᵀ)[target]` and its gradients through Burn's
//! autodiff.

use burn::backend::Autodiff;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData, TensorMetadata};
use burn_flex::Flex;
use ft_kernels::cross_entropy::{composite, rows_per_chunk};
use ft_kernels::{KernelBackend, linear_cross_entropy};
use proptest::prelude::*;

use crate::common;
use common::{assert_close, random, values};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type A = Autodiff<Flex>;

fn targets(rows: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..rows).map(|_| rng.random_range(0..vocab as u32)).collect()
}

/// ft-model's loss before the kernel: full logits, log-softmax, gather.
fn reference<B: Backend>(hidden: Tensor<B, 2>, weight: Tensor<B, 2>, targets: &[u32]) -> Tensor<B, 1> {
    let ids: Vec<i64> = targets.iter().map(|&t| i64::from(t)).collect();
    let index = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [targets.len(), 1]), &hidden.device());
    log_softmax(hidden.matmul(weight.transpose()), 1)
        .gather(1, index)
        .sum()
        .neg()
}

fn check(rows: usize, width: usize, vocab: usize, seed: u64, weight_trained: bool) {
    let ids = targets(rows, vocab, seed);
    let (h_shape, w_shape) = ([rows, width], [vocab, width]);
    let loss = |fused: bool| {
        let hidden = random::<A, 2>(h_shape, seed + 1, 2.0).require_grad();
        let mut weight = random::<A, 2>(w_shape, seed + 2, 1.0);
        if weight_trained {
            weight = weight.require_grad();
        }
        let loss = if fused {
            linear_cross_entropy(hidden.clone(), weight.clone(), &ids)
        } else {
            reference(hidden.clone(), weight.clone(), &ids)
        };
        let grads = loss.clone().mul_scalar(0.37).backward();
        let dw = weight.grad(&grads).map(values);
        (
            values(loss),
            values(hidden.grad(&grads).expect("hidden is tracked")),
            dw,
        )
    };
    let ((got, dh, dw), (want, want_dh, want_dw)) = (loss(true), loss(false));
    assert_close("loss", &got, &want, 1e-5);
    assert_close("d hidden", &dh, &want_dh, 1e-5);
    assert_eq!(dw.is_some(), weight_trained, "a frozen head gets no gradient");
    if let (Some(dw), Some(want_dw)) = (dw, want_dw.as_ref()) {
        assert_close("d weight", &dw, want_dw, 1e-5);
    }

    // The composite (what GPU backends run), forward and backward, on the inner backend.
    let (hidden, weight) = (
        random::<Flex, 2>(h_shape, seed + 1, 2.0),
        random::<Flex, 2>(w_shape, seed + 2, 1.0),
    );
    let (loss, lse) = composite::forward(hidden.clone(), weight.clone(), &ids);
    assert_close("composite loss", &values(loss), &want, 1e-5);
    let grad = Tensor::<Flex, 1>::from_data(TensorData::new(vec![0.37f32], [1]), &Default::default());
    let (dh, dw) = composite::backward(hidden, weight, &ids, lse, grad, weight_trained);
    assert_close("composite d hidden", &values(dh), &want_dh, 1e-5);
    if let (Some(dw), Some(want_dw)) = (dw, want_dw) {
        assert_close("composite d weight", &values(dw), &want_dw, 1e-5);
    }
}

#[test]
fn one_chunk_with_a_trained_head() {
    check(37, 16, 300, 1, true);
}

#[test]
fn several_chunks_with_a_frozen_head() {
    let vocab = 60_000;
    let rows = 2 * rows_per_chunk(vocab) + 5; // three chunks, the last one short
    check(rows, 8, vocab, 2, false);
}

#[test]
fn several_chunks_with_a_trained_head() {
    let vocab = 70_000;
    check(rows_per_chunk(vocab) + 3, 4, vocab, 3, true);
}

/// What the forward keeps (the softmax or each row's log-sum-exp) is what
/// `linear_cross_entropy_keeps_softmax` says, on the CPU kernels and through autodiff: a wrapper that declares outputs before running them relies on it.
#[test]
fn the_kept_tensor_is_the_one_announced() {
    fn kept_dims<B: KernelBackend>(rows: usize, vocab: usize) -> Vec<usize> {
        let (hidden, weight) = (
            random::<B, 2>([rows, 3], 4, 1.0),
            random::<B, 2>([vocab, 3], 5, 1.0),
        );
        let (_, kept) = B::fused_linear_cross_entropy_forward(
            hidden.into_primitive().tensor(),
            weight.into_primitive().tensor(),
            &targets(rows, vocab, 6),
        );
        kept.shape().to_vec()
    }
    fn announced<B: KernelBackend>(rows: usize, vocab: usize) -> Vec<usize> {
        match B::linear_cross_entropy_keeps_softmax(rows, vocab) {
            true => vec![rows, vocab],
            false => vec![rows],
        }
    }
    let vocab = 70_000;
    let mut kept_softmax = Vec::new();
    for rows in [5, rows_per_chunk(vocab), rows_per_chunk(vocab) + 1] {
        assert_eq!(
            kept_dims::<Flex>(rows, vocab),
            announced::<Flex>(rows, vocab),
            "flex, {rows} rows"
        );
        assert_eq!(
            announced::<A>(rows, vocab),
            announced::<Flex>(rows, vocab),
            "autodiff, {rows} rows"
        );
        kept_softmax.push(Flex::linear_cross_entropy_keeps_softmax(rows, vocab));
    }
    assert_eq!(
        kept_softmax,
        [true, true, false],
        "the CPU kernels keep the softmax of one chunk"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn random_sizes_match(rows in 1usize..50, width in 1usize..24, vocab in 2usize..200, seed in 0u64..500) {
        check(rows, width, vocab, seed, seed % 2 == 0);
    }
}

//! Chunked cross-entropy as one node of `Autodiff<B>`: keeps the hidden rows, the head weight,
//! the targets and one log-sum-exp per row (or the one-chunk softmax); the backward is written by
//! hand and skips the
//! weight's gradient when the head is frozen (LoRA).

use std::sync::Arc;

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::ops::FloatTensor;

use crate::backend::KernelBackend;

#[derive(Debug)]
struct CrossEntropyBackward;

impl<B: KernelBackend> Backward<B, 2> for CrossEntropyBackward {
    /// Hidden rows, weight, what the forward kept (log-sum-exp or softmax), and the targets.
    type State = ([FloatTensor<B>; 3], Arc<Vec<u32>>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let ([hidden, weight, lse], targets) = ops.state;
        let [hidden_node, weight_node] = ops.parents;
        let (grad_hidden, grad_weight) = B::fused_linear_cross_entropy_backward(
            hidden,
            weight,
            &targets,
            lse,
            grad,
            weight_node.is_some(),
        );
        if let Some(node) = hidden_node {
            grads.register::<B>(node.id, grad_hidden);
        }
        if let (Some(node), Some(grad_weight)) = (weight_node, grad_weight) {
            grads.register::<B>(node.id, grad_weight);
        }
    }
}

/// The loss as one graph node (see [`KernelBackend::fused_linear_cross_entropy`]).
pub(crate) fn linear_cross_entropy<B: KernelBackend, C: CheckpointStrategy>(
    hidden: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    targets: &[u32],
) -> FloatTensor<Autodiff<B, C>> {
    let nodes = [hidden.node.clone(), weight.node.clone()];
    match CrossEntropyBackward
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (hidden, weight) = (hidden.primitive, weight.primitive);
            let (loss, lse) = B::fused_linear_cross_entropy_forward(hidden.clone(), weight.clone(), targets);
            prep.finish(([hidden, weight, lse], Arc::new(targets.to_vec())), loss)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::fused_linear_cross_entropy(
            hidden.primitive,
            weight.primitive,
            targets,
        )),
    }
}

//! SwiGLU as one node of `Autodiff<B>`: keeps gate and up; the backward is written by hand.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::ops::FloatTensor;

use crate::backend::KernelBackend;

#[derive(Debug)]
struct SwigluBackward;

impl<B: KernelBackend> Backward<B, 2> for SwigluBackward {
    /// Gate and up.
    type State = [FloatTensor<B>; 2];

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad_out = grads.consume::<B>(&ops.node);
        let [gate, up] = ops.state;
        let grads_in = B::fused_swiglu_backward(gate, up, grad_out);
        for (parent, grad) in ops.parents.into_iter().zip(grads_in) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// SwiGLU as one graph node (see [`KernelBackend::fused_swiglu`]).
pub(crate) fn swiglu<B: KernelBackend, C: CheckpointStrategy>(
    gate: FloatTensor<Autodiff<B, C>>,
    up: FloatTensor<Autodiff<B, C>>,
) -> FloatTensor<Autodiff<B, C>> {
    let nodes = [gate.node.clone(), up.node.clone()];
    match SwigluBackward.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (gate, up) = (gate.primitive, up.primitive);
            let out = B::fused_swiglu(gate.clone(), up.clone());
            prep.finish([gate, up], out)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::fused_swiglu(gate.primitive, up.primitive)),
    }
}

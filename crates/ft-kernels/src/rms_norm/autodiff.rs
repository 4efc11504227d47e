//! RMSNorm as one node of `Autodiff<B>`: keeps the input, the weight and the f32 reciprocal
//! roots; the backward is written by hand.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::ops::FloatTensor;

use crate::backend::KernelBackend;

#[derive(Debug)]
struct RmsNormBackward;

impl<B: KernelBackend> Backward<B, 2> for RmsNormBackward {
    /// Input, weight and reciprocal roots.
    type State = [FloatTensor<B>; 3];

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad_out = grads.consume::<B>(&ops.node);
        let [x, weight, inv_rms] = ops.state;
        let grads_in = B::fused_rms_norm_backward(x, weight, inv_rms, grad_out);
        for (parent, grad) in ops.parents.into_iter().zip(grads_in) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// RMSNorm as one graph node (see [`KernelBackend::fused_rms_norm`]).
pub(crate) fn rms_norm<B: KernelBackend, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    eps: f64,
) -> FloatTensor<Autodiff<B, C>> {
    let nodes = [x.node.clone(), weight.node.clone()];
    match RmsNormBackward.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (x, weight) = (x.primitive, weight.primitive);
            let (out, inv_rms) = B::fused_rms_norm_forward(x.clone(), weight.clone(), eps);
            prep.finish([x, weight, inv_rms], out)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::fused_rms_norm(x.primitive, weight.primitive, eps)),
    }
}

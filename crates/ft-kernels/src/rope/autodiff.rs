//! RoPE as one node of `Autodiff<B>`: keeps only the angle tables (shared by every layer); the
//! backward is written by hand.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::ops::FloatTensor;

use crate::backend::KernelBackend;

#[derive(Debug)]
struct RopeBackward;

impl<B: KernelBackend> Backward<B, 1> for RopeBackward {
    /// Cos and signed sin.
    type State = [FloatTensor<B>; 2];

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad_out = grads.consume::<B>(&ops.node);
        let [cos, signed_sin] = ops.state;
        if let [Some(node)] = ops.parents {
            grads.register::<B>(node.id, B::fused_rope_backward(grad_out, cos, signed_sin));
        }
    }
}

/// RoPE as one graph node (see [`KernelBackend::fused_rope`]); the angles are constants.
pub(crate) fn rope<B: KernelBackend, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    cos: FloatTensor<Autodiff<B, C>>,
    signed_sin: FloatTensor<Autodiff<B, C>>,
) -> FloatTensor<Autodiff<B, C>> {
    let (cos, signed_sin) = (cos.primitive, signed_sin.primitive);
    match RopeBackward
        .prepare::<C>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let out = B::fused_rope(x.primitive, cos.clone(), signed_sin.clone());
            prep.finish([cos, signed_sin], out)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::fused_rope(x.primitive, cos, signed_sin)),
    }
}

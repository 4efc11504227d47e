//! The LoRA product as one node of `Autodiff<B>` with five parents (x, the adapter's input, W, A,
//! B); it keeps them and the rank-`r` intermediate, and computes only the gradients of tracked
//! parents (a frozen base weight costs nothing in backward).

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::ops::FloatTensor;

use crate::backend::KernelBackend;

#[derive(Debug)]
struct LoraBackward;

impl<B: KernelBackend> Backward<B, 5> for LoraBackward {
    /// x, x_adapter, W, A, B, the intermediate h, and the scale.
    type State = ([FloatTensor<B>; 6], f32);

    fn backward(self, ops: Ops<Self::State, 5>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad_out = grads.consume::<B>(&ops.node);
        let ([x, x_adapter, weight, a, b, h], scale) = ops.state;
        let wanted = ops.parents.each_ref().map(Option::is_some);
        let grads_in =
            B::fused_lora_linear_backward(x, x_adapter, [weight, a, b], h, grad_out, scale, wanted);
        for (parent, grad) in ops.parents.into_iter().zip(grads_in) {
            if let (Some(node), Some(grad)) = (parent, grad) {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// The LoRA product as one graph node (see [`KernelBackend::fused_lora_linear`]).
pub(crate) fn lora_linear<B: KernelBackend, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    x_adapter: FloatTensor<Autodiff<B, C>>,
    [weight, a, b]: [FloatTensor<Autodiff<B, C>>; 3],
    scale: f32,
) -> FloatTensor<Autodiff<B, C>> {
    let nodes = [&x, &x_adapter, &weight, &a, &b].map(|t| t.node.clone());
    // Field moves, as in the other ops: the inputs' references (`rc`) stay until the function
    // returns, after the output is registered (see the module docs of `crate::autodiff`).
    let inner = [
        x.primitive,
        x_adapter.primitive,
        weight.primitive,
        a.primitive,
        b.primitive,
    ];
    match LoraBackward.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let [x, x_adapter, weight, a, b] = inner;
            let weights = [weight.clone(), a.clone(), b.clone()];
            let (y, h) = B::fused_lora_linear_forward(x.clone(), x_adapter.clone(), weights, scale);
            prep.finish(([x, x_adapter, weight, a, b, h], scale), y)
        }
        OpsKind::UnTracked(prep) => {
            let [x, x_adapter, weight, a, b] = inner;
            prep.finish(B::fused_lora_linear(x, x_adapter, [weight, a, b], scale))
        }
    }
}

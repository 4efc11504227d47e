//! Attention under `Autodiff<B>`: one graph node whose backward is written by hand. It keeps q,
//! k, v, the output and the log-sum-exp (all O(seq)) and calls the inner backend's backward.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::ops::FloatTensor;

use crate::backend::KernelBackend;
use crate::mask::AttentionMask;

/// What the backward pass needs: q, k, v, output, log-sum-exp, the mask and the scale.
type SavedAttention<B> = ([FloatTensor<B>; 5], AttentionMask, f32);

#[derive(Debug)]
struct AttentionBackward;

impl<B: KernelBackend> Backward<B, 3> for AttentionBackward {
    type State = SavedAttention<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad_out = grads.consume::<B>(&ops.node);
        let ([q, k, v, out, lse], mask, scale) = ops.state;
        let grads_qkv = B::fused_attention_backward(q, k, v, out, lse, grad_out, &mask, scale);
        for (parent, grad) in ops.parents.into_iter().zip(grads_qkv) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// Attention as one graph node of `Autodiff<B, C>` (see [`KernelBackend::fused_attention`]).
pub(crate) fn attention<B: KernelBackend, C: CheckpointStrategy>(
    q: FloatTensor<Autodiff<B, C>>,
    k: FloatTensor<Autodiff<B, C>>,
    v: FloatTensor<Autodiff<B, C>>,
    mask: &AttentionMask,
    scale: f32,
) -> FloatTensor<Autodiff<B, C>> {
    let nodes = [q.node.clone(), k.node.clone(), v.node.clone()];
    match AttentionBackward.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (q, k, v) = (q.primitive, k.primitive, v.primitive);
            let (out, lse) = B::fused_attention_forward(q.clone(), k.clone(), v.clone(), mask, scale);
            let saved = ([q, k, v, out.clone(), lse], mask.clone(), scale);
            prep.finish(saved, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::fused_attention(
            q.primitive,
            k.primitive,
            v.primitive,
            mask,
            scale,
        )),
    }
}

//! The NF4 linear layer as one node of `Autodiff<B>`: its parents are the input, the adapter's
//! input and the adapter (the NF4 weight is a constant); it keeps the packed weight, not the
//! dense one, and dequantises again in backward.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::TensorMetadata;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::FloatTensor;

use super::{AbsmaxPrimitive, Nf4Primitive};
use crate::backend::KernelBackend;

/// The weight's primitives on the inner backend (integer tensors are the same; floats unwrap).
pub(crate) fn inner<B: KernelBackend, C: CheckpointStrategy>(
    weight: Nf4Primitive<Autodiff<B, C>>,
) -> Nf4Primitive<B> {
    let absmax = match weight.absmax {
        AbsmaxPrimitive::Full(values) => AbsmaxPrimitive::Full(values.primitive),
        AbsmaxPrimitive::Double(codes, absmax2, offset) => {
            AbsmaxPrimitive::Double(codes, absmax2.primitive, offset)
        }
    };
    Nf4Primitive {
        codes: weight.codes,
        absmax,
        shape: weight.shape,
    }
}

/// The dense weight as a constant of the graph.
pub(crate) fn dequantize<B: KernelBackend, C: CheckpointStrategy>(
    weight: Nf4Primitive<Autodiff<B, C>>,
    dtype: burn::tensor::DType,
) -> FloatTensor<Autodiff<B, C>> {
    Autodiff::<B, C>::from_inner(B::nf4_dequantize_as(inner(weight), dtype))
}

#[derive(Debug)]
struct Nf4Backward;

impl<B: KernelBackend> Backward<B, 1> for Nf4Backward {
    type State = Nf4Primitive<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad_out = grads.consume::<B>(&ops.node);
        let [parent] = ops.parents;
        if let Some(node) = parent {
            let weight = B::nf4_dequantize_as(ops.state, grad_out.dtype());
            grads.register::<B>(node.id, B::float_matmul(grad_out, weight));
        }
    }
}

#[derive(Debug)]
struct Nf4LoraBackward;

impl<B: KernelBackend> Backward<B, 4> for Nf4LoraBackward {
    /// The adapter's input, A, B, the intermediate h, the NF4 weight and the scale.
    type State = ([FloatTensor<B>; 4], Nf4Primitive<B>, f32);

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad_out = grads.consume::<B>(&ops.node);
        let ([x_adapter, a, b, h], weight, scale) = ops.state;
        let [x_node, xa_node, a_node, b_node] = ops.parents;
        let weight = B::nf4_dequantize_as(weight, grad_out.dtype());
        // The base is frozen: x is only needed for its gradient, so the adapter's input stands in.
        let wanted = [
            x_node.is_some(),
            xa_node.is_some(),
            false,
            a_node.is_some(),
            b_node.is_some(),
        ];
        let [dx, dxa, _, da, db] = B::fused_lora_linear_backward(
            x_adapter.clone(),
            x_adapter,
            [weight, a, b],
            h,
            grad_out,
            scale,
            wanted,
        );
        for (node, grad) in [(x_node, dx), (xa_node, dxa), (a_node, da), (b_node, db)] {
            if let (Some(node), Some(grad)) = (node, grad) {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// `x · Wᵀ (+ scale · (x_adapter · Aᵀ) · Bᵀ)` for an NF4 `W` as one graph node.
pub(crate) fn nf4_linear<B: KernelBackend, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    x_adapter: FloatTensor<Autodiff<B, C>>,
    weight: Nf4Primitive<Autodiff<B, C>>,
    adapter: Option<[FloatTensor<Autodiff<B, C>>; 2]>,
    scale: f32,
) -> FloatTensor<Autodiff<B, C>> {
    let weight = inner(weight);
    let dtype = x.primitive.dtype();
    match adapter {
        None => match Nf4Backward
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::fused_nf4_linear(x.primitive.clone(), x.primitive, weight.clone(), None, scale);
                prep.finish(weight, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_nf4_linear(
                x.primitive.clone(),
                x.primitive,
                weight,
                None,
                scale,
            )),
        },
        Some([a, b]) => {
            let nodes = [&x, &x_adapter, &a, &b].map(|t| t.node.clone());
            // Field moves keep the inputs referenced until the output is registered.
            let [x, x_adapter, a, b] = [x.primitive, x_adapter.primitive, a.primitive, b.primitive];
            match Nf4LoraBackward.prepare::<C>(nodes).compute_bound().stateful() {
                OpsKind::Tracked(prep) => {
                    let dense = B::nf4_dequantize_as(weight.clone(), dtype);
                    let weights = [dense, a.clone(), b.clone()];
                    let (y, h) = B::fused_lora_linear_forward(x, x_adapter.clone(), weights, scale);
                    prep.finish(([x_adapter, a, b, h], weight, scale), y)
                }
                OpsKind::UnTracked(prep) => {
                    prep.finish(B::fused_nf4_linear(x, x_adapter, weight, Some([a, b]), scale))
                }
            }
        }
    }
}

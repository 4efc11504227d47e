//! A checkpointed block as one node of `Autodiff<B>`.
//!
//! Forward runs the block on untracked copies of its input and trainable parameters, so no
//! activation is kept; the node's state is the input, the block (its tensors are shared
//! handles) and the forward function. Backward rebuilds the block over fresh leaves (a graph of
//! its own: the outer graph is locked while its steps run), runs it, back-propagates
//! `sum(out · grad_out)` through that run and hands the leaves' gradients to the input's and
//! the parameters' nodes.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

use crate::backend::KernelBackend;

type Ad<B, C> = Autodiff<B, C>;
type Forward<B, C, M> = Arc<dyn Fn(&M, Tensor<Ad<B, C>, 3>) -> Tensor<Ad<B, C>, 3> + Send + Sync>;

/// What backward needs to run the block again.
struct Saved<B: KernelBackend, C: CheckpointStrategy, M> {
    /// The block's input (inner backend).
    x: FloatTensor<B>,
    block: M,
    forward: Forward<B, C, M>,
    rng_seed: Option<u64>,
}

impl<B: KernelBackend, C: CheckpointStrategy, M: Clone> Clone for Saved<B, C, M> {
    fn clone(&self) -> Self {
        Self {
            x: self.x.clone(),
            block: self.block.clone(),
            forward: self.forward.clone(),
            rng_seed: self.rng_seed,
        }
    }
}

impl<B: KernelBackend, C: CheckpointStrategy, M> std::fmt::Debug for Saved<B, C, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saved")
            .field("rng_seed", &self.rng_seed)
            .finish_non_exhaustive()
    }
}

/// The node's backward; its two parents are the input and one trainable parameter (so that the
/// node is tracked whenever the block trains); every trainable parameter's gradient is
/// registered by its own node id.
struct CheckpointBackward<C, M>(std::marker::PhantomData<fn() -> (C, M)>);

impl<C, M> std::fmt::Debug for CheckpointBackward<C, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheckpointBackward")
    }
}

impl<B, C, M> Backward<B, 2> for CheckpointBackward<C, M>
where
    B: KernelBackend,
    C: CheckpointStrategy,
    M: Module<Ad<B, C>> + 'static,
{
    type State = Saved<B, C, M>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad_out = grads.consume::<B>(&ops.node);
        let Saved {
            x,
            block,
            forward,
            rng_seed,
        } = ops.state;
        let mut leaves = FreshLeaves::default();
        let block = block.map(&mut leaves);
        let x_node = ops.parents[0].as_ref().map(|node| node.id);
        let mut x = outer::<B, C>(x);
        if x_node.is_some() {
            x = x.require_grad();
        }
        if let Some(seed) = rng_seed {
            B::seed(&B::float_device(&grad_out), seed);
        }
        let out = forward(&block, x.clone());
        let inner_grads = (out * outer::<B, C>(grad_out)).sum().backward();
        if let Some(id) = x_node
            && let Some(grad) = x.grad(&inner_grads)
        {
            grads.register::<B>(id, grad.into_primitive().tensor());
        }
        for (id, leaf) in leaves.pairs {
            if let Some(grad) = leaf.grad(&inner_grads) {
                grads.register::<B>(id, grad);
            }
        }
    }
}

/// An untracked `Autodiff<B>` tensor over an inner primitive.
fn outer<B: KernelBackend, C: CheckpointStrategy>(x: FloatTensor<B>) -> Tensor<Ad<B, C>, 3> {
    Tensor::from_inner(Tensor::from_primitive(TensorPrimitive::Float(x)))
}

/// `forward(block, x)` as one checkpointed node (see [`crate::checkpoint::checkpointed`]).
pub(crate) fn checkpointed<B, C, M, F>(
    block: &M,
    x: Tensor<Ad<B, C>, 3>,
    rng_seed: Option<u64>,
    forward: F,
) -> Tensor<Ad<B, C>, 3>
where
    B: KernelBackend,
    C: CheckpointStrategy,
    M: Module<Ad<B, C>> + 'static,
    F: Fn(&M, Tensor<Ad<B, C>, 3>) -> Tensor<Ad<B, C>, 3> + Send + Sync + 'static,
{
    let mut trainable = FirstTrainable::default();
    block.visit(&mut trainable);
    let x = x.into_primitive().tensor();
    let anchor = trainable.node.unwrap_or_else(|| x.clone());
    let nodes = [x.node.clone(), anchor.node];
    match CheckpointBackward::<C, M>(Default::default())
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::UnTracked(_) => {
            let x = Tensor::from_primitive(TensorPrimitive::Float(x));
            forward(block, x)
        }
        OpsKind::Tracked(prep) => {
            let untracked = block.clone().map(&mut Untracked);
            if let Some(seed) = rng_seed {
                B::seed(&B::float_device(&x.primitive), seed);
            }
            let out = forward(&untracked, outer::<B, C>(x.primitive.clone()));
            let saved = Saved {
                x: x.primitive,
                block: block.clone(),
                forward: Arc::new(forward),
                rng_seed,
            };
            let out = prep.finish(saved, out.into_primitive().tensor().primitive);
            Tensor::from_primitive(TensorPrimitive::Float(out))
        }
    }
}

/// The first float parameter that requires a gradient, if any.
struct FirstTrainable<B: Backend, C: CheckpointStrategy> {
    node: Option<FloatTensor<Ad<B, C>>>,
}

impl<B: Backend, C: CheckpointStrategy> Default for FirstTrainable<B, C> {
    fn default() -> Self {
        Self { node: None }
    }
}

impl<B: KernelBackend, C: CheckpointStrategy> ModuleVisitor<Ad<B, C>> for FirstTrainable<B, C> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Ad<B, C>, D>>) {
        let value = param.val();
        if self.node.is_none() && value.is_require_grad() {
            self.node = Some(value.into_primitive().tensor());
        }
    }
}

/// Replaces every trainable parameter by an untracked tensor over the same data.
struct Untracked;

impl<B: KernelBackend, C: CheckpointStrategy> ModuleMapper<Ad<B, C>> for Untracked {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<Ad<B, C>, D>>) -> Param<Tensor<Ad<B, C>, D>> {
        param.map(|t| {
            if t.is_require_grad() {
                Tensor::from_inner(t.inner())
            } else {
                t
            }
        })
    }
}

/// Replaces every trainable parameter by a fresh leaf over the same data, remembering the
/// original's node (where the leaf's gradient goes).
struct FreshLeaves<B: Backend, C: CheckpointStrategy> {
    pairs: Vec<(NodeId, FloatTensor<Ad<B, C>>)>,
}

impl<B: Backend, C: CheckpointStrategy> Default for FreshLeaves<B, C> {
    fn default() -> Self {
        Self { pairs: Vec::new() }
    }
}

impl<B: KernelBackend, C: CheckpointStrategy> ModuleMapper<Ad<B, C>> for FreshLeaves<B, C> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<Ad<B, C>, D>>) -> Param<Tensor<Ad<B, C>, D>> {
        param.map(|t| {
            if !t.is_require_grad() {
                return t;
            }
            let id = t.clone().into_primitive().tensor().node.id;
            let leaf = Tensor::from_inner(t.inner()).require_grad();
            self.pairs.push((id, leaf.clone().into_primitive().tensor()));
            leaf
        })
    }
}

//! Gradient checkpointing of one block (a decoder layer): training keeps only the block's input
//! and recomputes the block in backward, as `torch.utils.checkpoint` does for transformers'
//! `gradient_checkpointing_enable()`. The activations inside the block never outlive its
//! forward; backward pays one more forward of the block.

pub(crate) mod autodiff;

use burn::module::Module;
use burn::tensor::Tensor;

use crate::backend::KernelBackend;

/// `forward(block, x)`, kept by `Autodiff<B>` as one graph node that holds `x` alone: its
/// backward runs the block again on the saved `x` and back-propagates through that run. Other
/// backends (inference) just run it.
///
/// `rng_seed`: when the block draws random numbers (dropout), the backend's generator is seeded
/// with it before the forward and again before the recompute, so both draw the same masks.
/// `None` leaves the generator alone (no randomness in the block).
///
/// # Shapes
/// - x: `[batch, seq, hidden]`
/// - output: what `forward` returns
pub fn checkpointed<B, M, F>(block: &M, x: Tensor<B, 3>, rng_seed: Option<u64>, forward: F) -> Tensor<B, 3>
where
    B: KernelBackend,
    M: Module<B> + 'static,
    F: Fn(&M, Tensor<B, 3>) -> Tensor<B, 3> + Send + Sync + 'static,
{
    B::checkpointed(block, x, rng_seed, forward)
}

//! `Autodiff<B>` over any [`KernelBackend`]: every fused op is one graph node whose backward
//! calls the inner backend's hand-written backward.
//!
//! Each op keeps its inputs referenced until its output's step is registered: it moves out only
//! their `primitive` fields, so the rest of each input lives until the op returns (a closure
//! such as `.map(|t| t.primitive)` would drop it at once). After every backward, Burn frees the
//! steps of graphs in which no tensor is referenced; a backward on another thread (data
//! parallelism) would otherwise free the steps leading to an input whose last reference the op
//! had already dropped, losing gradients (`tests/concurrent_backward.rs`).

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::ops::FloatTensor;

use crate::backend::KernelBackend;
use crate::mask::AttentionMask;
use crate::nf4::Nf4Primitive;
use crate::{attention, checkpoint, cross_entropy, lora, nf4, rms_norm, rope, swiglu};
use burn::tensor::DType;

impl<B: KernelBackend, C: CheckpointStrategy> KernelBackend for Autodiff<B, C> {
    fn checkpointed<M, F>(block: &M, x: Tensor<Self, 3>, rng_seed: Option<u64>, forward: F) -> Tensor<Self, 3>
    where
        M: Module<Self> + 'static,
        F: Fn(&M, Tensor<Self, 3>) -> Tensor<Self, 3> + Send + Sync + 'static,
    {
        checkpoint::autodiff::checkpointed::<B, C, M, F>(block, x, rng_seed, forward)
    }

    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: &AttentionMask,
        scale: f32,
    ) -> FloatTensor<Self> {
        attention::autodiff::attention::<B, C>(q, k, v, mask, scale)
    }

    fn linear_cross_entropy_keeps_softmax(rows: usize, vocab: usize) -> bool {
        B::linear_cross_entropy_keeps_softmax(rows, vocab)
    }

    fn fused_rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        rms_norm::autodiff::rms_norm::<B, C>(x, weight, eps)
    }

    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        swiglu::autodiff::swiglu::<B, C>(gate, up)
    }

    fn fused_rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        signed_sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        rope::autodiff::rope::<B, C>(x, cos, signed_sin)
    }

    fn fused_lora_linear(
        x: FloatTensor<Self>,
        x_adapter: FloatTensor<Self>,
        weights: [FloatTensor<Self>; 3],
        scale: f32,
    ) -> FloatTensor<Self> {
        lora::autodiff::lora_linear::<B, C>(x, x_adapter, weights, scale)
    }

    fn fused_linear_cross_entropy(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        targets: &[u32],
    ) -> FloatTensor<Self> {
        cross_entropy::autodiff::linear_cross_entropy::<B, C>(hidden, weight, targets)
    }

    fn nf4_dequantize_as(weight: Nf4Primitive<Self>, dtype: DType) -> FloatTensor<Self> {
        nf4::autodiff::dequantize::<B, C>(weight, dtype)
    }

    fn fused_nf4_linear(
        x: FloatTensor<Self>,
        x_adapter: FloatTensor<Self>,
        weight: Nf4Primitive<Self>,
        adapter: Option<[FloatTensor<Self>; 2]>,
        scale: f32,
    ) -> FloatTensor<Self> {
        nf4::autodiff::nf4_linear::<B, C>(x, x_adapter, weight, adapter, scale)
    }
}

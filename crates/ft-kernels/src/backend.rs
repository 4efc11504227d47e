//! The backend extension: [`KernelBackend`] lists the fused ops; each has a composite default
//! (Burn tensor ops), so every backend has them, and backends with kernels of their own override
//! them. `Autodiff<B>` implements them with a hand-written backward.

use burn::module::Module;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Shape, Tensor, TensorMetadata, TensorPrimitive};

use crate::attention::composite;
use crate::mask::AttentionMask;
use crate::nf4::{self, Nf4Primitive};
use crate::{cross_entropy, lora, rms_norm, rope, swiglu};

/// A Burn backend with ft's fused ops.
///
/// Implemented by burn-flex (CPU kernels), by `Autodiff<B>` over any implementor (hand-written
/// backward), and, behind the `cuda` / `wgpu` features, by Burn's `CubeBackend` (CubeCL kernels
/// for some ops, the composite for the rest).
pub trait KernelBackend: Backend {
    /// `forward(block, x)`. `Autodiff<B>` keeps `x` alone and runs the block again in backward
    /// (see [`crate::checkpoint::checkpointed`]); other backends just run it.
    ///
    /// # Shapes
    /// - x: `[batch, seq, hidden]`
    fn checkpointed<M, F>(block: &M, x: Tensor<Self, 3>, rng_seed: Option<u64>, forward: F) -> Tensor<Self, 3>
    where
        M: Module<Self> + 'static,
        F: Fn(&M, Tensor<Self, 3>) -> Tensor<Self, 3> + Send + Sync + 'static,
    {
        let _ = rng_seed; // nothing is recomputed, so nothing needs the same draws twice
        forward(block, x)
    }

    /// Attention output without the log-sum-exp (inference).
    ///
    /// # Shapes
    /// - q: `[batch, seq, heads, head_dim]`; k, v: `[batch, past + seq, kv_heads, head_dim]`
    /// - output: `[batch, seq, heads, head_dim]`
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: &AttentionMask,
        scale: f32,
    ) -> FloatTensor<Self> {
        Self::fused_attention_forward(q, k, v, mask, scale).0
    }

    /// Attention output and the f32 log-sum-exp of each query's scaled scores, kept for the
    /// backward pass.
    ///
    /// # Shapes
    /// - q: `[batch, seq, heads, head_dim]`; k, v: `[batch, past + seq, kv_heads, head_dim]`
    /// - output: `[batch, seq, heads, head_dim]` and `[batch, heads, seq]`
    fn fused_attention_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: &AttentionMask,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (out, lse) = composite::forward::<Self>(float(q), float(k), float(v), mask, scale);
        (out.into_primitive().tensor(), lse.into_primitive().tensor())
    }

    /// Gradients of attention with respect to q, k and v, recomputing the probabilities from
    /// the log-sum-exp instead of storing them.
    ///
    /// # Shapes
    /// - q, k, v: as in [`KernelBackend::fused_attention`]; out, grad_out: `[batch, seq, heads, head_dim]`
    /// - lse: `[batch, heads, seq]` (f32)
    /// - output: `[dq, dk, dv]` shaped as q, k, v
    #[allow(clippy::too_many_arguments)]
    fn fused_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
        mask: &AttentionMask,
        scale: f32,
    ) -> [FloatTensor<Self>; 3] {
        let _ = lse; // the composite recomputes it
        composite::backward::<Self>(
            float(q),
            float(k),
            float(v),
            float(out),
            float(grad_out),
            mask,
            scale,
        )
        .map(|t| t.into_primitive().tensor())
    }

    /// RMSNorm over the last dimension (inference).
    ///
    /// # Shapes
    /// - x: `[..., hidden]`; weight: `[hidden]`
    /// - output: `[..., hidden]`
    fn fused_rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        Self::fused_rms_norm_forward(x, weight, eps).0
    }

    /// RMSNorm output and the f32 reciprocal root of each row, kept for the backward pass.
    ///
    /// # Shapes
    /// - x: `[..., hidden]`; weight: `[hidden]`
    /// - output: `[..., hidden]` and `[rows]` (rows = all leading dimensions)
    fn fused_rms_norm_forward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let shape = x.shape();
        let rows_shape = rows(&shape);
        let x = float::<Self, 2>(Self::float_reshape(x, rows_shape));
        let (out, inv_rms) = rms_norm::composite::forward(x, float(weight), eps);
        (
            Self::float_reshape(out.into_primitive().tensor(), shape),
            inv_rms.into_primitive().tensor(),
        )
    }

    /// Gradients of RMSNorm with respect to the input and the weight.
    ///
    /// # Shapes
    /// - x, grad_out: `[..., hidden]`; weight: `[hidden]`; inv_rms: `[rows]`
    /// - output: `[dx, dweight]` shaped as x and weight
    fn fused_rms_norm_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        inv_rms: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 2] {
        let shape = x.shape();
        let rows_shape = rows(&shape);
        let x = float::<Self, 2>(Self::float_reshape(x, rows_shape.clone()));
        let grad_out = float::<Self, 2>(Self::float_reshape(grad_out, rows_shape));
        let (grad_x, grad_weight) = rms_norm::composite::backward(x, float(weight), float(inv_rms), grad_out);
        [
            Self::float_reshape(grad_x.into_primitive().tensor(), shape),
            grad_weight.into_primitive().tensor(),
        ]
    }

    /// `silu(gate) ⊙ up`, element-wise.
    ///
    /// # Shapes
    /// - gate, up, output: the same shape
    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        let shape = gate.shape();
        let flat = |t| float::<Self, 1>(Self::float_reshape(t, Shape::new([shape.num_elements()])));
        let out = swiglu::composite::forward(flat(gate), flat(up));
        Self::float_reshape(out.into_primitive().tensor(), shape)
    }

    /// Gradients of [`KernelBackend::fused_swiglu`].
    ///
    /// # Shapes
    /// - gate, up, grad_out: the same shape; output: `[dgate, dup]` of that shape
    fn fused_swiglu_backward(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 2] {
        let shape = gate.shape();
        let flat = |t| float::<Self, 1>(Self::float_reshape(t, Shape::new([shape.num_elements()])));
        swiglu::composite::backward(flat(gate), flat(up), flat(grad_out))
            .map(|t| Self::float_reshape(t.into_primitive().tensor(), shape.clone()))
    }

    /// Σ cross-entropy of `hidden · weightᵀ` against `targets` (inference).
    ///
    /// # Shapes
    /// - hidden: `[rows, hidden]`; weight: `[vocab, hidden]`; targets: `rows` ids
    /// - output: `[1]` (f32)
    fn fused_linear_cross_entropy(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        targets: &[u32],
    ) -> FloatTensor<Self> {
        Self::fused_linear_cross_entropy_forward(hidden, weight, targets).0
    }

    /// The summed loss and what the backward pass needs: each row's f32 log-sum-exp `[rows]`, or
    /// (a backend's choice when the batch's logits fit in one chunk) their softmax
    /// `[rows, vocab]`, which spares the backward recomputing them.
    ///
    /// # Shapes
    /// - hidden: `[rows, hidden]`; weight: `[vocab, hidden]`; targets: `rows` ids
    /// - output: `[1]`, and `[rows]` or `[rows, vocab]` (f32)
    fn fused_linear_cross_entropy_forward(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        targets: &[u32],
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (loss, lse) = cross_entropy::composite::forward(float::<Self, 2>(hidden), float(weight), targets);
        (loss.into_primitive().tensor(), lse.into_primitive().tensor())
    }

    /// Whether [`KernelBackend::fused_linear_cross_entropy_forward`] keeps the softmax
    /// `[rows, vocab]` (true) or each row's log-sum-exp `[rows]` (false) for these sizes: what a
    /// wrapper that declares outputs before running them (Burn's `Fusion`) needs to know.
    fn linear_cross_entropy_keeps_softmax(rows: usize, vocab: usize) -> bool {
        let _ = (rows, vocab); // the composite always keeps the log-sum-exp
        false
    }

    /// Gradients of `grad · loss` with respect to the hidden rows and, when `weight_grad`, the
    /// weight (a frozen head skips that product).
    ///
    /// # Shapes
    /// - hidden: `[rows, hidden]`; weight: `[vocab, hidden]`; lse: what the same backend's
    ///   forward kept; grad: `[1]`
    /// - output: shaped as hidden, and as weight
    fn fused_linear_cross_entropy_backward(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        targets: &[u32],
        lse: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        weight_grad: bool,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        let (grad_hidden, grad_weight) = cross_entropy::composite::backward(
            float::<Self, 2>(hidden),
            float(weight),
            targets,
            float(lse),
            float(grad),
            weight_grad,
        );
        (
            grad_hidden.into_primitive().tensor(),
            grad_weight.map(|g| g.into_primitive().tensor()),
        )
    }

    /// RoPE on every head (see [`crate::rope()`]).
    ///
    /// # Shapes
    /// - x: `[batch, seq, heads, head_dim]`; cos, signed_sin: `[batch, seq, head_dim]`
    /// - output: `[batch, seq, heads, head_dim]`
    fn fused_rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        signed_sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let out = rope::composite::forward::<Self>(float(x), float(cos), float(signed_sin));
        out.into_primitive().tensor()
    }

    /// The gradient of RoPE with respect to x.
    ///
    /// # Shapes
    /// - grad_out: `[batch, seq, heads, head_dim]`; cos, signed_sin: `[batch, seq, head_dim]`
    /// - output: `[batch, seq, heads, head_dim]`
    fn fused_rope_backward(
        grad_out: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        signed_sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let grad = rope::composite::backward::<Self>(float(grad_out), float(cos), float(signed_sin));
        grad.into_primitive().tensor()
    }

    /// A LoRA linear layer's product (inference); see [`crate::lora_linear`].
    ///
    /// # Shapes
    /// - x, x_adapter: `[rows, in]`; weights: W `[out, in]`, A `[r, in]`, B `[out, r]`
    /// - output: `[rows, out]`
    fn fused_lora_linear(
        x: FloatTensor<Self>,
        x_adapter: FloatTensor<Self>,
        weights: [FloatTensor<Self>; 3],
        scale: f32,
    ) -> FloatTensor<Self> {
        Self::fused_lora_linear_forward(x, x_adapter, weights, scale).0
    }

    /// The dense weight of an NF4 weight, computed in f32 and cast to `dtype`.
    ///
    /// # Shapes
    /// - output: `weight.shape`
    fn nf4_dequantize_as(weight: Nf4Primitive<Self>, dtype: DType) -> FloatTensor<Self> {
        let device = Self::int_device(&weight.codes);
        nf4::composite::dequantize::<Self>(weight, dtype, &device)
            .into_primitive()
            .tensor()
    }

    /// `x · Wᵀ` for an NF4 `W`, plus `scale · (x_adapter · Aᵀ) · Bᵀ` with an adapter `[A, B]`.
    ///
    /// # Shapes
    /// - x, x_adapter: `[rows, in]`; weight `[out, in]`; A `[r, in]`, B `[out, r]`
    /// - output: `[rows, out]`
    fn fused_nf4_linear(
        x: FloatTensor<Self>,
        x_adapter: FloatTensor<Self>,
        weight: Nf4Primitive<Self>,
        adapter: Option<[FloatTensor<Self>; 2]>,
        scale: f32,
    ) -> FloatTensor<Self> {
        let dense = Self::nf4_dequantize_as(weight, x.dtype());
        match adapter {
            Some([a, b]) => Self::fused_lora_linear(x, x_adapter, [dense, a, b], scale),
            None => float::<Self, 2>(x)
                .matmul(float::<Self, 2>(dense).transpose())
                .into_primitive()
                .tensor(),
        }
    }

    /// The LoRA product and the adapter's intermediate `x_adapter · Aᵀ`, kept for backward.
    ///
    /// # Shapes
    /// - as in [`KernelBackend::fused_lora_linear`]; output `[rows, out]` and `[rows, r]`
    fn fused_lora_linear_forward(
        x: FloatTensor<Self>,
        x_adapter: FloatTensor<Self>,
        weights: [FloatTensor<Self>; 3],
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (y, h) = lora::composite::forward::<Self>(float(x), float(x_adapter), weights.map(float), scale);
        (y.into_primitive().tensor(), h.into_primitive().tensor())
    }

    /// Gradients `[dx, dx_adapter, dweight, da, db]`, each computed only where `wanted`.
    ///
    /// # Shapes
    /// - as in [`KernelBackend::fused_lora_linear_forward`]; grad_out `[rows, out]`
    #[allow(clippy::too_many_arguments)]
    fn fused_lora_linear_backward(
        x: FloatTensor<Self>,
        x_adapter: FloatTensor<Self>,
        weights: [FloatTensor<Self>; 3],
        h: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
        scale: f32,
        wanted: [bool; 5],
    ) -> [Option<FloatTensor<Self>>; 5] {
        lora::composite::backward::<Self>(
            float(x),
            float(x_adapter),
            weights.map(float),
            float(h),
            float(grad_out),
            scale,
            wanted,
        )
        .map(|g| g.map(|t| t.into_primitive().tensor()))
    }
}

/// `[rows, hidden]` for a `[..., hidden]` shape.
fn rows(shape: &Shape) -> Shape {
    let hidden = shape[shape.num_dims() - 1];
    Shape::new([shape.num_elements() / hidden, hidden])
}

/// A primitive as a rank-`D` tensor.
pub(crate) fn float<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// What training needs: an autodiff backend with the kernels, over an inner backend that has
/// them too (evaluation and generation run on the inner one).
pub trait TrainBackend: AutodiffBackend<InnerBackend: KernelBackend> + KernelBackend {}

impl<B> TrainBackend for B
where
    B: AutodiffBackend + KernelBackend,
    B::InnerBackend: KernelBackend,
{
}

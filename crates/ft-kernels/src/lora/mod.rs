//! A LoRA linear layer's product in one op: `y = x · Wᵀ + s · (x_a · Aᵀ) · Bᵀ`, where `x_a` is the
//! adapter's input (x after dropout, or x itself). Training keeps the inputs and the rank-`r`
//! intermediate `x_a · Aᵀ`; the backward is written by hand, every product on all cores, and
//! skips the gradients of frozen inputs (the base weight).

pub(crate) mod autodiff;
pub mod composite;
pub(crate) mod cpu;

use burn::tensor::Tensor;

use crate::backend::{KernelBackend, float};

/// The weights of one adapted linear layer.
#[derive(Debug, Clone)]
pub struct LoraWeights<B: burn::tensor::backend::Backend> {
    /// Base weight `[out, in]` (PyTorch layout).
    pub weight: Tensor<B, 2>,
    /// `lora_A` `[r, in]`.
    pub a: Tensor<B, 2>,
    /// `lora_B` `[out, r]`.
    pub b: Tensor<B, 2>,
    /// The adapter's scale (`alpha / r`, or `alpha / √r` for rsLoRA).
    pub scale: f32,
}

/// `x · Wᵀ + scale · (x_adapter · Aᵀ) · Bᵀ`.
///
/// # Shapes
/// - x, x_adapter: `[rows, in]`
/// - weights: W `[out, in]`, A `[r, in]`, B `[out, r]`
/// - output: `[rows, out]`
///
/// # Panics
/// When the sizes disagree (a caller bug).
pub fn lora_linear<B: KernelBackend>(
    x: Tensor<B, 2>,
    x_adapter: Tensor<B, 2>,
    weights: LoraWeights<B>,
) -> Tensor<B, 2> {
    let ([rows, d_in], [out, w_in]) = (x.dims(), weights.weight.dims());
    let ([r, a_in], [b_out, b_r]) = (weights.a.dims(), weights.b.dims());
    assert_eq!(x_adapter.dims(), [rows, d_in], "lora_linear: adapter input shape");
    assert_eq!(
        (w_in, a_in, b_out, b_r),
        (d_in, d_in, out, r),
        "lora_linear: weight shapes"
    );
    let y = B::fused_lora_linear(
        x.into_primitive().tensor(),
        x_adapter.into_primitive().tensor(),
        [weights.weight, weights.a, weights.b].map(|t| t.into_primitive().tensor()),
        weights.scale,
    );
    float(y)
}

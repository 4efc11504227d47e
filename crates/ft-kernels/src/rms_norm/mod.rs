//! RMSNorm, `x · rsqrt(mean(x²) + eps) · weight`, with the statistics in f32 whatever the dtype
//! (as transformers' `LlamaRMSNorm`: an f16 square overflows above 255). Training keeps the input
//! and one f32 reciprocal root per row.

pub(crate) mod autodiff;
pub mod composite;
pub(crate) mod cpu;

use burn::tensor::Tensor;

use crate::backend::{KernelBackend, float};

/// RMSNorm over the last dimension.
///
/// # Shapes
/// - x: `[..., hidden]`
/// - weight: `[hidden]`
/// - output: `[..., hidden]`
///
/// # Panics
/// When `weight` does not have `hidden` entries (a caller bug).
pub fn rms_norm<B: KernelBackend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 1>,
    eps: f64,
) -> Tensor<B, D> {
    assert_eq!(x.dims()[D - 1], weight.dims()[0], "rms_norm: weight size");
    let out = B::fused_rms_norm(x.into_primitive().tensor(), weight.into_primitive().tensor(), eps);
    float(out)
}

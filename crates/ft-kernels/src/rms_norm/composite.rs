//! The reference RMSNorm in Burn tensor ops (any backend).

use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor};

/// Normalises in f32, casts back to the input's dtype, then scales by the weight.
///
/// # Shapes
/// - x: `[rows, hidden]`; weight: `[hidden]`
/// - output: `[rows, hidden]` in x's dtype, and the reciprocal root `[rows]` in f32
pub fn forward<B: Backend>(x: Tensor<B, 2>, weight: Tensor<B, 1>, eps: f64) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let dtype = x.dtype();
    let x = x.cast(FloatDType::F32);
    let inv_rms = (x.clone().powi_scalar(2).mean_dim(1) + eps).sqrt().recip();
    let normed = (x * inv_rms.clone()).cast(dtype);
    (normed * weight.unsqueeze_dim(0), inv_rms.squeeze_dim(1))
}

/// Gradients with respect to x and the weight, in f32, returned in their dtypes.
///
/// # Shapes
/// - x: `[rows, hidden]`; weight: `[hidden]`; inv_rms: `[rows]`; grad_out: `[rows, hidden]`
/// - output: `[dx, dweight]` shaped as x and weight
pub fn backward<B: Backend>(
    x: Tensor<B, 2>,
    weight: Tensor<B, 1>,
    inv_rms: Tensor<B, 1>,
    grad_out: Tensor<B, 2>,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let (x_dtype, w_dtype) = (x.dtype(), weight.dtype());
    let inv_rms = inv_rms.cast(FloatDType::F32).unsqueeze_dim::<2>(1);
    let normed = x.cast(FloatDType::F32) * inv_rms.clone();
    let grad_out = grad_out.cast(FloatDType::F32);
    let grad_weight = (grad_out.clone() * normed.clone()).sum_dim(0).squeeze_dim(0);
    let grad_normed = grad_out * weight.cast(FloatDType::F32).unsqueeze_dim(0);
    let projection = (grad_normed.clone() * normed.clone()).mean_dim(1);
    let grad_x = (grad_normed - normed * projection) * inv_rms;
    (grad_x.cast(x_dtype), grad_weight.cast(w_dtype))
}

//! The reference RoPE in Burn tensor ops (any backend).

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// `x · cos + [x₂, x₁] · signed_sin`.
///
/// # Shapes
/// - x: `[batch, seq, heads, head_dim]`; cos, signed_sin: `[batch, seq, head_dim]`
/// - output: `[batch, seq, heads, head_dim]`
pub fn forward<B: Backend>(x: Tensor<B, 4>, cos: Tensor<B, 3>, signed_sin: Tensor<B, 3>) -> Tensor<B, 4> {
    x.clone() * cos.unsqueeze_dim(2) + swap_halves(x) * signed_sin.unsqueeze_dim(2)
}

/// The gradient with respect to x: `dy · cos + swap_halves(dy · signed_sin)`.
///
/// # Shapes
/// - grad_out: `[batch, seq, heads, head_dim]`; cos, signed_sin: `[batch, seq, head_dim]`
/// - output: `[batch, seq, heads, head_dim]`
pub fn backward<B: Backend>(
    grad_out: Tensor<B, 4>,
    cos: Tensor<B, 3>,
    signed_sin: Tensor<B, 3>,
) -> Tensor<B, 4> {
    grad_out.clone() * cos.unsqueeze_dim(2) + swap_halves(grad_out * signed_sin.unsqueeze_dim(2))
}

/// `[x₂, x₁]` over the last dimension.
fn swap_halves<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [batch, seq, heads, head_dim] = x.dims();
    let half = head_dim / 2;
    let x1 = x.clone().slice([0..batch, 0..seq, 0..heads, 0..half]);
    let x2 = x.slice([0..batch, 0..seq, 0..heads, half..head_dim]);
    Tensor::cat(vec![x2, x1], 3)
}

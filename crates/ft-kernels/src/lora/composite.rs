//! The reference LoRA product in Burn tensor ops (any backend).

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// `y = x · Wᵀ + scale · h · Bᵀ` and the adapter's intermediate `h = x_adapter · Aᵀ`.
///
/// # Shapes
/// - x, x_adapter: `[rows, in]`; weight `[out, in]`, a `[r, in]`, b `[out, r]`
/// - output: `[rows, out]` and `[rows, r]`
pub fn forward<B: Backend>(
    x: Tensor<B, 2>,
    x_adapter: Tensor<B, 2>,
    [weight, a, b]: [Tensor<B, 2>; 3],
    scale: f32,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let h = x_adapter.matmul(a.transpose());
    // The scale goes on the small B ([out, r]) rather than on the [rows, out] product.
    let y = x.matmul(weight.transpose()) + h.clone().matmul(b.mul_scalar(scale).transpose());
    (y, h)
}

/// Gradients `[dx, dx_adapter, dweight, da, db]`; an entry is `None` where `wanted` says the
/// input is not tracked.
///
/// # Shapes
/// - as in [`forward`]; h `[rows, r]`; grad_out `[rows, out]`
pub fn backward<B: Backend>(
    x: Tensor<B, 2>,
    x_adapter: Tensor<B, 2>,
    [weight, a, b]: [Tensor<B, 2>; 3],
    h: Tensor<B, 2>,
    grad_out: Tensor<B, 2>,
    scale: f32,
    wanted: [bool; 5],
) -> [Option<Tensor<B, 2>>; 5] {
    let grad_h = grad_out.clone().matmul(b.clone()).mul_scalar(scale);
    let [want_x, want_xa, want_w, want_a, want_b] = wanted;
    [
        want_x.then(|| grad_out.clone().matmul(weight)),
        want_xa.then(|| grad_h.clone().matmul(a)),
        want_w.then(|| grad_out.clone().transpose().matmul(x)),
        want_a.then(|| grad_h.transpose().matmul(x_adapter)),
        want_b.then(|| grad_out.transpose().matmul(h).mul_scalar(scale)),
    ]
}

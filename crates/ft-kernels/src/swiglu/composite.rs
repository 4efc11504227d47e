//! The reference SwiGLU gate in Burn tensor ops (any backend).

use burn::tensor::Tensor;
use burn::tensor::activation::{sigmoid, silu};
use burn::tensor::backend::Backend;

/// `silu(gate) ⊙ up`.
///
/// # Shapes
/// - gate, up, output: `[n]`
pub fn forward<B: Backend>(gate: Tensor<B, 1>, up: Tensor<B, 1>) -> Tensor<B, 1> {
    silu(gate) * up
}

/// `[dgate, dup]`: `dgate = g · up · σ · (1 + gate · (1 − σ))`, `dup = g · silu(gate)`.
///
/// # Shapes
/// - gate, up, grad_out, outputs: `[n]`
pub fn backward<B: Backend>(
    gate: Tensor<B, 1>,
    up: Tensor<B, 1>,
    grad_out: Tensor<B, 1>,
) -> [Tensor<B, 1>; 2] {
    let s = sigmoid(gate.clone());
    let grad_up = grad_out.clone() * gate.clone() * s.clone();
    let slope = s.clone() * (gate * (s.neg() + 1.0) + 1.0);
    [grad_out * up * slope, grad_up]
}

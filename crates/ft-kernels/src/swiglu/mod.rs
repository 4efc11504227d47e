//! SwiGLU's gate, `silu(gate) ⊙ up`, in one pass forward and one backward (training keeps the
//! two inputs, not the intermediate activations).

pub(crate) mod autodiff;
pub mod composite;
pub(crate) mod cpu;

use burn::tensor::Tensor;

use crate::backend::{KernelBackend, float};

/// `silu(gate) ⊙ up`, element-wise.
///
/// # Shapes
/// - gate, up: `[..., intermediate]`, equal
/// - output: `[..., intermediate]`
///
/// # Panics
/// When the shapes differ (a caller bug).
pub fn swiglu<B: KernelBackend, const D: usize>(gate: Tensor<B, D>, up: Tensor<B, D>) -> Tensor<B, D> {
    assert_eq!(gate.dims(), up.dims(), "swiglu: gate and up shapes differ");
    float(B::fused_swiglu(
        gate.into_primitive().tensor(),
        up.into_primitive().tensor(),
    ))
}

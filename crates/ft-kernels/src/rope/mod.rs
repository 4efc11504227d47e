//! Rotary position embedding, rotate-half style with the sign folded into the sine:
//! `x · cos + [x₂, x₁] · [−sin₁, sin₂]`, applied to every head of `[batch, seq, heads, head_dim]`
//! in place of its layout. The backward is `dy · cos + [(dy·s)₂, (dy·s)₁]`; the angles are
//! constants.

pub(crate) mod autodiff;
pub mod composite;
pub(crate) mod cpu;

use burn::tensor::Tensor;

use crate::backend::{KernelBackend, float};

/// RoPE with per-position angles shared by every head.
///
/// # Shapes
/// - x: `[batch, seq, heads, head_dim]` (`head_dim` even)
/// - cos, signed_sin: `[batch, seq, head_dim]`, in x's dtype; `signed_sin` is `[−sin₁, sin₂]`
///   over the two halves
/// - output: `[batch, seq, heads, head_dim]`
///
/// # Panics
/// When the shapes disagree (a caller bug).
pub fn rope<B: KernelBackend>(x: Tensor<B, 4>, cos: Tensor<B, 3>, signed_sin: Tensor<B, 3>) -> Tensor<B, 4> {
    let [batch, seq, _, head_dim] = x.dims();
    assert_eq!(cos.dims(), [batch, seq, head_dim], "rope: cos shape");
    assert_eq!(signed_sin.dims(), [batch, seq, head_dim], "rope: sin shape");
    assert_eq!(head_dim % 2, 0, "rope: odd head size");
    let out = B::fused_rope(
        x.into_primitive().tensor(),
        cos.into_primitive().tensor(),
        signed_sin.into_primitive().tensor(),
    );
    float(out)
}

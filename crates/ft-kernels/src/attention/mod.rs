//! Attention for training and generation: causal, packed (block-diagonal per sample), grouped
//! K/V heads read in place, sliding windows. The backward recomputes the probabilities tile by
//! tile from the stored log-sum-exp (FlashAttention-2's scheme), so what training keeps is
//! O(seq), not O(seq²).

pub(crate) mod autodiff;
pub mod composite;
pub(crate) mod cpu;

use burn::tensor::Tensor;

use crate::backend::{KernelBackend, float};
use crate::mask::AttentionMask;

/// `softmax(q·kᵀ·scale + mask)·v` with the softmax in f32, on the backend's fused op.
///
/// Tensors stay in the projections' layout (no transposes on the way in or out).
///
/// # Shapes
/// - q: `[batch, seq, heads, head_dim]`
/// - k, v: `[batch, past + seq, kv_heads, head_dim]`, `heads` a multiple of `kv_heads`
/// - output: `[batch, seq, heads, head_dim]`
///
/// # Panics
/// When the shapes disagree with each other or with `mask` (a caller bug).
pub fn attention<B: KernelBackend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: &AttentionMask,
    scale: f32,
) -> Tensor<B, 4> {
    let [batch, seq, heads, head_dim] = q.dims();
    let [kb, keys, kv_heads, kd] = k.dims();
    assert_eq!(k.dims(), v.dims(), "attention: k and v shapes differ");
    assert_eq!(
        (kb, kd),
        (batch, head_dim),
        "attention: q and k disagree on batch or head size"
    );
    assert!(
        kv_heads > 0 && heads % kv_heads == 0,
        "attention: {heads} heads over {kv_heads} kv heads"
    );
    assert_eq!(
        (batch, seq, keys),
        (mask.batch, mask.seq, mask.keys()),
        "attention: mask shape"
    );
    mask.assert_consistent();
    let out = B::fused_attention(
        q.into_primitive().tensor(),
        k.into_primitive().tensor(),
        v.into_primitive().tensor(),
        mask,
        scale,
    );
    float(out)
}

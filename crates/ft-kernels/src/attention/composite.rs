//! The reference attention, written with Burn tensor ops on any backend: it materialises the
//! `[batch, heads, seq, keys]` scores. Every kernel is tested against it, and backends without a
//! kernel of their own run it.

use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor, TensorData};

use crate::mask::AttentionMask;

/// Forward attention with the softmax in f32.
///
/// # Shapes
/// - q: `[batch, seq, heads, head_dim]`
/// - k, v: `[batch, past + seq, kv_heads, head_dim]` (`heads` a multiple of `kv_heads`)
/// - output: `[batch, seq, heads, head_dim]` in q's dtype, and the log-sum-exp of each query's
///   scaled scores `[batch, heads, seq]` in f32
pub fn forward<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: &AttentionMask,
    scale: f32,
) -> (Tensor<B, 4>, Tensor<B, 3>) {
    let (q, k, v) = (q.swap_dims(1, 2), k.swap_dims(1, 2), v.swap_dims(1, 2));
    let groups = q.dims()[1] / k.dims()[1];
    let dtype = v.dtype();
    let (probs, lse) = probabilities(q, repeat_kv(k, groups), mask, scale);
    let out = probs.cast(dtype).matmul(repeat_kv(v, groups));
    (out.swap_dims(1, 2), lse.squeeze_dim(3))
}

/// Gradients of [`forward`] with respect to q, k and v, computed in f32 and returned in each
/// input's dtype.
///
/// # Shapes
/// - q, k, v: as in [`forward`]; out, grad_out: `[batch, seq, heads, head_dim]`
/// - output: `[dq, dk, dv]` shaped as q, k, v
pub fn backward<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    out: Tensor<B, 4>,
    grad_out: Tensor<B, 4>,
    mask: &AttentionMask,
    scale: f32,
) -> [Tensor<B, 4>; 3] {
    let (q_dtype, k_dtype, v_dtype) = (q.dtype(), k.dtype(), v.dtype());
    let f32 = |t: Tensor<B, 4>| t.swap_dims(1, 2).cast(FloatDType::F32);
    let [batch, keys, kv_heads, head_dim] = k.dims();
    let groups = q.dims()[2] / kv_heads;
    let (q, k, v) = (f32(q), repeat_kv(f32(k), groups), repeat_kv(f32(v), groups));
    let (grad_out, out) = (f32(grad_out), f32(out));
    let (probs, _) = probabilities(q.clone(), k.clone(), mask, scale);

    let dv = probs.clone().swap_dims(2, 3).matmul(grad_out.clone());
    let dp = grad_out.clone().matmul(v.swap_dims(2, 3));
    let row_dot = (grad_out * out).sum_dim(3);
    let ds = probs * (dp - row_dot);
    let dq = ds.clone().matmul(k).mul_scalar(scale);
    let dk = ds.swap_dims(2, 3).matmul(q).mul_scalar(scale);
    let sum_groups = |t: Tensor<B, 4>| {
        t.reshape([batch, kv_heads, groups, keys, head_dim])
            .sum_dim(2)
            .reshape([batch, kv_heads, keys, head_dim])
    };
    [
        dq.swap_dims(1, 2).cast(q_dtype),
        sum_groups(dk).swap_dims(1, 2).cast(k_dtype),
        sum_groups(dv).swap_dims(1, 2).cast(v_dtype),
    ]
}

/// Head-major q `[batch, heads, seq, head_dim]` and k `[batch, heads, keys, head_dim]` →
/// softmax probabilities `[batch, heads, seq, keys]` (f32, zero on rows that see no key) and the
/// log-sum-exp `[batch, heads, seq, 1]`.
fn probabilities<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    mask: &AttentionMask,
    scale: f32,
) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let device = q.device();
    let [batch, _, seq, _] = q.dims();
    let keys = k.dims()[2];
    assert_eq!(
        (batch, seq, keys),
        (mask.batch, mask.seq, mask.keys()),
        "attention mask shape"
    );
    let bias = Tensor::<B, 4>::from_data(TensorData::new(mask.bias(), [batch, 1, seq, keys]), &device)
        .cast(FloatDType::F32);
    let seeing = Tensor::<B, 4>::from_data(TensorData::new(mask.seeing_rows(), [batch, 1, seq, 1]), &device)
        .cast(FloatDType::F32);
    let scores = q
        .matmul(k.swap_dims(2, 3))
        .mul_scalar(scale)
        .cast(FloatDType::F32)
        + bias;
    let max = scores.clone().max_dim(3);
    let lse = max.clone() + (scores.clone() - max).exp().sum_dim(3).log();
    let probs = (scores - lse.clone()).exp() * seeing;
    (probs, lse)
}

/// Repeats each key/value head `groups` times (query head j uses kv head j / groups).
///
/// # Shapes
/// - x: `[batch, kv_heads, len, head_dim]`
/// - output: `[batch, kv_heads · groups, len, head_dim]`
pub fn repeat_kv<B: Backend>(x: Tensor<B, 4>, groups: usize) -> Tensor<B, 4> {
    if groups == 1 {
        return x;
    }
    let [batch, kv, len, hd] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .repeat_dim(2, groups)
        .reshape([batch, kv * groups, len, hd])
}
